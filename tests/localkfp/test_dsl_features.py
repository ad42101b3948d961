"""KFP v2 DSL features, each in a pipeline of its own (dsl_pipelines.py), run on the embedded
server over HTTP with the unmodified kfp.Client, as a KFP 2.17 cluster runs them.

Every run is created when the module starts, so they execute side by side; each test waits
for its own. Behaviour checked against KFP 2.17's SDK: sdk/python/kfp/dsl/executor.py (what a
component receives), sdk/python/kfp/compiler/pipeline_spec_builder.py (how control flow
compiles: conditions, loops and exit handlers as sub-DAGs with trigger policies). Task
details are Argo's nodes (argo_nodes.py): a task `T` is the entry named by its key, its
component ran in the pod of its child `executor`, whose log holds what the component printed
(a failed v2 run carries no run error on KFP 2.17).
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pytest
import requests

from kfadapter.localkfp.argo_nodes import executor_pod_name
from kfadapter.localkfp.execution import TaskOptions
from kfadapter.localkfp.server import LocalKfpServer
from tests.localkfp.conftest import client_for
from tests.localkfp.dsl_pipelines import compile_all

pytestmark = pytest.mark.e2e  # real servers and processes on free ports

FINAL = {"SUCCEEDED", "FAILED", "CANCELED", "SKIPPED"}
SLEEP = 3.0  # seconds each task of the timing pipelines sleeps


@pytest.fixture(scope="module")
def env_cache(tmp_path_factory) -> Path:
    """One environment cache for the servers of this module (environments built once)."""
    return tmp_path_factory.mktemp("env-cache")


def _server(directory: Path, env_cache: Path, max_parallel_tasks: int) -> LocalKfpServer:
    options = TaskOptions(env_cache=env_cache, max_parallel_tasks=max_parallel_tasks)
    return LocalKfpServer(directory, port=0, max_concurrent_runs=4, task_options=options).start()


@pytest.fixture(scope="module")
def runs(tmp_path_factory, env_cache):
    """Every run of the module, started at once: name -> (client, run id, marker dir)."""
    server = _server(tmp_path_factory.mktemp("dsl-server"), env_cache, 4)
    serial = _server(tmp_path_factory.mktemp("dsl-serial"), env_cache, 1)
    compiled = compile_all(tmp_path_factory.mktemp("dsl-pipelines"))
    client, serial_client = client_for(server), client_for(serial)
    data = tmp_path_factory.mktemp("imported") / "data.txt"
    data.write_text("imported text")
    markers: dict[str, Path] = {}

    def marker(name: str) -> str:
        markers[name] = tmp_path_factory.mktemp(name)
        return str(markers[name])

    arguments = {
        "file_passing": ("file_passing", {}),
        "input_path_of_a_parameter": ("input_path_of_a_parameter", {}),
        "metrics": ("metrics", {}),
        "big": ("conditions", {"number": 42, "expected": "big"}),
        "zero": ("conditions", {"number": 0, "expected": "zero"}),
        "small": ("conditions", {"number": 3, "expected": "small"}),
        "loops": ("loops", {}),
        "bounded_loop": ("bounded_loop", {"seconds": SLEEP}),
        "independent": ("independent", {"seconds": SLEEP}),
        "nested": ("nested", {"a": 1, "b": 2, "expected": "5"}),
        "exit_failed": ("exit_handler", {"fail": True, "marker_dir": marker("exit_failed")}),
        "exit_succeeded": ("exit_handler", {"fail": False, "marker_dir": marker("exit_succeeded")}),
        "retries": ("retries", {"marker_dir": marker("retries")}),
        "upstream_failure": ("upstream_failure", {}),
        "importer": ("importer", {"uri": str(data), "expected": "imported text"}),
        "named_outputs": ("named_outputs", {}),
    }
    started = {}
    for name, (pipeline, parameters) in arguments.items():
        run = client.create_run_from_pipeline_package(  # every task executes (no task cache)
            str(compiled[pipeline]), arguments=parameters, run_name=name, enable_caching=False
        )
        started[name] = (client, run.run_id, markers.get(name), server.url)
    run = serial_client.create_run_from_pipeline_package(
        str(compiled["independent"]),
        arguments={"seconds": SLEEP},
        run_name="serial",
        enable_caching=False,
    )
    started["serial"] = (serial_client, run.run_id, None, serial.url)
    yield started
    serial.stop()
    server.stop()


def _final(runs, name: str, deadline: float = 240.0):
    client, run_id, _, _ = runs[name]
    stop = time.monotonic() + deadline
    while time.monotonic() < stop:
        run = client.get_run(run_id)
        if run.state in FINAL:
            return run
        time.sleep(0.3)
    raise AssertionError(f"run {name} did not end; it is {run.state}")


def _succeeded(runs, name: str):
    run = _final(runs, name)
    assert run.state == "SUCCEEDED", run.error
    return run


def _tasks(run) -> dict[str, object]:
    """Task entries by display name (a task's key; unique in the pipelines asked)."""
    return {task.display_name: task for task in run.run_details.task_details}


def _executors(run) -> list:
    """The entries of the pods that ran a component: one per container task run."""
    return [task for task in run.run_details.task_details if task.display_name == "executor"]


def _log(runs, name: str, task) -> str:
    """The log of a task entry's component: its executor pod's, by the pod's name."""
    _, run_id, _, url = runs[name]
    pod = executor_pod_name(task.child_tasks[0].pod_name)
    answer = requests.get(f"{url}/apis/v1alpha1/runs/{run_id}/nodes/{pod}/log", timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.text


def _intervals(run) -> list[tuple[datetime, datetime]]:
    return sorted((task.start_time, task.end_time) for task in _executors(run))


def _most_at_once(intervals: list[tuple[datetime, datetime]]) -> int:
    """How many tasks ran at once at most ([start, end) in the whole seconds KFP shows)."""
    return max(sum(start <= moment < end for start, end in intervals) for moment, _ in intervals)


def test_file_passing_of_parameters_and_artifacts(runs) -> None:
    """OutputPath(str) consumed as a value; OutputPath/InputPath('Dataset'); Output/Input
    [Dataset] with metadata (kfp/dsl/executor.py: get_output_parameter_path,
    get_output_artifact_path, get_input_artifact_path)."""
    run = _succeeded(runs, "file_passing")
    names = {task.display_name for task in run.run_details.task_details}
    assert {"check", "check-2", "check-3"} <= names  # keys, not set_display_name's names
    assert {task.state for task in _executors(run)} == {"SUCCEEDED"}


def test_input_path_of_a_parameter_fails_as_in_kfp_executor(runs) -> None:
    """InputPath(str) fed by OutputPath(str): the IR passes a STRING parameter, and KFP 2.17's
    executor (kfp/dsl/executor.py, Executor.execute) reads every InputPath through
    get_input_artifact_path, which only knows artifacts: the component fails inside KFP's own
    executor, as it does in a cluster's container. It must not pass here."""
    run = _final(runs, "input_path_of_a_parameter")
    assert run.state == "FAILED"
    failed = _tasks(run)["read-text"]
    assert failed.state == "FAILED"
    assert "Failed to get input artifact path for artifact name data_input_path" in (
        _log(runs, "input_path_of_a_parameter", failed)
    )


def test_output_metrics_flow_to_a_consumer(runs) -> None:
    """Output[Metrics].log_metric lands in the artifact's metadata, read by Input[Metrics]."""
    _succeeded(runs, "metrics")


@pytest.mark.parametrize("branch", ["big", "zero", "small"])
def test_if_elif_else_runs_one_branch_and_one_of_picks_it(runs, branch) -> None:
    """dsl.If/Elif/Else: only the branch whose condition holds runs; dsl.OneOf is its output."""
    run = _succeeded(runs, branch)
    # the compiler names the three `say` tasks say, say-2, say-3; the two branches not
    # taken are SKIPPED DAG nodes, their tasks never reached
    names = [task.display_name for task in run.run_details.task_details]
    assert len([name for name in names if name.startswith("say") and "driver" not in name]) == 1
    assert [task.state for task in run.run_details.task_details].count("SKIPPED") == 2


def test_parallel_for_with_collected_and_nested_loops(runs) -> None:
    """ParallelFor over a parameter with dsl.Collected (1+4+9 = 14, whole numbers as a
    cluster's executor input has them), over an upstream task's list (8+27 = 35), and a 2x2
    nested ParallelFor."""
    run = _succeeded(runs, "loops")
    names = [task.display_name for task in run.run_details.task_details]
    assert {"check", "check-2"} <= set(names)  # check-squares, check-cubes by their keys
    assert names.count("square") + names.count("square-2") == 3 + 2  # one per iteration
    assert names.count("multiply") + names.count("multiply-2") == 2 + 4


def test_parallelism_bounds_the_iterations_at_once(runs) -> None:
    """ParallelFor(parallelism=2) over 4 items of SLEEP seconds: two at a time, not more."""
    run = _succeeded(runs, "bounded_loop")
    intervals = _intervals(run)
    assert len(intervals) == 4
    assert _most_at_once(intervals) == 2


def test_independent_tasks_overlap_in_time(runs) -> None:
    """Three tasks with no dependencies run at once, as on a cluster (their task details)."""
    intervals = _intervals(_succeeded(runs, "independent"))
    assert len(intervals) == 3
    assert max(start for start, _ in intervals) < min(end for _, end in intervals)


def test_max_parallel_tasks_one_runs_tasks_one_after_another(runs) -> None:
    """The same pipeline on a server with --max-parallel-tasks 1: no two tasks overlap."""
    intervals = _intervals(_succeeded(runs, "serial"))
    assert len(intervals) == 3
    assert _most_at_once(intervals) == 1


def test_nested_pipeline_output_flows_out(runs) -> None:
    """A pipeline used as a component: its tasks run, its output feeds the outer pipeline."""
    run = _succeeded(runs, "nested")
    names = sorted(task.display_name for task in run.run_details.task_details)
    assert [n for n in names if n in ("add", "add-2", "as-text", "check", "inner")] == [
        "add",
        "add-2",
        "as-text",
        "check",
        "inner",
    ]
    assert len(_executors(run)) == 4


def test_exit_handler_runs_after_a_failed_body_and_sees_it(runs) -> None:
    """dsl.ExitHandler: the exit task runs after the body failed, its PipelineTaskFinalStatus
    says FAILED, and the run fails with the body's error."""
    run = _final(runs, "exit_failed")
    assert run.state == "FAILED"
    tasks = _tasks(run)
    assert "the body failed on purpose" in _log(runs, "exit_failed", tasks["fail-if"])
    assert tasks["report"].state == "SUCCEEDED"
    assert (runs["exit_failed"][2] / "exit-status").read_text() == "FAILED"


def test_exit_handler_after_a_successful_body(runs) -> None:
    _succeeded(runs, "exit_succeeded")
    assert (runs["exit_succeeded"][2] / "exit-status").read_text() == "SUCCEEDED"


def test_a_task_is_retried_by_its_retry_policy(runs) -> None:
    """set_retry(num_retries=2): the first attempt fails, the second succeeds; the task
    detail is one task, its log holds both attempts."""
    run = _succeeded(runs, "retries")
    flaky = _tasks(run)["flaky"]
    assert flaky.state == "SUCCEEDED"
    log = _log(runs, "retries", flaky)
    assert log.count("RuntimeError: first attempt fails") == 1
    assert "attempt 1 of 3 failed" in log


def test_ignore_upstream_failure_runs_after_a_failed_upstream(runs) -> None:
    """.ignore_upstream_failure(): the task runs although its upstream failed; the run fails."""
    run = _final(runs, "upstream_failure")
    assert run.state == "FAILED"
    tasks = _tasks(run)
    assert tasks["fail-if"].state == "FAILED"
    assert tasks["clean-up"].state == "SUCCEEDED"


def test_importer_brings_a_local_file_in(runs) -> None:
    """dsl.importer of a local path: the artifact is read by the next component."""
    run = _succeeded(runs, "importer")
    assert "importer" in _tasks(run)


def test_named_tuple_outputs(runs) -> None:
    _succeeded(runs, "named_outputs")
