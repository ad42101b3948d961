"""KFP v1 pipelines (Argo Workflows compiled with kfp 1.8) really run on the embedded server,
over HTTP with the unmodified kfp.Client (and requests for the v1beta1 runs API, which
kfp 2.17's client no longer speaks): states, task details, logs, terminate.

One server for the module (`--local-extras`, so a failed run's error can be read; the
states, task details and logs are those of a cluster). Pipelines: tests/pipelines/v1/.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import yaml

from kfadapter.localkfp.argo_names import fnv32a
from kfadapter.localkfp.server import LocalKfpServer
from tests.localkfp.conftest import client_for
from tests.localkfp.processes import live_group_members, wait_group_gone, worker_pid
from tests.localkfp.wheels import add_to_index, build_wheel, package_index
from tests.pipelines import V1_DIRECTORY, V1_PIPELINES
from tests.support import wait_until

pytestmark = pytest.mark.e2e  # a real server and real processes

TIMEOUT = 180.0
FINAL = {"SUCCEEDED", "FAILED", "SKIPPED", "CANCELED"}


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LocalKfpServer]:
    running = LocalKfpServer(
        tmp_path_factory.mktemp("local-kfp-v1"), port=0, max_concurrent_runs=2, local_extras=True
    )
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(server: LocalKfpServer):
    return client_for(server)


@pytest.fixture(scope="module")
def versions(client) -> dict[str, str]:
    """Each v1 pipeline uploaded with kfp.Client: name -> its version id."""
    found = {}
    for name in V1_PIPELINES:
        path = V1_DIRECTORY / f"{name}.yaml"
        pipeline = client.upload_pipeline(str(path), pipeline_name=f"v1-{name}")
        listed = client.list_pipeline_versions(pipeline.pipeline_id).pipeline_versions
        found[name] = listed[0].pipeline_version_id
    return found


def start_v1_run(server: LocalKfpServer, version_id: str, **parameters: str) -> str:
    """A run through KFP's v1beta1 API, whose `pipeline_spec.parameters` a V1 run takes."""
    body = {
        "name": "v1 run",
        "pipeline_spec": {"parameters": [{"name": k, "value": v} for k, v in parameters.items()]},
        "resource_references": [
            {"key": {"type": "PIPELINE_VERSION", "id": version_id}, "relationship": "CREATOR"}
        ],
    }
    response = requests.post(f"{server.url}/apis/v1beta1/runs", json=body, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["run"]["id"]


def finished(client, run_id: str):
    """The run once final (kfp.Client's own wait polls every 5 s)."""
    return wait_until(
        lambda: (run := client.get_run(run_id)).state in FINAL and run,
        TIMEOUT,
        details=lambda: f"run {run_id} is {client.get_run(run_id).state}",
    )


def entries_of(run) -> list[dict[str, Any]]:
    tasks = run.run_details.task_details if run.run_details else None
    return [detail.to_dict() for detail in tasks or []]


def details_of(run) -> dict[str, dict[str, Any]]:
    """The run's task details by display name (asserted unique)."""
    entries = entries_of(run)
    by_name = {entry["display_name"]: entry for entry in entries}
    assert len(by_name) == len(entries), [entry["display_name"] for entry in entries]
    return by_name


def workflow_of(details: dict[str, dict[str, Any]], prefix: str) -> str:
    """The workflow's name: the display name of its own node, `<generateName><5>`."""
    names = [name for name in details if name.startswith(prefix) and "." not in name]
    assert len(names) == 1, list(details)
    return names[0]


def node_id(workflow: str, node_name: str) -> str:
    """Argo's node id (`NodeID`: `<workflow>-<FNV-1a 32 of the node name>`)."""
    return f"{workflow}-{fnv32a(node_name)}"


def pod_log(server: LocalKfpServer, run_id: str, workflow: str, node: str, template: str):
    """GET the log of the pod of a node by its name, as KFP's UI does: POD_NAMES v2,
    `<workflow>-<template>-<FNV-1a of the node name>` (`RetrievePodName`)."""
    pod = f"{workflow}-{template}-{fnv32a(node)}"
    return requests.get(f"{server.url}/apis/v1alpha1/runs/{run_id}/nodes/{pod}/log", timeout=30)


def children(detail: dict[str, Any]) -> set[str]:
    return {child["pod_name"] for child in detail.get("child_tasks") or []}


def test_add_subtract_multiply_runs_with_the_v1beta1_parameters(server, client, versions):
    """(7 + 2) * (7 - 2) = 45 reaches the last task, which checks it; task details are one
    entry per Argo node (`common/util/workflow.go` NodeStatuses, `server/api_converter.go`
    toModelTasks): the DAG's children are its root tasks, each task's its dependents."""
    run_id = start_v1_run(server, versions["add_subtract_multiply"], a="7", b="2", expected="45")
    run = finished(client, run_id)
    assert run.state == "SUCCEEDED", run.error
    details = details_of(run)
    workflow = workflow_of(details, "add-subtract-multiply-v1-")
    assert set(details) == {workflow, "add", "subtract", "multiply", "check-equals"}
    assert {entry["state"] for entry in details.values()} == {"SUCCEEDED"}
    assert children(details[workflow]) == {
        node_id(workflow, f"{workflow}.add"),
        node_id(workflow, f"{workflow}.subtract"),
    }
    multiply = node_id(workflow, f"{workflow}.multiply")
    assert children(details["add"]) == children(details["subtract"]) == {multiply}
    assert children(details["multiply"]) == {node_id(workflow, f"{workflow}.check-equals")}
    log = pod_log(server, run_id, workflow, f"{workflow}.check-equals", "check-equals")
    assert log.status_code == 200 and "checked: 45.0 == 45.0" in log.text
    wrong = pod_log(server, run_id, workflow, f"{workflow}.check-equals", "add")
    assert wrong.status_code == 500  # no such pod, as KFP answers
    # the pod's archived log, Argo's `main-logs` artifact, by node id (ReadArtifact)
    read = requests.get(
        f"{server.url}/apis/v2beta1/runs/{run_id}/nodes/{multiply}/artifacts/main-logs:read",
        timeout=30,
    )
    assert read.status_code == 200
    assert (
        base64.b64decode(read.json()["data"])
        == (
            server.data_dir
            / "runs"
            / run_id
            / "logs"
            / f"{workflow}-multiply-{multiply.rsplit('-', 1)[1]}.log"
        ).read_bytes()
    )
    dag = requests.get(
        f"{server.url}/apis/v2beta1/runs/{run_id}/nodes/{workflow}/artifacts/main-logs:read",
        timeout=30,
    )
    assert dag.status_code == 404  # the workflow's DAG node is no pod


def test_a_wrong_expected_value_fails_the_run(server, client, versions):
    """The defaults are used where no value is given: expected 16, product 45: FAILED."""
    run_id = start_v1_run(server, versions["add_subtract_multiply"], a="7", b="2")
    run = finished(client, run_id)
    assert run.state == "FAILED"
    assert "expected 16.0, got 45.0" in run.error.message
    assert details_of(run)["check-equals"]["state"] == "FAILED"


def test_a_condition_runs_one_branch_and_skips_the_other(server, client, versions):
    """dsl.Condition compiles to a DAG task with `when`; the branch not taken is a Skipped
    node (`workflow/controller/dag.go`), which KFP reports SKIPPED."""
    run = finished(client, start_v1_run(server, versions["condition"], value="9"))
    assert run.state == "SUCCEEDED", run.error
    details = details_of(run)
    assert details["condition-1"]["state"] == "SUCCEEDED"
    assert details["condition-2"]["state"] == "SKIPPED"
    assert details["report"]["state"] == "SUCCEEDED"
    assert "report-2" not in details


def test_loops_over_items_and_an_upstream_output(server, client, versions):
    """withItems over dicts ({{item.a}}) and withParam over a task's output: a TaskGroup
    node and one `<task>(<i>:<item>)` node per item (`dag.go` expandTask, `steps.go`
    processItem)."""
    run_id = start_v1_run(server, versions["loop"], count="3")
    run = finished(client, run_id)
    assert run.state == "SUCCEEDED", run.error
    entries = entries_of(run)
    names = [entry["display_name"] for entry in entries]
    workflow = workflow_of({name: {} for name in names}, "loop-v1-")
    group = next(entry for entry in entries if entry["display_name"] == "for-loop-3")
    items = {node_id(workflow, f"{workflow}.for-loop-3({i}:{i + 1})") for i in range(3)}
    assert children(group) == items
    assert {"for-loop-2(0:a:1,b:2,total:3)", "for-loop-2(1:a:10,b:5,total:15)"} <= set(names)
    assert names.count("square") == 3 and names.count("check-sum") == 2
    assert {entry["state"] for entry in entries} == {"SUCCEEDED"}
    log = pod_log(server, run_id, workflow, f"{workflow}.for-loop-3(1:2).square", "square")
    assert log.status_code == 200 and "square of 2" in log.text


def test_an_artifact_a_retry_and_the_exit_handler(server, client, versions):
    """An OutputPath file reaches the next task as an InputPath artifact; the writer fails
    its first attempt ({{retries}} is 0) and its retry succeeds (a Retry node with attempts
    `write-lines(0)`, `write-lines(1)`); the exit handler `<wf>.onExit` gets
    {{workflow.status}}. The embedded server's extension lists the pod's Argo output
    artifact (as the node's `outputs.artifacts`, Argo's `pkg/apis/workflow/v1alpha1`
    NodeStatus) and serves its file, and records the reader's resolved inputs."""
    run_id = start_v1_run(server, versions["artifact"], text="hi there", count="2")
    run = finished(client, run_id)
    assert run.state == "SUCCEEDED", run.error
    details = details_of(run)
    workflow = workflow_of(details, "artifact-v1-")
    assert details["write-lines(0)"]["state"] == "FAILED"
    assert details["write-lines(1)"]["state"] == "SUCCEEDED"
    assert details["write-lines"]["state"] == "SUCCEEDED"
    assert details["check-lines"]["state"] == "SUCCEEDED"
    assert details[f"{workflow}.onExit"]["state"] == "SUCCEEDED"
    node = f"{workflow}.exit-handler-1.check-lines"
    assert (
        "read 2 lines of 'hi there'" in pod_log(server, run_id, workflow, node, "check-lines").text
    )
    handler = pod_log(server, run_id, workflow, f"{workflow}.onExit", "announce")
    assert "workflow status: Succeeded" in handler.text
    extension = f"{server.url}/apis/local/v1/runs/{run_id}"
    listed = requests.get(f"{extension}/artifacts", timeout=30).json()["artifacts"]
    written = next(a for a in listed if a["task"] == "write-lines(1)")
    assert (written["name"], written["type"]) == ("write-lines-data", "")  # Argo gives no type
    download = requests.get(f"{server.url}/{written['download']}", timeout=30)
    assert download.status_code == 200 and download.text == "hi there\nhi there\n"
    tasks = requests.get(f"{extension}/tasks", timeout=30).json()["tasks"]
    check = next(task for task in tasks if task["name"] == "check-lines")
    assert check["inputs"]["parameters"] == {"count": "2", "text": "hi there"}
    [given] = check["inputs"]["artifacts"]
    assert (given["name"], given["uri"]) == ("write-lines-data", written["uri"])


def test_a_command_that_is_not_installed_fails_saying_the_image_was_not_used(
    server, client, versions
):
    """The image cannot be pulled here: the command runs on this machine, and the task's
    error (the run's, and the pod's log) says it is not installed and the image unused."""
    run_id = start_v1_run(server, versions["missing_command"])
    run = finished(client, run_id)
    assert run.state == "FAILED"
    details = details_of(run)
    workflow = workflow_of(details, "missing-command-v1-")
    assert details["convert"]["state"] == "FAILED"  # Argo's Error phase, FAILED in KFP
    log = pod_log(server, run_id, workflow, f"{workflow}.convert", "convert")
    for text in (run.error.message, log.text):
        assert "'kfadapter-no-such-converter' is not installed here" in text
        assert "image 'example.org/tools/converter:1.0' was not used" in text


def test_an_unsupported_feature_fails_the_run_at_once_naming_it(server, client, versions):
    """A resource template (dsl.ResourceOp) needs a cluster: the run fails before any task
    starts (no node, no pod log), with a message naming it."""
    run_id = start_v1_run(server, versions["unsupported"])
    run = finished(client, run_id)
    assert run.state == "FAILED"
    assert "resource templates (template 'make-config-map')" in run.error.message
    assert not (run.run_details and run.run_details.task_details)
    assert not (server.data_dir / "runs" / run_id / "logs").exists()


def test_packages_to_install_are_in_the_tasks_environment(
    server, client, versions, tmp_path, monkeypatch
):
    """kfp 1.8's `pip install` preamble installs into the task's environment (here from a
    loopback index, the default index of the server's installer)."""
    root = tmp_path / "index"
    add_to_index(root, build_wheel(tmp_path, "kfadapter-v1-probe", "0.1.0"))
    with package_index(root) as index:
        monkeypatch.setenv("UV_DEFAULT_INDEX", index.url)
        monkeypatch.setenv("PIP_INDEX_URL", index.url)
        run = finished(client, start_v1_run(server, versions["packages"]))
    assert run.state == "SUCCEEDED", run.error
    assert index.requested("kfadapter-v1-probe")


def test_terminate_kills_the_pods_and_ends_the_nodes_failed(server, client, versions):
    """Terminating a V1 run ends it FAILED, as Argo ends a workflow KFP terminates
    (`activeDeadlineSeconds: 0`), its running nodes Failed; its processes are gone."""
    run_id = start_v1_run(server, versions["sleeps"], seconds="600")
    run_directory = server.data_dir / "runs" / run_id
    pid = worker_pid(run_directory)
    wait_until(
        lambda: (
            list((run_directory / "logs").glob("*.log"))
            and "sleeping" in next((run_directory / "logs").glob("*.log")).read_text()
        ),
        TIMEOUT,
        details=lambda: "the sleeping task did not start",
    )
    client.terminate_run(run_id)
    run = finished(client, run_id)
    assert run.state == "FAILED"
    assert {entry["state"] for entry in details_of(run).values()} == {"FAILED"}
    assert wait_group_gone(pid), live_group_members(pid)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_retried_v1_run_carries_its_succeeded_pods_forward(server, client, tmp_path):
    """`:retry` of a failed V1 run executes the workflow again as KFP retries it
    (`common/util/workflow.go` GenerateRetryExecution): the pod that succeeded keeps its
    node (times) and log, the failed one runs again. (A marker file outside the pods makes
    the second task fail once: a test device only, a cluster's pods share no files.)"""
    marker, counter = tmp_path / "marker", tmp_path / "counter"
    script = f"if [ -f {marker} ]; then echo second try; else touch {marker}; exit 1; fi"
    document = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": "retried-"},
        "spec": {
            "entrypoint": "main",
            "templates": [
                {
                    "name": "main",
                    "dag": {
                        "tasks": [
                            {"name": "first", "template": "first"},
                            {"name": "second", "template": "second", "dependencies": ["first"]},
                        ]
                    },
                },
                {
                    "name": "first",
                    "container": {
                        "image": "alpine:3",
                        "command": ["sh", "-c", f"echo first ran >> {counter}; echo first ran"],
                    },
                },
                {
                    "name": "second",
                    "container": {"image": "alpine:3", "command": ["sh", "-c", script]},
                },
            ],
        },
    }
    path = tmp_path / "retried.yaml"
    path.write_text(yaml.safe_dump(document))
    pipeline = client.upload_pipeline(str(path), pipeline_name="v1-retried")
    version = client.list_pipeline_versions(pipeline.pipeline_id).pipeline_versions[0]
    run_id = start_v1_run(server, version.pipeline_version_id)
    failed = finished(client, run_id)
    assert failed.state == "FAILED"
    response = requests.post(f"{server.url}/apis/v2beta1/runs/{run_id}:retry", timeout=30)
    assert response.status_code == 200, response.text
    wait_until(lambda: client.get_run(run_id).state != "FAILED", TIMEOUT)
    run = finished(client, run_id)
    assert run.state == "SUCCEEDED", run.error
    assert counter.read_text().splitlines() == ["first ran"]
    before, after = details_of(failed), details_of(run)
    assert after["first"]["start_time"] == before["first"]["start_time"]
    assert after["first"]["end_time"] == before["first"]["end_time"]
    assert after["second"]["state"] == "SUCCEEDED"
    workflow = workflow_of(after, "retried-")
    log = pod_log(server, run_id, workflow, f"{workflow}.first", "first")
    assert log.status_code == 200 and "first ran" in log.text
