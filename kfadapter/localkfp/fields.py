"""The fields each KFP list exposes for sorting and filtering, and the columns behind them.

KFP keeps these maps per resource in its model (`backend/src/apiserver/model/*.go`,
`APIToModelFieldMap`); a key not listed here is refused with a 400 by `query`.
"""

from __future__ import annotations

from kfadapter.localkfp import query as q

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
