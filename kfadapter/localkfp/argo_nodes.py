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

This module builds the tree (`TaskRecord`, `task_details`) and re-exports the names of
`argo_names.py` (names, ids, pods) and `argo_spec.py` (the spec walked); none does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kfadapter.localkfp.argo_names import (
    EXECUTOR_TEMPLATE,
    NEVER,
    executor_node_name,
    executor_pod_name,
    executor_pod_names,
    fnv32a,
    node_id,
    task_detail_id,
    task_node_name,
    workflow_name,
)
from kfadapter.localkfp.argo_spec import (
    ITERATION,
    dag_paths,
    dag_tasks,
    exit_hook_host,
    guess_parent,
    is_loop,
    task_key,
)

__all__ = [
    "EXECUTOR_TEMPLATE",
    "NEVER",
    "TaskRecord",
    "dag_paths",
    "dag_tasks",
    "executor_node_name",
    "executor_pod_name",
    "executor_pod_names",
    "exit_hook_host",
    "fnv32a",
    "guess_parent",
    "is_loop",
    "node_id",
    "task_details",
    "task_key",
    "task_node_name",
    "workflow_name",
]

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
            "task_id": task_detail_id(run_id, node.name),
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
            if p == inner and (match := ITERATION.fullmatch(k))
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
