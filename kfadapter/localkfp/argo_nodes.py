"""A v2 run's task details as KFP 2.17 gives them on Argo: one entry per Argo node.

On a cluster KFP's v2 compiler (`backend/src/v2/compiler/argocompiler/`, `argo.go`,
`dag.go`, `container.go`) turns a pipeline into an Argo Workflow named
`<pipelineInfo.name>-<5 random characters>` (`generateName`), whose node tree is:

- the workflow node (display name: the workflow's name), a DAG with the tasks
  `root-driver` (template `system-dag-driver`) and `root` (the pipeline's DAG);
- for each container task `T` of a DAG: `T-driver` (`system-container-driver`), then `T`
  (a DAG, `system-container-executor`) holding one pod node `executor`
  (`system-container-impl`): the pod that runs the component;
- for each sub-DAG task `S`: `S-driver` (`system-dag-driver`), then `S` (a DAG holding
  S's own tasks).

Argo names a node `<parent name>.<task name>` and gives it the id `<workflow>-<FNV-1a 32
of the node name>`; a node's children are the roots of its DAG, or the drivers of the
tasks that depend on it, attached to its outbound (last) pods. KFP reports every node as a
task (`common/util/workflow.go` `NodeStatuses`, `server/api_converter.go` `toModelTasks`,
sorted by node id), with the Argo node's display name, phase and times, and child ids
that are Argo node ids. `toApiPipelineTaskDetail` sets no `pod_name`, no per-task `error`,
no `inputs`/`outputs`, no `state_history`; a node not yet finished has Go's zero time as
its end (`0001-01-01T00:00:00Z`); every entry's `create_time` is the workflow's. An
executor's pod is named `<workflow>-system-container-impl-<hash of its node name>`
(Argo's POD_NAMES v2, which KFP assumes in `RetrievePodName`): logs are read by that name.

This module only computes; it does no I/O.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

EXECUTOR_TEMPLATE = "system-container-impl"
"""The template of the pod that runs a component (its pod name carries it)."""

NEVER = "0001-01-01T00:00:00Z"
"""Go's zero time as KFP encodes it: the end of a node that has not finished."""

_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' generateName alphabet
_FINAL = {"SUCCEEDED", "FAILED", "SKIPPED", "CANCELED"}
# A worker's task state as the Argo phase KFP maps it back from (`model.RuntimeState.ToV2`):
# Argo ends the nodes of a terminated workflow Failed; there is no canceled phase.
_NODE_STATE = {"CANCELED": "FAILED", "CANCELING": "RUNNING"}


@dataclass(frozen=True)
class TaskRecord:
    """One task as the worker reported it (a container, importer or DAG task)."""

    task_name: str  # the task's key in its DAG of the pipeline spec
    parent: tuple[str, ...]  # the DAG tasks enclosing it, outermost first; () at the root
    kind: str  # "container", "importer" or "dag"
    state: str  # RUNNING, SUCCEEDED, FAILED or CANCELED
    start: str  # RFC 3339
    end: str | None


@dataclass
class _Node:
    name: str
    display_name: str
    state: str
    start: str
    end: str | None
    children: list[str] = field(default_factory=list)
    outbound: list[str] = field(default_factory=list)  # a DAG's last pods


def fnv32a(text: str) -> int:
    """FNV-1a (32 bit) of the UTF-8 text: Argo's hash of node names."""
    value = 0x811C9DC5
    for byte in text.encode("utf-8"):
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


def workflow_name(spec: Mapping[str, Any], run_id: str) -> str:
    """The run's workflow name: the pipeline's name, '-', 5 characters (fixed per run)."""
    name = str((spec.get("pipelineInfo") or {}).get("name") or "pipeline").split("/")[-1]
    base = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "pipeline"
    digest = hashlib.sha256(run_id.encode("utf-8")).digest()
    suffix = "".join(_SUFFIX_ALPHABET[b % len(_SUFFIX_ALPHABET)] for b in digest[:5])
    return f"{base}-"[:58] + suffix


def node_id(workflow: str, node_name: str) -> str:
    """Argo's id of a node: the workflow's name for its own node, else name-hash."""
    return workflow if node_name == workflow else f"{workflow}-{fnv32a(node_name)}"


def executor_pod_name(executor_node_id: str) -> str:
    """The pod of an executor node, from the node's id (`RetrievePodName`, POD_NAMES v2)."""
    workflow, _, digits = executor_node_id.rpartition("-")
    return f"{workflow}-{EXECUTOR_TEMPLATE}-{digits}"


def executor_node_name(workflow: str, parent: Iterable[str], task_name: str) -> str:
    """The Argo node name of a container task's executor pod."""
    return ".".join([workflow, "root", *parent, task_name, "executor"])


def executor_pod_names(details: Iterable[Mapping[str, Any]]) -> set[str]:
    """The executor pods a run's task details lead to (each child id in pod form)."""
    return {
        executor_pod_name(child["pod_name"])
        for detail in details
        if detail.get("display_name") not in ("executor", None)
        for child in detail.get("child_tasks") or []
        if child.get("pod_name")
    }


def task_details(
    run_id: str,
    spec: Mapping[str, Any],
    records: Iterable[TaskRecord],
    *,
    run_state: str,
    created: str,
    started: str | None,
    finished: str | None,
) -> list[dict[str, Any]]:
    """KFP's V2beta1PipelineTaskDetail JSON of every Argo node of the run, by node id."""
    records = list(records)
    if not records:
        return []  # no task has started (the few nodes Argo would have are not shown)
    workflow = workflow_name(spec, run_id)
    tree = _Tree(workflow, spec, records, run_state, started, finished)
    nodes = tree.build()
    ids = {node.name: node_id(workflow, node.name) for node in nodes}
    details = []
    for node in sorted(nodes, key=lambda node: ids[node.name]):
        state = _NODE_STATE.get(node.state, node.state)
        detail: dict[str, Any] = {
            "run_id": run_id,
            "task_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"kfp-run:{run_id}/{node.name}")),
            "display_name": node.display_name,
            "create_time": created,
            "start_time": node.start,
            "end_time": node.end if node.end and state in _FINAL else NEVER,
            "state": state,
        }
        if node.children:
            detail["child_tasks"] = [{"pod_name": ids[child]} for child in node.children]
        details.append(detail)
    return details


@dataclass(frozen=True)
class _Built:
    """A started task's nodes as its DAG sees them."""

    first: str  # the node its DAG or its upstream tasks lead to (its driver)
    outbound: list[str]  # the pods its dependents' drivers hang from
    state: str
    start: str
    end: str | None


class _Tree:
    """Builds the Argo nodes of one run from the spec and the tasks reported so far."""

    def __init__(
        self,
        workflow: str,
        spec: Mapping[str, Any],
        records: list[TaskRecord],
        run_state: str,
        started: str | None,
        finished: str | None,
    ) -> None:
        self.workflow = workflow
        self.components: Mapping[str, Any] = spec.get("components") or {}
        self.root: Mapping[str, Any] = spec.get("root") or {}
        self.records = {(r.parent, r.task_name): r for r in records}
        self.run_state = run_state
        self.run_final = run_state in _FINAL
        # A retried workflow keeps its nodes' starts: its first task may predate the attempt.
        first = min((r.start for r in records), default=None)
        self.started = min(filter(None, (started, first)), default="")
        self.finished = finished
        self.nodes: dict[str, _Node] = {}

    def build(self) -> list[_Node]:
        """Every node: the workflow's, the root driver, the root DAG and what is below."""
        phase, end = self._run_phase(), self._run_end()
        workflow = self._add(self.workflow, self.workflow, phase, self.started, end)
        driver = self._add(
            f"{self.workflow}.root-driver", "root-driver", "SUCCEEDED", self.started, self.started
        )
        workflow.children.append(driver.name)
        root = self._dag(f"{self.workflow}.root", "root", (), self.root)
        root.state, root.start, root.end = phase, self.started, end
        driver.children.append(root.name)
        return list(self.nodes.values())

    # -- one DAG and its tasks ------------------------------------------------------------

    def _dag(self, name: str, display: str, path: tuple[str, ...], component: Any) -> _Node:
        """A DAG node with its started tasks' nodes; its state from theirs."""
        tasks: Mapping[str, Any] = (component.get("dag") or {}).get("tasks") or {}
        dag = self._add(name, display, "RUNNING", self.started, None)
        built: dict[str, _Built] = {}
        for key, task in tasks.items():
            started = self._task(name, path, key, task)
            if started is not None:
                built[key] = started
        for key, task in built.items():
            upstream = [u for u in tasks[key].get("dependentTasks") or [] if u in built]
            if not upstream:  # a root task of the DAG
                dag.children.append(task.first)
            for before in upstream:  # Argo: the outbound nodes of each dependency
                for out in built[before].outbound:
                    self.nodes[out].children.append(task.first)
        needed = {u for task in tasks.values() for u in task.get("dependentTasks") or []}
        dag.outbound = [o for key, t in built.items() if key not in needed for o in t.outbound]
        states = [task.state for task in built.values()]
        if built:
            dag.start = min(task.start for task in built.values())
        complete = len(built) == len(tasks) and all(s in _FINAL for s in states)
        if "FAILED" in states or "CANCELED" in states:
            dag.state = "FAILED" if complete or self.run_final else "RUNNING"
        elif complete:
            dag.state = "SUCCEEDED"
        elif self.run_final:
            dag.state = self._run_phase()
        if dag.state in _FINAL:
            ends = [task.end for task in built.values() if task.end]
            dag.end = max(ends or [self._run_end() or dag.start])
        return dag

    def _task(
        self, dag_name: str, path: tuple[str, ...], key: str, task: Mapping[str, Any]
    ) -> _Built | None:
        """The nodes of one task of a DAG, if it has started."""
        name = f"{dag_name}.{key}"
        component = self.components.get((task.get("componentRef") or {}).get("name", "")) or {}
        record = self.records.get((path, key))
        if "dag" in component:
            inner = (*path, key)
            if record is None and not any(p[: len(inner)] == inner for p, _ in self.records):
                return None
            start = record.start if record else self._inner_start(inner)
            driver = self._add(f"{name}-driver", f"{key}-driver", "SUCCEEDED", start, start)
            dag = self._dag(name, key, inner, component)
            if record is not None:
                dag.state, dag.start, dag.end = record.state, record.start, record.end
            driver.children.append(dag.name)
            return _Built(driver.name, dag.outbound or [dag.name], dag.state, start, dag.end)
        if record is None:
            return None
        state, start, end = record.state, record.start, record.end
        if record.kind == "importer":  # one pod, no driver (argocompiler/importer.go)
            node = self._add(name, key, state, start, end)
            return _Built(node.name, [node.name], state, start, end)
        driver = self._add(f"{name}-driver", f"{key}-driver", "SUCCEEDED", start, start)
        executor_dag = self._add(name, key, state, start, end)
        pod = self._add(f"{name}.executor", "executor", state, start, end)
        driver.children.append(executor_dag.name)
        executor_dag.children.append(pod.name)
        return _Built(driver.name, [pod.name], state, start, end)

    # -- helpers --------------------------------------------------------------------------

    def _add(self, name: str, display: str, state: str, start: str, end: str | None) -> _Node:
        node = _Node(name, display, state, start, end)
        self.nodes[name] = node
        return node

    def _inner_start(self, inner: tuple[str, ...]) -> str:
        starts = [r.start for (p, _), r in self.records.items() if p[: len(inner)] == inner]
        return min(starts, default=self.started)

    def _run_phase(self) -> str:
        if self.run_state == "SUCCEEDED":
            return "SUCCEEDED"
        if self.run_final:
            return "FAILED"  # failed or terminated: Argo's workflow phase is Failed
        return "RUNNING"

    def _run_end(self) -> str | None:
        return self.finished if self.run_final else None


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
