"""SQLite store of the embedded KFP server: pipelines, versions, experiments, runs, recurring runs.

One database file under the data dir, in WAL mode. Rows come back as plain dicts;
JSON columns (specs, runtime config, task details, history) are stored as text and
decoded by the service layer. Lists are single SQL statements (see query.py).
"""

from __future__ import annotations

import json
import queue
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kfadapter.localkfp import query as q
from kfadapter.localkfp.timefmt import now_us

DEFAULT_EXPERIMENT = "Default"
FINAL_STATES = ("SUCCEEDED", "FAILED", "SKIPPED", "CANCELED")
ACTIVE_STATES = ("PENDING", "RUNNING", "CANCELING", "PAUSED", "RUNTIME_STATE_UNSPECIFIED")
RESTART_ERROR = (
    "the local KFP server stopped while this run was active; runs do not survive a server restart"
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS pipelines (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    display_name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    namespace TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    tags TEXT,
    UNIQUE (namespace, name)
);
CREATE INDEX IF NOT EXISTS pipelines_created ON pipelines (created_at, id);
CREATE INDEX IF NOT EXISTS pipelines_name ON pipelines (name, id);
CREATE INDEX IF NOT EXISTS pipelines_display_name ON pipelines (display_name, id);
CREATE INDEX IF NOT EXISTS pipelines_namespace ON pipelines (namespace, created_at, id);

CREATE TABLE IF NOT EXISTS pipeline_versions (
    id TEXT PRIMARY KEY,
    pipeline_id TEXT NOT NULL REFERENCES pipelines (id),
    name TEXT NOT NULL,
    display_name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    pipeline_spec TEXT NOT NULL,
    package_url TEXT NOT NULL DEFAULT '',
    code_source_url TEXT NOT NULL DEFAULT '',
    tags TEXT,
    UNIQUE (pipeline_id, name)
);
CREATE INDEX IF NOT EXISTS versions_pipeline_created
    ON pipeline_versions (pipeline_id, created_at, id);
CREATE INDEX IF NOT EXISTS versions_pipeline_display_name
    ON pipeline_versions (pipeline_id, display_name, id);

CREATE TABLE IF NOT EXISTS experiments (
    id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    namespace TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    storage_state TEXT NOT NULL DEFAULT 'AVAILABLE',
    last_run_created_at INTEGER NOT NULL DEFAULT 0,
    UNIQUE (namespace, display_name)
);
CREATE INDEX IF NOT EXISTS experiments_created ON experiments (created_at, id);
CREATE INDEX IF NOT EXISTS experiments_display_name ON experiments (display_name, id);

CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    experiment_id TEXT NOT NULL,
    namespace TEXT NOT NULL DEFAULT '',
    display_name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    storage_state TEXT NOT NULL DEFAULT 'AVAILABLE',
    pipeline_id TEXT NOT NULL DEFAULT '',
    pipeline_version_id TEXT NOT NULL DEFAULT '',
    pipeline_spec TEXT,
    runtime_config TEXT,
    service_account TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    scheduled_at INTEGER NOT NULL DEFAULT 0,
    finished_at INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    error TEXT,
    task_details TEXT,
    state_history TEXT,
    recurring_run_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS runs_created ON runs (created_at, id);
CREATE INDEX IF NOT EXISTS runs_experiment_created ON runs (experiment_id, created_at, id);
CREATE INDEX IF NOT EXISTS runs_state_created ON runs (state, created_at, id);
CREATE INDEX IF NOT EXISTS runs_display_name ON runs (display_name, id);
CREATE INDEX IF NOT EXISTS runs_finished ON runs (finished_at, id);
CREATE INDEX IF NOT EXISTS runs_recurring ON runs (recurring_run_id, state);
CREATE INDEX IF NOT EXISTS runs_namespace_created ON runs (namespace, created_at, id);
CREATE INDEX IF NOT EXISTS runs_storage_created ON runs (storage_state, created_at, id);
CREATE INDEX IF NOT EXISTS runs_pipeline_version ON runs (pipeline_version_id, created_at, id);

CREATE TABLE IF NOT EXISTS recurring_runs (
    id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    namespace TEXT NOT NULL DEFAULT '',
    experiment_id TEXT NOT NULL,
    pipeline_id TEXT NOT NULL DEFAULT '',
    pipeline_version_id TEXT NOT NULL DEFAULT '',
    pipeline_spec TEXT,
    runtime_config TEXT,
    service_account TEXT NOT NULL DEFAULT '',
    max_concurrency INTEGER NOT NULL DEFAULT 1,
    no_catchup INTEGER NOT NULL DEFAULT 0,
    trigger_spec TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    last_fire_at INTEGER NOT NULL DEFAULT 0,
    fire_count INTEGER NOT NULL DEFAULT 0,
    enabled_at INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS recurring_created ON recurring_runs (created_at, id);
CREATE INDEX IF NOT EXISTS recurring_experiment ON recurring_runs (experiment_id, created_at, id);
CREATE INDEX IF NOT EXISTS recurring_status ON recurring_runs (status);
"""

PIPELINES = q.Listable(
    kind="pipelines",
    table="pipelines",
    fields={
        "pipeline_id": q.Column("id"),
        "id": q.Column("id"),
        "name": q.Column("name"),
        "display_name": q.Column("display_name"),
        "created_at": q.Column("created_at", q.TIME),
        "description": q.Column("description"),
        "namespace": q.Column("namespace"),
    },
)
VERSIONS = q.Listable(
    kind="pipeline_versions",
    table="pipeline_versions",
    fields={
        "pipeline_version_id": q.Column("id"),
        "id": q.Column("id"),
        "name": q.Column("name"),
        "display_name": q.Column("display_name"),
        "created_at": q.Column("created_at", q.TIME),
        "description": q.Column("description"),
        "pipeline_id": q.Column("pipeline_id"),
    },
)
EXPERIMENTS = q.Listable(
    kind="experiments",
    table="experiments",
    fields={
        "experiment_id": q.Column("id"),
        "id": q.Column("id"),
        "display_name": q.Column("display_name"),
        "name": q.Column("display_name"),
        "created_at": q.Column("created_at", q.TIME),
        "description": q.Column("description"),
        "namespace": q.Column("namespace"),
        "storage_state": q.Column("storage_state", q.ENUM),
        "last_run_created_at": q.Column("last_run_created_at", q.TIME),
    },
)
RUNS = q.Listable(
    kind="runs",
    table="runs",
    fields={
        "run_id": q.Column("id"),
        "id": q.Column("id"),
        "display_name": q.Column("display_name"),
        "name": q.Column("display_name"),
        "created_at": q.Column("created_at", q.TIME),
        "finished_at": q.Column("finished_at", q.TIME),
        "scheduled_at": q.Column("scheduled_at", q.TIME),
        "description": q.Column("description"),
        "storage_state": q.Column("storage_state", q.ENUM),
        "namespace": q.Column("namespace"),
        "experiment_id": q.Column("experiment_id"),
        "state": q.Column("state", q.ENUM),
        "status": q.Column("state", q.ENUM),
        "recurring_run_id": q.Column("recurring_run_id"),
        "pipeline_version_id": q.Column("pipeline_version_id"),
        "pipeline_id": q.Column("pipeline_id"),
    },
)
RECURRING_RUNS = q.Listable(
    kind="recurring_runs",
    table="recurring_runs",
    fields={
        "recurring_run_id": q.Column("id"),
        "id": q.Column("id"),
        "display_name": q.Column("display_name"),
        "name": q.Column("display_name"),
        "created_at": q.Column("created_at", q.TIME),
        "updated_at": q.Column("updated_at", q.TIME),
        "description": q.Column("description"),
        "pipeline_version_id": q.Column("pipeline_version_id"),
        "pipeline_id": q.Column("pipeline_id"),
        "experiment_id": q.Column("experiment_id"),
        "namespace": q.Column("namespace"),
        "status": q.Column("status", q.ENUM),
    },
)


def new_id() -> str:
    """A new resource id (a UUID, as KFP uses)."""
    return str(uuid.uuid4())


def dumps(value: Any) -> str | None:
    """JSON text for a JSON column (None stays NULL)."""
    return None if value is None else json.dumps(value, separators=(",", ":"))


def loads(text: str | None) -> Any:
    """The value of a JSON column."""
    return None if text is None else json.loads(text)


class Store:
    """Thread-safe access to the SQLite database: a small connection pool, one writer at a time."""

    def __init__(self, path: Path | str, pool_size: int = 8) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._pool: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._pool_size = pool_size
        self._write_lock = threading.Lock()
        self._closed = False
        with self._connection() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)
        self.ensure_default_experiment()

    # -- connections ------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

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
        with self._write_lock, self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def close(self) -> None:
        """Close every pooled connection."""
        self._closed = True
        while True:
            try:
                self._pool.get_nowait().close()
            except queue.Empty:
                break

    # -- generic helpers --------------------------------------------------------------

    @staticmethod
    def insert(conn: sqlite3.Connection, table: str, row: dict[str, Any]) -> None:
        """INSERT one row given as a dict."""
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        conn.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", list(row.values()))

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
        assignments = ", ".join(f"{column} = ?" for column in fields)
        with self.write() as conn:
            cursor = conn.execute(
                f"UPDATE {table} SET {assignments} WHERE id = ?", [*fields.values(), row_id]
            )
        return cursor.rowcount == 1

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

    # -- experiments ------------------------------------------------------------------

    def ensure_default_experiment(self, namespace: str = "") -> dict[str, Any]:
        """The `Default` experiment of the namespace, created when missing (as KFP does)."""
        existing = self.find("experiments", namespace=namespace, display_name=DEFAULT_EXPERIMENT)
        if existing:
            return existing
        row = {
            "id": new_id(),
            "display_name": DEFAULT_EXPERIMENT,
            "description": "All runs created without specifying an experiment are grouped here.",
            "namespace": namespace,
            "created_at": now_us(),
            "storage_state": "AVAILABLE",
            "last_run_created_at": 0,
        }
        with self.write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO experiments (id, display_name, description, namespace, "
                "created_at, storage_state, last_run_created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                list(row.values()),
            )
        return self.find("experiments", namespace=namespace, display_name=DEFAULT_EXPERIMENT) or row

    # -- runs -------------------------------------------------------------------------

    def fail_interrupted_runs(self) -> int:
        """Mark runs left active by a server that died as FAILED; returns how many."""
        now = now_us()
        marks = ", ".join("?" for _ in ACTIVE_STATES)
        with self.write() as conn:
            rows = conn.execute(
                f"SELECT id, state_history, task_details FROM runs WHERE state IN ({marks})",
                ACTIVE_STATES,
            ).fetchall()
            for row in rows:
                history = loads(row["state_history"]) or []
                history.append(
                    {"update_time": now, "state": "FAILED", "error": {"message": RESTART_ERROR}}
                )
                tasks = loads(row["task_details"]) or []
                for task in tasks:
                    if task.get("state") in ACTIVE_STATES:
                        task["state"] = "FAILED"
                        task["error"] = {"code": 10, "message": RESTART_ERROR, "details": []}
                conn.execute(
                    "UPDATE runs SET state = 'FAILED', error = ?, finished_at = ?, "
                    "state_history = ?, task_details = ? WHERE id = ?",
                    (
                        dumps({"message": RESTART_ERROR}),
                        now,
                        dumps(history),
                        dumps(tasks),
                        row["id"],
                    ),
                )
        return len(rows)

    def active_runs_of(self, recurring_run_id: str) -> int:
        """How many runs a recurring run has that have not reached a final state."""
        marks = ", ".join("?" for _ in ACTIVE_STATES)
        with self.read() as conn:
            return conn.execute(
                f"SELECT COUNT(*) FROM runs WHERE recurring_run_id = ? AND state IN ({marks})",
                (recurring_run_id, *ACTIVE_STATES),
            ).fetchone()[0]

    def enabled_recurring_runs(self) -> list[dict[str, Any]]:
        """Every enabled recurring run."""
        with self.read() as conn:
            rows = conn.execute("SELECT * FROM recurring_runs WHERE status = 'ENABLED'").fetchall()
        return [dict(row) for row in rows]
