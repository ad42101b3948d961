"""The durable store of tracked runs in SQLite, behind the `TrackingStore` interface.

Every write is one short transaction; no lock is held across a network call or a sleep.
SQLite runs in WAL mode with `synchronous=FULL` (`kfadapter.sqlitedb`), so readers in
other gunicorn workers never block the watcher, a committed track() survives a power
loss, and a crash mid-write leaves the last committed state. `MIGRATIONS` versions the
schema (`PRAGMA user_version`) and brings an older file up to date when the store opens.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kfadapter import sqlitedb
from kfadapter.sqlitedb import Migration, StoreError
from kfadapter.tracking.model import (
    FINISHED_STATUSES,
    PENDING,
    UNTRACKED,
    WAITING,
    AttemptResult,
    PagePosition,
    StateUpdate,
    TrackedRun,
)
from kfadapter.tracking.rows import (
    RUN_COLUMNS,
    apply_poll,
    attempt_params,
    page_of,
    run_from_row,
    status_counts,
)

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SqliteTrackingStore", "StoreError"]


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
MIGRATIONS: list[Migration] = [
    _create_tracked_runs,
    _index_status_times,
]
SCHEMA_VERSION = len(MIGRATIONS)


class SqliteTrackingStore:
    """Tracked runs in one SQLite file (WAL mode), shared safely by processes and threads."""

    FILE_NAME = "tracking.sqlite3"

    def __init__(
        self,
        path: Path,
        *,
        busy_timeout: float = 10.0,
        migrations: Sequence[Migration] | None = None,
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
        db = sqlitedb.connect(self.path, busy_timeout=self._busy_timeout, synchronous="FULL")
        try:
            sqlitedb.migrate(db, self._migrations, what=f"the tracking store {self.path}")
        except BaseException:
            db.close()
            raise
        self._db, self._pid = db, os.getpid()
        return db

    @contextmanager
    def _transaction(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction (just the connection when only reading), under the store's lock."""
        with self._lock:
            db = self._connect()
            if not write:
                yield db
                return
            with sqlitedb.transaction(db):
                yield db

    def close(self) -> None:
        """Close this process's connection."""
        with self._lock:
            if self._db is not None and self._pid == os.getpid():
                self._db.close()
            self._db = None

    def schema_version(self) -> int:
        """The schema version of the file."""
        with self._transaction(write=False) as db:
            return sqlitedb.schema_version(db)

    def integrity_check(self) -> str:
        """SQLite's own consistency check: 'ok' when the file is sound."""
        with self._transaction(write=False) as db:
            return db.execute("PRAGMA integrity_check").fetchone()[0]

    def _select(self, clause: str, params: tuple[Any, ...]) -> list[TrackedRun]:
        """The tracked runs `SELECT ... FROM tracked_runs <clause>` finds."""
        with self._transaction(write=False) as db:
            rows = db.execute(f"SELECT {RUN_COLUMNS} FROM tracked_runs {clause}", params).fetchall()
        return [run_from_row(row) for row in rows]

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
                f"SELECT {RUN_COLUMNS} FROM tracked_runs WHERE run_id = ?", (run_id,)
            ).fetchone()
        return run_from_row(row)

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
            "WHERE trainingjob_id = ? ORDER BY rowid DESC LIMIT 1",  # insertion order
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
                f"SELECT rowid AS position, {RUN_COLUMNS} FROM tracked_runs {where} "
                "ORDER BY created_at DESC, rowid DESC LIMIT ?",
                (*params, limit + 1),
            ).fetchall()
        return page_of(rows, limit)

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
        with self._transaction() as db:
            return apply_poll(
                db,
                updates,
                now,
                final_sql="UPDATE tracked_runs SET run_state = ?, final_state = ?, "
                "not_found_count = ?, notification_status = ?, notification_id = ?, "
                "next_attempt_at = ?, final_seen_at = ?, polled_at = ?, updated_at = ? "
                "WHERE run_id = ? AND notification_status = ?",
                open_sql="UPDATE tracked_runs SET run_state = ?, not_found_count = ?, "
                "polled_at = ?, updated_at = CASE WHEN run_state IS ? "
                "AND not_found_count = ? THEN updated_at ELSE ? END "
                "WHERE run_id = ? AND notification_status = ?",
            )

    def due_notifications(self, now: float, limit: int) -> list[TrackedRun]:
        return self._select(
            "WHERE notification_status = ? AND next_attempt_at <= ? "
            "ORDER BY next_attempt_at LIMIT ?",
            (PENDING, now, limit),
        )

    def claim_due(self, now: float, lease: float) -> TrackedRun | None:
        """The oldest due notification. One SQLite file has one leader (the data dir's
        flock), so nothing else sends from it: no claim needs recording."""
        return next(iter(self.due_notifications(now, 1)), None)

    def ping(self) -> None:
        """Raise unless the file can be read now (readiness)."""
        with self._transaction(write=False) as db:
            db.execute("SELECT 1 FROM tracked_runs LIMIT 1").fetchall()

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
                attempt_params(result, now),
            )
            return cursor.rowcount == 1

    def counts(self) -> dict[str, int]:
        with self._transaction(write=False) as db:
            rows = db.execute(
                "SELECT notification_status, COUNT(*) FROM tracked_runs "
                "GROUP BY notification_status"
            ).fetchall()
        return status_counts(rows)
