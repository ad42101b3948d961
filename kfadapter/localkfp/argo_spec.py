"""The pipeline spec walked as KFP's Argo compiler does: DAG tasks, paths, loops, exit hosts."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

ITERATION = re.compile(r"iteration-(\d+)")  # a loop iteration as the worker names it
_EXIT_STRATEGY = "ALL_UPSTREAM_TASKS_COMPLETED"


def is_loop(task: Mapping[str, Any]) -> bool:
    """Whether a task spec is a ParallelFor (an iterator task)."""
    return bool(task.get("parameterIterator") or task.get("artifactIterator"))


def exit_hook_host(
    spec: Mapping[str, Any], tasks: Mapping[str, Any], task: Mapping[str, Any]
) -> str | None:
    """The task whose Argo exit hook runs this exit task, or None if it is a plain task.

    KFP's compiler sets the hook on every task the exit task depends on, and only on
    container and DAG tasks (`iteratorTask` and `importerTask` take no exit template);
    the worker runs an exit task once, so it is placed under the first of them.
    """
    if (task.get("triggerPolicy") or {}).get("strategy") != _EXIT_STRATEGY:
        return None
    components: Mapping[str, Any] = spec.get("components") or {}
    executors = ((spec.get("deploymentSpec") or {}).get("executors")) or {}
    for key in task.get("dependentTasks") or []:
        upstream = tasks.get(key)
        if upstream is None or is_loop(upstream):
            continue
        component = components.get(component_name(upstream)) or {}
        executor = executors.get(component.get("executorLabel", "")) or {}
        if "dag" in component or "container" in executor:
            return key
    return None


def tasks_of(component: Mapping[str, Any]) -> Mapping[str, Any]:
    return (component.get("dag") or {}).get("tasks") or {}


def component_name(task: Mapping[str, Any]) -> str:
    return str((task.get("componentRef") or {}).get("name", ""))


def dag_tasks(spec: Mapping[str, Any], path: tuple[str, ...]) -> Mapping[str, Any]:
    """The tasks of the DAG at this path of DAG task keys (() is the root), or {}."""
    components: Mapping[str, Any] = spec.get("components") or {}
    component: Mapping[str, Any] = spec.get("root") or {}
    for key in path:
        task = ((component.get("dag") or {}).get("tasks") or {}).get(key) or {}
        component = components.get((task.get("componentRef") or {}).get("name", "")) or {}
    return (component.get("dag") or {}).get("tasks") or {}


def guess_parent(
    spec: Mapping[str, Any], task_name: str, placed: Mapping[tuple[tuple[str, ...], str], bool]
) -> tuple[str, ...]:
    """The DAG path of a task that was reported without one.

    The spec's DAGs that have a task of this name and no started one yet are the
    candidates; the first whose upstream tasks of it have all finished is taken (a task
    starts only after them). `placed`: (path, task name) -> finished, of the tasks so far.
    """
    candidates = [p for p in dag_paths(spec).get(task_name, []) if (p, task_name) not in placed]

    def finished(path: tuple[str, ...], key: str) -> bool:
        if (path, key) in placed:
            return placed[(path, key)]
        inner = (*path, key)
        below = [done for (p, _), done in placed.items() if p[: len(inner)] == inner]
        return bool(below) and all(below)

    for path in candidates:
        task = dag_tasks(spec, path).get(task_name) or {}
        if all(finished(path, upstream) for upstream in task.get("dependentTasks") or []):
            return path
    return candidates[0] if candidates else ()


def dag_paths(spec: Mapping[str, Any]) -> dict[str, list[tuple[str, ...]]]:
    """Task key -> the DAG paths (enclosing DAG task keys) where the spec has that key."""
    components: Mapping[str, Any] = spec.get("components") or {}
    found: dict[str, list[tuple[str, ...]]] = {}

    def walk(component: Mapping[str, Any], path: tuple[str, ...], depth: int) -> None:
        if depth > 32:
            return
        for key, task in ((component.get("dag") or {}).get("tasks") or {}).items():
            found.setdefault(key, []).append(path)
            inner = components.get((task.get("componentRef") or {}).get("name", "")) or {}
            if "dag" in inner:
                walk(inner, (*path, key), depth + 1)

    walk(spec.get("root") or {}, (), 0)
    return found


def task_key(spec: Mapping[str, Any], display_name: str) -> str:
    """The spec key of the task with this display name (`taskInfo.name`), else the name."""
    components: Mapping[str, Any] = spec.get("components") or {}
    dags = [spec.get("root") or {}, *components.values()]
    for component in dags:
        for key, task in ((component.get("dag") or {}).get("tasks") or {}).items():
            if (task.get("taskInfo") or {}).get("name") == display_name:
                return key
    return display_name
