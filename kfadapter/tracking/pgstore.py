"""The tracking store in PostgreSQL, for several replicas on one database.

The same `TrackingStore` as the SQLite one (store.py), on psycopg 3 and a psycopg_pool
connection pool. Every change is one short transaction; no transaction or row lock is held
across a network call or a sleep. A due notification is *claimed* before it is sent
(`FOR UPDATE SKIP LOCKED`, then a claim lease in the row), so two replicas never send the
same one at once; a claim that is never recorded (the sender died) lapses after its lease
and the notification is sent again, with the same notification_id.

The schema, its migrations and the connection options are in pgschema.py (re-exported
here).

Time-outs: a connection is awaited at most `timeout` seconds (connect and pool), and every
statement is cancelled by the server after `timeout` seconds, so a caller (the
/execution request) gets `TrackingUnavailable` (503) within a bounded time when the
database is down or slow.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import psycopg
import psycopg_pool
from psycopg.rows import dict_row

from kfadapter.errors import TrackingUnavailable
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
from kfadapter.tracking.pgschema import (
    LEADER_LOCK_KEY,
    MIGRATIONS,
    SCHEMA_VERSION,
    DatabaseRefused,
    PgMigration,
    connection_options,
    migrate,
    prepare_database,
)
from kfadapter.tracking.rows import (
    RUN_COLUMNS,
    apply_poll,
    attempt_params,
    page_of,
    run_from_row,
    status_counts,
)

__all__ = [
    "LEADER_LOCK_KEY",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "DatabaseRefused",
    "PostgresTrackingStore",
    "connection_options",
    "prepare_database",
]

log = logging.getLogger(__name__)


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
                f"SELECT {RUN_COLUMNS} FROM tracked_runs {clause}", params
            ).fetchall()
        return [run_from_row(row) for row in rows]

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
                f"SELECT {RUN_COLUMNS} FROM tracked_runs WHERE run_id = %s", (_text(run_id),)
            ).fetchone()
        return run_from_row(row)

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
                f"SELECT position, {RUN_COLUMNS} FROM tracked_runs {where} "
                "ORDER BY created_at DESC, position DESC LIMIT %s",
                (*params, limit + 1),
            ).fetchall()
        return page_of(rows, limit)

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
        with self._transaction() as db:
            return apply_poll(
                db,
                updates,
                now,
                final_sql="UPDATE tracked_runs SET run_state = %s, final_state = %s, "
                "not_found_count = %s, notification_status = %s, "
                "notification_id = %s, next_attempt_at = %s, final_seen_at = %s, "
                "polled_at = %s, updated_at = %s "
                "WHERE run_id = %s AND notification_status = %s",
                open_sql="UPDATE tracked_runs SET run_state = %s, not_found_count = %s, "
                "polled_at = %s, updated_at = CASE WHEN "
                "run_state IS NOT DISTINCT FROM %s::text AND not_found_count = %s "
                "THEN updated_at ELSE %s::double precision END "
                "WHERE run_id = %s AND notification_status = %s",
            )

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
                f") RETURNING {RUN_COLUMNS}",
                (now + lease, PENDING, now, now),
            ).fetchone()
        return run_from_row(row) if row is not None else None

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
                attempt_params(replace(result, last_error=_text(result.last_error)), now),
            )
            return cursor.rowcount == 1

    def counts(self) -> dict[str, int]:
        with self._transaction() as db:
            rows = db.execute(
                "SELECT notification_status, COUNT(*) FROM tracked_runs "
                "GROUP BY notification_status"
            ).fetchall()
        return status_counts(rows)

    # -- copying a store in (kfadapter migrate-store) -------------------------------------

    def row_count(self) -> int:
        """How many tracked runs the database holds."""
        with self._transaction() as db:
            return db.execute("SELECT COUNT(*) FROM tracked_runs").fetchone()[0]

    def import_runs(self, runs: Sequence[TrackedRun]) -> int:
        """Insert whole tracked runs (as another store holds them), in one transaction, in
        the given order (oldest first keeps the list order); runs already present are kept
        as they are. The number inserted."""
        columns = RUN_COLUMNS.split(", ")
        marks = ", ".join(["%s"] * len(columns))
        inserted = 0
        with self._transaction() as db:
            for run in runs:
                values = {**run.__dict__, "info": json.dumps(run.info, default=str)}
                cursor = db.execute(
                    f"INSERT INTO tracked_runs ({RUN_COLUMNS}) VALUES ({marks}) "
                    "ON CONFLICT (run_id) DO NOTHING",
                    [_text(values[column]) for column in columns],
                )
                inserted += cursor.rowcount
        return inserted


def _text(value: Any) -> Any:
    """PostgreSQL text cannot hold NUL: a string loses its NUL characters (e.g. in a TM's
    error body); other values pass as they are."""
    return value.replace("\x00", "") if isinstance(value, str) else value
