"""The tracking store in PostgreSQL, for several replicas on one database.

The same `TrackingStore` as the SQLite one (store.py), on psycopg 3 and a psycopg_pool
connection pool. Every change is one short transaction; no transaction or row lock is held
across a network call or a sleep. A due notification is *claimed* before it is sent
(`FOR UPDATE SKIP LOCKED`, then a claim lease in the row), so two replicas never send the
same one at once; a claim that is never recorded (the sender died) lapses after its lease
and the notification is sent again, with the same notification_id.

`MIGRATIONS` versions the schema like the SQLite store's: `MIGRATIONS[i]` takes the
database from version i to i + 1, the version is kept in `tracking_schema`, and the
migration runs in one transaction under an advisory lock, so replicas starting together
migrate once. A database newer than the code is refused.

Time-outs: a connection is awaited at most `timeout` seconds (connect and pool), and every
statement is cancelled by the server after `timeout` seconds, so a caller (the
/execution request) gets `TrackingUnavailable` (503) within a bounded time when the
database is down or slow.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
import psycopg.conninfo
import psycopg.sql
import psycopg_pool
from psycopg.rows import dict_row

from kfadapter.errors import TrackingUnavailable
from kfadapter.sqlitedb import StoreError
from kfadapter.tracking.model import (
    DELIVERED,
    FINISHED_STATUSES,
    NOTIFICATION_STATUSES,
    PENDING,
    UNTRACKED,
    WAITING,
    AttemptResult,
    PagePosition,
    StateUpdate,
    TrackedRun,
)

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "DatabaseRefused",
    "PostgresTrackingStore",
    "connection_options",
    "prepare_database",
]

log = logging.getLogger(__name__)

PgMigration = Callable[[psycopg.Connection], None]

# Advisory lock keys (64-bit, per database): schema migration, and the tracking leader.
MIGRATION_LOCK_KEY = 0x6B66_6164_6D69_6701  # "kfadmig" + 1
LEADER_LOCK_KEY = 0x6B66_6164_6C65_6164  # "kfadlead"


def _create_tracked_runs(db: psycopg.Connection) -> None:
    db.execute(
        """
        CREATE TABLE tracked_runs (
            position BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
            run_id TEXT PRIMARY KEY,
            trainingjob_id TEXT NOT NULL,
            info TEXT NOT NULL DEFAULT '{}',
            run_state TEXT,
            final_state TEXT,
            notification_status TEXT NOT NULL,
            notification_id TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at DOUBLE PRECISION,
            last_error TEXT,
            last_code INTEGER,
            not_found_count INTEGER NOT NULL DEFAULT 0,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL,
            polled_at DOUBLE PRECISION,
            final_seen_at DOUBLE PRECISION,
            last_attempt_at DOUBLE PRECISION,
            notified_at DOUBLE PRECISION,
            claimed_until DOUBLE PRECISION
        )
        """
    )
    db.execute("CREATE INDEX tracked_runs_job ON tracked_runs (trainingjob_id, created_at)")
    db.execute(
        "CREATE INDEX tracked_runs_status ON tracked_runs (notification_status, next_attempt_at)"
    )
    db.execute("CREATE INDEX tracked_runs_created ON tracked_runs (created_at, position)")
    db.execute(
        "CREATE INDEX tracked_runs_status_created "
        "ON tracked_runs (notification_status, created_at, position)"
    )
    db.execute(
        "CREATE INDEX tracked_runs_status_updated ON tracked_runs (notification_status, updated_at)"
    )


# MIGRATIONS[i] takes a database at schema version i to version i + 1. Append, never edit.
MIGRATIONS: list[PgMigration] = [_create_tracked_runs]
SCHEMA_VERSION = len(MIGRATIONS)

_RUN_COLUMNS = (
    "run_id, trainingjob_id, info, run_state, final_state, notification_status, "
    "notification_id, attempts, next_attempt_at, last_error, last_code, not_found_count, "
    "created_at, updated_at, polled_at, final_seen_at, last_attempt_at, notified_at"
)


def connection_options(timeout: float, application_name: str = "kfadapter") -> dict[str, Any]:
    """libpq options of every connection: connect time-out, server-side statement and lock
    time-outs of `timeout` seconds, TCP keepalives (a dead peer is noticed)."""
    millis = max(1, int(timeout * 1000))
    return {
        # libpq counts whole seconds and treats 1 as 2.
        "connect_timeout": max(2, math.ceil(timeout)),
        "options": (
            f"-c statement_timeout={millis} -c lock_timeout={millis} "
            f"-c idle_in_transaction_session_timeout={max(millis, 10_000)}"
        ),
        "application_name": application_name,
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 3,
    }


def migrate(db: psycopg.Connection, migrations: Sequence[PgMigration], *, what: str) -> int:
    """Bring the database's schema to len(migrations) in one transaction; the version.

    Replicas migrating at once wait for each other (an advisory transaction lock). A
    database newer than the code raises StoreError (no silent downgrade).
    """
    latest = len(migrations)
    with db.transaction():
        db.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        db.execute("CREATE TABLE IF NOT EXISTS tracking_schema (version INTEGER NOT NULL)")
        row = db.execute("SELECT version FROM tracking_schema").fetchone()
        version = row[0] if row else 0
        if version > latest:
            raise StoreError(
                f"{what} has schema version {version}; this release knows up to {latest}: "
                "upgrade kfadapter or use another database"
            )
        for step in migrations[version:]:
            step(db)
        if row is None:
            db.execute("INSERT INTO tracking_schema (version) VALUES (%s)", (latest,))
        elif version != latest:
            db.execute("UPDATE tracking_schema SET version = %s", (latest,))
    return latest


class DatabaseRefused(StoreError):
    """The server answered but refused the settings: credentials, database, permissions."""


# What the server says when the settings, not the moment, are wrong.
_REFUSALS = (
    "password authentication failed",
    "authentication failed",
    "no password supplied",
    "does not exist",
    "no pg_hba.conf entry",
    "permission denied",
)


def _refusal(error: psycopg.Error) -> bool:
    return any(text in str(error) for text in _REFUSALS)


def prepare_database(url: str, *, timeout: float, what: str) -> None:
    """Check at start that the database takes the credentials, create it if missing (when
    the user may), and migrate its schema.

    DatabaseRefused when the server refuses the credentials or the database; StoreError
    when the schema is newer than this release; TrackingUnavailable when the server
    cannot be reached now (the adapter may still start: it retries).
    """
    options = {**connection_options(timeout, "kfadapter-setup"), "autocommit": True}
    try:
        try:
            db = psycopg.connect(url, **options)
        except psycopg.OperationalError as error:
            missing = "database" in str(error) and "does not exist" in str(error)
            if not missing:
                raise
            _create_database(url, options)
            db = psycopg.connect(url, **options)
        with db:
            migrate(db, MIGRATIONS, what=what)
    except psycopg.OperationalError as error:
        if _refusal(error):
            raise DatabaseRefused(f"{what} refused the connection: {_first_line(error)}") from None
        raise TrackingUnavailable(f"{what} is unavailable: {_first_line(error)}") from None


def _create_database(url: str, options: dict[str, Any]) -> None:
    """CREATE DATABASE for the URL's database, connected to the server's `postgres` one."""
    params = psycopg.conninfo.conninfo_to_dict(url)
    name = params.pop("dbname")
    with psycopg.connect(**params, **{**options, "dbname": "postgres"}) as admin:
        try:
            admin.execute(
                psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name))
            )
        except psycopg.errors.DuplicateDatabase:
            pass  # another replica created it meanwhile
        except psycopg.Error as error:
            raise DatabaseRefused(
                f"database {name!r} does not exist and cannot be created: {_first_line(error)}"
            ) from None
    log.info("created database %r for run tracking", name)


def _first_line(error: BaseException) -> str:
    """The useful part of a libpq message (its first lines, no hints)."""
    return " ".join(str(error).split("\n")[:1]).strip()


class PostgresTrackingStore:
    """Tracked runs in a PostgreSQL database, shared by every replica and worker."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        max_connections: int = 8,
        migrations: Sequence[PgMigration] | None = None,
        display: str = "the tracking database",
    ) -> None:
        self.url = url
        self.timeout = timeout
        self._what = display
        self._migrations = list(MIGRATIONS if migrations is None else migrations)
        self._migrated = False
        self._migrate_lock = threading.Lock()
        self._pool = psycopg_pool.ConnectionPool(
            url,
            kwargs={**connection_options(timeout), "autocommit": True},
            min_size=1,
            max_size=max(1, max_connections),
            timeout=timeout,
            check=psycopg_pool.ConnectionPool.check_connection,
            # The pool's reconnection back-off doubles without a cap until this time-out;
            # once it gives up, the next request connects at once. Kept short, so a
            # database back after a long outage is used again within seconds.
            reconnect_timeout=max(10.0, 2 * timeout),
            open=False,
            name="kfadapter-tracking",
        )
        self._pool.open(wait=False)
        try:
            self._ensure_schema()  # a database that answers is migrated now; else later
        except TrackingUnavailable as error:
            log.warning("%s is not reachable yet: %s", self._what, error)
        except BaseException:
            self._pool.close()
            raise

    # -- connection and transactions -------------------------------------------------------

    @contextmanager
    def _unavailable_as_503(self) -> Iterator[None]:
        """Turn 'cannot reach or use the database now' into TrackingUnavailable (503)."""
        try:
            yield
        except psycopg_pool.PoolTimeout as error:
            raise TrackingUnavailable(
                f"{self._what} did not answer within {self.timeout:g} s ({error})"
            ) from error
        except (psycopg.OperationalError, psycopg.errors.QueryCanceled) as error:
            raise TrackingUnavailable(f"{self._what} is unavailable: {error}") from error

    def _ensure_schema(self) -> None:
        if self._migrated:
            return
        with self._migrate_lock, self._unavailable_as_503():
            if self._migrated:
                return
            with self._connection() as db:
                migrate(db, self._migrations, what=self._what)
            self._migrated = True

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection; when the pool has none within the time-out (all busy, or
        still in its reconnection back-off after an outage), one connection of its own,
        so that a database that is back is used at once and not only after the back-off."""
        try:
            pooled = self._pool.getconn()
        except psycopg_pool.PoolTimeout:
            log.info("%s: no pooled connection, connecting directly", self._what)
        else:
            try:
                yield pooled
            finally:
                self._pool.putconn(pooled)
            return
        options = connection_options(self.timeout)
        with psycopg.connect(self.url, **options, autocommit=True) as db:
            yield db

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection]:
        """One transaction on a connection: committed when the block ends, rolled back if
        it raises."""
        self._ensure_schema()
        with self._unavailable_as_503(), self._connection() as db, db.transaction():
            yield db

    def close(self) -> None:
        """Close the pool's connections."""
        self._pool.close()

    def ping(self) -> None:
        """Raise TrackingUnavailable unless the database answers now (readiness)."""
        with self._transaction() as db:
            db.execute("SELECT 1")

    def schema_version(self) -> int:
        """The schema version of the database."""
        with self._transaction() as db:
            return db.execute("SELECT version FROM tracking_schema").fetchone()[0]

    def _select(self, clause: str, params: Sequence[Any]) -> list[TrackedRun]:
        """The tracked runs `SELECT ... FROM tracked_runs <clause>` finds."""
        with self._transaction() as db, db.cursor(row_factory=dict_row) as cursor:
            rows = cursor.execute(
                f"SELECT {_RUN_COLUMNS} FROM tracked_runs {clause}", params
            ).fetchall()
        return [_to_run(row) for row in rows]

    # -- the TrackingStore interface -------------------------------------------------------

    def add(self, trainingjob_id: str, run_id: str, info: dict[str, Any], now: float) -> TrackedRun:
        with self._transaction() as db, db.cursor(row_factory=dict_row) as cursor:
            cursor.execute(
                "INSERT INTO tracked_runs (run_id, trainingjob_id, info, run_state, "
                "notification_status, created_at, updated_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (run_id) DO NOTHING",
                (
                    _text(run_id),
                    _text(trainingjob_id),
                    json.dumps(info, default=str),
                    _text(info.get("run_state")),
                    WAITING,
                    now,
                    now,
                ),
            )
            row = cursor.execute(
                f"SELECT {_RUN_COLUMNS} FROM tracked_runs WHERE run_id = %s", (_text(run_id),)
            ).fetchone()
        return _to_run(row)

    def untrack(self, run_id: str, now: float) -> bool:
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE tracked_runs SET notification_status = %s, next_attempt_at = NULL, "
                "claimed_until = NULL, updated_at = %s "
                "WHERE run_id = %s AND notification_status IN (%s, %s)",
                (UNTRACKED, now, _text(run_id), WAITING, PENDING),
            )
            return cursor.rowcount == 1

    def retrack(self, run_id: str, now: float) -> bool:
        # As in the SQLite store: a run whose final state was seen goes back to PENDING
        # (due now, same notification id and deadline), not to WAITING.
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE tracked_runs SET "
                "notification_status = CASE WHEN final_state IS NULL THEN %s ELSE %s END, "
                "next_attempt_at = CASE WHEN final_state IS NULL THEN NULL "
                "ELSE %s::double precision END, "
                "not_found_count = 0, updated_at = %s "
                "WHERE run_id = %s AND notification_status = %s",
                (WAITING, PENDING, now, now, _text(run_id), UNTRACKED),
            )
            return cursor.rowcount == 1

    def get(self, run_id: str) -> TrackedRun | None:
        return next(iter(self._select("WHERE run_id = %s", (_text(run_id),))), None)

    def latest_for_job(self, trainingjob_id: str) -> TrackedRun | None:
        # the database's own insertion order: replicas' clocks may differ
        latest = self._select(
            "WHERE trainingjob_id = %s ORDER BY position DESC LIMIT 1",
            (_text(trainingjob_id),),
        )
        return next(iter(latest), None)

    def list(self, notification_status: str | None = None) -> list[TrackedRun]:
        newest_first = "ORDER BY created_at DESC, position DESC"
        if notification_status is None:
            return self._select(newest_first, ())
        return self._select(
            f"WHERE notification_status = %s {newest_first}", (notification_status,)
        )

    def page(
        self, notification_status: str | None, limit: int, after: PagePosition | None = None
    ) -> tuple[list[TrackedRun], PagePosition | None]:
        conditions: list[str] = []
        params: list[Any] = []
        if notification_status is not None:
            conditions.append("notification_status = %s")
            params.append(notification_status)
        if after is not None:
            conditions.append("(created_at, position) < (%s, %s)")
            params.extend(after)
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        with self._transaction() as db, db.cursor(row_factory=dict_row) as cursor:
            rows = cursor.execute(
                f"SELECT position, {_RUN_COLUMNS} FROM tracked_runs {where} "
                "ORDER BY created_at DESC, position DESC LIMIT %s",
                (*params, limit + 1),
            ).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        last = rows[-1] if more else None
        runs = [_to_run(row) for row in rows]
        return runs, ((last["created_at"], last["position"]) if last is not None else None)

    def prune(self, older_than: float) -> int:
        with self._transaction() as db:
            cursor = db.execute(
                "DELETE FROM tracked_runs WHERE notification_status = ANY(%s) AND updated_at < %s",
                (list(FINISHED_STATUSES), older_than),
            )
            return cursor.rowcount

    def open_runs(self) -> list[TrackedRun]:
        return self._select(
            "WHERE notification_status = %s ORDER BY created_at, position", (WAITING,)
        )

    def record_poll(self, updates: Sequence[StateUpdate], now: float) -> int:
        changed = 0
        with self._transaction() as db:
            for update in updates:
                if update.final:
                    cursor = db.execute(
                        "UPDATE tracked_runs SET run_state = %s, final_state = %s, "
                        "not_found_count = %s, notification_status = %s, "
                        "notification_id = %s, next_attempt_at = %s, final_seen_at = %s, "
                        "polled_at = %s, updated_at = %s "
                        "WHERE run_id = %s AND notification_status = %s",
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
                        "UPDATE tracked_runs SET run_state = %s, not_found_count = %s, "
                        "polled_at = %s, updated_at = CASE WHEN "
                        "run_state IS NOT DISTINCT FROM %s::text AND not_found_count = %s "
                        "THEN updated_at ELSE %s::double precision END "
                        "WHERE run_id = %s AND notification_status = %s",
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
            "WHERE notification_status = %s AND next_attempt_at <= %s "
            "ORDER BY next_attempt_at, position LIMIT %s",
            (PENDING, now, limit),
        )

    def claim_due(self, now: float, lease: float) -> TrackedRun | None:
        """The oldest due notification nobody holds a claim on, claimed until now + lease
        (skipping rows another replica is claiming at this moment); None if none is due."""
        with self._transaction() as db, db.cursor(row_factory=dict_row) as cursor:
            # A claim need not survive a crash of the database: lost, the notification is
            # only sent again (at least once). So its commit does not wait for the disk.
            cursor.execute("SET LOCAL synchronous_commit = off")
            row = cursor.execute(
                "UPDATE tracked_runs SET claimed_until = %s WHERE run_id = ("
                "SELECT run_id FROM tracked_runs WHERE notification_status = %s "
                "AND next_attempt_at <= %s AND (claimed_until IS NULL OR claimed_until <= %s) "
                "ORDER BY next_attempt_at, position LIMIT 1 FOR UPDATE SKIP LOCKED"
                f") RETURNING {_RUN_COLUMNS}",
                (now + lease, PENDING, now, now),
            ).fetchone()
        return _to_run(row) if row is not None else None

    def next_attempt_at(self) -> float | None:
        with self._transaction() as db:
            row = db.execute(
                "SELECT MIN(GREATEST(next_attempt_at, COALESCE(claimed_until, 0))) "
                "FROM tracked_runs WHERE notification_status = %s",
                (PENDING,),
            ).fetchone()
        return row[0]

    def record_attempt(self, result: AttemptResult, now: float) -> bool:
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE tracked_runs SET notification_status = %s, attempts = %s, "
                "next_attempt_at = %s, last_code = %s, last_error = %s, last_attempt_at = %s, "
                "notified_at = CASE WHEN %s::text = %s::text THEN %s::double precision "
                "ELSE notified_at END, updated_at = %s, claimed_until = NULL "
                "WHERE run_id = %s AND notification_status = %s",
                (
                    result.notification_status,
                    result.attempts,
                    result.next_attempt_at if result.notification_status == PENDING else None,
                    result.last_code,
                    _text(result.last_error),
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
        with self._transaction() as db:
            rows = db.execute(
                "SELECT notification_status, COUNT(*) FROM tracked_runs "
                "GROUP BY notification_status"
            ).fetchall()
        found = {status: count for status, count in rows}
        return {status: found.get(status, 0) for status in NOTIFICATION_STATUSES}

    # -- copying a store in (kfadapter migrate-store) -------------------------------------

    def row_count(self) -> int:
        """How many tracked runs the database holds."""
        with self._transaction() as db:
            return db.execute("SELECT COUNT(*) FROM tracked_runs").fetchone()[0]

    def import_runs(self, runs: Sequence[TrackedRun]) -> int:
        """Insert whole tracked runs (as another store holds them), in one transaction, in
        the given order (oldest first keeps the list order); runs already present are kept
        as they are. The number inserted."""
        columns = _RUN_COLUMNS.split(", ")
        marks = ", ".join(["%s"] * len(columns))
        inserted = 0
        with self._transaction() as db:
            for run in runs:
                values = {**run.__dict__, "info": json.dumps(run.info, default=str)}
                cursor = db.execute(
                    f"INSERT INTO tracked_runs ({_RUN_COLUMNS}) VALUES ({marks}) "
                    "ON CONFLICT (run_id) DO NOTHING",
                    [_text(values[column]) for column in columns],
                )
                inserted += cursor.rowcount
        return inserted


def _text(value: Any) -> Any:
    """PostgreSQL text cannot hold NUL: a string loses its NUL characters (e.g. in a TM's
    error body); other values pass as they are."""
    return value.replace("\x00", "") if isinstance(value, str) else value


def _to_run(row: dict[str, Any]) -> TrackedRun:
    values = dict(row)
    values.pop("position", None)
    values["info"] = json.loads(values["info"] or "{}")
    return TrackedRun(**values)
