"""KFP v1 pipelines (Argo Workflows, as kfp 1.8 compiles them) through the adapter over HTTP:
uploaded the TM's way, described with their arguments, started with the TM's string
arguments, tracked and notified. The embedded KFP server really executes the runs.

KFP 2.17's source: a V1 template and its parameters (backend/src/apiserver/template/
template.go, argo_template.go), a version's pipeline_spec (server/api_converter.go
toApiPipelineVersion), v2beta1 runtime_config.parameters not applied to a V1 run
(api_converter.go toModelRun, argo_template.go RunWorkflow) and the v1beta1 runs API
that does apply pipeline_spec.parameters (server/run_server.go, CreateRunV1).
"""

from __future__ import annotations

import copy
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kfadapter.settings import Settings
from kfadapter.tracking.notifier import notification_id
from tests.adapter_support import Adapter, serve_adapter, tm_upload, unique, wait_for_state
from tests.pipelines import V1_DIRECTORY, v1_workflow
from tests.support import wait_until

pytestmark = pytest.mark.e2e  # real servers and processes on free ports

ASM = V1_DIRECTORY / "add_subtract_multiply.yaml"
RUN_TIMEOUT = 180.0


@pytest.fixture(scope="module")
def v1_adapter(kfp_proxy, tm, tmp_path_factory) -> Iterator[Adapter]:
    """The adapter with tracking on, notifying the module's TM receiver."""
    settings = Settings(
        kfp_endpoint=kfp_proxy.url + "/pipeline",
        data_dir=tmp_path_factory.mktemp("v1-adapter"),
        kfp_timeout=30.0,
        tracking_enabled=True,
        poll_interval=0.2,
        trainingmgr_host=tm.host,
        trainingmgr_port=tm.port,
        notify_timeout=2.0,
    )
    with serve_adapter(settings, kfp_proxy) as served:
        yield served


@pytest.fixture(scope="module")
def asm_v1(v1_adapter) -> str:
    """The kfp 1.8 add/subtract/multiply pipeline uploaded the TM's way: its name."""
    name = unique("asm-v1")
    answer = tm_upload(v1_adapter, name, ASM, description="kfp 1.8")
    assert answer.status_code == 200, answer.text
    return name


def _execute(adapter: Adapter, job: str, pipeline: str, **arguments: Any):
    return adapter.post(
        f"/trainingjobs/{job}/execution",
        json={
            "pipeline_name": pipeline,
            "experiment_name": "Default",
            "arguments": {
                "trainingjob_id": job,
                "featuregroup_name": "cells",
                "modelName": "qoe",
                **arguments,
            },
        },
    )


def test_a_v1_upload_shows_its_arguments_parameters_and_template_type(
    v1_adapter, asm_v1, compiled
) -> None:
    """POST /pipelineIds/<name> stores the workflow; GET /pipelines/<name> reads its
    spec.arguments.parameters: `arguments` {name: value}, typed `parameters` (strings),
    template_type V1, and the version endpoints alike, with the entrypoint DAG's tasks. A
    v2 pipeline says V2."""
    pipeline = v1_adapter.get(f"/pipelines/{asm_v1}").json()
    assert pipeline["arguments"] == {"a": "5.0", "b": "3.0", "expected": "16.0"}
    assert pipeline["template_type"] == "V1"
    assert [(p["name"], p["type"], p["default"]) for p in pipeline["parameters"]] == [
        ("a", "STRING", "5.0"),
        ("b", "STRING", "3.0"),
        ("expected", "STRING", "16.0"),
    ]
    second = tm_upload(v1_adapter, asm_v1, ASM)
    assert (second.status_code, second.json()["version_name"]) == (200, "2")
    versions = v1_adapter.get(f"/pipelines/{asm_v1}/versions").json()["versions"]
    assert [v["template_type"] for v in versions] == ["V1", "V1"]
    version = v1_adapter.get(f"/pipelines/{asm_v1}/versions/2").json()
    assert version["template_type"] == "V1"
    assert {t["name"]: t["dependencies"] for t in version["tasks"]} == {
        "add": [],
        "subtract": [],
        "multiply": ["add", "subtract"],
        "check-equals": ["multiply"],
    }
    v2_name = unique("asm-v2")
    assert tm_upload(v1_adapter, v2_name, compiled["add_subtract_multiply"]).status_code == 200
    assert v1_adapter.get(f"/pipelines/{v2_name}").json()["template_type"] == "V2"


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (
            lambda w: w.__setitem__("apiVersion", "argoproj.io/v1beta1"),
            "Unsupported argo version. Expected: argoproj.io/v1alpha1",
        ),
        (
            lambda w: w["spec"]["templates"].append(copy.deepcopy(w["spec"]["templates"][0])),
            "spec.templates[5].name 'add' is not unique",
        ),
        (
            lambda w: w["spec"]["templates"][0]["container"]["args"].append(
                "{{inputs.parameters.c}}"
            ),
            "failed to resolve {{inputs.parameters.c}}",
        ),
    ],
)
@pytest.mark.parametrize("packing", ["yaml", "tar.gz"])
def test_a_malformed_v1_upload_is_a_400_saying_why(
    v1_adapter, tmp_path: Path, change: Any, words: str, packing: str
) -> None:
    """KFP answers Argo's validation errors with a 500 (argo_template.go returns them
    unwrapped, so server/pipeline_upload_server.go does not see a user error): the adapter
    checks a workflow as KFP does before uploading, plain or as the pipeline.yaml of a
    .tar.gz (`server/util.go` ReadPipelineFile), and answers 400; nothing is stored."""
    workflow = copy.deepcopy(v1_workflow("add_subtract_multiply"))
    change(workflow)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(workflow))
    if packing == "tar.gz":
        with tarfile.open(tmp_path / "bad.tar.gz", "w:gz") as archive:
            archive.add(path, "pipeline.yaml")
        path = tmp_path / "bad.tar.gz"
    name = unique("bad-v1")
    answer = tm_upload(v1_adapter, name, path)
    assert answer.status_code == 400, answer.text
    assert words in answer.json()["message"]
    assert v1_adapter.get(f"/pipelineIds/{name}").status_code == 404


def test_execution_starts_a_v1_run_with_the_tm_arguments_and_the_tm_is_notified(
    v1_adapter, asm_v1, receiver
) -> None:
    """The TM's string arguments map to the V1 parameters with the v2 rules (case-
    insensitive names; unknown ones ignored) and reach the run the way KFP 2.17 applies
    them: the v1beta1 runs API. The last task checks (a + b) * (a - b) == expected, so
    SUCCEEDED shows 7 and 2 flowed; a wrong `expected` ends FAILED. Both are tracked and
    the TM receives each outcome."""
    ok, bad = unique("v1-ok"), unique("v1-bad")
    answer = _execute(v1_adapter, ok, asm_v1, A="7", b="2", Expected="45")
    assert answer.status_code == 200, answer.text
    started = answer.json()
    assert started["parameters"] == {"a": "7", "b": "2", "expected": "45"}
    assert started["ignored_arguments"] == ["featuregroup_name", "modelName", "trainingjob_id"]
    assert (started["run_status"], started["tracked"]) == ("scheduled", True)
    failing = _execute(v1_adapter, bad, asm_v1, a="7", b="2", expected="16").json()
    run = v1_adapter.get(f"/runs/{started['run_id']}").json()
    assert run["pipeline_version_id"] == started["pipeline_version_id"]
    assert run["parameters"] == {"a": "7", "b": "2", "expected": "45"}
    for job, state in ((started, "SUCCEEDED"), (failing, "FAILED")):
        wait_until(lambda job=job: receiver.for_run(job["run_id"]), timeout=RUN_TIMEOUT)
        assert receiver.for_run(job["run_id"]) == [
            {
                "trainingjob_id": job["trainingjob_id"],
                "run_id": job["run_id"],
                "run_status": state,
                "notification_id": notification_id(job["run_id"], state),
            }
        ]
        assert v1_adapter.get(f"/runs/{job['run_id']}").json()["state"] == state


def test_a_required_v1_parameter_without_an_argument_is_a_400_naming_it(
    v1_adapter, tmp_path: Path
) -> None:
    """A V1 parameter without a value must be given: the adapter names it (KFP itself
    would fail the run's creation with a 500: resource_manager.go CreateRun,
    executionSpec.Validate(false, false))."""
    workflow = copy.deepcopy(v1_workflow("add_subtract_multiply"))
    del workflow["spec"]["arguments"]["parameters"][2]["value"]
    path = tmp_path / "unset.yaml"
    path.write_text(yaml.safe_dump(workflow))
    name = unique("unset-v1")
    assert tm_upload(v1_adapter, name, path).status_code == 200
    assert v1_adapter.get(f"/pipelines/{name}").json()["arguments"]["expected"] is None
    answer = _execute(v1_adapter, unique("v1-missing"), name, a="1")
    assert answer.status_code == 400
    assert answer.json()["missing_parameters"] == ["expected"]
    assert "missing required parameters: expected" in answer.json()["message"]


def _printing(workflow: dict[str, Any]) -> dict[str, Any]:
    """The kfp 1.8 workflow with each lightweight component first printing its name and
    arguments (`sh -ec <program> <python source>`: the source is the command's last item)."""
    changed = copy.deepcopy(workflow)
    for template in changed["spec"]["templates"]:
        if "container" in template:
            command = template["container"]["command"]
            command[-1] = (
                f"import sys\nprint('component {template['name']} got', sys.argv[1:])\n"
                + command[-1]
            )
    return changed


def test_logs_of_a_v1_run_read_each_task_s_pod(v1_adapter, tmp_path: Path) -> None:
    """A V1 task's pod is `<workflow>-<template>-<FNV-1a of its node name>` (KFP's
    backend/src/common/util/workflow.go RetrievePodName, Argo POD_NAMES v2); task details
    carry no template (server/api_converter.go toApiPipelineTaskDetail), so the adapter
    reads the run's version, whose pipeline_spec is the workflow (toApiPipelineVersion):
    one more KFP call for the logs, none per task and none for GET /runs/<id>. Each of the
    4 tasks gets its own component's log, with the values the run was given."""
    path = tmp_path / "printing.yaml"
    path.write_text(yaml.safe_dump(_printing(v1_workflow("add_subtract_multiply"))))
    name = unique("asm-v1-logs")
    assert tm_upload(v1_adapter, name, path).status_code == 200
    started = _execute(v1_adapter, unique("v1-logs"), name, a="7", b="2", expected="45").json()
    run_id = started["run_id"]
    assert wait_for_state(v1_adapter, run_id, timeout=RUN_TIMEOUT)["state"] == "SUCCEEDED"
    answer = v1_adapter.get(f"/runs/{run_id}/logs")
    assert answer.status_code == 200, answer.text
    logs = {task["name"]: task for task in answer.json()["tasks"]}
    assert set(logs) == {"add", "subtract", "multiply", "check-equals"}
    for task, got in {
        "add": "['--a', '7', '--b', '2'",
        "subtract": "['--a', '7', '--b', '2'",
        "multiply": "['--a', '9.0', '--b', '5.0'",
        "check-equals": "['--value', '45.0', '--expected', '45'",
    }.items():
        entry = logs[task]
        assert (entry["state"], entry["error"]) == ("SUCCEEDED", None), entry
        assert f"component {task} got {got}" in entry["log"], entry
        others = set(logs) - {task}
        assert not any(f"component {other} got" in entry["log"] for other in others)
    assert "checked: 45.0 == 45.0" in logs["check-equals"]["log"]
    one = v1_adapter.get(f"/runs/{run_id}/logs", params={"task": "multiply"}).json()["tasks"]
    assert one == [logs["multiply"]]
    version = f"/pipelines/{started['pipeline_id']}/versions/{started['pipeline_version_id']}"
    calls = v1_adapter.kfp_calls("GET", f"/runs/{run_id}/logs")
    pods = sorted(c.split("/nodes/")[1].removesuffix("/log") for c in calls if "/nodes/" in c)
    assert sorted(set(calls) - {c for c in calls if "/nodes/" in c}) == sorted(
        [f"GET {version}", f"GET /runs/{run_id}"]
    )
    workflow = re.escape(pods[0].split("-add-")[0])
    templates = [re.fullmatch(rf"{workflow}-(.+)-\d+", pod)[1] for pod in pods]
    assert (len(calls), templates) == (6, ["add", "check-equals", "multiply", "subtract"])
    assert v1_adapter.kfp_calls("GET", f"/runs/{run_id}") == [f"GET /runs/{run_id}"]


def test_logs_of_a_retried_v1_task_and_of_the_exit_handler(v1_adapter) -> None:
    """A retried task (Argo's retry node `<node>`, attempts `<node>(<n>)`: workflow/
    controller/operator.go) reads its newest attempt's pod; each attempt its own; the exit
    handler `<workflow>.onExit` its template's pod. kfp 1.8 artifact pipeline: write-lines
    fails its first attempt, check-lines reads the file artifact, `announce` runs on exit."""
    name = unique("artifact-v1")
    assert tm_upload(v1_adapter, name, V1_DIRECTORY / "artifact.yaml").status_code == 200
    started = _execute(v1_adapter, unique("v1-retry"), name, text="hi there", count="2").json()
    run_id = started["run_id"]
    assert wait_for_state(v1_adapter, run_id, timeout=RUN_TIMEOUT)["state"] == "SUCCEEDED"
    logs = {task["name"]: task for task in v1_adapter.get(f"/runs/{run_id}/logs").json()["tasks"]}
    assert "the first attempt fails, to be retried" in logs["write-lines(0)"]["log"]
    assert logs["write-lines(0)"]["state"] == "FAILED"
    assert logs["write-lines"]["log"] == logs["write-lines(1)"]["log"]
    assert "the first attempt fails" not in logs["write-lines"]["log"]
    assert "read 2 lines of 'hi there'" in logs["check-lines"]["log"]
    exit_handler = next(task for task in logs.values() if task["name"].endswith(".onExit"))
    assert "workflow status: Succeeded" in exit_handler["log"]
    assert logs["exit-handler-1"]["log"] is None  # a DAG runs no pod
