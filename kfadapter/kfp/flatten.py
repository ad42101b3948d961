"""KFP's JSON answers as the adapter's plain dicts: ids, names, ISO-8601 dates, parameters.

No I/O here: every function takes KFP's JSON (as the v2beta1 API sends it) and returns a
new JSON-ready dict, so it can be tested and reused without KFP.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from kfadapter.argo_workflows import template_type
from kfadapter.arguments import declared_parameters, pipeline_tasks, spec_of


def flatten_page(
    answer: dict[str, Any], items_key: str, flatten: Callable[[dict[str, Any]], dict[str, Any]]
) -> dict[str, Any]:
    """One page of a KFP list as {items_key, "next_page_token", "total_size"}, flattened."""
    return {
        items_key: [flatten(item) for item in answer.get(items_key) or []],
        "next_page_token": answer.get("next_page_token") or "",
        "total_size": int(answer.get("total_size") or 0),
    }


def flatten_pipeline(raw: dict[str, Any]) -> dict[str, Any]:
    """A KFP pipeline as {"pipeline_id", "display_name", "name", "description", ...}."""
    return {
        "pipeline_id": raw.get("pipeline_id") or "",
        "display_name": raw.get("display_name") or raw.get("name") or "",
        "name": raw.get("name") or raw.get("display_name") or "",
        "description": raw.get("description") or "",
        "created_at": iso(raw.get("created_at")),
        "namespace": raw.get("namespace") or "",
        "error": _error_text(raw.get("error")),
    }


def flatten_version(raw: dict[str, Any]) -> dict[str, Any]:
    """A pipeline version with its declared parameters and its task list."""
    spec = spec_of(raw.get("pipeline_spec"))
    package_url = raw.get("package_url")
    return {
        "pipeline_version_id": raw.get("pipeline_version_id") or "",
        "id": raw.get("pipeline_version_id") or "",
        "pipeline_id": raw.get("pipeline_id") or "",
        "display_name": raw.get("display_name") or raw.get("name") or "",
        "name": raw.get("name") or raw.get("display_name") or "",
        "description": raw.get("description") or "",
        "created_at": iso(raw.get("created_at")),
        "template_type": template_type(spec),
        "parameters": declared_parameters(spec),
        "tasks": pipeline_tasks(spec),
        "package_url": package_url.get("pipeline_url") if isinstance(package_url, dict) else None,
        "code_source_url": raw.get("code_source_url") or None,
        "error": _error_text(raw.get("error")),
    }


def flatten_experiment(raw: dict[str, Any]) -> dict[str, Any]:
    """An experiment as {"experiment_id", "id", "name", "description", ...}."""
    return {
        "experiment_id": raw.get("experiment_id") or "",
        "id": raw.get("experiment_id") or "",
        **_named(raw),
        "created_at": iso(raw.get("created_at")),
        "last_run_created_at": iso(raw.get("last_run_created_at")),
        "namespace": raw.get("namespace") or "",
        "storage_state": raw.get("storage_state") or "",
    }


def flatten_run(raw: dict[str, Any]) -> dict[str, Any]:
    """A run: ids, name, state, experiment, version, times, parameters, error, tasks."""
    details = raw.get("run_details") or {}
    spec = spec_of(raw.get("pipeline_spec")) if raw.get("pipeline_spec") else {}
    source = _source(raw)
    # a run may also name its version in v2beta1's deprecated top-level field
    source["pipeline_version_id"] = (
        source["pipeline_version_id"] or raw.get("pipeline_version_id") or ""
    )
    return {
        "run_id": raw.get("run_id") or "",
        **_named(raw),
        "state": raw.get("state") or "RUNTIME_STATE_UNSPECIFIED",
        "storage_state": raw.get("storage_state") or "",
        **source,
        "pipeline_spec_name": (spec.get("pipelineInfo") or {}).get("name") or "",
        "recurring_run_id": raw.get("recurring_run_id") or "",
        "created_at": iso(raw.get("created_at")),
        "scheduled_at": iso(raw.get("scheduled_at")),
        "finished_at": iso(raw.get("finished_at")),
        "error": _error_text(raw.get("error")),
        "state_history": [
            {"state": entry.get("state") or "", "update_time": iso(entry.get("update_time"))}
            for entry in raw.get("state_history") or []
        ],
        "tasks": run_tasks(details.get("task_details") or []),
    }


# KFP's v1 run statuses (`model.RuntimeState.ToV1()`) as v2beta1 states.
_V1_STATES = {
    "Pending": "PENDING",
    "Running": "RUNNING",
    "Succeeded": "SUCCEEDED",
    "Skipped": "SKIPPED",
    "Failed": "FAILED",
    "Error": "FAILED",
    "Terminating": "CANCELING",
    "Canceled": "CANCELED",
    "Paused": "PAUSED",
}


def flatten_run_v1(answer: dict[str, Any]) -> dict[str, Any]:
    """A run as KFP's v1beta1 API answers its creation (an ApiRunDetail), in the shape
    `flatten_run` gives; a status not (yet) set reads PENDING, as the run was just made."""
    run = answer.get("run") or {}
    references = {
        (ref.get("key") or {}).get("type"): (ref.get("key") or {}).get("id") or ""
        for ref in run.get("resource_references") or []
    }
    spec = run.get("pipeline_spec") or {}
    return flatten_run(
        {
            "run_id": run.get("id"),
            "display_name": run.get("name"),
            "description": run.get("description"),
            "state": _V1_STATES.get(run.get("status") or "", "PENDING"),
            "storage_state": (run.get("storage_state") or "").removeprefix("STORAGESTATE_"),
            "experiment_id": references.get("EXPERIMENT", ""),
            "pipeline_version_reference": {
                "pipeline_id": spec.get("pipeline_id") or "",
                "pipeline_version_id": references.get("PIPELINE_VERSION", ""),
            },
            "runtime_config": {
                "parameters": {p.get("name"): p.get("value") for p in spec.get("parameters") or []}
            },
            "created_at": run.get("created_at"),
            "scheduled_at": run.get("scheduled_at"),
            "finished_at": run.get("finished_at"),
            "error": run.get("error") or None,
        }
    )


def run_tasks(details: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pipeline's own tasks among a v2 run's task details, each with its pods.

    On Argo, KFP 2.17 reports every node of the workflow (`server/api_converter.go`,
    `toModelTasks`): the workflow's own node (named as the workflow), `root` and
    `root-driver`, and for each task `T` a `T-driver` pod, the `T` node and, for a
    container, its `executor` pod; a ParallelFor adds `iteration-driver`,
    `iteration-iterations`, `iteration-iterations(i:i)`, `iteration-item-driver` and
    `iteration-item` (`argocompiler/dag.go` `iteratorTask`), so a task inside a loop is
    one `T` entry per iteration, and an exit task sits under a `<task>.onExit` hook node.
    Only the `T` entries are kept (the loop's own and each iteration's). None carries a pod
    name; their `child_tasks` are Argo node ids `<workflow>-<hash>`, and the pod of a
    child that runs a component is `<workflow>-system-container-impl-<hash>`
    (`common/util/workflow.go` `RetrievePodName`, Argo's POD_NAMES v2): those are a
    task's `pods`, the node ids its log is read by.

    A V1 run's (a KFP v1 pipeline's, an Argo Workflow's: no `root-driver` node) entries
    are its workflow's own nodes, each kept but the workflow's; their pods are named
    after the templates they run (`<workflow>-<template>-<hash>`), which task details do
    not carry, so none is given.
    """
    names = {raw.get("display_name") or "" for raw in details}
    v2 = "root-driver" in names
    workflows = {
        child["pod_name"].rpartition("-")[0]
        for raw in details
        for child in raw.get("child_tasks") or []
        if child.get("pod_name")
    }
    system = {"root", "root-driver", "executor", *workflows}
    tasks = []
    for raw in details:
        name = raw.get("display_name") or ""
        if name in workflows or (
            v2
            and (
                name in system
                or _COMPILER_NODE.fullmatch(name)
                or (name.endswith("-driver") and name[: -len("-driver")] in names)
            )
        ):
            continue
        tasks.append(
            {
                "task_id": raw.get("task_id") or "",
                "name": name,
                "state": raw.get("state") or "",
                "created_at": iso(raw.get("create_time")),
                "started_at": iso(raw.get("start_time")),
                "finished_at": iso(raw.get("end_time")),
                "error": _error_text(raw.get("error")),
                "pods": [
                    _executor_pod(child["pod_name"])
                    for child in raw.get("child_tasks") or []
                    if child.get("pod_name") and v2
                ],
            }
        )
    return tasks


_COMPILER_NODE = re.compile(
    r"iteration-(driver|iterations(\(\d+:\d+\))?|item(-driver)?)|.+\.onExit"
)  # the nodes KFP's Argo compiler adds for loops and Argo adds for exit hooks


def _executor_pod(node_id: str) -> str:
    """The name of the pod that runs a component, from its Argo node id."""
    workflow, _, digits = node_id.rpartition("-")
    return f"{workflow}-system-container-impl-{digits}"


def flatten_recurring_run(raw: dict[str, Any]) -> dict[str, Any]:
    """A recurring run: ids, name, status, trigger, concurrency, pipeline, parameters, times."""
    trigger = raw.get("trigger") or {}
    cron = trigger.get("cron_schedule") or {}
    periodic = trigger.get("periodic_schedule") or {}
    schedule = cron or periodic
    return {
        "recurring_run_id": raw.get("recurring_run_id") or "",
        "id": raw.get("recurring_run_id") or "",
        **_named(raw),
        "status": raw.get("status") or "",
        "mode": raw.get("mode") or "",
        **_source(raw),
        "trigger": {
            "cron": cron.get("cron") or None,
            "interval_second": _int_or_none(periodic.get("interval_second")),
            "start_time": iso(schedule.get("start_time")),
            "end_time": iso(schedule.get("end_time")),
        },
        "max_concurrency": _int_or_none(raw.get("max_concurrency")),
        "no_catchup": bool(raw.get("no_catchup")),
        "namespace": raw.get("namespace") or "",
        "created_at": iso(raw.get("created_at")),
        "updated_at": iso(raw.get("updated_at")),
        "error": _error_text(raw.get("error")),
    }


def _named(raw: dict[str, Any]) -> dict[str, Any]:
    """The name of an experiment, run or recurring run (its display name), and description."""
    return {
        "name": raw.get("display_name") or "",
        "display_name": raw.get("display_name") or "",
        "description": raw.get("description") or "",
    }


def _source(raw: dict[str, Any]) -> dict[str, Any]:
    """What a run or recurring run executes: experiment, pipeline version, parameters."""
    reference = raw.get("pipeline_version_reference") or {}
    return {
        "experiment_id": raw.get("experiment_id") or "",
        "pipeline_id": reference.get("pipeline_id") or "",
        "pipeline_version_id": reference.get("pipeline_version_id") or "",
        "parameters": (raw.get("runtime_config") or {}).get("parameters") or {},
    }


def iso(value: Any) -> str | None:
    """An RFC 3339 / ISO-8601 date from KFP as ISO-8601 text; None when unset."""
    if not value or not isinstance(value, str):
        return None
    if value.startswith(("1970-01-01T00:00:00", "0001-01-01T00:00:00")):
        return None  # KFP's "never": Unix time 0, or Go's zero time (a task not ended)
    return value


def _int_or_none(value: Any) -> int | None:
    """KFP sends int64 as strings: an int, or None."""
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _error_text(error: Any) -> str | None:
    """The message of a KFP error status ({"code", "message"}), or None."""
    if not error:
        return None
    if isinstance(error, dict):
        return error.get("message") or (json.dumps(error) if error.get("code") else None)
    return str(error)
