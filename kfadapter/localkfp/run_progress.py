"""What the executor knows of one run: its state, its tasks as the worker reported them.

`RunProgress` turns the worker's events (execution_protocol.py) into KFP's task details
(V2beta1PipelineTaskDetail JSON, one entry per Argo node: see argo_nodes.py) and decides
how a run ended. Its only I/O: reading the tail of the worker's log to explain an
unexpected exit, and linking each task's log file under the name of the executor pod
that ran it on a cluster (logs/<pod>.log), the node id KFP serves logs by. The executor
calls it under its own lock.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from kfadapter.localkfp import argo_nodes
from kfadapter.localkfp import execution_protocol as protocol
from kfadapter.localkfp.execution import RunUpdate
from kfadapter.localkfp.states import FINAL_STATES
from kfadapter.localkfp.workflows import is_workflow
from kfadapter.localkfp.workflows import nodes as workflow_nodes

logger = logging.getLogger(__name__)

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(eq=False)
class RunProgress:
    """The executor's bookkeeping for one submitted run."""

    run_id: str
    pipeline_spec: dict[str, Any]
    parameters: dict[str, Any]
    directory: Path
    state: str = "PENDING"
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)  # task_id -> record
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)  # a v1 run's Argo nodes
    submitted_at: datetime = field(default_factory=protocol.utc_now)
    process: subprocess.Popen[bytes] | None = None
    thread: threading.Thread | None = None
    outcome: tuple[str, str | None] | None = None  # (state, error) the worker reported
    stop_reason: str | None = None  # "terminate" or "shutdown"
    stop_requested_at: float | None = None  # time.monotonic()
    killed: bool = False
    retry: bool = False  # an attempt after the first: it starts from the previous one

    @classmethod
    def of(
        cls,
        run_id: str,
        pipeline_spec: dict[str, Any],
        parameters: dict[str, Any],
        data_dir: Path,
        *,
        retry: bool = False,
    ) -> RunProgress:
        """A run just submitted, PENDING, its directory under the data dir."""
        return cls(
            run_id=run_id,
            pipeline_spec=pipeline_spec,
            parameters=dict(parameters or {}),
            directory=protocol.run_dir(data_dir, run_id),
            retry=retry,
        )

    def handle_event(self, line: bytes) -> bool:
        """Apply one line the worker wrote; whether the run's task details changed."""
        try:
            event = json.loads(line)
            kind = event["event"]
            moment = protocol.from_event_time(event["time"])
        except (ValueError, KeyError, TypeError):
            logger.warning("run %s: ignoring malformed event %r", self.run_id, line[:200])
            return False
        stamp = protocol.to_rfc3339(moment)
        if kind == protocol.TASK_STARTED:
            task_id = str(event.get("task_id"))
            display_name = str(event.get("display_name") or "")
            task_name = str(event.get("task_name") or "") or argo_nodes.task_key(
                self.pipeline_spec, display_name
            )
            self.tasks[task_id] = {
                "task_id": task_id,
                "task_name": task_name,
                "display_name": display_name,
                "parent": self._parent_of(task_name, event.get("parent")),
                "kind": str(event.get("kind") or "container"),
                "pod_name": str(event.get("pod_name") or ""),
                "start_time": stamp,
                "state": "RUNNING",
                "cached": bool(event.get("cached")),
            }
            self._link_log(self.tasks[task_id])
            return True
        if kind == protocol.TASK_FINISHED:
            task = self.tasks.get(str(event.get("task_id")))
            if task is None:
                return False
            _end_task(task, str(event.get("state", "FAILED")), stamp, event.get("error"))
            return True
        if kind == protocol.NODE:  # a v1 run's Argo node as it now stands
            node = event.get("node")
            if not isinstance(node, dict) or not isinstance(node.get("name"), str):
                return False
            self.nodes[node["name"]] = node
            return True
        if kind == protocol.RUN_FINISHED:
            self.outcome = (str(event.get("state", "FAILED")), event.get("error"))
        return False  # the outcome is published once the process has exited

    def finish(self, return_code: int | None, failure: str | None, now: datetime) -> None:
        """Decide the final state (and end every unfinished task with it)."""
        if failure is not None:
            state, error = "FAILED", failure
        elif self.outcome is not None and self.stop_reason != "shutdown":
            state, error = self.outcome
        elif self.stop_reason == "terminate":
            state, error = "CANCELED", None
        elif self.stop_reason == "shutdown":
            state, error = "FAILED", "the local KFP server stopped while the run was running"
        else:
            state, error = "FAILED", _describe_exit(return_code, self.directory)
        stamp = protocol.to_rfc3339(now)
        for task in self.tasks.values():
            if task["state"] not in FINAL_STATES:
                task_state = "CANCELED" if state == "CANCELED" else "FAILED"
                reason = "the run was terminated" if state == "CANCELED" else error
                _end_task(task, task_state, stamp, reason)
        for node in self.nodes.values():  # Argo ends the nodes of a stopped workflow Failed
            if node.get("phase") not in workflow_nodes.FINAL_PHASES:
                node["phase"], node["end"] = workflow_nodes.FAILED, stamp
        self.state, self.error, self.finished_at = state, error, now

    def task_details(self) -> list[dict[str, Any]]:
        """KFP's task details of the run: one entry per Argo node (see argo_nodes.py; a v1
        run's nodes as its worker reported them, see workflows/nodes.py)."""
        if is_workflow(self.pipeline_spec):
            return workflow_nodes.task_details(
                self.run_id,
                workflow_nodes.workflow_name(self.pipeline_spec, self.run_id),
                self.nodes.values(),
                created=protocol.to_rfc3339(self.submitted_at),
            )
        return argo_nodes.task_details(
            self.run_id,
            self.pipeline_spec,
            [_record(task) for task in self.tasks.values()],
            run_state=self.state,
            created=protocol.to_rfc3339(self.submitted_at),
            started=protocol.to_rfc3339(self.started_at) if self.started_at else None,
            finished=protocol.to_rfc3339(self.finished_at) if self.finished_at else None,
        )

    def _parent_of(self, task_name: str, reported: Any) -> tuple[str, ...]:
        """The DAG path of a task: as the worker reported it, else guessed from the spec."""
        if isinstance(reported, str):
            return tuple(part for part in re.split(r"[./]", reported) if part)
        placed = {
            (task["parent"], task["task_name"]): task["state"] in FINAL_STATES
            for task in self.tasks.values()
        }
        return argo_nodes.guess_parent(self.pipeline_spec, task_name, placed)

    def _link_log(self, task: dict[str, Any]) -> None:
        """logs/<executor pod>.log -> the task's log file, so logs are served by pod name."""
        if task["kind"] != "container" or not task["pod_name"] or task.get("cached"):
            return  # a cached task's executor pod does not run: it has no log
        workflow = argo_nodes.workflow_name(self.pipeline_spec, self.run_id)
        node = argo_nodes.executor_node_name(
            self.pipeline_spec, workflow, task["parent"], task["task_name"]
        )
        pod = argo_nodes.executor_pod_name(argo_nodes.node_id(workflow, node))
        link = protocol.task_log_file(self.directory, pod)
        target = protocol.task_log_file(self.directory, task["pod_name"])
        if not (protocol.is_safe_name(pod) and protocol.is_safe_name(task["pod_name"])):
            return
        try:
            link.parent.mkdir(parents=True, exist_ok=True)
            link.unlink(missing_ok=True)
            link.symlink_to(target.name)
        except OSError:
            logger.warning("run %s: could not link the log of %s", self.run_id, pod, exc_info=True)

    def update(self) -> RunUpdate:
        """The run as it stands, for the run service."""
        return RunUpdate(
            run_id=self.run_id,
            state=self.state,
            task_details=self.task_details(),
            error=self.error,
            finished_at=self.finished_at,
            started_at=self.started_at,
        )


def _end_task(task: dict[str, Any], state: str, stamp: str, error: str | None) -> None:
    """Mark a task ended with its final state (and error message, kept for the record:
    KFP's task details carry none)."""
    task["state"] = state
    task["end_time"] = stamp
    if error:
        task["error"] = error


def _record(task: dict[str, Any]) -> argo_nodes.TaskRecord:
    """A task as argo_nodes shapes it."""
    return argo_nodes.TaskRecord(
        task_name=task["task_name"],
        parent=task["parent"],
        kind=task["kind"],
        state=task["state"],
        start=task["start_time"],
        end=task.get("end_time"),
        cached=bool(task.get("cached")),
    )


def _describe_exit(return_code: int | None, directory: Path) -> str:
    """Why a worker ended without reporting an outcome, for the run's error message."""
    if return_code is None:
        reason = "the run's process ended without a result"
    elif return_code < 0:
        try:
            name = signal.Signals(-return_code).name
        except ValueError:
            name = f"signal {-return_code}"
        reason = f"the run's process was killed by {name} before the run finished"
    else:
        reason = f"the run's process exited with code {return_code} before the run finished"
    last_line = _last_line(directory / "worker.log")
    if return_code is not None and return_code > 0 and last_line:
        return f"{reason}: {last_line}"
    return reason


def _last_line(path: Path) -> str:
    """The last non-empty line of a text file (read from its end), or ''."""
    try:
        with path.open("rb") as file:
            file.seek(0, os.SEEK_END)
            size = file.tell()
            file.seek(max(0, size - 4096))
            tail = file.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    lines = [_ANSI_ESCAPE.sub("", line).strip() for line in tail.splitlines()]
    lines = [line for line in lines if line]
    return lines[-1] if lines else ""
