"""Runs that really execute (kfp.local in a child process) driven through kfp.Client over HTTP."""

from __future__ import annotations

import time

import kfp_server_api
import pytest
import requests

from kfadapter.localkfp.argo_nodes import executor_pod_name
from tests.localkfp.conftest import client_for

pytestmark = pytest.mark.e2e  # real servers and processes on free ports

FINAL = {"SUCCEEDED", "FAILED", "CANCELED", "SKIPPED"}


def _wait(client, run_id: str, states: set[str], deadline: float = 120.0):
    stop = time.monotonic() + deadline
    while time.monotonic() < stop:
        run = client.get_run(run_id)
        if run.state in states:
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not reach {states}; it is {run.state}")


@pytest.fixture(scope="module")
def started(real_server, compiled, tmp_path_factory):
    """Start every run of this module at once (they overlap, two at a time)."""
    client = client_for(real_server, "/pipeline")
    asm = str(compiled["add_subtract_multiply"])
    pipeline = client.upload_pipeline(asm, "asm-e2e")
    version_id = client.list_pipeline_versions(pipeline.pipeline_id).pipeline_versions[0]
    experiment = client.create_experiment("e2e")
    # The same pipeline as kfp-kubernetes would compile it: followed by a platform spec.
    with_platform = tmp_path_factory.mktemp("platform") / "asm-platform.yaml"
    with_platform.write_text(
        compiled["add_subtract_multiply"].read_text()
        + "---\nplatforms:\n  kubernetes:\n    deploymentSpec: {}\n"
    )
    platform_pipeline = client.upload_pipeline(str(with_platform), "asm-platform-e2e")
    platform_version = client.list_pipeline_versions(platform_pipeline.pipeline_id)
    runs = {
        "good": client.run_pipeline(
            experiment.experiment_id,
            "good",
            pipeline_id=pipeline.pipeline_id,
            version_id=version_id.pipeline_version_id,
            params={"a": 7, "b": 2, "expected": 45},
        ).run_id,
        "wrong": client.create_run_from_pipeline_package(
            asm, arguments={"a": 7, "b": 2, "expected": 44}, run_name="wrong", experiment_name="e2e"
        ).run_id,
        "sleeps": client.create_run_from_pipeline_package(
            str(compiled["sleeps"]), arguments={"seconds": 600}, run_name="sleeps"
        ).run_id,
        "platform": client.run_pipeline(
            experiment.experiment_id,
            "platform",
            pipeline_id=platform_pipeline.pipeline_id,
            version_id=platform_version.pipeline_versions[0].pipeline_version_id,
            params={"a": 5, "b": 3, "expected": 16},
        ).run_id,
    }
    return client, runs


def test_parameters_flow_and_the_run_succeeds_with_task_details(real_server, started) -> None:
    client, runs = started
    run = client.wait_for_run_completion(runs["good"], timeout=120, sleep_duration=0.5)
    assert run.state == "SUCCEEDED", run.error
    tasks = run.run_details.task_details
    names = {task.display_name for task in tasks}
    assert {"add", "subtract", "multiply", "check-equals"} <= names
    for task in tasks:
        if task.display_name in ("add", "subtract", "multiply", "check-equals"):
            assert task.state == "SUCCEEDED"
            assert task.start_time <= task.end_time
    assert [s.state for s in run.state_history][0] == "PENDING"
    assert run.state_history[-1].state == "SUCCEEDED"

    check = next(t for t in tasks if t.display_name == "check-equals")
    node = executor_pod_name(check.child_tasks[0].pod_name)  # see test_fidelity_tasks.py
    log = requests.get(f"{real_server.url}/apis/v1alpha1/runs/{run.run_id}/nodes/{node}/log")
    assert log.status_code == 200 and log.text.strip()
    missing = requests.get(f"{real_server.url}/apis/v1alpha1/runs/{run.run_id}/nodes/nope/log")
    assert missing.status_code == 500  # KFP's run_log_server.go answers every failure so


def test_a_failing_component_fails_the_run_and_retry_runs_it_again(started) -> None:
    client, runs = started
    run = _wait(client, runs["wrong"], FINAL)
    assert run.state == "FAILED"
    assert run.error is None  # KFP's toApiRun gives no error text (server/api_converter.go)
    client._run_api.run_service_retry_run(run_id=run.run_id)
    again = client.get_run(run.run_id)
    assert again.state in ("PENDING", "RUNNING")
    again = _wait(client, run.run_id, FINAL)
    assert again.state == "FAILED"
    states = [s.state for s in again.state_history]
    assert states.count("FAILED") == 2 and states.count("PENDING") == 2


def test_a_long_run_is_terminated_to_failed(started) -> None:
    """KFP on Argo: a terminated run is CANCELING, then FAILED (`resource/resource_manager.go`
    TerminateRun); a second terminate is a 400 (`storage/run_store.go`)."""
    client, runs = started
    _wait(client, runs["sleeps"], {"RUNNING"})
    client.terminate_run(runs["sleeps"])
    run = _wait(client, runs["sleeps"], FINAL, deadline=30)
    assert run.state == "FAILED" and run.error is None
    with pytest.raises(kfp_server_api.ApiException) as error:
        client.terminate_run(runs["sleeps"])
    assert error.value.status == 400


def test_a_pipeline_uploaded_with_a_platform_spec_runs(started) -> None:
    client, runs = started
    run = _wait(client, runs["platform"], FINAL)
    assert run.state == "SUCCEEDED", run.error


# -- retry carries succeeded tasks forward (row 13 of ../shared/kfp-fidelity.md) ----------------


@pytest.fixture(scope="module")
def retry_pipelines(tmp_path_factory) -> dict[str, str]:
    from tests.localkfp.dsl_pipelines import RETRY_PIPELINES, compile_all

    paths = compile_all(tmp_path_factory.mktemp("retry-pipelines"), RETRY_PIPELINES)
    return {name: str(path) for name, path in paths.items()}


def _executor_task(run, display_name: str):
    """The task detail of a container task's executor DAG node (display name: its key)."""
    return next(t for t in run.run_details.task_details if t.display_name == display_name)


def _log(server, run, task) -> requests.Response:
    pod = executor_pod_name(task.child_tasks[0].pod_name)  # see test_fidelity_tasks.py
    return requests.get(f"{server.url}/apis/v1alpha1/runs/{run.run_id}/nodes/{pod}/log")


def test_retry_carries_succeeded_tasks_forward(real_server, retry_pipelines, tmp_path) -> None:
    """KFP: RetryRun re-submits the workflow that GenerateRetryExecution formed: nodes that
    Succeeded (or were Skipped) are kept as they were, failed pods are deleted and run again
    (`backend/src/common/util/workflow.go` GenerateRetryExecution,
    `backend/src/apiserver/resource/resource_manager.go` RetryRun). So a task that succeeded
    is not executed again, its outputs (a parameter and an artifact) still feed the task
    downstream, and its task detail keeps its state, times and log."""
    client = client_for(real_server)
    counter, marker = tmp_path / "counter.txt", tmp_path / "marker"
    run_id = client.create_run_from_pipeline_package(
        retry_pipelines["retry_carries_forward"],
        arguments={"counter": str(counter), "marker": str(marker)},
        run_name="retry-carries-forward",
    ).run_id
    failed = _wait(client, run_id, FINAL)
    assert failed.state == "FAILED"
    assert sorted(counter.read_text().split()) == ["a", "b", "first"]
    before = _executor_task(failed, "count-run")
    assert before.state == "SUCCEEDED" and _executor_task(failed, "needs-marker").state == "FAILED"
    first_log = _log(real_server, failed, before)
    assert first_log.status_code == 200

    marker.touch()
    client._run_api.run_service_retry_run(run_id=run_id)
    retried = client.get_run(run_id)  # before the new attempt reports: Argo keeps these nodes
    assert _executor_task(retried, "count-run").task_id == before.task_id
    run = _wait(client, run_id, FINAL)
    assert run.state == "SUCCEEDED"
    assert sorted(counter.read_text().split()) == ["a", "b", "first"]  # each ran once
    after = _executor_task(run, "count-run")
    assert (after.state, after.start_time, after.end_time) == (
        "SUCCEEDED",
        before.start_time,
        before.end_time,
    )
    assert after.task_id == before.task_id  # the same Argo node
    assert _log(real_server, run, after).text == first_log.text
    checked = _executor_task(run, "needs-marker")
    assert checked.state == "SUCCEEDED" and checked.start_time >= before.end_time
    assert _log(real_server, run, checked).status_code == 200
    kept = {t.task_id: t for t in run.run_details.task_details}
    # The nodes that succeeded stay as they were; but the run's root driver and the driver of
    # the task that ran again (kept by Argo, started anew here: see docs/local-kfp.md).
    for node in failed.run_details.task_details:
        if node.state == "SUCCEEDED" and node.display_name not in (
            "root-driver",
            "needs-marker-driver",
        ):
            same = kept[node.task_id]
            assert (same.state, same.start_time, same.end_time) == (
                node.state,
                node.start_time,
                node.end_time,
            ), node.display_name
    assert [s.state for s in run.state_history].count("FAILED") == 1


def test_retry_runs_an_exit_handlers_task_again(real_server, retry_pipelines, tmp_path) -> None:
    """An ExitHandler's exit task runs again after its retried body, which carries forward
    the body's succeeded task (`backend/src/common/util/workflow.go` GenerateRetryExecution
    keeps succeeded nodes; the exit task reports the body's new final status)."""
    client = client_for(real_server)
    counter, marker = tmp_path / "counter.txt", tmp_path / "marker"
    run_id = client.create_run_from_pipeline_package(
        retry_pipelines["retry_exit_handler"],
        arguments={"counter": str(counter), "marker": str(marker)},
        run_name="retry-exit-handler",
        enable_caching=False,  # the exit task runs again only uncached, as on a cluster
    ).run_id
    assert _wait(client, run_id, FINAL).state == "FAILED"
    assert sorted(counter.read_text().split()) == ["exit", "first"]
    marker.touch()
    client._run_api.run_service_retry_run(run_id=run_id)
    assert _wait(client, run_id, FINAL).state == "SUCCEEDED"
    assert sorted(counter.read_text().split()) == ["exit", "exit", "first"]


def test_retry_of_a_terminated_run_runs_only_what_did_not_finish(
    real_server, retry_pipelines, tmp_path
) -> None:
    """KFP: a terminated run's workflow ends Failed and can be retried; its succeeded nodes
    are carried forward, the nodes it stopped run again (`backend/src/common/util/
    workflow.go` GenerateRetryExecution unsets activeDeadlineSeconds 0)."""
    client = client_for(real_server)
    counter, marker = tmp_path / "counter.txt", tmp_path / "marker"
    run_id = client.create_run_from_pipeline_package(
        retry_pipelines["retry_after_terminate"],
        arguments={"counter": str(counter), "marker": str(marker)},
        run_name="retry-after-terminate",
    ).run_id
    stop = time.monotonic() + 120
    while time.monotonic() < stop:
        run = client.get_run(run_id)
        details = (run.run_details.task_details if run.run_details else None) or []
        tasks = {t.display_name: t.state for t in details}
        if tasks.get("count-run") == "SUCCEEDED" and tasks.get("wait-for-marker") == "RUNNING":
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"the run did not reach its waiting task: {run.state}")
    client.terminate_run(run_id)
    terminated = _wait(client, run_id, FINAL, deadline=30)
    assert terminated.state == "FAILED"
    before = _executor_task(terminated, "count-run")

    marker.touch()
    client._run_api.run_service_retry_run(run_id=run_id)
    run = _wait(client, run_id, FINAL)
    assert run.state == "SUCCEEDED"
    assert counter.read_text().split() == ["first"]
    after = _executor_task(run, "count-run")
    assert (after.state, after.start_time, after.end_time) == (
        "SUCCEEDED",
        before.start_time,
        before.end_time,
    )
    assert _executor_task(run, "wait-for-marker").state == "SUCCEEDED"
