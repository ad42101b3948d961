"""The one way this project opens SQLite: WAL mode, explicit transactions, versioned schemas.

Both stores use it: run tracking (`kfadapter.tracking.store`) and the embedded KFP server
(`kfadapter.localkfp.storage`). A schema is a list of migrations: `MIGRATIONS[i]` takes a
file at version i (`PRAGMA user_version`) to version i + 1, so `migrate()` brings any older
file up to date in one transaction and refuses a file newer than the code. Append
migrations, never edit one that has shipped.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

Migration = Callable[[sqlite3.Connection], None]


class StoreError(RuntimeError):
    """A store cannot be opened or used (e.g. its schema is newer than this release)."""


def connect(
    path: Path | str,
    *,
    busy_timeout: float,
    synchronous: str = "NORMAL",
    foreign_keys: bool = False,
) -> sqlite3.Connection:
    """A connection in WAL mode, rows as `sqlite3.Row`, transactions only when asked for.

    `synchronous="FULL"` makes every commit survive a power loss; NORMAL survives a crash
    of the process. The connection may be used from any thread: callers guard it.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        path,
        timeout=busy_timeout,
        isolation_level=None,  # explicit BEGIN/COMMIT through transaction()
        check_same_thread=False,
    )
    try:
        conn.row_factory = sqlite3.Row
        _enable_wal(conn, busy_timeout)
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        if foreign_keys:
            conn.execute("PRAGMA foreign_keys=ON")
    except BaseException:
        conn.close()
        raise
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction: committed when the block ends, rolled back if it raises.

    BEGIN IMMEDIATE takes the write lock at once, so two writers never both read and
    then fail to upgrade (SQLite's "database is locked" in the middle of a transaction).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration], *, what: str) -> int:
    """Bring the file's schema to version len(migrations), in one transaction; the version.

    StoreError when the file is newer than the code (no silent downgrade); `what` names
    the store in that message.
    """
    latest = len(migrations)
    with transaction(conn):
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > latest:
            raise StoreError(
                f"{what} has schema version {version}; this release knows up to {latest}: "
                "upgrade kfadapter or use another data dir"
            )
        for step in migrations[version:]:
            step(conn)
        if version != latest:
            conn.execute(f"PRAGMA user_version={latest}")
    return latest


def schema_version(conn: sqlite3.Connection) -> int:
    """The schema version of the file behind the connection."""
    return conn.execute("PRAGMA user_version").fetchone()[0]


def _enable_wal(conn: sqlite3.Connection, busy_timeout: float) -> None:
    """Switch the file to WAL mode; retried, since SQLite does not wait for this one lock
    when several processes create the file at the same moment."""
    give_up = time.monotonic() + busy_timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > give_up:
                raise
            time.sleep(0.02)
