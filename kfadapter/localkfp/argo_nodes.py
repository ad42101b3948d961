"""A v2 run's task details as KFP 2.17 gives them on Argo: one entry per Argo node.

On a cluster KFP's v2 compiler (`backend/src/v2/compiler/argocompiler/`, `argo.go`,
`dag.go`, `container.go`) turns a pipeline into an Argo Workflow named
`<pipelineInfo.name>-<5 random characters>` (`generateName`), whose node tree is:

- the workflow node (display name: the workflow's name), a DAG with the tasks
  `root-driver` (template `system-dag-driver`) and `root` (the pipeline's DAG);
- for each container task `T` of a DAG: `T-driver` (`system-container-driver`), then `T`
  (a DAG, `system-container-executor`) holding one pod node `executor`
  (`system-container-impl`): the pod that runs the component, a Skipped node when the
  driver found the task in the cache (its `when: cached-decision != true`);
- for each sub-DAG task `S` (nested pipeline, condition group or branch): `S-driver`
  (`system-dag-driver`), then `S` (a DAG holding S's own tasks); a condition branch not
  taken is a Skipped node (its `when` false: Argo's `executeDAGTask`), which KFP reports
  as SKIPPED (`model.RuntimeState`: Argo's `Skipped` -> v2 `SKIPPED`);
- for each ParallelFor task `L` (`iteratorTask`, template `<component>-L-iterator`): `L`
  (no driver) holding `iteration-driver` and `iteration-iterations`, a `withSequence`
  over the iteration count that Argo expands (`workflow/controller/dag.go` `expandTask`,
  `processItem`: `<task>(<index>:<item>)`) into a TaskGroup node `iteration-iterations`
  whose children are `iteration-iterations(<i>:<i>)`, each a DAG of
  `iteration-item-driver` and `iteration-item` (the body's DAG, its tasks as above);
- an exit task (trigger strategy ALL_UPSTREAM_TASKS_COMPLETED: `dsl.ExitHandler`'s, or
  `.ignore_upstream_failure()`) is not a task of its DAG but the template
  `exit-hook-<dag>-<task>` of an Argo exit lifecycle hook on the task it depends on
  (`argocompiler/dag.go` `DAG`, `addExitTask`); Argo runs it as the node
  `<that task's node>.onExit` (`workflow/common` `GenerateOnExitNodeName`), a child of
  that task's node (`runOnExitNode`: `addChildNode`), holding the exit task's nodes.

Argo names a node `<parent name>.<task name>` (display name: the name without its DAG
node's name, `initializeNode`) and gives it the id `<workflow>-<FNV-1a 32 of the node
name>`; a node's children are the roots of its DAG, or the drivers of the tasks that
depend on it, attached to its outbound (last) pods (a TaskGroup's are its items'). KFP
reports every node as a task (`common/util/workflow.go` `NodeStatuses`,
`server/api_converter.go` `toModelTasks`, sorted by node id), with the Argo node's
display name, phase and times, and child ids that are Argo node ids.
`toApiPipelineTaskDetail` sets no `pod_name`, no per-task `error`, no
`inputs`/`outputs`, no `state_history`; a node not yet finished has Go's zero time as
its end (`0001-01-01T00:00:00Z`); every entry's `create_time` is the workflow's. An
executor's pod is named `<workflow>-system-container-impl-<hash of its node name>`
(Argo's POD_NAMES v2, which KFP assumes in `RetrievePodName`): logs are read by that
name.

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
_ITERATION = re.compile(r"iteration-(\d+)")  # a loop iteration as the worker names it
_EXIT_STRATEGY = "ALL_UPSTREAM_TASKS_COMPLETED"


@dataclass(frozen=True)
class TaskRecord:
    """One task as the worker reported it (a container, importer or DAG task)."""

    task_name: str  # the task's key in its DAG of the pipeline spec
    parent: tuple[str, ...]  # the DAG tasks enclosing it, outermost first; () at the root
    kind: str  # "container", "importer" or "dag"
    state: str  # RUNNING, SUCCEEDED, FAILED or CANCELED
    start: str  # RFC 3339
    end: str | None
    cached: bool = False  # taken from the task cache: its executor pod did not run


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
        iteration = _ITERATION.fullmatch(element) if in_loop else None
        if iteration:
            names.append(f"iteration-iterations({iteration[1]}:{iteration[1]})")
            if position < len(elements) - 1:
                names.append("iteration-item")
            in_loop = False
            continue
        tasks = _tasks_of(component)
        task = tasks.get(element) or {}
        host = exit_hook_host(spec, tasks, task)
        names.extend([host, "onExit", element] if host else [element])
        component = components.get(_component_name(task)) or {}
        in_loop = is_loop(task)
    return ".".join(names)


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
        component = components.get(_component_name(upstream)) or {}
        executor = executors.get(component.get("executorLabel", "")) or {}
        if "dag" in component or "container" in executor:
            return key
    return None


def _tasks_of(component: Mapping[str, Any]) -> Mapping[str, Any]:
    return (component.get("dag") or {}).get("tasks") or {}


def _component_name(task: Mapping[str, Any]) -> str:
    return str((task.get("componentRef") or {}).get("name", ""))


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
        self.spec = spec
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
        hosts = {key: exit_hook_host(self.spec, tasks, task) for key, task in tasks.items()}
        for key, task in tasks.items():
            if hosts[key] is None:
                started = self._task(name, path, key, task)
                if started is not None:
                    built[key] = started
        for key, host in hosts.items():
            if host is not None and host in built:
                started = self._exit_task(f"{name}.{host}", host, path, key, tasks[key])
                if started is not None:
                    built[key] = started
        for key, task in built.items():
            if hosts[key] is not None:
                continue  # an exit hook hangs from its host's node, not from the DAG
            upstream = [u for u in tasks[key].get("dependentTasks") or [] if u in built]
            if not upstream:  # a root task of the DAG
                dag.children.append(task.first)
            for before in upstream:  # Argo: the outbound nodes of each dependency
                for out in built[before].outbound:
                    self.nodes[out].children.append(task.first)
        needed = {
            upstream
            for key, task in tasks.items()
            if hosts[key] is None
            for upstream in task.get("dependentTasks") or []
        }
        built_tasks = {key: t for key, t in built.items() if hosts[key] is None}
        dag.outbound = [
            o for key, t in built_tasks.items() if key not in needed for o in t.outbound
        ]
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
        if is_loop(task):
            return self._loop(name, key, path, component, record)
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
        # A cached task: its driver's cached-decision is true, so the executor's `when`
        # (`{{inputs.parameters.cached-decision}} != true`, argocompiler/container.go) is
        # false and Argo makes the pod node Skipped (KFP: SKIPPED); the DAG succeeds.
        pod_state = "SKIPPED" if record.cached and state == "SUCCEEDED" else state
        pod = self._add(f"{name}.executor", "executor", pod_state, start, end)
        driver.children.append(executor_dag.name)
        executor_dag.children.append(pod.name)
        return _Built(driver.name, [pod.name], state, start, end)

    def _loop(
        self,
        name: str,
        key: str,
        path: tuple[str, ...],
        component: Mapping[str, Any],
        record: TaskRecord | None,
    ) -> _Built | None:
        """A ParallelFor's nodes (`argocompiler/dag.go` `iteratorTask`, `iterationItemTask`):
        `L` > `iteration-driver` > TaskGroup `iteration-iterations` > one DAG
        `iteration-iterations(i:i)` per started iteration > `iteration-item-driver` >
        `iteration-item`, the body. The loop has no driver; its dependents hang from
        the last pods of every iteration's body."""
        inner = (*path, key)
        iterations = sorted(
            (int(match[1]), r)
            for (p, k), r in self.records.items()
            if p == inner and (match := _ITERATION.fullmatch(k))
        )
        if record is None and not iterations:
            return None
        start = record.start if record else min(r.start for _, r in iterations)
        loop = self._add(name, key, "RUNNING", start, None)
        driver = self._add(
            f"{name}.iteration-driver", "iteration-driver", "SUCCEEDED", start, start
        )
        group = self._add(
            f"{name}.iteration-iterations", "iteration-iterations", "RUNNING", start, None
        )
        loop.children.append(driver.name)
        driver.children.append(group.name)
        outbound: list[str] = []
        for index, it in iterations:
            label = f"iteration-iterations({index}:{index})"
            item = self._add(f"{name}.{label}", label, it.state, it.start, it.end)
            item_driver = self._add(
                f"{item.name}.iteration-item-driver",
                "iteration-item-driver",
                "SUCCEEDED",
                it.start,
                it.start,
            )
            body = self._dag(
                f"{item.name}.iteration-item",
                "iteration-item",
                (*inner, f"iteration-{index}"),
                component,
            )
            body.state, body.start, body.end = it.state, it.start, it.end
            group.children.append(item.name)
            item.children.append(item_driver.name)
            item_driver.children.append(body.name)
            outbound.extend(body.outbound or [body.name])
        if record is not None:
            state, end = record.state, record.end
        elif self.run_final:
            state, end = self._run_phase(), self._run_end()
        else:
            state, end = "RUNNING", None
        for node in (loop, group):
            node.state, node.end = state, end
        return _Built(loop.name, outbound or [group.name], state, start, end)

    def _exit_task(
        self, host: str, host_key: str, path: tuple[str, ...], key: str, task: Mapping[str, Any]
    ) -> _Built | None:
        """An exit task as Argo runs its lifecycle hook: the DAG `<host>.onExit` (display
        `<host task>.onExit`), a child of the host's node, holding the task's nodes."""
        hook_name = f"{host}.onExit"
        built = self._task(hook_name, path, key, task)
        if built is None:
            return None
        hook = self._add(hook_name, f"{host_key}.onExit", built.state, built.start, built.end)
        hook.children.append(built.first)
        self.nodes[host].children.append(hook.name)
        return built

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
