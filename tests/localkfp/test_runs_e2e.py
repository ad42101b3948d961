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
