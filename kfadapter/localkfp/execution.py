"""The seam between the run service and what executes runs.

The run service hands runs to an `Executor` and receives their progress as `RunUpdate`s.
`RunExecutor` (executor.py) runs them with kfp.local in child processes; tests put a
stand-in here that keeps runs where the test wants them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class RunUpdate:
    """A run's state and task details at one moment, handed to the service's `on_update`."""

    run_id: str
    state: str  # V2beta1RuntimeState name: PENDING, RUNNING, SUCCEEDED, FAILED, CANCELING, ...
    task_details: list[dict]  # V2beta1PipelineTaskDetail JSON dicts
    error: str | None  # message for a FAILED run
    finished_at: datetime | None  # UTC, when state is final
    started_at: datetime | None  # UTC, when the run left PENDING


class Executor(Protocol):
    """What executes runs, as the run service uses it."""

    def submit(self, run_id: str, pipeline_spec: dict, parameters: dict[str, Any]) -> None:
        """Queue the run of an IR pipeline spec; never blocks on its execution."""
        ...

    def terminate(self, run_id: str) -> bool:
        """Stop the run (a CANCELED update follows); False when it is not active here."""
        ...

    def log_path(self, run_id: str, node_id: str) -> Path | None:
        """The file holding a task's log, if there is one."""
        ...

    def shutdown(self) -> None:
        """Stop every active run (they end FAILED); used when the server stops."""
        ...


# Builds the executor: (data dir, max concurrent runs, where updates go) -> Executor.
ExecutorFactory = Callable[[Path, int, Callable[[RunUpdate], None]], Executor]
