"""The embedded server's schema, as migrations (`kfadapter.sqlitedb`): append, never edit.

Version 1 is the schema the server had before it was versioned. Its statements say
IF NOT EXISTS, so a file made by such a server (at user_version 0, its tables in place)
is taken to version 1 as it is.
"""

from __future__ import annotations

import sqlite3

from kfadapter.sqlitedb import Migration

_VERSION_1 = """
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


def _create_tables(conn: sqlite3.Connection) -> None:
    """Version 1: pipelines, versions, experiments, runs, recurring runs and their indexes."""
    for statement in _VERSION_1.split(";"):
        if statement.strip():
            conn.execute(statement)  # executescript() would commit the migration's transaction


# MIGRATIONS[i] takes a file at schema version i to version i + 1.
MIGRATIONS: list[Migration] = [_create_tables]
SCHEMA_VERSION = len(MIGRATIONS)
