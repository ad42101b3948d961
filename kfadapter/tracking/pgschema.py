"""The PostgreSQL tracking database: connection options, schema migrations, prepare_database.

`MIGRATIONS` versions the schema like the SQLite store's: `MIGRATIONS[i]` takes the
database from version i to i + 1, the version is kept in `tracking_schema`, and the
migration runs in one transaction under an advisory lock, so replicas starting together
migrate once. A database newer than the code is refused.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
import psycopg.conninfo
import psycopg.sql

from kfadapter.errors import TrackingUnavailable
from kfadapter.sqlitedb import StoreError

__all__ = [
    "LEADER_LOCK_KEY",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "DatabaseRefused",
    "PgMigration",
    "connection_options",
    "migrate",
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
