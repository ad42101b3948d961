"""The child process that executes one run: its pipeline spec under kfp.local.

Usage: ``python -m kfadapter.localkfp.worker SPEC.json PARAMS.json RUN_DIR --status-fd N
[--parent-pid PID]``

It runs the pipeline with ``kfp.local`` and ``SubprocessRunner(use_venv=False)``, hooks into
kfp.local's orchestration to record each task's start, end, state and output (one log file
per task under RUN_DIR/logs), and reports progress to the parent as JSON lines on the file
descriptor N (see `execution_protocol`). The executor starts it in its own session, so
killing its process group also kills every component process. With ``--parent-pid`` it
kills that group itself when the server dies without stopping it (see `watch_parent`).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from kfadapter.localkfp import execution_protocol as protocol

_TAIL_LINES = 30
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


class TaskTracker:
    """Follows the tasks kfp.local executes: times, state, and each task's own log file."""

    def __init__(self, run_directory: Path, status: StatusWriter) -> None:
        self._run_directory = run_directory
        self._status = status
        self._local = threading.local()
        self._lock = threading.Lock()
        self._pod_names: set[str] = set()
        self.first_failure: str | None = None

    def install(self) -> None:
        """Hook into kfp.local: wrap task execution and replace its subprocess runner."""
        from kfp.local import subprocess_task_handler
        from kfp.local.orchestrator import task_executor

        task_executor.execute_single_task = self._traced(task_executor.execute_single_task)
        subprocess_task_handler.run_local_subprocess = self.run_local_subprocess

    def _unique_pod_name(self, task_name: str) -> str:
        base = protocol.pod_name_for(task_name)
        with self._lock:
            name, number = base, 1
            while name in self._pod_names:
                number += 1
                name = f"{base}-{number}"
            self._pod_names.add(name)
        return name

    def _traced(self, execute: Callable[..., Any]) -> Callable[..., Any]:
        """`execute_single_task` reporting the task's start and end around the real call."""

        def traced_execute_single_task(*args: Any, **kwargs: Any) -> Any:
            from kfp.local import status as kfp_status

            task_name = kwargs.get("task_name", args[0] if args else "task")
            task_spec = kwargs.get("task_spec")
            display_name = task_name
            if task_spec is not None and task_spec.task_info.name:
                display_name = task_spec.task_info.name
            task_id = str(uuid.uuid4())
            pod_name = self._unique_pod_name(task_name)
            log_file = protocol.task_log_file(self._run_directory, pod_name)
            log_file.parent.mkdir(parents=True, exist_ok=True)
            self._status.emit(
                protocol.TASK_STARTED,
                task_id=task_id,
                pod_name=pod_name,
                display_name=display_name,
                time=protocol.to_event_time(protocol.utc_now()),
            )
            self._local.tail = collections.deque(maxlen=_TAIL_LINES)
            self._local.return_code = None
            error: str | None = None
            state = "FAILED"
            try:
                with log_file.open("a", encoding="utf-8") as log:
                    self._local.log = log
                    outputs, task_status = execute(*args, **kwargs)
                if task_status == kfp_status.Status.SUCCESS:
                    state = "SUCCEEDED"
                else:
                    error = self._error_message()
                return outputs, task_status
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                raise
            finally:
                self._local.log = None
                if state == "FAILED":
                    with self._lock:
                        if self.first_failure is None:
                            self.first_failure = f"task {display_name!r} failed: {error}"
                self._status.emit(
                    protocol.TASK_FINISHED,
                    task_id=task_id,
                    state=state,
                    error=error,
                    time=protocol.to_event_time(protocol.utc_now()),
                )

        return traced_execute_single_task

    def _error_message(self) -> str:
        """The failed component's error: the last line it printed (its exception)."""
        tail = [line.strip() for line in getattr(self._local, "tail", ()) if line.strip()]
        if tail:
            return tail[-1]
        code = getattr(self._local, "return_code", None)
        return f"the component exited with code {code}" if code is not None else "task failed"

    def run_local_subprocess(
        self, full_command: list[str], env_vars: dict[str, str] | None = None
    ) -> int:
        """Replacement for kfp.local's runner: the component's output goes to its log file."""
        env = {**os.environ, **(env_vars or {})}
        log: TextIO = getattr(self._local, "log", None) or sys.stdout
        tail = getattr(self._local, "tail", None)
        with subprocess.Popen(
            full_command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            bufsize=1,
            env=env,
        ) as process:
            assert process.stdout is not None
            for line in process.stdout:
                log.write(line)
                log.flush()
                if tail is not None:
                    tail.append(line)
            return_code = process.wait()
        self._local.return_code = return_code
        return return_code


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
    spec: dict[str, Any], parameters: dict[str, Any], run_directory: Path, status: StatusWriter
) -> None:
    """Execute the pipeline and report every task and the run's end on `status`."""
    from kfp import components, local

    tracker = TaskTracker(run_directory, status)
    tracker.install()
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
        error = tracker.first_failure or f"{type(exc).__name__}: {exc}"
        print(f"run failed: {error}", file=sys.stderr)
        status.emit(
            protocol.RUN_FINISHED,
            state="FAILED",
            error=error,
            time=protocol.to_event_time(protocol.utc_now()),
        )
        return
    status.emit(
        protocol.RUN_FINISHED,
        state="SUCCEEDED",
        error=None,
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


def main(argv: list[str] | None = None) -> int:
    """Entry point of the run process."""
    parser = argparse.ArgumentParser(prog="python -m kfadapter.localkfp.worker")
    parser.add_argument("spec", type=Path, help="pipeline spec (JSON)")
    parser.add_argument("parameters", type=Path, help="runtime parameters (JSON object)")
    parser.add_argument("run_dir", type=Path, help="directory for outputs and task logs")
    parser.add_argument("--status-fd", type=int, required=True, help="fd for JSON-line events")
    parser.add_argument(
        "--parent-pid", type=int, default=None, help="stop the run when this process is gone"
    )
    args = parser.parse_args(argv)
    if args.parent_pid is not None:
        watch_parent(args.parent_pid)

    # Components start `python3 -m pip ...` and look up `pip`: the interpreter that has kfp
    # (ours) must come first on PATH even when the venv is not activated.
    bin_dir = os.path.dirname(sys.executable)
    os.environ["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])
    os.environ["PYTHONUNBUFFERED"] = "1"

    status = StatusWriter(os.fdopen(args.status_fd, "wb", buffering=0, closefd=False))
    spec = json.loads(args.spec.read_text(encoding="utf-8"))
    parameters = json.loads(args.parameters.read_text(encoding="utf-8"))
    args.run_dir.mkdir(parents=True, exist_ok=True)
    run_pipeline(spec, parameters, args.run_dir, status)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
