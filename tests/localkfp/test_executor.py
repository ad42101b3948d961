"""RunExecutor with real kfp.local execution: states, task details, logs, limits, kills."""

from __future__ import annotations

import collections
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from kfadapter.localkfp.argo_nodes import executor_pod_name
from kfadapter.localkfp.execution import RunUpdate
from kfadapter.localkfp.executor import RunExecutor
from kfadapter.localkfp.states import FINAL_STATES
from tests.localkfp.processes import (
    DEADLINE_SECONDS,
    live_group_members,
    wait_group_gone,
    worker_pid,
)
from tests.support import wait_until

pytestmark = pytest.mark.e2e  # real servers and processes on free ports


class Updates:
    """Collects the executor's updates and waits for conditions on them."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self.all: list[RunUpdate] = []
        self.threads: set[str] = set()

    def __call__(self, update: RunUpdate) -> None:
        with self._condition:
            self.all.append(update)
            self.threads.add(threading.current_thread().name)
            self._condition.notify_all()

    def of(self, run_id: str) -> list[RunUpdate]:
        with self._condition:
            return [update for update in self.all if update.run_id == run_id]

    def wait_for(self, run_id: str, accept: Callable[[RunUpdate], bool], what: str) -> RunUpdate:
        """The first update of the run that `accept`s, waiting up to the deadline."""
        deadline = time.monotonic() + DEADLINE_SECONDS
        with self._condition:
            while True:
                for update in self.all:
                    if update.run_id == run_id and accept(update):
                        return update
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    states = [update.state for update in self.all if update.run_id == run_id]
                    raise AssertionError(f"run {run_id}: no {what} update; got {states}")
                self._condition.wait(remaining)

    def final(self, run_id: str) -> RunUpdate:
        return self.wait_for(run_id, lambda update: update.state in FINAL_STATES, "final")


def spec_of(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def tasks_by_name(update: RunUpdate) -> dict[str, dict]:
    """The pipeline's tasks among the Argo nodes (argo_nodes.py): name -> entry."""
    system = {"executor", "root", "root-driver"}
    return {
        task["display_name"]: task
        for task in update.task_details
        if task["display_name"] not in system
        and not task["display_name"].endswith("-driver")
        and task.get("child_tasks")
        and task["display_name"] != task["child_tasks"][0]["pod_name"].rpartition("-")[0]
    }


def pod_of(task: dict) -> str:
    """The executor pod of a container task's entry, the node id its log is read by."""
    return executor_pod_name(task["child_tasks"][0]["pod_name"])


def executor_state(update: RunUpdate) -> list[str]:
    """The states of the executor pod nodes of the run."""
    return [t["state"] for t in update.task_details if t["display_name"] == "executor"]


def worker_of(tmp_path: Path, run_id: str) -> int:
    """The worker of a run of the `make_executor` executor (data dir tmp_path/data)."""
    return worker_pid(tmp_path / "data" / "runs" / run_id)


def wait_component_running(executor: RunExecutor, run_id: str, node_id: str) -> None:
    """Wait until the component's own code has started (its log says so)."""

    def started() -> bool:
        path = executor.log_path(run_id, node_id)
        return path is not None and "Got executor_input" in path.read_text()

    wait_until(
        started,
        DEADLINE_SECONDS,
        details=lambda: f"the component {node_id} of run {run_id} did not start",
    )


@pytest.fixture
def updates() -> Updates:
    return Updates()


@pytest.fixture
def make_executor(tmp_path, updates) -> Iterator[Callable[[int], RunExecutor]]:
    """Executors on a fresh data dir, shut down after the test."""
    executors: list[RunExecutor] = []

    def make(max_concurrent_runs: int) -> RunExecutor:
        executor = RunExecutor(tmp_path / "data", max_concurrent_runs, updates)
        executors.append(executor)
        return executor

    yield make
    for executor in executors:
        executor.shutdown()


def test_runs_succeed_and_fail_with_real_task_details_and_logs(compiled, make_executor, updates):
    """Three real runs at once: data flows through add/subtract/multiply, failures say why."""
    executor = make_executor(3)
    spec = spec_of(compiled["add_subtract_multiply"])
    before = datetime.now().astimezone()
    executor.submit("good", spec, {"a": 5, "b": 3, "expected": 16})  # JSON ints for floats
    executor.submit("wrong-expected", spec, {"a": 5.0, "b": 3.0, "expected": 17.0})
    executor.submit("fails", spec_of(compiled["always_fails"]), {"reason": "boom 42"})

    good = updates.final("good")
    assert good.state == "SUCCEEDED", good.error
    assert good.error is None
    assert before.replace(microsecond=0) <= good.started_at <= good.finished_at
    tasks = tasks_by_name(good)
    assert set(tasks) == {"add", "subtract", "multiply", "check-equals"}
    for task in tasks.values():
        assert task["state"] == "SUCCEEDED"
        assert task["run_id"] == "good"
        assert task["task_id"] and "pod_name" not in task and "state_history" not in task
        assert task["create_time"] <= task["start_time"] <= task["end_time"]
        assert task["start_time"].endswith("Z")
    assert executor_state(good) == ["SUCCEEDED"] * 4
    # multiply ran after its inputs, the checker after multiply
    assert tasks["multiply"]["start_time"] >= tasks["add"]["end_time"]
    assert tasks["check-equals"]["start_time"] >= tasks["multiply"]["end_time"]
    # progress was reported while running, one task at a time
    progress = [u for u in updates.of("good") if u.state == "RUNNING" and u.task_details]
    assert len(progress) >= 4
    assert [u.state for u in updates.of("good")][:2] == ["PENDING", "RUNNING"]

    # each task's own output is in its log, served by its executor pod's name
    multiply_log = executor.log_path("good", pod_of(tasks["multiply"]))
    assert multiply_log is not None
    text = multiply_log.read_text()
    assert '"a": 8.0' in text and '"b": 2.0' in text  # the values that flowed in
    assert "component `multiply`" in text and "component `add`" not in text

    wrong = updates.final("wrong-expected")
    assert wrong.state == "FAILED"
    assert "expected 17.0, got 16.0" in wrong.error
    assert "check-equals" in wrong.error
    checker = tasks_by_name(wrong)["check-equals"]
    assert checker["state"] == "FAILED" and "error" not in checker  # KFP gives no task error
    assert "Traceback" in executor.log_path("wrong-expected", pod_of(checker)).read_text()

    fails = updates.final("fails")
    assert fails.state == "FAILED"
    assert "RuntimeError: boom 42" in fails.error
    assert executor_state(fails) == ["FAILED"]
    assert fails.finished_at is not None

    assert all(name.startswith("kfp-run-updates") for name in updates.threads)


def test_terminate_kills_the_process_group_and_cancels(compiled, make_executor, updates, tmp_path):
    executor = make_executor(2)
    executor.submit("long", spec_of(compiled["sleeps"]), {"seconds": 600})
    wait_component_running(executor, "long", "sleep-for")
    pgid = os.getpgid(worker_of(tmp_path, "long"))
    assert len(live_group_members(pgid)) > 1  # the worker and its component's processes

    assert executor.terminate("long") is True
    final = updates.final("long")
    assert final.state == "CANCELED"
    assert final.finished_at is not None
    # Argo ends a terminated workflow's nodes Failed: KFP has no canceled task
    (task,) = tasks_by_name(final).values()
    assert task["state"] == "FAILED" and not task["end_time"].startswith("0001")
    assert "CANCELING" in [u.state for u in updates.of("long")]
    assert wait_group_gone(pgid), "processes of the terminated run are still alive"
    assert executor.terminate("long") is False
    assert executor.terminate("never-submitted") is False


def test_terminate_also_kills_components_that_ignore_sigterm(
    compiled, make_executor, updates, tmp_path
):
    spec = spec_of(compiled["sleeps"])
    command = spec["deploymentSpec"]["executors"]["exec-sleep-for"]["container"]["command"]
    # the component's program (sh -ec SCRIPT), and the python it starts, ignore SIGTERM
    command[5] = "trap '' TERM\n" + command[5]
    executor = make_executor(1)
    executor.submit("stubborn", spec, {"seconds": 600})
    wait_component_running(executor, "stubborn", "sleep-for")
    pgid = os.getpgid(worker_of(tmp_path, "stubborn"))

    assert executor.terminate("stubborn") is True
    assert updates.final("stubborn").state == "CANCELED"
    assert wait_group_gone(pgid), "a component that ignores SIGTERM survived terminate"


def test_runs_beyond_the_limit_wait_pending_in_order(compiled, make_executor, updates):
    executor = make_executor(1)
    sleeps = spec_of(compiled["sleeps"])
    executor.submit("first", sleeps, {"seconds": 1.0})
    executor.submit("second", spec_of(compiled["always_fails"]), {})
    executor.submit("third", sleeps, {"seconds": 600})
    executor.submit("cancelled-while-queued", sleeps, {"seconds": 600})
    assert executor.terminate("cancelled-while-queued") is True

    first_final = updates.final("first")
    assert first_final.state == "SUCCEEDED"
    second_started = updates.wait_for("second", lambda u: u.state == "RUNNING", "RUNNING")
    second_final = updates.final("second")
    assert second_final.state == "FAILED"
    third_started = updates.wait_for("third", lambda u: u.state == "RUNNING", "RUNNING")
    # each left PENDING only after the one before had ended, in submission order
    order = updates.all.index
    assert order(first_final) < order(second_started) < order(second_final) < order(third_started)
    assert second_started.started_at >= first_final.finished_at
    assert third_started.started_at >= second_final.finished_at

    queued = updates.of("cancelled-while-queued")
    assert [u.state for u in queued] == ["PENDING", "CANCELED"]
    assert queued[-1].started_at is None and queued[-1].task_details == []
    assert executor.log_path("cancelled-while-queued", "sleep-for") is None


def test_a_worker_killed_from_outside_fails_the_run(compiled, make_executor, updates, tmp_path):
    executor = make_executor(2)
    executor.submit("victim", spec_of(compiled["sleeps"]), {"seconds": 600})
    wait_component_running(executor, "victim", "sleep-for")
    pid = worker_of(tmp_path, "victim")
    os.kill(pid, signal.SIGKILL)

    final = updates.final("victim")
    assert final.state == "FAILED"
    assert "killed by SIGKILL" in final.error
    (task,) = tasks_by_name(final).values()
    assert task["state"] == "FAILED" and "error" not in task
    assert wait_group_gone(pid), "the component of the killed worker was left running"


def test_bad_parameters_fail_the_run_with_the_reason(compiled, make_executor, updates):
    executor = make_executor(1)
    executor.submit("missing", spec_of(compiled["qoe_training"]), {"featurepath": "x"})
    final = updates.final("missing")
    assert final.state == "FAILED"
    assert "epochs" in final.error
    assert final.task_details == []


def test_shutdown_ends_active_and_queued_runs(compiled, make_executor, updates, tmp_path):
    executor = make_executor(1)
    executor.submit("active", spec_of(compiled["sleeps"]), {"seconds": 600})
    executor.submit("queued", spec_of(compiled["sleeps"]), {"seconds": 600})
    updates.wait_for("active", lambda u: bool(u.task_details), "task started")
    pgid = os.getpgid(worker_of(tmp_path, "active"))

    executor.shutdown()
    active, queued = updates.final("active"), updates.final("queued")
    assert active.state == "FAILED" and "server stopped" in active.error
    assert queued.state == "FAILED" and queued.started_at is None
    assert wait_group_gone(pgid)
    with pytest.raises(RuntimeError):
        executor.submit("late", spec_of(compiled["sleeps"]), {})


def test_submit_and_log_path_reject_bad_ids(compiled, make_executor):
    executor = make_executor(1)
    with pytest.raises(ValueError, match="run id"):
        executor.submit("../escape", spec_of(compiled["sleeps"]), {})
    assert executor.log_path("../escape", "x") is None
    assert executor.log_path("unknown-run", "../../etc/passwd") is None
    assert executor.log_path("unknown-run", "add") is None
    with pytest.raises(ValueError):
        RunExecutor(Path("/nonexistent"), 0, lambda update: None)


def test_sample_is_the_compiled_add_subtract_multiply(compiled):
    import kfadapter

    sample = Path(kfadapter.__file__).parent / "samples" / "add_subtract_multiply.yaml"
    assert yaml.safe_load(sample.read_text()) == spec_of(compiled["add_subtract_multiply"])


def test_components_run_in_their_task_environment_without_an_activated_venv(
    compiled, make_executor, updates, monkeypatch, tmp_path
):
    """CI runs `.venv/bin/python -m pytest` with no venv on PATH: components find their task
    environment's python first on PATH, and the server's interpreter not at all."""
    import sys

    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    spec = spec_of(compiled["always_fails"])
    command = spec["deploymentSpec"]["executors"]["exec-fail"]["container"]["command"]
    command[5] = 'echo "PY=$(command -v python3)"; echo "PATH=$PATH"\n' + command[5]
    executor = make_executor(1)
    executor.submit("which", spec, {"reason": "done"})
    assert "RuntimeError: done" in updates.final("which").error

    lines = executor.log_path("which", "fail").read_text().splitlines()
    environments = tmp_path / "data" / "env-cache" / "envs"
    python = next(line for line in lines if line.startswith("PY="))[3:]
    assert Path(python).parent.parent.parent == environments.resolve()
    path = next(line for line in lines if line.startswith("PATH="))[5:].split(os.pathsep)
    assert os.path.dirname(sys.executable) not in path


def _worker_events(spec: dict, parameters: dict, run_dir: Path, env_cache: Path) -> list[dict]:
    """Run the worker on a spec; the events it wrote on its status pipe."""
    import subprocess
    import sys

    run_dir.mkdir(parents=True)
    (run_dir / "spec.json").write_text(json.dumps(spec))
    (run_dir / "parameters.json").write_text(json.dumps(parameters))
    read_fd, write_fd = os.pipe()
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "kfadapter.localkfp.worker"),
            *(str(run_dir / "spec.json"), str(run_dir / "parameters.json"), str(run_dir)),
            *("--status-fd", str(write_fd), "--env-cache", str(env_cache)),
            *("--env-cache-size", str(10**9), "--max-parallel-tasks", "4"),
        ],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        lines = pipe.read().splitlines()
    assert process.wait(timeout=DEADLINE_SECONDS) == 0
    return [json.loads(line) for line in lines]


def test_task_events_say_where_each_task_sits_in_the_dag(tmp_path):
    """task_started carries kind, task_name and parent for component and DAG tasks (loops,
    iterations, conditions); the task details shape them as KFP's Argo compiler does
    (`argocompiler/dag.go` `iteratorTask`: one `iteration-iterations(i:i)` per iteration,
    each with its own nodes of the body's tasks)."""
    from kfadapter.localkfp.run_progress import RunProgress
    from tests.localkfp.dsl_pipelines import compile_all

    (tmp_path / "pipelines").mkdir()
    compiled = compile_all(tmp_path / "pipelines")
    cache = tmp_path / "env-cache"
    loops = spec_of(compiled["loops"])
    events = _worker_events(loops, {}, tmp_path / "loops", cache)
    started = [event for event in events if event["event"] == "task_started"]
    where = {(e["parent"], e["task_name"], e["kind"]) for e in started}
    assert ("", "for-loop-1", "dag") in where
    assert {("for-loop-1", f"iteration-{i}", "dag") for i in range(3)} <= where
    assert {(f"for-loop-1.iteration-{i}", "square", "container") for i in range(3)} <= where
    assert ("", "total", "container") in where
    nested = [e for e in started if e["parent"].count(".") == 3 and e["kind"] == "container"]
    assert len(nested) == 4  # multiply in each of the 2 x 2 inner iterations
    iterations = [e for e in started if e["task_name"].startswith("iteration-")]
    assert all(e["iteration"] == int(e["task_name"].split("-")[1]) for e in iterations)
    finished = {e["task_id"]: e["state"] for e in events if e["event"] == "task_finished"}
    assert set(finished) == {e["task_id"] for e in started}
    assert set(finished.values()) == {"SUCCEEDED"}
    assert events[-1]["event"] == "run_finished" and events[-1]["state"] == "SUCCEEDED"

    progress = RunProgress.of("loops", loops, {}, tmp_path)
    for event in events:
        progress.handle_event(json.dumps(event).encode())
    details = progress.task_details()
    count = collections.Counter(task["display_name"] for task in details)
    assert count["executor"] == 16  # every container task of every iteration
    assert count["square"] == 3 and count["square-2"] == 2 and count["multiply"] == 2
    assert count["multiply-2"] == 4  # 2 x 2 iterations of the loop in a loop
    assert count["iteration-driver"] == count["iteration-iterations"] == 5  # the loops
    assert count["iteration-item"] == count["iteration-iterations(0:0)"] + 6 == 11
    assert count["iteration-iterations(2:2)"] == 1  # the only loop over 3 items
    assert {"for-loop-1", "for-loop-2", "for-loop-4", "for-loop-6"} <= set(count)
    assert "check-squares" not in count  # nodes are named by task key (`check`)
    links = [p for p in (progress.directory / "logs").iterdir() if p.is_symlink()]
    assert len(links) == 16 and len({p.readlink() for p in links}) == 16

    conditions = spec_of(compiled["conditions"])
    events = _worker_events(conditions, {"number": 0, "expected": "zero"}, tmp_path / "c", cache)
    started = {e["task_id"]: e for e in events if e["event"] == "task_started"}
    ended = {
        started[e["task_id"]]["task_name"]: e["state"]
        for e in events
        if e["event"] == "task_finished" and started[e["task_id"]]["kind"] == "dag"
    }
    # the If/Elif/Else group, and its three branches: only the Elif's was taken
    assert ended == {
        "condition-branches-1": "SUCCEEDED",
        "condition-2": "SKIPPED",
        "condition-3": "SUCCEEDED",
        "condition-4": "SKIPPED",
    }
    say = [e for e in started.values() if e["display_name"].startswith("say")]
    assert [(e["parent"], e["kind"]) for e in say] == [
        ("condition-branches-1.condition-3", "container")
    ]


def test_a_parallel_for_over_artifacts_fails_as_on_kfps_backend(compiled, make_executor, updates):
    """KFP's Argo compiler rejects artifact iterators (backend/src/v2/compiler/argocompiler/
    dag.go: "artifact iterator not implemented yet"), so a run with one fails here too. The SDK
    only makes them from pipeline outputs; the spec is the loops pipeline with its first loop's
    iterator turned into an artifact iterator."""
    from kfp import compiler

    from tests.localkfp.dsl_pipelines import loops

    path = Path(compiled["sleeps"]).parent / "artifact_loop.yaml"
    compiler.Compiler().compile(loops, str(path))
    spec = spec_of(path)
    loop = spec["root"]["dag"]["tasks"]["for-loop-1"]
    loop.pop("parameterIterator")
    loop["artifactIterator"] = {"items": {"inputArtifact": "pipelinechannel--x"}, "itemInput": "y"}
    executor = make_executor(1)
    executor.submit("artifact-loop", spec, {})
    final = updates.final("artifact-loop")
    assert final.state == "FAILED"
    assert "artifact iterator not implemented yet" in final.error


@pytest.mark.e2e
def test_tasks_that_wait_on_each_other_fail_the_run_instead_of_spinning(tmp_path):
    """A DAG whose tasks depend on each other in a cycle ends the run FAILED, as Argo
    refuses such a DAG, instead of a scheduler that waits for ever."""
    import kfadapter

    sample = Path(kfadapter.__file__).parent / "samples" / "add_subtract_multiply.yaml"
    spec = spec_of(sample)
    spec["root"]["dag"]["tasks"]["add"]["dependentTasks"] = ["multiply"]
    events = _worker_events(spec, {"a": 1, "b": 2}, tmp_path / "run", tmp_path / "env-cache")
    started = {event["task_name"] for event in events if event["event"] == "task_started"}
    assert "add" not in started and "multiply" not in started
    end = events[-1]
    assert end["event"] == "run_finished" and end["state"] == "FAILED"
    assert "add" in end["error"] and "multiply" in end["error"] and "cycle" in end["error"]
