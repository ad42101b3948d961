"""What the run worker (child process) and the run executor (server side) share.

The worker reports progress as JSON lines on a pipe, one event per line:

- ``{"event": "task_started", "task_id", "pod_name", "display_name", "time",
  "task_name", "parent", "kind"}``; the last three say where the task sits in the DAG
  (optional: readers must accept events without them):

  - ``kind``: ``"container"`` (a component), ``"importer"``, or ``"dag"`` (a nested
    pipeline, a condition branch, a ``ParallelFor`` loop, or one iteration of a loop);
  - ``task_name``: the task's key in its DAG in the pipeline spec (``add``,
    ``for-loop-2``, ``condition-1``); for a loop iteration ``iteration-<index>``, and the
    event also has ``"iteration": <index>``;
  - ``parent``: the path of the enclosing DAG task, the task names from the root joined by
    ``.``: ``""`` at the root, ``"for-loop-2"`` for an iteration of that loop,
    ``"for-loop-2.iteration-1"`` for a task inside its second iteration.

- ``{"event": "task_finished", "task_id", "state", "time", "error"}``
  (state SUCCEEDED or FAILED, or SKIPPED for a condition branch not taken, which is
  reported as started and finished at once; error is the task's error message or null)
- ``{"event": "run_finished", "state", "time", "error"}`` (state SUCCEEDED or FAILED)
- ``{"event": "node", "time", "node": {...}}``: a KFP v1 (Argo Workflow) run's Argo node as
  it now stands (``name``, ``display_name``, ``type``, ``template``, ``phase``, ``start``,
  ``end``, ``children``: node ids, ``message``); sent again on every change (see
  ``workflows.nodes``). A v1 run reports its nodes this way instead of tasks.

Times are RFC 3339 UTC strings. This module must stay cheap to import (no kfp).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

TASK_STARTED = "task_started"
KIND_CONTAINER, KIND_IMPORTER, KIND_DAG = "container", "importer", "dag"
TASK_FINISHED = "task_finished"
RUN_FINISHED = "run_finished"
NODE = "node"

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def to_rfc3339(moment: datetime) -> str:
    """RFC 3339 in UTC with whole seconds, as KFP shows times."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def to_event_time(moment: datetime) -> str:
    """Full-precision ISO 8601 UTC time for events between worker and executor."""
    return moment.astimezone(UTC).isoformat()


def from_event_time(text: str) -> datetime:
    """Inverse of `to_event_time`."""
    return datetime.fromisoformat(text).astimezone(UTC)


def is_safe_name(name: str) -> bool:
    """Whether a run id or node id can be used as one path component."""
    return bool(_SAFE_NAME.match(name)) and ".." not in name


def pod_name_for(task_name: str) -> str:
    """A DNS-label-like node name for a task name (lower case, dashes)."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", task_name.lower()).strip("-")
    return cleaned[:60] or "task"


def run_dir(data_dir: Path, run_id: str) -> Path:
    """Where everything of one run lives: DATA_DIR/runs/<run_id>."""
    return Path(data_dir) / "runs" / run_id


def task_log_file(run_directory: Path, pod_name: str) -> Path:
    """The file holding one task's output: <run dir>/logs/<pod_name>.log."""
    return run_directory / "logs" / f"{pod_name}.log"
