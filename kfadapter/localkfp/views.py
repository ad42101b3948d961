"""The embedded server's JSON: stored rows as KFP's v2beta1 objects, lists as KFP pages.

No I/O here: every function turns a row (a dict from the store) into a new JSON-ready
dict, as KFP's `server/api_converter.go` does (`toApiPipeline`, `toApiRun`, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kfadapter.localkfp.storage.database import loads
from kfadapter.localkfp.timefmt import to_rfc3339


def status_json(message: str, code: int = 2) -> dict[str, Any]:
    """A google.rpc.Status, as KFP puts it in a run's error."""
    return {"code": code, "message": message, "details": []}


def page(
    key: str,
    view: Callable[[dict[str, Any]], dict[str, Any]],
    listing: tuple[list[dict[str, Any]], int, str],
) -> dict[str, Any]:
    """A list answer from a store's (rows, total, next page token), each row shown by
    `view`. Like KFP (proto3 JSON), an empty list is left out; total_size is always given."""
    rows, total, token = listing
    result: dict[str, Any] = {key: [view(row) for row in rows]} if rows else {}
    result["total_size"] = total
    if token:
        result["next_page_token"] = token
    return result


# What a KFP deployment reports of its build (`apiserver/main.go`, healthz: COMMIT_SHA and
# TAG_NAME, "unknown" when unset): this server answers as release 2.17.0 does.
KFP_TAG_NAME = "2.17.0"
KFP_COMMIT_SHA = "unknown"


def healthz(*, v1: bool = False) -> dict[str, Any]:
    """KFP's healthz body of a single-user deployment; v1beta1's has no pipeline_store."""
    result: dict[str, Any] = {
        "commit_sha": KFP_COMMIT_SHA,
        "tag_name": KFP_TAG_NAME,
        "multi_user": False,
    }
    if not v1:
        result["pipeline_store"] = "database"
    return result


def pipeline_json(row: dict[str, Any]) -> dict[str, Any]:
    """A pipelines row as KFP's V2beta1Pipeline JSON."""
    result = {"pipeline_id": row["id"], **_named(row), "namespace": row["namespace"]}
    return _with_tags(result, row)


def version_json(row: dict[str, Any]) -> dict[str, Any]:
    """A pipeline_versions row as KFP's V2beta1PipelineVersion JSON."""
    result = {
        "pipeline_id": row["pipeline_id"],
        "pipeline_version_id": row["id"],
        **_named(row),
        "pipeline_spec": loads(row["pipeline_spec"]),
    }
    if row.get("package_url"):
        result["package_url"] = {"pipeline_url": row["package_url"]}
    if row.get("code_source_url"):
        result["code_source_url"] = row["code_source_url"]
    return _with_tags(result, row)


def _named(row: dict[str, Any]) -> dict[str, Any]:
    """name, display_name, description and created_at of a pipeline or version."""
    return {"name": row["name"], **_described(row)}


def _described(row: dict[str, Any]) -> dict[str, Any]:
    """display_name, description and created_at of a resource."""
    return {
        "display_name": row["display_name"],
        "description": row["description"],
        "created_at": to_rfc3339(row["created_at"]),
    }


def _with_tags(result: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """The result with the row's tags, when it has any."""
    tags = loads(row.get("tags"))
    if tags:
        result["tags"] = tags
    return result


def experiment_json(row: dict[str, Any]) -> dict[str, Any]:
    """An experiments row as KFP's V2beta1Experiment JSON."""
    return {
        "experiment_id": row["id"],
        **_described(row),
        "namespace": row["namespace"],
        "storage_state": row["storage_state"],
        "last_run_created_at": to_rfc3339(row["last_run_created_at"]),
    }


def _source_json(row: dict[str, Any], result: dict[str, Any]) -> None:
    """Add how the run or recurring run names its pipeline, and its runtime config."""
    if row["pipeline_version_id"]:
        result["pipeline_version_reference"] = {
            "pipeline_id": row["pipeline_id"],
            "pipeline_version_id": row["pipeline_version_id"],
        }
    elif row["pipeline_id"]:  # a recurring run that runs its pipeline's newest version
        result["pipeline_version_reference"] = {"pipeline_id": row["pipeline_id"]}
    elif row["pipeline_spec"]:
        result["pipeline_spec"] = loads(row["pipeline_spec"])
    runtime_config = loads(row["runtime_config"])
    if runtime_config:
        result["runtime_config"] = runtime_config


def run_json(row: dict[str, Any]) -> dict[str, Any]:
    """A runs row as KFP's V2beta1Run JSON (with run_details and state_history)."""
    result: dict[str, Any] = {
        "experiment_id": row["experiment_id"],
        "run_id": row["id"],
        "display_name": row["display_name"],
        "storage_state": row["storage_state"],
        "description": row["description"],
        "service_account": row["service_account"],
        "created_at": to_rfc3339(row["created_at"]),
        "scheduled_at": to_rfc3339(row["scheduled_at"]),
        "finished_at": to_rfc3339(row["finished_at"]),
        "state": row["state"],
    }
    _source_json(row, result)
    error = loads(row["error"])
    if error:
        result["error"] = status_json(error.get("message", ""), error.get("code", 2))
    tasks = loads(row["task_details"])
    if tasks:
        result["run_details"] = {"task_details": tasks}
    if row["recurring_run_id"]:
        result["recurring_run_id"] = row["recurring_run_id"]
    history = []
    for entry in loads(row["state_history"]) or []:
        item = {"update_time": to_rfc3339(entry["update_time"]), "state": entry["state"]}
        if entry.get("error"):
            item["error"] = status_json(entry["error"].get("message", ""))
        history.append(item)
    if history:
        result["state_history"] = history
    return result


def recurring_run_json(row: dict[str, Any]) -> dict[str, Any]:
    """A recurring_runs row as KFP's V2beta1RecurringRun JSON."""
    enabled = row["status"] == "ENABLED"
    result: dict[str, Any] = {
        "recurring_run_id": row["id"],
        "display_name": row["display_name"],
        "description": row["description"],
        "service_account": row["service_account"],
        "max_concurrency": str(row["max_concurrency"]),
        "trigger": loads(row["trigger_spec"])["shown"],
        "mode": "ENABLE" if enabled else "DISABLE",
        "created_at": to_rfc3339(row["created_at"]),
        "updated_at": to_rfc3339(row["updated_at"]),
        "status": row["status"],
        "no_catchup": bool(row["no_catchup"]),
        "namespace": row["namespace"],
        "experiment_id": row["experiment_id"],
    }
    _source_json(row, result)
    return result


# KFP v1 states of a run (`model.RuntimeState.ToV1()`), as its v1beta1 API shows them.
_V1_STATES = {
    "PENDING": "Pending",
    "RUNNING": "Running",
    "SUCCEEDED": "Succeeded",
    "SKIPPED": "Skipped",
    "FAILED": "Failed",
    "CANCELING": "Terminating",
    "CANCELED": "Canceled",
    "PAUSED": "Paused",
}


def run_detail_v1(row: dict[str, Any], parameters: dict[str, str]) -> dict[str, Any]:
    """A runs row as KFP's v1beta1 ApiRunDetail (`server/api_converter.go` toApiRunDetailV1):
    the run, with its v1 parameters and resource references, and the workflow it runs."""
    references = [
        {
            "key": {"type": "EXPERIMENT", "id": row["experiment_id"]},
            "relationship": "OWNER",
        }
    ]
    pipeline_spec: dict[str, Any] = {}
    if row["pipeline_version_id"]:
        references.append(
            {
                "key": {"type": "PIPELINE_VERSION", "id": row["pipeline_version_id"]},
                "relationship": "CREATOR",
            }
        )
        pipeline_spec["pipeline_id"] = row["pipeline_id"]
    elif row["pipeline_spec"]:
        pipeline_spec["workflow_manifest"] = row["pipeline_spec"]
    if parameters:
        pipeline_spec["parameters"] = [{"name": k, "value": v} for k, v in parameters.items()]
    run = {
        "id": row["id"],
        "name": row["display_name"],
        "storage_state": f"STORAGESTATE_{row['storage_state']}",
        "description": row["description"],
        "pipeline_spec": pipeline_spec,
        "resource_references": references,
        "service_account": row["service_account"],
        "created_at": to_rfc3339(row["created_at"]),
        "scheduled_at": to_rfc3339(row["scheduled_at"]),
        "finished_at": to_rfc3339(row["finished_at"]),
        "status": _V1_STATES.get(row["state"], row["state"]),
    }
    return {"run": run, "pipeline_runtime": {"workflow_manifest": row["pipeline_spec"] or ""}}
