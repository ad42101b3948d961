"""The child process that executes one run: its pipeline spec under kfp.local.

Usage: ``python -m kfadapter.localkfp.worker SPEC.json PARAMS.json RUN_DIR --status-fd N
--env-cache DIR --env-cache-size BYTES [--image-packages IMAGE=FILE ...]
--max-parallel-tasks N --task-cache DIR [--parent-pid PID] [--previous-attempt RESULTS]``

kfp checks the run's arguments against the pipeline; `orchestration.PipelineRunner` then
runs its tasks (independent ones at once, each in its environment from
`environments.TaskEnvironments`, one log file per task under RUN_DIR/logs; a task whose
cache key matches an earlier success on this server is taken from the task cache, kept by
kfp.local's `LocalCache` in DIR) and the worker
reports progress to the parent as JSON lines on the file descriptor N (see
`execution_protocol`). Each ended task's result goes to RUN_DIR/task_results.jsonl; with
``--previous-attempt`` (a retry) the tasks that file shows ended well are carried forward
(see `attempts`). The executor starts it in its own session, so
killing its process group also kills every component process. With ``--parent-pid`` it
kills that group itself when the server dies without stopping it (see `watch_parent`).

A KFP v1 run's SPEC.json is an Argo Workflow (its parameters' values resolved) and
PARAMS.json its values as strings: `workflows` runs it, and reports its Argo nodes (`node`
events) instead of tasks.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

from kfadapter.localkfp import execution_protocol as protocol
from kfadapter.localkfp.execution import TaskOptions

PARENT_CHECK_SECONDS = 0.5
"""How often the worker checks that the server that started it is still alive."""


class StatusWriter:
    """Writes progress events as JSON lines; safe to call from several threads."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def emit(self, event: str, **fields: Any) -> None:
        """Send one event to the parent."""
        line = json.dumps({"event": event, **fields}, default=str) + "\n"
        with self._lock:
            self._stream.write(line.encode("utf-8"))
            self._stream.flush()


def coerce_parameters(spec: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    """JSON numbers to the declared parameter types (5 for a float, 3.0 for an int)."""
    definitions = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    coerced = {}
    for name, value in parameters.items():
        kind = definitions.get(name, {}).get("parameterType")
        if kind == "NUMBER_DOUBLE" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif kind == "NUMBER_INTEGER" and isinstance(value, float) and value.is_integer():
            value = int(value)
        coerced[name] = value
    return coerced


def run_pipeline(
    spec: dict[str, Any],
    parameters: dict[str, Any],
    run_directory: Path,
    status: StatusWriter,
    options: TaskOptions,
    previous_attempt: Path | None = None,
    task_cache: Path | None = None,
) -> None:
    """Execute the pipeline and report every task and the run's end on `status`; a retry
    carries forward what `previous_attempt` (a task results file) shows ended well. An Argo
    Workflow (a KFP v1 pipeline) runs in `workflows` instead."""
    from kfadapter.localkfp import workflows

    if workflows.is_workflow(spec):
        _run_workflow(spec, parameters, run_directory, status, options, previous_attempt)
        return
    from kfp import components, local
    from kfp.local import pipeline_orchestrator
    from kfp.local.cache import LocalCache

    from kfadapter.localkfp import attempts
    from kfadapter.localkfp.environments import TaskEnvironments
    from kfadapter.localkfp.orchestration import SUCCEEDED, PipelineRunner, TaskReporter

    previous = attempts.load(previous_attempt)
    reporter = TaskReporter(
        run_directory,
        status,
        attempts.TaskResults(run_directory / attempts.TASK_RESULTS),
        {result.pod_name for result in previous.values()},
    )
    assert options.env_cache is not None and options.env_cache_size is not None
    environments = TaskEnvironments(
        options.env_cache, options.env_cache_size, image_packages=options.image_packages
    )

    def run_local_pipeline(pipeline_spec: Any, arguments: dict[str, Any]) -> dict[str, Any]:
        """Replaces kfp.local's orchestration once kfp has checked the arguments."""
        runner = PipelineRunner(
            pipeline_spec,
            run_directory / "outputs",
            reporter,
            environments,
            options.max_parallel_tasks,
            previous,
            LocalCache(str(task_cache)) if task_cache is not None else None,
        )
        outcome = runner.run(arguments)
        if outcome.state != SUCCEEDED:
            raise RuntimeError(reporter.first_failure or outcome.error or "the run failed")
        return outcome.outputs

    # kfp checks the arguments against the pipeline's inputs (names, types, required
    # ones) when the loaded pipeline is called, then hands it to kfp.local's entry point.
    pipeline_orchestrator.run_local_pipeline = run_local_pipeline
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(run_directory / "outputs"),
        workspace_root=str(run_directory / "workspace"),
        raise_on_error=True,
    )
    spec_file = run_directory / "pipeline.json"
    spec_file.write_text(json.dumps(spec), encoding="utf-8")
    try:
        pipeline = components.load_component_from_file(str(spec_file))
        pipeline(**coerce_parameters(spec, parameters))
    except Exception as exc:
        error = reporter.first_failure or f"{type(exc).__name__}: {exc}"
        print(f"run failed: {error}", file=sys.stderr)
        _run_finished(status, "FAILED", error)
        return
    _run_finished(status, "SUCCEEDED", None)


def _run_workflow(
    workflow: dict[str, Any],
    parameters: dict[str, Any],
    run_directory: Path,
    status: StatusWriter,
    options: TaskOptions,
    previous_attempt: Path | None,
) -> None:
    """A KFP v1 run: its Argo Workflow executed by `workflows` (nodes reported as it goes;
    a retry carries forward the pods that succeeded)."""
    from kfadapter.localkfp import workflows
    from kfadapter.localkfp.environments import TaskEnvironments

    assert options.env_cache is not None and options.env_cache_size is not None
    environments = TaskEnvironments(
        options.env_cache, options.env_cache_size, image_packages=options.image_packages
    )
    state, error = workflows.run_workflow(
        workflow,
        parameters,
        run_directory,
        status,
        environments,
        options.max_parallel_tasks,
        previous_attempt,
    )
    if error:
        print(f"run failed: {error}", file=sys.stderr)
    _run_finished(status, state, error)


def _run_finished(status: StatusWriter, state: str, error: str | None) -> None:
    """Report the run's end, now."""
    status.emit(
        protocol.RUN_FINISHED,
        state=state,
        error=error,
        time=protocol.to_event_time(protocol.utc_now()),
    )


def watch_parent(parent_pid: int) -> threading.Thread:
    """Kill this run's process group (the worker and its components) once the server is gone.

    The worker runs in its own session so that terminating a run kills exactly its
    processes; the flip side is that a server killed with SIGKILL (or crashing) would leave
    them running for good. Orphaned, the worker is re-parented: that is the signal.
    """

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_CHECK_SECONDS)
        print("the local KFP server that started this run is gone: stopping", file=sys.stderr)
        os.killpg(os.getpgrp(), signal.SIGKILL)

    thread = threading.Thread(target=watch, name="watch-server", daemon=True)
    thread.start()
    return thread


def _parser() -> argparse.ArgumentParser:
    """The worker's command line (see the module's usage)."""
    parser = argparse.ArgumentParser(prog="python -m kfadapter.localkfp.worker")
    parser.add_argument("spec", type=Path, help="pipeline spec (JSON)")
    parser.add_argument("parameters", type=Path, help="runtime parameters (JSON object)")
    parser.add_argument("run_dir", type=Path, help="directory for outputs and task logs")
    parser.add_argument("--status-fd", type=int, required=True, help="fd for JSON-line events")
    parser.add_argument(
        "--parent-pid", type=int, default=None, help="stop the run when this process is gone"
    )
    parser.add_argument("--env-cache", type=Path, required=True, help="task environments")
    parser.add_argument("--env-cache-size", type=int, required=True, help="its bound, bytes")
    parser.add_argument(
        "--image-packages",
        action="append",
        default=[],
        metavar="IMAGE=REQUIREMENTS_FILE",
        help="what an image holds (repeatable)",
    )
    parser.add_argument("--max-parallel-tasks", type=int, required=True, help="tasks at once")
    parser.add_argument(
        "--task-cache", type=Path, default=None, help="outputs of cached tasks (none: no cache)"
    )
    parser.add_argument(
        "--previous-attempt", type=Path, default=None, help="task results a retry starts from"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the run process."""
    args = _parser().parse_args(argv)
    from kfadapter.localkfp.environments import parse_image_packages

    options = TaskOptions(
        env_cache=args.env_cache,
        env_cache_size=args.env_cache_size,
        image_packages=parse_image_packages(args.image_packages),
        max_parallel_tasks=args.max_parallel_tasks,
    )
    if args.parent_pid is not None:
        watch_parent(args.parent_pid)

    os.environ["PYTHONUNBUFFERED"] = "1"

    status = StatusWriter(os.fdopen(args.status_fd, "wb", buffering=0, closefd=False))
    spec = json.loads(args.spec.read_text(encoding="utf-8"))
    parameters = json.loads(args.parameters.read_text(encoding="utf-8"))
    args.run_dir.mkdir(parents=True, exist_ok=True)
    run_pipeline(
        spec, parameters, args.run_dir, status, options, args.previous_attempt, args.task_cache
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
