"""The durable store of tracked runs: a small interface and its SQLite implementation.

Every write is one short transaction; no lock is held across a network call or a sleep.
SQLite runs in WAL mode, so readers in other gunicorn workers never block the watcher,
and a crash mid-write leaves the last committed state. `PRAGMA user_version` holds the
schema version; `MIGRATIONS` brings an older file up to date when the store opens.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

# Notification statuses, in the order a run goes through them.
WAITING = "waiting"  # the run is not final yet: the watcher polls it
PENDING = "pending"  # final state seen: the notification is due or being retried
DELIVERED = "delivered"  # the TM answered (2xx, 4xx, 500...): recorded with its code
EXPIRED = "expired"  # the deadline passed without the TM receiving it
UNTRACKED = "untracked"  # terminated through DELETE /runs/<id>: the TM knows, never notified
NOTIFICATION_STATUSES = (WAITING, PENDING, DELIVERED, EXPIRED, UNTRACKED)
# Statuses nothing will change any more: rows in them may be pruned after the retention.
FINISHED_STATUSES = (DELIVERED, EXPIRED, UNTRACKED)

# Where a page of the newest-first list ended: (created_at, rowid) of its last row.
PagePosition = tuple[float, int]


class StoreError(RuntimeError):
    """The store cannot be opened or used (e.g. its schema is newer than this release)."""


@dataclass(frozen=True)
class TrackedRun:
    """One run started for a training job, and where its notification stands."""

    run_id: str
    trainingjob_id: str
    info: dict[str, Any]
    run_state: str | None
    notification_status: str
    final_state: str | None = None
    notification_id: str | None = None
    attempts: int = 0
    next_attempt_at: float | None = None
    last_error: str | None = None
    last_code: int | None = None
    not_found_count: int = 0
    created_at: float = 0.0
    updated_at: float = 0.0
    polled_at: float | None = None
    final_seen_at: float | None = None
    last_attempt_at: float | None = None
    notified_at: float | None = None

    def to_dict(self, notify_deadline: float | None = None) -> dict[str, Any]:
        """A JSON-ready view: run, last state seen, and the notification's progress."""
        deadline = (
            self.final_seen_at + notify_deadline
            if self.final_seen_at is not None and notify_deadline is not None
            else None
        )
        return {
            "trainingjob_id": self.trainingjob_id,
            "run_id": self.run_id,
            **{key: value for key, value in self.info.items() if key not in _RESERVED_KEYS},
            "run_state": self.run_state,
            "final_state": self.final_state,
            "tracked_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "last_polled_at": _iso(self.polled_at),
            "final_state_seen_at": _iso(self.final_seen_at),
            "notification": {
                "status": self.notification_status,
                "notification_id": self.notification_id,
                "attempts": self.attempts,
                "last_attempt_at": _iso(self.last_attempt_at),
                "next_attempt_at": _iso(self.next_attempt_at)
                if self.notification_status == PENDING
                else None,
                "deadline": _iso(deadline),
                "last_code": self.last_code,
                "last_error": self.last_error,
                "notified_at": _iso(self.notified_at),
            },
        }


_RESERVED_KEYS = frozenset(
    {
        "trainingjob_id",
        "run_id",
        "run_state",
        "final_state",
        "tracked_at",
        "updated_at",
        "last_polled_at",
        "final_state_seen_at",
        "notification",
    }
)


@dataclass(frozen=True)
class StateUpdate:
    """What one poll learned about one open run."""

    run_id: str
    run_state: str | None
    not_found_count: int = 0
    final: bool = False
    notification_id: str | None = None


@dataclass(frozen=True)
class AttemptResult:
    """The outcome of one notification attempt, as it is to be recorded."""

    run_id: str
    notification_status: str  # PENDING (retry later), DELIVERED or EXPIRED
    attempts: int
    next_attempt_at: float | None
    last_code: int | None
    last_error: str | None


class TrackingStore(Protocol):
    """What the tracker needs from a database; SQLite is the one implementation today."""

    def add(self, trainingjob_id: str, run_id: str, info: dict[str, Any], now: float) -> TrackedRun:
        """Record a run to watch (committed on return); an already tracked run is kept as is."""

    def untrack(self, run_id: str, now: float) -> bool:
        """Stop watching a run and never notify it; False if it was not open."""

    def retrack(self, run_id: str, now: float) -> bool:
        """Undo untrack(): watch the run again, or, if its final state was already seen,
        make its notification due again; False if it was not untracked."""

    def get(self, run_id: str) -> TrackedRun | None:
        """The tracked run with that id."""

    def latest_for_job(self, trainingjob_id: str) -> TrackedRun | None:
        """The most recently tracked run of a training job."""

    def list(self, notification_status: str | None = None) -> list[TrackedRun]:
        """Tracked runs, newest first, optionally with one notification status."""

    def page(
        self, notification_status: str | None, limit: int, after: PagePosition | None = None
    ) -> tuple[list[TrackedRun], PagePosition | None]:
        """Up to `limit` tracked runs in list() order, starting after `after`; and the
        position to pass for the next page (None when this page is the last)."""

    def prune(self, older_than: float) -> int:
        """Delete runs whose notification is finished and whose last update is before
        `older_than`; open runs and pending notifications are kept. The number deleted."""

    def open_runs(self) -> list[TrackedRun]:
        """Runs not final yet (status WAITING)."""

    def record_poll(self, updates: Sequence[StateUpdate], now: float) -> int:
        """Apply one poll's findings to runs still WAITING, in one transaction."""

    def due_notifications(self, now: float, limit: int) -> list[TrackedRun]:
        """PENDING notifications whose next attempt time has come, oldest first."""

    def next_attempt_at(self) -> float | None:
        """The earliest next attempt time among PENDING notifications."""

    def record_attempt(self, result: AttemptResult, now: float) -> bool:
        """Record a notification attempt on a run still PENDING."""

    def counts(self) -> dict[str, int]:
        """Number of tracked runs per notification status (every status present)."""

    def close(self) -> None:
        """Release the database."""


def _create_tracked_runs(db: sqlite3.Connection) -> None:
    db.execute(
        """
        CREATE TABLE tracked_runs (
            run_id TEXT PRIMARY KEY,
            trainingjob_id TEXT NOT NULL,
            info TEXT NOT NULL DEFAULT '{}',
            run_state TEXT,
            final_state TEXT,
            notification_status TEXT NOT NULL,
            notification_id TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL,
            last_error TEXT,
            last_code INTEGER,
            not_found_count INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            polled_at REAL,
            final_seen_at REAL,
            last_attempt_at REAL,
            notified_at REAL
        )
        """
    )
    db.execute("CREATE INDEX tracked_runs_job ON tracked_runs (trainingjob_id, created_at)")
    db.execute(
        "CREATE INDEX tracked_runs_status ON tracked_runs (notification_status, next_attempt_at)"
    )
    db.execute("CREATE INDEX tracked_runs_created ON tracked_runs (created_at)")


def _index_status_times(db: sqlite3.Connection) -> None:
    """Indexes for paging a status's runs newest first and for pruning finished runs."""
    db.execute(
        "CREATE INDEX tracked_runs_status_created ON tracked_runs (notification_status, created_at)"
    )
    db.execute(
        "CREATE INDEX tracked_runs_status_updated ON tracked_runs (notification_status, updated_at)"
    )


# MIGRATIONS[i] takes a database at schema version i to version i + 1. Append, never edit.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _create_tracked_runs,
    _index_status_times,
]
SCHEMA_VERSION = len(MIGRATIONS)

_COLUMNS = (
    "run_id, trainingjob_id, info, run_state, final_state, notification_status, "
    "notification_id, attempts, next_attempt_at, last_error, last_code, not_found_count, "
    "created_at, updated_at, polled_at, final_seen_at, last_attempt_at, notified_at"
)


class SqliteTrackingStore:
    """Tracked runs in one SQLite file (WAL mode), shared safely by processes and threads."""

    FILE_NAME = "tracking.sqlite3"

    def __init__(
        self,
        path: Path,
        *,
        busy_timeout: float = 10.0,
        migrations: Sequence[Callable[[sqlite3.Connection], None]] | None = None,
    ) -> None:
        self.path = Path(path)
        self._busy_timeout = busy_timeout
        self._migrations = list(MIGRATIONS if migrations is None else migrations)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._pid = 0
        with self._transaction():
            pass  # open and migrate now, so a bad file fails at start, not on first request

    @classmethod
    def in_dir(cls, data_dir: Path) -> SqliteTrackingStore:
        """The store file in the adapter's data directory (created if missing)."""
        data_dir = Path(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        return cls(data_dir / cls.FILE_NAME)

    # -- connection and transactions -------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        """A connection for this process (a forked worker never reuses its parent's)."""
        if self._db is not None and self._pid == os.getpid():
            return self._db
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout,
            isolation_level=None,  # explicit BEGIN/COMMIT below
            check_same_thread=False,  # guarded by self._lock
        )
        db.row_factory = sqlite3.Row
        self._enable_wal(db)
        db.execute("PRAGMA synchronous=FULL")  # a committed track() survives power loss
        db.execute(f"PRAGMA busy_timeout={int(self._busy_timeout * 1000)}")
        self._migrate(db)
        self._db, self._pid = db, os.getpid()
        return db

    def _enable_wal(self, db: sqlite3.Connection) -> None:
        """Switch the file to WAL mode; retried, since SQLite does not wait for this one lock
        when several workers create the file at the same moment."""
        give_up = time.monotonic() + self._busy_timeout
        while True:
            try:
                db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > give_up:
                    db.close()
                    raise
                time.sleep(0.02)

    def _migrate(self, db: sqlite3.Connection) -> None:
        """Bring the schema to this release's version, in one transaction."""
        latest = len(self._migrations)
        db.execute("BEGIN IMMEDIATE")
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > latest:
                raise StoreError(
                    f"{self.path} has tracking schema version {version}; this release "
                    f"knows up to {latest}: upgrade kfadapter or use another data dir"
                )
            for step in self._migrations[version:]:
                step(db)
            if version != latest:
                db.execute(f"PRAGMA user_version={latest}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            db.close()
            raise

    @contextmanager
    def _transaction(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        with self._lock:
            db = self._connect()
            if not write:
                yield db
                return
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def close(self) -> None:
        """Close this process's connection."""
        with self._lock:
            if self._db is not None and self._pid == os.getpid():
                self._db.close()
            self._db = None

    def schema_version(self) -> int:
        """The schema version of the file."""
        with self._transaction(write=False) as db:
            return db.execute("PRAGMA user_version").fetchone()[0]

    def integrity_check(self) -> str:
        """SQLite's own consistency check: 'ok' when the file is sound."""
        with self._transaction(write=False) as db:
            return db.execute("PRAGMA integrity_check").fetchone()[0]

    def _select(self, clause: str, params: tuple[Any, ...]) -> list[TrackedRun]:
        """The tracked runs `SELECT ... FROM tracked_runs <clause>` finds."""
        with self._transaction(write=False) as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM tracked_runs {clause}", params).fetchall()
        return [_to_run(row) for row in rows]

    # -- the TrackingStore interface -------------------------------------------------------

    def add(self, trainingjob_id: str, run_id: str, info: dict[str, Any], now: float) -> TrackedRun:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO tracked_runs (run_id, trainingjob_id, info, run_state, "
                "notification_status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (run_id) DO NOTHING",
                (
                    run_id,
                    trainingjob_id,
                    json.dumps(info, default=str),
                    info.get("run_state"),
                    WAITING,
                    now,
                    now,
                ),
            )
            row = db.execute(
                f"SELECT {_COLUMNS} FROM tracked_runs WHERE run_id = ?", (run_id,)
            ).fetchone()
        return _to_run(row)

    def untrack(self, run_id: str, now: float) -> bool:
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE tracked_runs SET notification_status = ?, next_attempt_at = NULL, "
                "updated_at = ? WHERE run_id = ? AND notification_status IN (?, ?)",
                (UNTRACKED, now, run_id, WAITING, PENDING),
            )
            return cursor.rowcount == 1

    def retrack(self, run_id: str, now: float) -> bool:
        # A run untracked after its final state was seen goes back to PENDING (due now, same
        # notification id, same deadline), not to WAITING: polled again, a run KFP has
        # deleted meanwhile would be reported NOT_FOUND instead of its real outcome.
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE tracked_runs SET "
                "notification_status = CASE WHEN final_state IS NULL THEN ? ELSE ? END, "
                "next_attempt_at = CASE WHEN final_state IS NULL THEN NULL ELSE ? END, "
                "not_found_count = 0, updated_at = ? "
                "WHERE run_id = ? AND notification_status = ?",
                (WAITING, PENDING, now, now, run_id, UNTRACKED),
            )
            return cursor.rowcount == 1

    def get(self, run_id: str) -> TrackedRun | None:
        return next(iter(self._select("WHERE run_id = ?", (run_id,))), None)

    def latest_for_job(self, trainingjob_id: str) -> TrackedRun | None:
        latest = self._select(
            "WHERE trainingjob_id = ? ORDER BY created_at DESC, rowid DESC LIMIT 1",
            (trainingjob_id,),
        )
        return next(iter(latest), None)

    def list(self, notification_status: str | None = None) -> list[TrackedRun]:
        newest_first = "ORDER BY created_at DESC, rowid DESC"
        if notification_status is None:
            return self._select(newest_first, ())
        return self._select(f"WHERE notification_status = ? {newest_first}", (notification_status,))

    def page(
        self, notification_status: str | None, limit: int, after: PagePosition | None = None
    ) -> tuple[list[TrackedRun], PagePosition | None]:
        # Keyset paging: each page seeks straight to its start in an index, however deep.
        conditions, params = [], []
        if notification_status is not None:
            conditions.append("notification_status = ?")
            params.append(notification_status)
        if after is not None:
            conditions.append("(created_at, rowid) < (?, ?)")
            params.extend(after)
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        with self._transaction(write=False) as db:
            rows = db.execute(
                f"SELECT rowid AS position, {_COLUMNS} FROM tracked_runs {where} "
                "ORDER BY created_at DESC, rowid DESC LIMIT ?",
                (*params, limit + 1),
            ).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        last = rows[-1] if more else None
        runs = [_to_run(row) for row in rows]
        return runs, ((last["created_at"], last["position"]) if last is not None else None)

    def prune(self, older_than: float) -> int:
        marks = ", ".join("?" * len(FINISHED_STATUSES))
        with self._transaction() as db:
            cursor = db.execute(
                f"DELETE FROM tracked_runs WHERE notification_status IN ({marks}) "
                "AND updated_at < ?",
                (*FINISHED_STATUSES, older_than),
            )
            return cursor.rowcount

    def open_runs(self) -> list[TrackedRun]:
        return self._select("WHERE notification_status = ? ORDER BY created_at", (WAITING,))

    def record_poll(self, updates: Sequence[StateUpdate], now: float) -> int:
        changed = 0
        with self._transaction() as db:
            for update in updates:
                if update.final:
                    cursor = db.execute(
                        "UPDATE tracked_runs SET run_state = ?, final_state = ?, "
                        "not_found_count = ?, notification_status = ?, notification_id = ?, "
                        "next_attempt_at = ?, final_seen_at = ?, polled_at = ?, updated_at = ? "
                        "WHERE run_id = ? AND notification_status = ?",
                        (
                            update.run_state,
                            update.run_state,
                            update.not_found_count,
                            PENDING,
                            update.notification_id,
                            now,
                            now,
                            now,
                            now,
                            update.run_id,
                            WAITING,
                        ),
                    )
                else:
                    cursor = db.execute(
                        "UPDATE tracked_runs SET run_state = ?, not_found_count = ?, "
                        "polled_at = ?, updated_at = CASE WHEN run_state IS ? "
                        "AND not_found_count = ? THEN updated_at ELSE ? END "
                        "WHERE run_id = ? AND notification_status = ?",
                        (
                            update.run_state,
                            update.not_found_count,
                            now,
                            update.run_state,
                            update.not_found_count,
                            now,
                            update.run_id,
                            WAITING,
                        ),
                    )
                changed += cursor.rowcount
        return changed

    def due_notifications(self, now: float, limit: int) -> list[TrackedRun]:
        return self._select(
            "WHERE notification_status = ? AND next_attempt_at <= ? "
            "ORDER BY next_attempt_at LIMIT ?",
            (PENDING, now, limit),
        )

    def next_attempt_at(self) -> float | None:
        with self._transaction(write=False) as db:
            row = db.execute(
                "SELECT MIN(next_attempt_at) FROM tracked_runs WHERE notification_status = ?",
                (PENDING,),
            ).fetchone()
        return row[0]

    def record_attempt(self, result: AttemptResult, now: float) -> bool:
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE tracked_runs SET notification_status = ?, attempts = ?, "
                "next_attempt_at = ?, last_code = ?, last_error = ?, last_attempt_at = ?, "
                "notified_at = CASE WHEN ? = ? THEN ? ELSE notified_at END, updated_at = ? "
                "WHERE run_id = ? AND notification_status = ?",
                (
                    result.notification_status,
                    result.attempts,
                    result.next_attempt_at if result.notification_status == PENDING else None,
                    result.last_code,
                    result.last_error,
                    now,
                    result.notification_status,
                    DELIVERED,
                    now,
                    now,
                    result.run_id,
                    PENDING,
                ),
            )
            return cursor.rowcount == 1

    def counts(self) -> dict[str, int]:
        with self._transaction(write=False) as db:
            rows = db.execute(
                "SELECT notification_status, COUNT(*) FROM tracked_runs "
                "GROUP BY notification_status"
            ).fetchall()
        found = {status: count for status, count in rows}
        return {status: found.get(status, 0) for status in NOTIFICATION_STATUSES}


def _to_run(row: sqlite3.Row) -> TrackedRun:
    values = dict(row)
    values.pop("position", None)
    values["info"] = json.loads(values["info"] or "{}")
    return TrackedRun(**values)


def _iso(timestamp: float | None) -> str | None:
    """An epoch time as ISO-8601 UTC with a Z, like KFP's dates."""
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
