"""A run's task reporting and the types the scheduler and task execution share: the task
states, `Outcome` (how a task or DAG ended), `TaskReporter` (pod names, task_started and
task_finished events, recorded results), `Scope` (where a DAG runs) and `TaskCall` (a component
task ready to execute)."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from kfp.local import io
from kfp.pipeline_spec import pipeline_spec_pb2

from kfadapter.localkfp import attempts
from kfadapter.localkfp import execution_protocol as protocol
from kfadapter.localkfp.attempts import TaskResult, TaskResults

SUCCEEDED, FAILED, SKIPPED = "SUCCEEDED", "FAILED", "SKIPPED"
_ALL_UPSTREAM_COMPLETED = (
    pipeline_spec_pb2.PipelineTaskSpec.TriggerPolicy.TriggerStrategy.ALL_UPSTREAM_TASKS_COMPLETED
)

TaskSpec = pipeline_spec_pb2.PipelineTaskSpec
ComponentSpec = pipeline_spec_pb2.ComponentSpec
ExecutorSpec = pipeline_spec_pb2.PipelineDeploymentConfig.ExecutorSpec


class Emitter(Protocol):
    """Where task events go (worker.StatusWriter)."""

    def emit(self, event: str, **fields: Any) -> None:
        """Send one event."""
        ...


@dataclass
class Outcome:
    """How a task or DAG ended, and its outputs."""

    state: str
    outputs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


class TaskReporter:
    """Names tasks (unique pod names), reports their start and end, records their results,
    keeps the first failure."""

    def __init__(
        self,
        run_directory: Path,
        status: Emitter,
        results: TaskResults | None = None,
        reserved_pod_names: set[str] | None = None,
    ) -> None:
        self._run_directory = run_directory
        self._status = status
        self._results = results
        self._lock = threading.Lock()
        self._pod_names: set[str] = set()
        self._reserved = set(reserved_pod_names or ())  # the previous attempt's pod names
        self._started: dict[str, tuple[str, str, str]] = {}  # task id -> path, start, pod
        self.first_failure: str | None = None

    def log_file(self, pod_name: str) -> Path:
        """The task's log file (its directory created)."""
        path = protocol.task_log_file(self._run_directory, pod_name)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def started(
        self,
        display_name: str,
        task_name: str,
        parent: str,
        kind: str,
        *,
        previous: TaskResult | None = None,
        **extra: Any,
    ) -> tuple[str, str]:
        """Report a task's start (at its previous start and under its previous pod name
        when it had one); returns its (task id, pod name)."""
        base = protocol.pod_name_for(task_name)
        with self._lock:
            if previous is not None and previous.pod_name not in self._pod_names:
                pod_name = previous.pod_name
            else:
                pod_name, number = base, 1
                while pod_name in self._pod_names or pod_name in self._reserved:
                    number += 1
                    pod_name = f"{base}-{number}"
            self._pod_names.add(pod_name)
        task_id = str(uuid.uuid4())
        start = protocol.to_event_time(protocol.utc_now())
        if previous is not None and kind == "dag":  # Argo keeps a DAG node's start
            start = previous.start
        path = f"{parent}.{task_name}" if parent else task_name
        with self._lock:
            self._started[task_id] = (path, start, pod_name)
        self._status.emit(
            protocol.TASK_STARTED,
            task_id=task_id,
            pod_name=pod_name,
            display_name=display_name,
            task_name=task_name,
            parent=parent,
            kind=kind,
            time=start,
            **extra,
        )
        return task_id, pod_name

    def carried(
        self, display_name: str, task_name: str, parent: str, kind: str, previous: TaskResult
    ) -> Outcome:
        """Report a task the previous attempt ended (SUCCEEDED or SKIPPED) as it ended then,
        without executing it; its outputs as they were."""
        outputs = attempts.decode_outputs(previous.outputs) if kind != "dag" else {}
        outcome = Outcome(previous.state, outputs)
        task_id = str(uuid.uuid4())
        path = f"{parent}.{task_name}" if parent else task_name
        with self._lock:
            self._pod_names.add(previous.pod_name)
            self._started[task_id] = (path, previous.start, previous.pod_name)
        self._status.emit(
            protocol.TASK_STARTED,
            task_id=task_id,
            pod_name=previous.pod_name,
            display_name=display_name,
            task_name=task_name,
            parent=parent,
            kind=kind,
            time=previous.start,
        )
        self._finish(task_id, kind, outcome, previous.end, previous.outputs, previous.inputs)
        return outcome

    def finished(
        self,
        task_id: str,
        display_name: str,
        kind: str,
        outcome: Outcome,
        previous: TaskResult | None = None,
        inputs: dict[str, Any] | None = None,
    ) -> None:
        """Report a task's end; a failed container task's error becomes the run's if first.
        A DAG that succeeded again, as before, keeps its previous end. `inputs`: a component
        task's arguments, recorded with its result."""
        if outcome.state == FAILED and kind != "dag":
            with self._lock:
                if self.first_failure is None:
                    self.first_failure = f"task {display_name!r} failed: {outcome.error}"
        end = protocol.to_event_time(protocol.utc_now())
        if previous is not None and kind == "dag" and previous.state == outcome.state:
            end = previous.end
        encoded = (
            attempts.encode_outputs(outcome.outputs)
            if kind != "dag" and outcome.state == SUCCEEDED
            else {}
        )
        self._finish(task_id, kind, outcome, end, encoded, attempts.encode_outputs(inputs or {}))

    def _finish(
        self,
        task_id: str,
        kind: str,
        outcome: Outcome,
        end: str,
        outputs: dict[str, Any],
        inputs: dict[str, Any] | None = None,
    ) -> None:
        """Emit task_finished and record the task's result."""
        self._status.emit(
            protocol.TASK_FINISHED,
            task_id=task_id,
            state=outcome.state,
            error=outcome.error,
            time=end,
        )
        with self._lock:
            path, start, pod_name = self._started.pop(task_id)
        if self._results is not None and outcome.state in (SUCCEEDED, FAILED, SKIPPED):
            self._results.record(
                TaskResult(
                    path, outcome.state, start, end, pod_name, outputs, inputs or {}, outcome.error
                )
            )


@dataclass(frozen=True)
class Scope:
    """Where a DAG runs: its path of task names, its resource name, its IO store."""

    path: str  # "" for the root, "for-loop-2.iteration-1" inside a loop's second iteration
    resource_name: str  # kfp.local's pipeline resource name (placeholders, artifact dirs)
    store: io.IOStore

    def child_path(self, task_name: str) -> str:
        """The path of a DAG task's own scope."""
        return f"{self.path}.{task_name}" if self.path else task_name


@dataclass(frozen=True)
class TaskCall:
    """One component or importer task ready to execute: its spec and resolved arguments."""

    name: str  # the task's key in its DAG
    task: TaskSpec
    component: ComponentSpec
    executor: ExecutorSpec
    arguments: dict[str, Any]
    scope: Scope


def _failure(exc: Exception) -> Outcome:
    """A failed outcome whose error names the exception."""
    return Outcome(FAILED, error=f"{type(exc).__name__}: {exc}")
