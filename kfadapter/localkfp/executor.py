"""Executes the embedded KFP server's runs: one child process per run, bounded concurrency.

Each run executes its pipeline spec in `python -m kfadapter.localkfp.worker` (its tasks with
the options of `TaskOptions`: task environments, tasks at once),
started in its own session (process group). The worker reports task progress as JSON lines on
a pipe; a thread per active run turns those into `RunUpdate`s, which one delivery thread hands
to `on_update` in order. Runs beyond `max_concurrent_runs` wait PENDING, first in first out.

Files of a run, under DATA_DIR/runs/<run_id>/: spec.json, parameters.json, worker.log (the
worker's own log), logs/<node_id>.log (each task's output), outputs/ (the pipeline
root), tasks.json (the final task details), task_results.jsonl (each ended task's state and
outputs: what a retry carries forward, see attempts.py).

A task's node id is its `pod_name` in the task details: the task's name in the pipeline spec
(e.g. ``check-equals``), with ``-2``, ``-3``... appended when a name runs again in the same run.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import queue
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kfadapter.localkfp import attempts
from kfadapter.localkfp import execution_protocol as protocol
from kfadapter.localkfp.execution import RunUpdate, TaskOptions
from kfadapter.localkfp.run_progress import RunProgress

logger = logging.getLogger(__name__)

TERMINATE_GRACE_SECONDS = 3.0
"""How long a terminated run's processes get after SIGTERM before SIGKILL."""

_POLL_SECONDS = 0.2


class RunExecutor:
    """Runs pipeline specs in child processes and reports their progress."""

    def __init__(
        self,
        data_dir: Path,
        max_concurrent_runs: int,
        on_update: Callable[[RunUpdate], None],
        task_options: TaskOptions | None = None,
    ) -> None:
        if max_concurrent_runs < 1:
            raise ValueError(f"max_concurrent_runs must be at least 1, got {max_concurrent_runs}")
        self._data_dir = Path(data_dir).resolve()
        self._max_concurrent_runs = max_concurrent_runs
        self._on_update = on_update
        self._task_arguments = _task_arguments(self._data_dir, task_options or TaskOptions())
        self._lock = threading.Lock()
        self._pending: collections.OrderedDict[str, RunProgress] = collections.OrderedDict()
        self._active: dict[str, RunProgress] = {}
        self._stopping = False
        self._updates: queue.Queue[RunUpdate | None] = queue.Queue()
        self._delivery = threading.Thread(
            target=self._deliver_updates, name="kfp-run-updates", daemon=True
        )
        self._delivery.start()

    # -- the interface the server uses -------------------------------------------------

    def submit(
        self, run_id: str, pipeline_spec: dict, parameters: dict[str, Any], *, retry: bool = False
    ) -> None:
        """Queue the run of an IR pipeline spec (no platform spec); it stays PENDING until a
        slot is free. Never blocks on execution. A retry's worker gets the previous
        attempt's task results, and the logs of the tasks it carries forward stay."""
        if not protocol.is_safe_name(run_id):
            raise ValueError(f"run id {run_id!r} is not usable as a directory name")
        run = RunProgress.of(run_id, pipeline_spec, parameters, self._data_dir, retry=retry)
        with self._lock:
            if self._stopping:
                raise RuntimeError("the run executor is shut down")
            if run_id in self._pending or run_id in self._active:
                raise ValueError(f"run {run_id} is already submitted")
            self._pending[run_id] = run
            self._publish(run)
            self._start_ready_runs()

    def terminate(self, run_id: str) -> bool:
        """Kill the run's process group; an update with CANCELED follows. False if not active."""
        with self._lock:
            run = self._pending.pop(run_id, None)
            if run is not None:
                run.state = "CANCELED"
                run.finished_at = protocol.utc_now()
                self._publish(run)
                return True
            run = self._active.get(run_id)
            if run is None:
                return False
            if run.stop_reason is None:
                run.stop_reason = "terminate"
                run.stop_requested_at = time.monotonic()
                if run.outcome is None:
                    run.state = "CANCELING"
                    self._publish(run)
                self._signal(run, signal.SIGTERM)
            return True

    def log_path(self, run_id: str, node_id: str) -> Path | None:
        """The file holding that task's log, if any (node_id: the task's pod_name or task_id)."""
        if not (protocol.is_safe_name(run_id) and protocol.is_safe_name(node_id)):
            return None
        directory = protocol.run_dir(self._data_dir, run_id)
        candidate = protocol.task_log_file(directory, node_id)
        if candidate.is_file():
            return candidate
        for task in self._known_tasks(run_id):
            if task.get("task_id") == node_id and task.get("pod_name"):
                candidate = protocol.task_log_file(directory, task["pod_name"])
                return candidate if candidate.is_file() else None
        return None

    def shutdown(self) -> None:
        """Kill every active run (used when the server stops); they end FAILED."""
        with self._lock:
            self._stopping = True
            now = protocol.utc_now()
            for run in self._pending.values():
                run.state = "FAILED"
                run.error = "the local KFP server stopped before the run started"
                run.finished_at = now
                self._publish(run)
            self._pending.clear()
            active = list(self._active.values())
            for run in active:
                if run.stop_reason is None:
                    run.stop_reason = "shutdown"
                    run.stop_requested_at = time.monotonic()
                    self._signal(run, signal.SIGTERM)
        for run in active:
            if run.thread is not None:
                run.thread.join(timeout=TERMINATE_GRACE_SECONDS + 5)
        self._updates.put(None)
        self._delivery.join(timeout=10)

    # -- scheduling ----------------------------------------------------------------------

    def _start_ready_runs(self) -> None:
        """Start queued runs while slots are free (caller holds the lock)."""
        while self._pending and len(self._active) < self._max_concurrent_runs:
            run_id, run = self._pending.popitem(last=False)
            self._active[run_id] = run
            run.thread = threading.Thread(
                target=self._execute, args=(run,), name=f"kfp-run-{run_id}", daemon=True
            )
            run.thread.start()

    def _execute(self, run: RunProgress) -> None:
        """The body of a run's thread: run it, and always end it in a final state."""
        try:
            self._run_process(run)
        except Exception as exc:
            logger.exception("executing run %s failed", run.run_id)
            if run.process is not None:
                _kill_group(run.process.pid, signal.SIGKILL)
                run.process.wait()
            self._finish(run, None, f"internal error while executing the run: {exc}")

    def _run_process(self, run: RunProgress) -> None:
        run.directory.mkdir(parents=True, exist_ok=True)
        if not run.retry:  # a new run's directory holds nothing of another attempt
            for stale in ("logs", "workspace"):
                shutil.rmtree(run.directory / stale, ignore_errors=True)
        (run.directory / "tasks.json").unlink(missing_ok=True)
        previous = attempts.carry_forward(run.directory, run.retry)
        spec_file = run.directory / "spec.json"
        parameters_file = run.directory / "parameters.json"
        spec_file.write_text(json.dumps(run.pipeline_spec), encoding="utf-8")
        parameters_file.write_text(json.dumps(run.parameters), encoding="utf-8")
        with self._lock:
            stopped_early = run.stop_reason is not None
        if stopped_early:
            self._finish(run, None, None)
            return

        read_fd, write_fd = os.pipe()
        try:
            with (run.directory / "worker.log").open("ab") as worker_log:
                process = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "kfadapter.localkfp.worker",
                        str(spec_file),
                        str(parameters_file),
                        str(run.directory),
                        "--status-fd",
                        str(write_fd),
                        "--parent-pid",
                        str(os.getpid()),
                        *self._task_arguments,
                        *(["--previous-attempt", str(previous)] if previous else []),
                    ],
                    pass_fds=(write_fd,),
                    stdin=subprocess.DEVNULL,
                    stdout=worker_log,
                    stderr=subprocess.STDOUT,
                    cwd=run.directory,
                    env=_child_environment(),
                    start_new_session=True,
                )
        except OSError as exc:
            os.close(read_fd)
            self._finish(run, None, f"could not start the run's process: {exc}")
            return
        finally:
            os.close(write_fd)

        with self._lock:
            run.process = process
            run.started_at = protocol.utc_now()
            if run.stop_reason is not None:
                self._signal(run, signal.SIGTERM)
            else:
                run.state = "RUNNING"
                self._publish(run)
        try:
            self._follow(run, read_fd)
        finally:
            os.close(read_fd)
        while True:
            try:
                process.wait(timeout=_POLL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                self._escalate(run)
        _kill_group(process.pid, signal.SIGKILL)  # leftovers of a worker that died
        self._finish(run, process.returncode, None)

    def _follow(self, run: RunProgress, read_fd: int) -> None:
        """Read the worker's events until it closes the pipe or exits."""
        assert run.process is not None
        buffer = b""
        while True:
            ready, _, _ = select.select([read_fd], [], [], _POLL_SECONDS)
            exited = not ready and run.process.poll() is not None
            if exited:
                # A descendant may still hold the pipe: take what is there, do not wait.
                os.set_blocking(read_fd, False)
            try:
                chunk = os.read(read_fd, 65536) if ready or exited else None
            except BlockingIOError:
                chunk = b""
            if chunk is not None:
                *lines, buffer = (buffer + chunk).split(b"\n")
                for line in lines:
                    self._handle_event(run, line)
                if not chunk or exited:
                    break
            self._escalate(run)

    def _handle_event(self, run: RunProgress, line: bytes) -> None:
        """Apply one worker event to the run and publish the change."""
        with self._lock:
            if run.handle_event(line):
                self._publish(run)

    def _escalate(self, run: RunProgress) -> None:
        """SIGKILL the group of a run that outlived its grace period after SIGTERM."""
        with self._lock:
            if (
                run.stop_requested_at is not None
                and not run.killed
                and time.monotonic() - run.stop_requested_at > TERMINATE_GRACE_SECONDS
            ):
                run.killed = True
                self._signal(run, signal.SIGKILL)

    def _finish(self, run: RunProgress, return_code: int | None, failure: str | None) -> None:
        """Decide the final state, publish it, free the slot and start the next run."""
        with self._lock:
            run.finish(return_code, failure, protocol.utc_now())
            details = run.task_details()
        _write_json(run.directory / "tasks.json", details)
        with self._lock:
            self._publish(run)
            self._active.pop(run.run_id, None)
            if not self._stopping:
                self._start_ready_runs()

    # -- updates ---------------------------------------------------------------------------

    def _publish(self, run: RunProgress) -> None:
        """Queue the run's current state for delivery (caller holds the lock)."""
        self._updates.put(run.update())

    def _deliver_updates(self) -> None:
        """The delivery thread: hand updates to `on_update`, in order, one at a time."""
        while True:
            update = self._updates.get()
            if update is None:
                return
            try:
                self._on_update(update)
            except Exception:
                logger.exception("on_update failed for run %s", update.run_id)

    # -- helpers ---------------------------------------------------------------------------

    def _signal(self, run: RunProgress, sig: signal.Signals) -> None:
        """Send a signal to the run's whole process group (caller holds the lock)."""
        if run.process is not None and run.process.returncode is None:
            _kill_group(run.process.pid, sig)

    def _known_tasks(self, run_id: str) -> list[dict]:
        """Task details of an active run, or those saved when the run ended."""
        with self._lock:
            run = self._active.get(run_id)
            if run is not None:
                return [dict(task) for task in run.tasks.values()]
        saved = protocol.run_dir(self._data_dir, run_id) / "tasks.json"
        try:
            tasks = json.loads(saved.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        return tasks if isinstance(tasks, list) else []


def _task_arguments(data_dir: Path, options: TaskOptions) -> list[str]:
    """The worker's options for its tasks, defaults filled in."""
    from kfadapter.localkfp.environments import DEFAULT_CACHE_SIZE

    env_cache = Path(options.env_cache or data_dir / "env-cache").resolve()
    size = options.env_cache_size or DEFAULT_CACHE_SIZE
    arguments = ["--env-cache", str(env_cache), "--env-cache-size", str(size)]
    for image, requirements in options.image_packages.items():
        arguments += ["--image-packages", f"{image}={Path(requirements).resolve()}"]
    task_cache = (data_dir / "task-cache").resolve()  # one per server, across runs
    return [
        *arguments,
        "--max-parallel-tasks",
        str(options.max_parallel_tasks),
        "--task-cache",
        str(task_cache),
    ]


def _child_environment() -> dict[str, str]:
    """The worker's environment: our interpreter's bin first on PATH, our package importable."""
    env = dict(os.environ)
    bin_dir = os.path.dirname(sys.executable)
    env["PATH"] = os.pathsep.join(filter(None, [bin_dir, env.get("PATH")]))
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    """Signal a process group; nothing if it is already gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _write_json(path: Path, value: Any) -> None:
    """Write JSON atomically (temp file + rename)."""
    try:
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(value), encoding="utf-8")
        temporary.replace(path)
    except OSError:
        logger.warning("could not write %s", path, exc_info=True)
