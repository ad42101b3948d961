"""What the executor knows of one run: its state, its tasks as the worker reported them.

`RunProgress` turns the worker's events (execution_protocol.py) into KFP's task details
(V2beta1PipelineTaskDetail JSON) and decides how a run ended. It does no I/O but for
reading the tail of the worker's log to explain an unexpected exit; the executor calls
it under its own lock.
"""

from __future__ import annotations

import collections
import copy
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

from kfadapter.localkfp import execution_protocol as protocol
from kfadapter.localkfp.execution import RunUpdate
from kfadapter.localkfp.states import FINAL_STATES

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
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)  # task_id -> detail
    downstream: dict[str, set[str]] = field(default_factory=dict)  # task name -> dependents
    process: subprocess.Popen[bytes] | None = None
    thread: threading.Thread | None = None
    outcome: tuple[str, str | None] | None = None  # (state, error) the worker reported
    stop_reason: str | None = None  # "terminate" or "shutdown"
    stop_requested_at: float | None = None  # time.monotonic()
    killed: bool = False

    @classmethod
    def of(
        cls, run_id: str, pipeline_spec: dict[str, Any], parameters: dict[str, Any], data_dir: Path
    ) -> RunProgress:
        """A run just submitted, PENDING, its directory under the data dir."""
        return cls(
            run_id=run_id,
            pipeline_spec=pipeline_spec,
            parameters=dict(parameters or {}),
            directory=protocol.run_dir(data_dir, run_id),
            downstream=_downstream_tasks(pipeline_spec),
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
            if event.get("kind") == "dag":
                return False  # DAG tasks (sub-DAGs, loops, conditions) are not listed (yet)
            task_id = str(event.get("task_id"))
            self.tasks[task_id] = {
                "run_id": self.run_id,
                "task_id": task_id,
                "display_name": event.get("display_name", ""),
                "pod_name": event.get("pod_name", ""),
                "create_time": stamp,
                "start_time": stamp,
                "state": "RUNNING",
                "state_history": [{"update_time": stamp, "state": "RUNNING"}],
            }
            return True
        if kind == protocol.TASK_FINISHED:
            task = self.tasks.get(str(event.get("task_id")))
            if task is None:
                return False
            _end_task(task, str(event.get("state", "FAILED")), stamp, event.get("error"))
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
        self.state, self.error, self.finished_at = state, error, now

    def task_details(self) -> list[dict[str, Any]]:
        """Copies of the task details, each with the started tasks that depend on it."""
        details = []
        for task in self.tasks.values():
            detail = copy.deepcopy(task)
            dependents = self.downstream.get(task["display_name"], set())
            children = [
                {"task_id": other["task_id"], "pod_name": other["pod_name"]}
                for other in self.tasks.values()
                if other["display_name"] in dependents
            ]
            if children:
                detail["child_tasks"] = children
            details.append(detail)
        return details

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
    """Mark a task ended with its final state (and error message)."""
    task["state"] = state
    task["end_time"] = stamp
    status: dict[str, Any] = {"update_time": stamp, "state": state}
    if error:
        task["error"] = {"message": error}
        status["error"] = {"message": error}
    task["state_history"].append(status)


def _downstream_tasks(spec: dict[str, Any]) -> dict[str, set[str]]:
    """Task name -> names of the tasks that depend on it, over every DAG of the spec."""
    dags = [spec.get("root", {})] + list((spec.get("components") or {}).values())
    downstream: dict[str, set[str]] = collections.defaultdict(set)
    for component in dags:
        tasks = (component.get("dag") or {}).get("tasks") or {}
        for name, task in tasks.items():
            task_name = (task.get("taskInfo") or {}).get("name") or name
            for upstream in task.get("dependentTasks") or []:
                upstream_task = tasks.get(upstream) or {}
                upstream_name = (upstream_task.get("taskInfo") or {}).get("name") or upstream
                downstream[upstream_name].add(task_name)
    return dict(downstream)


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
