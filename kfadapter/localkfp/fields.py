"""The fields each KFP list exposes for sorting and filtering, and the columns behind them.

KFP keeps these maps per resource in its model (`backend/src/apiserver/model/*.go`,
`APIToModelFieldMap`); a key not listed here is refused with a 400 by `query`, as
`list.NewOptions` and `filter.ReplaceKeys` refuse it. `scopes` are the request parameters
(not filter keys) that limit a list, such as ListRuns' `experiment_id`.
"""

from __future__ import annotations

from kfadapter.localkfp import query as q

# model/pipeline.go: pipelineAPIToModelFieldMap; tags.<key> (server/pipeline_server.go)
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
    scopes={"namespace": "namespace"},
    tag_filter=True,
)
# model/pipeline_version.go: APIToModelFieldMap; every stored version is READY here
VERSIONS = q.Listable(
    kind="pipeline_versions",
    table="pipeline_versions",
    fields={
        "pipeline_version_id": q.Column("id"),
        "id": q.Column("id"),
        "name": q.Column("name"),
        "display_name": q.Column("display_name"),
        "created_at": q.Column("created_at", q.TIME),
        "status": q.Column("'READY'", q.ENUM),
        "description": q.Column("description"),
        "pipeline_spec": q.Column("pipeline_spec"),
    },
    scopes={"pipeline_id": "pipeline_id"},
    tag_filter=True,
)
# model/experiment.go: experimentAPIToModelFieldMap
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
    scopes={"namespace": "namespace"},
)
# model/run.go: runAPIToModelFieldMap (no pipeline_id or pipeline_version_id at 2.17.0),
# and metric:<name> for sorting (GetField)
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
        "description": q.Column("description"),
        "scheduled_at": q.Column("scheduled_at", q.TIME),
        "storage_state": q.Column("storage_state", q.ENUM),
        "status": q.Column("state", q.ENUM),
        "namespace": q.Column("namespace"),
        "experiment_id": q.Column("experiment_id"),
        "state": q.Column("state", q.ENUM),
        "state_history": q.Column("state_history"),
        "runtime_details": q.Column("task_details"),
        "recurring_run_id": q.Column("recurring_run_id"),
    },
    scopes={"experiment_id": "experiment_id", "namespace": "namespace"},
    metric_sort=True,
)
# model/job.go: jobAPIToModelFieldMap
RECURRING_RUNS = q.Listable(
    kind="recurring_runs",
    table="recurring_runs",
    fields={
        "id": q.Column("id"),
        "recurring_run_id": q.Column("id"),
        "name": q.Column("display_name"),
        "display_name": q.Column("display_name"),
        "created_at": q.Column("created_at", q.TIME),
        "updated_at": q.Column("updated_at", q.TIME),
        "description": q.Column("description"),
    },
    scopes={"experiment_id": "experiment_id", "namespace": "namespace"},
)
