"""The embedded server's SQLite database: a small connection pool, one writer at a time.

The file is opened through `kfadapter.sqlitedb` (WAL mode, versioned schema); rows come
back as plain dicts. JSON columns (specs, runtime config, task details, history) hold
JSON text: `dumps` writes it and `loads` reads it. The per-resource stores beside this
module hold the SQL of each resource; the helpers here are the statements they share.
"""

from __future__ import annotations

import json
import queue
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kfadapter import sqlitedb
from kfadapter.localkfp import query as q
from kfadapter.localkfp.apierrors import conflict, not_found
from kfadapter.localkfp.storage.schema import MIGRATIONS

BUSY_TIMEOUT = 30.0


def dumps(value: Any) -> str | None:
    """JSON text for a JSON column (None stays NULL)."""
    return None if value is None else json.dumps(value, separators=(",", ":"))


def loads(text: str | None) -> Any:
    """The value of a JSON column."""
    return None if text is None else json.loads(text)


class Database:
    """Thread-safe access to one SQLite file, its schema brought up to date when opened."""

    def __init__(self, path: Path | str, pool_size: int = 8) -> None:
        self.path = Path(path)
        self._pool: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._pool_size = pool_size
        self._write_lock = threading.Lock()
        self._closed = False
        conn = self._open()
        try:
            sqlitedb.migrate(conn, MIGRATIONS, what=f"the local KFP store {self.path}")
        except BaseException:
            conn.close()
            raise
        self._pool.put(conn)

    def _open(self) -> sqlite3.Connection:
        return sqlitedb.connect(
            self.path, busy_timeout=BUSY_TIMEOUT, synchronous="NORMAL", foreign_keys=True
        )

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        try:
            conn = self._pool.get_nowait()
        except queue.Empty:
            conn = self._open()
        try:
            yield conn
        finally:
            if self._closed or self._pool.qsize() >= self._pool_size:
                conn.close()
            else:
                self._pool.put(conn)

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A connection for reads (each statement sees a consistent snapshot)."""
        with self._connection() as conn:
            yield conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A connection inside one write transaction, committed on success."""
        with self._write_lock, self._connection() as conn, sqlitedb.transaction(conn):
            yield conn

    def schema_version(self) -> int:
        """The schema version of the file."""
        with self.read() as conn:
            return sqlitedb.schema_version(conn)

    def close(self) -> None:
        """Close every pooled connection."""
        self._closed = True
        while True:
            try:
                self._pool.get_nowait().close()
            except queue.Empty:
                break

    # -- statements every resource uses --------------------------------------------------

    @staticmethod
    def insert(
        conn: sqlite3.Connection, table: str, row: dict[str, Any], *, or_ignore: bool = False
    ) -> None:
        """INSERT one row given as a dict (`or_ignore`: nothing when it breaks a UNIQUE)."""
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        verb = "INSERT OR IGNORE" if or_ignore else "INSERT"
        conn.execute(f"{verb} INTO {table} ({columns}) VALUES ({marks})", list(row.values()))

    @staticmethod
    def insert_many(conn: sqlite3.Connection, table: str, rows: Iterable[dict[str, Any]]) -> None:
        """INSERT many rows with the same columns (bulk seeding)."""
        rows = list(rows)
        if not rows:
            return
        columns = list(rows[0])
        marks = ", ".join("?" for _ in columns)
        conn.executemany(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",
            [[row[column] for column in columns] for row in rows],
        )

    @classmethod
    def insert_unique(
        cls, conn: sqlite3.Connection, table: str, row: dict[str, Any], taken: str
    ) -> None:
        """INSERT one row; 409 saying `taken` when it breaks a UNIQUE constraint (a name)."""
        try:
            cls.insert(conn, table, row)
        except sqlite3.IntegrityError as error:
            if "UNIQUE" not in str(error):
                raise
            raise conflict(taken) from None

    def get(self, table: str, row_id: str) -> dict[str, Any] | None:
        """One row by id, or None."""
        with self.read() as conn:
            row = conn.execute(f"SELECT * FROM {table} WHERE id = ?", (row_id,)).fetchone()
        return dict(row) if row else None

    def find(self, table: str, **where: Any) -> dict[str, Any] | None:
        """The first row whose columns equal the given values, or None."""
        clause = " AND ".join(f"{column} = ?" for column in where)
        with self.read() as conn:
            row = conn.execute(
                f"SELECT * FROM {table} WHERE {clause} LIMIT 1", list(where.values())
            ).fetchone()
        return dict(row) if row else None

    def update(self, table: str, row_id: str, **fields: Any) -> bool:
        """UPDATE columns of one row; False when the row does not exist."""
        with self.write() as conn:
            return update_row(conn, table, row_id, fields)

    def delete(self, table: str, row_id: str) -> None:
        """DELETE one row by id."""
        with self.write() as conn:
            conn.execute(f"DELETE FROM {table} WHERE id = ?", (row_id,))

    def list(self, query: q.ListQuery) -> tuple[list[dict[str, Any]], int, str]:
        """One page of rows, the total matching, and the next page token ('' at the end)."""
        sql, params, count_sql, count_params = q.select_sql(query, "*")
        with self.read() as conn:
            rows = [dict(row) for row in conn.execute(sql, params).fetchall()]
            total = conn.execute(count_sql, count_params).fetchone()[0]
        token = ""
        if len(rows) > query.page_size:
            token = q.next_token(query, rows[query.page_size])
            rows = rows[: query.page_size]
        return rows, total, token


def update_row(conn: sqlite3.Connection, table: str, row_id: str, fields: dict[str, Any]) -> bool:
    """UPDATE columns of one row inside a transaction; False when the row does not exist."""
    assignments = ", ".join(f"{column} = ?" for column in fields)
    cursor = conn.execute(
        f"UPDATE {table} SET {assignments} WHERE id = ?", [*fields.values(), row_id]
    )
    return cursor.rowcount == 1


class ResourceStore:
    """The statements every resource's store has, on the resource's table."""

    table: str
    noun: str  # the resource as KFP names it in "<noun> <id> not found"

    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, row_id: str) -> dict[str, Any] | None:
        """The row with this id, or None."""
        return self._db.get(self.table, row_id)

    def existing(self, row_id: str) -> dict[str, Any]:
        """The row with this id; 404 when there is none."""
        row = self.get(row_id)
        if row is None:
            raise not_found(f"{self.noun} {row_id} not found")
        return row

    def list(self, query: q.ListQuery) -> tuple[list[dict[str, Any]], int, str]:
        """One page of rows, the total matching, the next page token."""
        return self._db.list(query)

    def update(self, row_id: str, **fields: Any) -> bool:
        """Change columns of a row; False when it does not exist."""
        return self._db.update(self.table, row_id, **fields)

    def delete(self, row_id: str) -> None:
        """Delete the row with this id."""
        self._db.delete(self.table, row_id)
