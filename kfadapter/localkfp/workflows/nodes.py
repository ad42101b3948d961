"""A v1 run's Argo nodes, named as Argo names them, and KFP's task details built from them.

The runner (engine.py) keeps the nodes as Argo's controller would (`workflow/controller/
operator.go` `initializeNode`, `dag.go`, `steps.go`): a node's name is its parent's name and
its task (`<dag node>.<task>`, `<steps node>[<i>].<step>`, `<task>(<i>:<item>)` for an
expanded task, `<node>(<attempt>)` for a retry, `<workflow>.onExit` for the exit handler);
its display name is its name without its boundary's (the DAG or steps node it belongs to),
the workflow's own node and the exit handler's keeping their whole name; its id is
`<workflow>-<FNV-1a 32 of the name>` (the workflow's node: the workflow's name); a pod's
name is `<workflow>-<template>-<same number>` (POD_NAMES v2, `RetrievePodName` in KFP's
`common/util/workflow.go`). Every change is sent to the server as a `node` event.

KFP 2.17 reports every node of a V1 run as a task (`common/util/workflow.go`
`NodeStatuses`, `server/api_converter.go` `toModelTasks`, `toApiPipelineTaskDetail`): sorted
by node id, with the node's display name, phase (`model.RuntimeState.ToV2`: Pending, Running,
Succeeded, Skipped, Failed, Error -> FAILED; Omitted has no v2 state), start and finish
times (Go's zero time while running) and its children's node ids; no pod name, error,
inputs or outputs. `task_details` does that, with no I/O.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from kfadapter.argo_workflows import fnv32a, pod_name  # noqa: F401 (tests read nodes.fnv32a)
from kfadapter.localkfp import execution_protocol as protocol
from kfadapter.localkfp.argo_names import NEVER, generated_name, node_id
from kfadapter.localkfp.attempts import TaskResult, TaskResults

RUNNING, SUCCEEDED, FAILED, ERROR, SKIPPED, OMITTED = (
    "Running",
    "Succeeded",
    "Failed",
    "Error",
    "Skipped",
    "Omitted",
)
FINAL_PHASES = {SUCCEEDED, FAILED, ERROR, SKIPPED, OMITTED}
POD, DAG, STEPS, STEP_GROUP, TASK_GROUP, RETRY, SKIPPED_NODE = (
    "Pod",
    "DAG",
    "Steps",
    "StepGroup",
    "TaskGroup",
    "Retry",
    "Skipped",
)
_V2_STATE = {
    "Pending": "PENDING",
    RUNNING: "RUNNING",
    SUCCEEDED: "SUCCEEDED",
    SKIPPED: "SKIPPED",
    FAILED: "FAILED",
    ERROR: "FAILED",
}


def kfp_state(phase: str) -> str | None:
    """An Argo phase as KFP's task details give it (`model.RuntimeState.ToV2`); None for
    Omitted, which has no v2 state."""
    return _V2_STATE.get(phase)


def workflow_name(workflow: Mapping[str, Any], run_id: str) -> str:
    """The name Kubernetes gives the run's workflow: `metadata.generateName` and 5
    characters (KFP's `GetExecutionSpec` keeps a workflow's name as its generateName)."""
    metadata = workflow.get("metadata") or {}
    prefix = metadata.get("generateName") or f"{metadata.get('name') or 'workflow'}-"
    return generated_name(str(prefix), run_id)


@dataclass
class Node:
    """One Argo node as the runner keeps it."""

    name: str
    display_name: str
    type: str
    template: str
    phase: str
    start: str  # RFC 3339
    end: str | None = None
    children: list[str] = field(default_factory=list)  # node ids
    message: str = ""

    def event(self) -> dict[str, Any]:
        """The node as a `node` event carries it."""
        return asdict(self)


class NodeTree:
    """The nodes of one run; every change is emitted (thread-safe).

    Each ended node is recorded in `results` (its name as the path; a pod's outputs), and
    a retried run starts from the `previous` attempt's: as KFP retries a workflow
    (`common/util/workflow.go` GenerateRetryExecution), nodes that are not pods keep their
    start (and their end when they end as before), and the runner carries succeeded pods
    forward (`carried`) instead of running them.
    """

    def __init__(
        self,
        workflow: str,
        emit: Any,
        results: TaskResults | None = None,
        previous: Mapping[str, TaskResult] | None = None,
    ) -> None:
        self.workflow = workflow
        self._emit = emit  # worker.StatusWriter-like: emit(event, **fields)
        self._results = results
        self._previous: Mapping[str, TaskResult] = previous or {}
        self._lock = threading.Lock()
        self._nodes: dict[str, Node] = {}

    def id_of(self, name: str) -> str:
        return node_id(self.workflow, name)

    def previous(self, name: str) -> TaskResult | None:
        """How the previous attempt ended this node, if it did."""
        return self._previous.get(name)

    def carried(self, name: str, node_type: str, template: str, boundary: str | None) -> Node:
        """A node the previous attempt ended, as it ended then (recorded again)."""
        earlier = self._previous[name]
        node = Node(
            name=name,
            display_name=_display_name(name, boundary),
            type=node_type,
            template=template,
            phase=earlier.state,
            start=earlier.start,
            end=earlier.end,
        )
        with self._lock:
            self._nodes[name] = node
            self._send(node)
        self._record(node, earlier.outputs, earlier.inputs)
        return node

    def start(
        self,
        name: str,
        node_type: str,
        template: str,
        boundary: str | None,
        phase: str = RUNNING,
        message: str = "",
    ) -> Node:
        """A new node (its display name from its boundary), emitted."""
        now = protocol.to_rfc3339(protocol.utc_now())
        earlier = self._previous.get(name)
        node = Node(
            name=name,
            display_name=_display_name(name, boundary),
            type=node_type,
            template=template,
            phase=phase,
            start=earlier.start if earlier is not None and node_type != POD else now,
            end=now if phase in FINAL_PHASES else None,
            message=message,
        )
        with self._lock:
            self._nodes[name] = node
            self._send(node)
        if phase in FINAL_PHASES:
            self._record(node, {})
        return node

    def finish(
        self,
        name: str,
        phase: str,
        message: str = "",
        outputs: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
    ) -> None:
        """End a node with its phase (a pod with its outputs and inputs), emitted and
        recorded."""
        earlier = self._previous.get(name)
        with self._lock:
            node = self._nodes[name]
            node.phase = phase
            node.end = protocol.to_rfc3339(protocol.utc_now())
            if earlier is not None and node.type != POD and earlier.state == phase:
                node.end = earlier.end
            if message:
                node.message = message
            self._send(node)
        self._record(node, outputs or {}, inputs or {})

    def _record(
        self, node: Node, outputs: dict[str, Any], inputs: dict[str, Any] | None = None
    ) -> None:
        if self._results is not None and node.end is not None:
            pod = pod_name(self.workflow, node.name, node.template) if node.type == POD else ""
            error = (node.message or None) if node.phase in (FAILED, ERROR) else None
            self._results.record(
                TaskResult(
                    node.name, node.phase, node.start, node.end, pod, outputs, inputs or {}, error
                )
            )

    def add_child(self, parent: str, child: str) -> None:
        """Argo's `addChildNode`: the child's id under the parent, emitted."""
        with self._lock:
            node = self._nodes.get(parent)
            child_id = node_id(self.workflow, child)
            if node is None or child_id in node.children:
                return
            node.children.append(child_id)
            self._send(node)

    def phase(self, name: str) -> str | None:
        with self._lock:
            node = self._nodes.get(name)
            return node.phase if node else None

    def get(self, name: str) -> Node | None:
        with self._lock:
            return self._nodes.get(name)

    def _send(self, node: Node) -> None:
        self._emit.emit(
            protocol.NODE, node=node.event(), time=protocol.to_event_time(protocol.utc_now())
        )


def _display_name(name: str, boundary: str | None) -> str:
    """Argo's `initializeNode`: the name without the boundary node's name and the `.` or
    `[i].` after it; the whole name without a boundary."""
    if boundary is None or not name.startswith(boundary):
        return name
    rest = name[len(boundary) :]
    if rest.startswith("."):
        return rest[1:]
    if rest.startswith("["):
        closing = rest.find("].")
        if closing != -1 and rest[1:closing].isdigit():
            return rest[closing + 2 :]
    return rest


def task_details(
    run_id: str,
    workflow: str,
    nodes: Iterable[Mapping[str, Any]],
    *,
    created: str,
) -> list[dict[str, Any]]:
    """KFP's V2beta1PipelineTaskDetail JSON of a V1 run's Argo nodes, by node id."""
    entries = []
    for node in nodes:
        name = str(node["name"])
        state = _V2_STATE.get(str(node.get("phase")))
        final = node.get("phase") in FINAL_PHASES
        detail: dict[str, Any] = {
            "run_id": run_id,
            "task_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"kfp-run:{run_id}/{name}")),
            "display_name": node.get("display_name") or name,
            "create_time": created,
            "start_time": node.get("start") or created,
            "end_time": node.get("end") if final and node.get("end") else NEVER,
        }
        if state is not None:  # Omitted: RUNTIME_STATE_UNSPECIFIED, left out
            detail["state"] = state
        if node.get("children"):
            detail["child_tasks"] = [{"pod_name": child} for child in node["children"]]
        entries.append((node_id(workflow, name), detail))
    return [detail for _, detail in sorted(entries, key=lambda entry: entry[0])]


def pod_names(workflow: str, nodes: Iterable[Mapping[str, Any]]) -> set[str]:
    """The pods of a run's pod nodes."""
    return {
        pod_name(workflow, str(node["name"]), str(node.get("template") or ""))
        for node in nodes
        if node.get("type") == POD
    }
