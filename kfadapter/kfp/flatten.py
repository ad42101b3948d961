"""KFP's JSON answers as the adapter's plain dicts: ids, names, ISO-8601 dates, parameters.

No I/O here: every function takes KFP's JSON (as the v2beta1 API sends it) and returns a
new JSON-ready dict, so it can be tested and reused without KFP.

A run's tasks (`run_tasks`) name the pods their logs are read by: a v2 task's executor
pod from its child node id; a V1 (Argo Workflow) task's pod from the workflow, which the
caller gets from the run's pipeline version (`v1_version` says which) and passes in,
since KFP's task details do not carry the template a pod is named after.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from kfadapter.argo_workflows import is_workflow, node_id, pod_name, template_type
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


def flatten_run(raw: dict[str, Any], workflow: dict[str, Any] | None = None) -> dict[str, Any]:
    """A run: ids, name, state, experiment, version, times, parameters, error, tasks.

    `workflow`: a V1 run's Argo Workflow (its version's `pipeline_spec`), which names its
    tasks' pods (`run_tasks`); a run that carries its workflow inline needs none.
    """
    details = raw.get("run_details") or {}
    spec = spec_of(raw.get("pipeline_spec")) if raw.get("pipeline_spec") else {}
    if workflow is None and is_workflow(spec):
        workflow = spec
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
        "tasks": run_tasks(details.get("task_details") or [], workflow),
    }


def v1_version(raw: dict[str, Any]) -> tuple[str, str] | None:
    """(pipeline id, version id) of a V1 run whose workflow KFP's run JSON does not carry:
    its task details have no `root-driver` (a v2 run's, `argocompiler`), and it names its
    version. None for a v2 run, a run with no task details yet, or one without a version."""
    details = (raw.get("run_details") or {}).get("task_details") or []
    if not details or any(d.get("display_name") == "root-driver" for d in details):
        return None
    if raw.get("pipeline_spec"):
        return None  # the run carries its pipeline itself
    reference = raw.get("pipeline_version_reference") or {}
    pipeline_id = reference.get("pipeline_id") or ""
    version_id = reference.get("pipeline_version_id") or raw.get("pipeline_version_id") or ""
    return (pipeline_id, version_id) if pipeline_id and version_id else None


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


def run_tasks(
    details: list[dict[str, Any]], workflow: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The pipeline's own tasks among a run's task details, each with its pods.

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
    are its workflow's own nodes, each kept but the workflow's. Their pods are named after
    the templates they run, which task details do not carry: given the `workflow`, each
    node that runs a pod gets its pod (`_v1_pods`); without it, none.
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
    v1 = not v2 and workflow is not None and len(workflows) == 1
    v1_pods = _v1_pods(details, next(iter(workflows)), workflow) if v1 else {}
    tasks = []
    for index, raw in enumerate(details):
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
                ]
                or v1_pods.get(index, []),
            }
        )
    return tasks


_COMPILER_NODE = re.compile(
    r"iteration-(driver|iterations(\(\d+:\d+\))?|item(-driver)?)|.+\.onExit"
)  # the nodes KFP's Argo compiler adds for loops and Argo adds for exit hooks


def _executor_pod(executor_node: str) -> str:
    """The name of the pod that runs a component, from its Argo node id."""
    workflow, _, digits = executor_node.rpartition("-")
    return f"{workflow}-system-container-impl-{digits}"


_ATTEMPT = re.compile(r"\((\d+)\)")  # a retry's attempt: "<node>(<n>)" (Argo's retry nodes)
_POD_TEMPLATES = ("container", "script")


def _v1_pods(
    details: list[dict[str, Any]], name: str, workflow: dict[str, Any]
) -> dict[int, list[str]]:
    """The pods of a V1 run's entries (by index in `details`), for the run of `workflow`
    whose Argo name is `name`.

    Entries sharing a display name are matched to the node names `_v1_nodes` finds in
    node-id order, the order KFP lists them in (`server/api_converter.go` toModelTasks
    sorts the node ids); a display name with entries left unnamed gets no pods. A node
    whose template is a container or script runs one pod, `<workflow>-<template>-<hash>`
    (`common/util/workflow.go` RetrievePodName); a retried one its attempts' pods, newest
    first; a task expanded over items none itself (each item its own); a skipped or
    omitted node none.
    """
    templates = _templates(workflow)
    nodes = _v1_nodes(details, name, workflow)
    by_display: dict[str, list[str]] = {}
    for found_id in sorted(nodes):
        node, display, _ = nodes[found_id]
        by_display.setdefault(display, []).append(node)
    template_of = {node: template for node, _, template in nodes.values()}
    expansions: dict[str, list[str]] = {}  # a node -> its items or attempts
    for node, _, template in nodes.values():
        cuts = [i for i, char in enumerate(node) if char == "(" and node[:i] in template_of]
        parent = node[: cuts[-1]] if cuts else None
        if parent is not None and template_of[parent] == template:
            expansions.setdefault(parent, []).append(node)

    def pods_of(node: str) -> list[str]:
        template = template_of[node]
        if not any(kind in templates.get(template, {}) for kind in _POD_TEMPLATES):
            return []
        expanded = expansions.get(node, [])
        attempts = {int(m[1]): n for n in expanded if (m := _ATTEMPT.fullmatch(n[len(node) :]))}
        if attempts:
            return [pod for n in sorted(attempts, reverse=True) for pod in pods_of(attempts[n])]
        return [] if expanded else [pod_name(name, node, template)]

    entries: dict[str, list[int]] = {}
    for index, raw in enumerate(details):
        entries.setdefault(raw.get("display_name") or "", []).append(index)
    pods: dict[int, list[str]] = {}
    for display, indexes in entries.items():
        names = by_display.get(display, [])
        if len(names) != len(indexes):
            continue
        for index, node in zip(indexes, names, strict=True):
            if details[index].get("state") not in (None, "", "SKIPPED"):
                pods[index] = pods_of(node)
    return pods


def _v1_nodes(
    details: list[dict[str, Any]], name: str, workflow: dict[str, Any]
) -> dict[str, tuple[str, str, str]]:
    """node id -> (node name, display name, template) of the nodes of a V1 run's details.

    Task details carry a node's display name and its children's node ids, but not its
    name nor its template (`common/util/workflow.go` NodeStatuses). Names are found from
    the workflow's node `name` down, as Argo's controller names nodes (`workflow/
    controller/dag.go`, `steps.go`, `operator.go` initializeNode): `<dag node>.<task>`,
    `<steps node>[<i>].<step>`, an item `<task>(<i>:<item>)` or a retry's attempt
    `<node>(<n>)` (display names: the name after its DAG's or steps' node), and the exit
    handler `<workflow>.onExit` (its display name its whole name, under no node). A name
    is taken when its node id (`<workflow>-<FNV-1a 32 of the name>`) is some entry's child.
    """
    spec = workflow.get("spec") or {}
    templates = _templates(workflow)
    children = {c.get("pod_name") for raw in details for c in raw.get("child_tasks") or []}
    displays = {raw.get("display_name") or "" for raw in details}
    queue = [(name, name, str(spec.get("entrypoint") or ""))]
    if f"{name}.onExit" in displays:
        queue.append((f"{name}.onExit", f"{name}.onExit", str(spec.get("onExit") or "")))
    found = {node_id(name, node[0]): node for node in queue}

    def named(prefix: str, display: str, template: Any) -> list[tuple[str, str, str]]:
        """A node `<prefix><display>` and its items or attempts, as candidates."""
        return [
            (prefix + other, other, str(template or ""))
            for other in displays
            if other == display or other.startswith(f"{display}(")
        ]

    while queue:
        node, display, template = queue.pop()
        candidates = named(node[: len(node) - len(display)], display, template)
        body = templates.get(template, {})
        for task in (body.get("dag") or {}).get("tasks") or []:
            candidates += named(f"{node}.", str(task.get("name")), task.get("template"))
        for index, group in enumerate(body.get("steps") or []):
            steps = group if isinstance(group, list) else (group or {}).get("steps") or []
            for step in steps:
                candidates += named(
                    f"{node}[{index}].", str(step.get("name")), step.get("template")
                )
        for candidate in candidates:
            candidate_id = node_id(name, candidate[0])
            if candidate_id in children and candidate_id not in found:
                found[candidate_id] = candidate
                queue.append(candidate)
    return found


def _templates(workflow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A workflow's templates by name."""
    listed = (workflow.get("spec") or {}).get("templates") or []
    return {t["name"]: t for t in listed if isinstance(t, dict) and t.get("name")}


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
