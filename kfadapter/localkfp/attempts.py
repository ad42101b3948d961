"""A run's attempts: what each ended task left, so that a retry carries it forward.

KFP retries a run by re-submitting its Argo workflow with the nodes that Succeeded or were
Skipped kept as they were, and the failed ones dropped to run again
(`backend/src/common/util/workflow.go` GenerateRetryExecution, called by
`resource/resource_manager.go` RetryRun). Here the worker appends one JSON line per ended
task to RUN_DIR/task_results.jsonl: its path in the DAG (the enclosing DAG task keys and its
own, joined by ``.``, loop iterations included: ``for-loop-1.iteration-0.train``), its state,
its times, its pod name and, for a component task, its output parameters and artifacts, the
arguments it was called with and, when it failed, its error (read by run_outputs.py). On
retry the executor keeps that file as previous_task_results.jsonl and hands it to the new
worker (see `carry_forward`); the orchestrator decides what to skip.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

TASK_RESULTS = "task_results.jsonl"
"""The results of the run's current (or last) attempt, in its run directory."""

PREVIOUS_TASK_RESULTS = "previous_task_results.jsonl"
"""The results a retried attempt starts from, in its run directory."""


@dataclass(frozen=True)
class TaskResult:
    """How one task of an attempt ended."""

    path: str  # "train", "for-loop-1.iteration-0.train"
    state: str  # SUCCEEDED, FAILED or SKIPPED
    start: str  # event time (ISO 8601 UTC)
    end: str
    pod_name: str
    outputs: dict[str, Any] = field(default_factory=dict)  # see encode_outputs
    inputs: dict[str, Any] = field(default_factory=dict)  # its arguments, as encode_outputs
    error: str | None = None  # why it failed


class TaskResults:
    """Appends each ended task's result to a JSON-lines file; safe from several threads."""

    def __init__(self, file: Path) -> None:
        self._file = file
        self._lock = threading.Lock()

    def record(self, result: TaskResult) -> None:
        """Add one task's result (flushed at once: a killed worker keeps what ended)."""
        line = json.dumps(asdict(result), default=str) + "\n"
        with self._lock, self._file.open("a", encoding="utf-8") as file:
            file.write(line)


def load(file: Path | None) -> dict[str, TaskResult]:
    """Task path -> its last recorded result; a line cut short by a kill is ignored."""
    results: dict[str, TaskResult] = {}
    if file is None or not file.is_file():
        return results
    for line in file.read_text(encoding="utf-8").splitlines():
        try:
            result = TaskResult(**json.loads(line))
        except (ValueError, TypeError):
            logger.warning("ignoring an unreadable task result in %s", file)
            continue
        results[result.path] = result
    return results


def carry_forward(run_directory: Path, retry: bool) -> Path | None:
    """Before an attempt: the results file it starts from (a retry), else None.

    The previous attempts' results are kept, the last attempt's appended after them, so a
    task that never ended in the last attempt (a terminated run) keeps its earlier result.
    A new run starts with neither file.
    """
    current = run_directory / TASK_RESULTS
    previous = run_directory / PREVIOUS_TASK_RESULTS
    if not retry:
        current.unlink(missing_ok=True)
        previous.unlink(missing_ok=True)
        return None
    chunks = [_text(previous), _text(current)]
    previous.write_text("".join(chunk for chunk in chunks if chunk), encoding="utf-8")
    current.unlink(missing_ok=True)
    return previous


def _text(file: Path) -> str:
    """A file's text ending with a newline ('' when absent or empty)."""
    text = file.read_text(encoding="utf-8") if file.is_file() else ""
    return text if not text or text.endswith("\n") else text + "\n"


def encode_outputs(outputs: dict[str, Any]) -> dict[str, Any]:
    """A component task's outputs as JSON: parameters as they are, artifacts as KFP's
    runtime artifact fields (type, uri, name, metadata)."""
    from kfp import dsl

    parameters: dict[str, Any] = {}
    artifacts: dict[str, dict[str, Any]] = {}
    for name, value in outputs.items():
        if isinstance(value, dsl.Artifact):
            artifacts[name] = {"list": False, "items": [_artifact(value)]}
        elif isinstance(value, list) and value and all(isinstance(v, dsl.Artifact) for v in value):
            artifacts[name] = {"list": True, "items": [_artifact(v) for v in value]}
        else:
            parameters[name] = value
    return {"parameters": parameters, "artifacts": artifacts}


def decode_outputs(encoded: dict[str, Any]) -> dict[str, Any]:
    """The outputs `encode_outputs` wrote, artifacts as kfp's artifact classes again."""
    from kfp.dsl import executor

    outputs: dict[str, Any] = dict(encoded.get("parameters") or {})
    for name, artifact in (encoded.get("artifacts") or {}).items():
        items = [executor.create_artifact_instance(item) for item in artifact["items"]]
        outputs[name] = items if artifact["list"] else items[0]
    return outputs


def _artifact(artifact: Any) -> dict[str, Any]:
    return {
        "type": {"schemaTitle": artifact.schema_title},
        "uri": artifact.uri,
        "name": artifact.name,
        "metadata": dict(artifact.metadata or {}),
    }
