"""The seam between the run service and what executes runs.

The run service hands runs to an `Executor` and receives their progress as `RunUpdate`s.
`RunExecutor` (executor.py) runs them with kfp.local in child processes; tests put a
stand-in here that keeps runs where the test wants them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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


DEFAULT_MAX_PARALLEL_TASKS = 4
"""Container tasks of one run that execute at once, unless --max-parallel-tasks says."""


@dataclass(frozen=True)
class TaskOptions:
    """How a run's tasks execute: their environments, and how many at once."""

    env_cache: Path | None = None  # None: DATA_DIR/env-cache
    env_cache_size: int | None = None  # bytes; None: environments.DEFAULT_CACHE_SIZE
    image_packages: Mapping[str, Path] = field(default_factory=dict)  # image -> requirements
    max_parallel_tasks: int = DEFAULT_MAX_PARALLEL_TASKS

    def __post_init__(self) -> None:
        if self.max_parallel_tasks < 1:
            raise ValueError(
                f"max_parallel_tasks must be at least 1, got {self.max_parallel_tasks}"
            )
        if self.env_cache_size is not None and self.env_cache_size < 1:
            raise ValueError(f"env_cache_size must be positive, got {self.env_cache_size}")


class Executor(Protocol):
    """What executes runs, as the run service uses it."""

    def submit(
        self, run_id: str, pipeline_spec: dict, parameters: dict[str, Any], *, retry: bool = False
    ) -> None:
        """Queue the run of an IR pipeline spec; never blocks on its execution. A retry
        (`retry`) executes again under the same id, from what the previous attempt left."""
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
