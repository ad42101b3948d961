"""Argo's names and ids of a run's workflow, nodes and executor pods (FNV-1a, POD_NAMES v2)."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from kfadapter.argo_workflows import fnv32a, node_id  # noqa: F401 (names of this module)
from kfadapter.localkfp.argo_spec import (
    ITERATION,
    component_name,
    exit_hook_host,
    is_loop,
    tasks_of,
)

EXECUTOR_TEMPLATE = "system-container-impl"
"""The template of the pod that runs a component (its pod name carries it)."""

NEVER = "0001-01-01T00:00:00Z"
"""Go's zero time as KFP encodes it: the end of a node that has not finished."""

_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' generateName alphabet


def workflow_name(spec: Mapping[str, Any], run_id: str) -> str:
    """The run's workflow name: the pipeline's name, '-', 5 characters (fixed per run)."""
    name = str((spec.get("pipelineInfo") or {}).get("name") or "pipeline").split("/")[-1]
    base = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "pipeline"
    return generated_name(f"{base}-", run_id)


def generated_name(prefix: str, run_id: str) -> str:
    """A Kubernetes `generateName` result: the prefix and 5 characters (fixed per run)."""
    digest = hashlib.sha256(run_id.encode("utf-8")).digest()
    suffix = "".join(_SUFFIX_ALPHABET[b % len(_SUFFIX_ALPHABET)] for b in digest[:5])
    return prefix[:58] + suffix


def task_detail_id(run_id: str, node_name: str) -> str:
    """The `task_id` of a node's entry in the run's task details (fixed per run and node)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"kfp-run:{run_id}/{node_name}"))


def executor_pod_name(executor_node_id: str) -> str:
    """The pod of an executor node, from the node's id (`RetrievePodName`, POD_NAMES v2)."""
    workflow, _, digits = executor_node_id.rpartition("-")
    return f"{workflow}-{EXECUTOR_TEMPLATE}-{digits}"


def executor_node_name(
    spec: Mapping[str, Any], workflow: str, parent: Iterable[str], task_name: str
) -> str:
    """The Argo node name of a container task's executor pod (its DAG path as the worker
    reports it: spec keys, `iteration-<i>` inside a loop)."""
    return f"{task_node_name(spec, workflow, (*parent, task_name))}.executor"


def task_node_name(spec: Mapping[str, Any], workflow: str, path: Iterable[str]) -> str:
    """The Argo node name of the task at this worker path (its last element).

    A loop iteration `iteration-<i>` is `iteration-iterations(<i>:<i>)`, and what runs in
    it sits under its `iteration-item`; an exit task sits under `<host>.onExit`.
    """
    components: Mapping[str, Any] = spec.get("components") or {}
    component: Mapping[str, Any] = spec.get("root") or {}
    elements = list(path)
    names, in_loop = [workflow, "root"], False
    for position, element in enumerate(elements):
        iteration = ITERATION.fullmatch(element) if in_loop else None
        if iteration:
            names.append(f"iteration-iterations({iteration[1]}:{iteration[1]})")
            if position < len(elements) - 1:
                names.append("iteration-item")
            in_loop = False
            continue
        tasks = tasks_of(component)
        task = tasks.get(element) or {}
        host = exit_hook_host(spec, tasks, task)
        names.extend([host, "onExit", element] if host else [element])
        component = components.get(component_name(task)) or {}
        in_loop = is_loop(task)
    return ".".join(names)


def executor_pod_names(details: Iterable[Mapping[str, Any]]) -> set[str]:
    """The executor pods a run's task details lead to (each child id in pod form)."""
    return {
        executor_pod_name(child["pod_name"])
        for detail in details
        if detail.get("display_name") not in ("executor", None)
        for child in detail.get("child_tasks") or []
        if child.get("pod_name")
    }
