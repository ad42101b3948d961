"""KFP v1 pipelines (Argo Workflows, as kfp 1.8 compiles them) on the embedded server:
stored, refused and run as KFP 2.17 does, over HTTP with the unmodified kfp.Client.

KFP's source: backend/src/apiserver/template/template.go (a V1 template),
template/argo_template.go (ValidateWorkflow, RunWorkflow), server/pipeline_upload_server.go,
server/api_converter.go (toApiPipelineVersion, toModelRun, toApiRun),
resource/resource_manager.go (CreatePipelineAndPipelineVersion, CreateRun) and
common/util/workflow.go (VerifyParameters, OverrideParameters).
"""

from __future__ import annotations

import copy
import io
import json
import tarfile
import time
import zipfile
from pathlib import Path
from typing import Any

import kfp_server_api
import pytest
import requests
import yaml

from tests.localkfp.conftest import client_for
from tests.pipelines import V1_DIRECTORY, v1_workflow

pytestmark = pytest.mark.e2e  # real servers and processes on free ports

ASM = "add_subtract_multiply"
ENTRYPOINT = "add-subtract-multiply-v1"
V2 = "/apis/v2beta1"


def _zip(text: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("pipeline.yaml", text)
    return buffer.getvalue()


def _tar(text: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo("pipeline.yaml")
        info.size = len(text)
        archive.addfile(info, io.BytesIO(text))
    return buffer.getvalue()


def _upload(server, name: str, data: bytes, filename: str = "p.yaml", **query: str):
    path = "upload_version" if "pipelineid" in query else "upload"
    return requests.post(
        f"{server.url}{V2}/pipelines/{path}",
        params={"name": name, **query},
        files={"uploadfile": (filename, data)},
        timeout=30,
    )


def _uploaded(server, name: str, workflow: dict[str, Any] | None = None) -> dict[str, Any]:
    """A V1 pipeline uploaded: {"pipeline_id", "version"} (the version's KFP JSON)."""
    answer = _upload(server, name, yaml.safe_dump(workflow or v1_workflow(ASM)).encode())
    assert answer.status_code == 200, answer.text
    pipeline_id = answer.json()["pipeline_id"]
    versions = requests.get(f"{server.url}{V2}/pipelines/{pipeline_id}/versions", timeout=30)
    return {"pipeline_id": pipeline_id, "version": versions.json()["pipeline_versions"][0]}


def _reference(uploaded: dict[str, Any]) -> dict[str, str]:
    return {
        "pipeline_id": uploaded["pipeline_id"],
        "pipeline_version_id": uploaded["version"]["pipeline_version_id"],
    }


def _run_v1(server, uploaded: dict[str, Any], **values: str) -> requests.Response:
    """POST /apis/v1beta1/runs as a kfp 1.8 client sends it: the version as a resource
    reference, the values as pipeline_spec.parameters."""
    body = {
        "name": "v1-run",
        "pipeline_spec": {"parameters": [{"name": k, "value": v} for k, v in values.items()]},
        "resource_references": [
            {
                "key": {
                    "type": "PIPELINE_VERSION",
                    "id": uploaded["version"]["pipeline_version_id"],
                },
                "relationship": "CREATOR",
            }
        ],
    }
    return requests.post(f"{server.url}/apis/v1beta1/runs", json=body, timeout=30)


def _submitted(server, run_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(spec, parameters) the server handed its executor (the HeldExecutor stand-in)."""
    found = [(spec, params) for rid, spec, params in server._executor.submitted if rid == run_id]
    assert len(found) == 1
    return found[0]


def _count(server, what: str = "pipelines") -> int:
    """How many pipelines (or runs) the server lists (protojson leaves a 0 out)."""
    return requests.get(f"{server.url}{V2}/{what}", timeout=30).json().get("total_size", 0)


def _wait_final(server, run_id: str, timeout: float = 180.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run = requests.get(f"{server.url}{V2}/runs/{run_id}", timeout=30).json()
        if run["state"] in ("SUCCEEDED", "FAILED"):
            return run
        assert time.monotonic() < deadline, f"run {run_id} still {run['state']}"
        time.sleep(0.3)


# -- storage ------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["yaml", "json", "zip", "tar.gz"])
def test_a_v1_workflow_uploads_with_kfp_client_and_its_version_returns_the_workflow(
    held_server, tmp_path: Path, form: str
) -> None:
    """template.go: an argoproj.io Workflow is a V1 template; KFP stores it and
    toApiPipelineVersion returns the Workflow itself as the version's pipeline_spec. As a
    .yaml/.json file, or pipeline.yaml in a .zip / .tar.gz (server/util.go
    ReadPipelineFile), through upload_pipeline and upload_pipeline_version."""
    text = (V1_DIRECTORY / f"{ASM}.yaml").read_bytes()
    data = {
        "yaml": text,
        "json": json.dumps(v1_workflow(ASM)).encode(),
        "zip": _zip(text),
        "tar.gz": _tar(text),
    }[form]
    path = tmp_path / f"asm.{form}"
    path.write_bytes(data)
    client = client_for(held_server)
    name = f"asm-v1-{form}-{time.time_ns()}"
    pipeline = client.upload_pipeline(str(path), pipeline_name=name, description="kfp 1.8")
    version = client.upload_pipeline_version(
        str(path), pipeline_version_name="second", pipeline_id=pipeline.pipeline_id
    )
    listed = client.list_pipeline_versions(pipeline.pipeline_id).pipeline_versions
    assert [v.display_name for v in listed] == [name, "second"]
    for stored in listed:
        assert stored.pipeline_spec == v1_workflow(ASM)
    assert version.pipeline_spec["spec"]["arguments"]["parameters"] == [
        {"name": "a", "value": "5.0"},
        {"name": "b", "value": "3.0"},
        {"name": "expected", "value": "16.0"},
    ]


@pytest.mark.parametrize(
    ("change", "status", "words"),
    [
        (
            lambda w: w.__setitem__("apiVersion", "argoproj.io/v1beta1"),
            400,
            "Unsupported argo version. Expected: argoproj.io/v1alpha1. Received: "
            "argoproj.io/v1beta1",
        ),
        (
            lambda w: w["spec"].__setitem__("templates", "add"),
            400,
            "Failed to parse the workflow template: spec.templates must be a list",
        ),
        (
            lambda w: w["spec"]["templates"].append(copy.deepcopy(w["spec"]["templates"][0])),
            500,
            "spec.templates[5].name 'add' is not unique",
        ),
        (
            lambda w: w["spec"]["templates"][0]["container"]["args"].append(
                "{{inputs.parameters.c}}"
            ),
            500,
            "templates.add templates.add: failed to resolve {{inputs.parameters.c}}",
        ),
    ],
)
def test_malformed_workflows_are_refused_saying_why_and_nothing_is_stored(
    held_server, change: Any, status: int, words: str
) -> None:
    """KFP's own checks (template/argo_template.go ValidateWorkflow: util.NewInvalidInput-
    Error) are user errors: 400 with the upload routes' {"error_message", "error_details"}
    (server/pipeline_upload_server.go). Argo's validation errors (unique template names,
    references that resolve, ...) are returned unwrapped, so IsUserErrorCodeMatch fails and
    the upload answers 500 "Failed to create a pipeline and a pipeline version" (this
    server adds why). Nothing is stored either way; an upload_version alike."""
    workflow = copy.deepcopy(v1_workflow(ASM))
    change(workflow)
    before = _count(held_server)
    answer = _upload(held_server, f"bad-{time.time_ns()}", yaml.safe_dump(workflow).encode())
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == {"error_message", "error_details"}
    assert words in body["error_message"]
    if status == 500:
        assert body["error_message"].startswith(
            "Failed to create a pipeline and a pipeline version"
        )
    assert _count(held_server) == before
    existing = _uploaded(held_server, f"good-{time.time_ns()}")
    answer = _upload(
        held_server, "v2", yaml.safe_dump(workflow).encode(), pipelineid=existing["pipeline_id"]
    )
    assert answer.status_code == status and words in answer.json()["error_message"]
    versions = requests.get(
        f"{held_server.url}{V2}/pipelines/{existing['pipeline_id']}/versions", timeout=30
    ).json()
    assert versions["total_size"] == 1


def test_kfp_client_sees_the_refusal_as_an_api_exception(held_server, tmp_path: Path) -> None:
    """The unmodified kfp.Client raises kfp_server_api's ApiException with KFP's status."""
    workflow = copy.deepcopy(v1_workflow(ASM))
    workflow["apiVersion"] = "argoproj.io/v2"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(workflow))
    with pytest.raises(kfp_server_api.ApiException) as error:
        client_for(held_server).upload_pipeline(str(path), pipeline_name=f"x-{time.time_ns()}")
    assert error.value.status == 400
    assert "Unsupported argo version" in str(error.value.body)


# -- runs: which values a V1 run takes ------------------------------------------------


def test_v2beta1_runtime_config_parameters_are_not_applied_to_a_v1_run(held_server) -> None:
    """server/api_converter.go toModelRun leaves a v2beta1 run's v1 parameters empty and
    template/argo_template.go RunWorkflow reads only those, so a V1 run gets the workflow's
    own values; KFP keeps runtime_config as given (shown back, names not checked)."""
    uploaded = _uploaded(held_server, f"asm-v2api-{time.time_ns()}")
    answer = requests.post(
        f"{held_server.url}{V2}/runs",
        json={
            "display_name": "given the v2 way",
            "pipeline_version_reference": _reference(uploaded),
            "runtime_config": {"parameters": {"a": "7", "b": 2, "nothing": "x"}},
        },
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    run = answer.json()
    assert run["runtime_config"] == {"parameters": {"a": "7", "b": 2, "nothing": "x"}}
    assert run["pipeline_version_reference"] == _reference(uploaded)
    spec, parameters = _submitted(held_server, run["run_id"])
    assert parameters == {"a": "5.0", "b": "3.0", "expected": "16.0"}
    assert spec["kind"] == "Workflow" and spec["spec"]["entrypoint"] == ENTRYPOINT


def test_v1beta1_parameters_are_applied_and_read_back(held_server) -> None:
    """POST /apis/v1beta1/runs: pipeline_spec.parameters override the workflow's values
    (OverrideParameters) after KFP's macros are replaced (common/util/parameter_formatter.go:
    [[RunUUID]] is the run id); the v2beta1 run shows them as runtime_config.parameters
    (api_converter.go toApiRun reads the v1 parameters when the runtime config is empty)
    and names its version."""
    uploaded = _uploaded(held_server, f"asm-v1api-{time.time_ns()}")
    answer = _run_v1(held_server, uploaded, a="7", b="run [[RunUUID]]")
    assert answer.status_code == 200, answer.text
    detail = answer.json()
    assert set(detail) == {"run", "pipeline_runtime"}
    run_id = detail["run"]["id"]
    assert detail["run"]["status"] == "Pending"
    spec, parameters = _submitted(held_server, run_id)
    assert parameters == {"a": "7", "b": f"run {run_id}", "expected": "16.0"}
    assert spec["spec"]["arguments"]["parameters"][1] == {"name": "b", "value": f"run {run_id}"}
    run = requests.get(f"{held_server.url}{V2}/runs/{run_id}", timeout=30).json()
    assert run["runtime_config"] == {"parameters": {"a": "7", "b": "run [[RunUUID]]"}}
    assert run["pipeline_version_reference"] == _reference(uploaded)
    assert run["state"] == "PENDING"


def test_an_unknown_v1beta1_parameter_is_a_400_and_a_missing_value_a_500(held_server) -> None:
    """common/util/workflow.go VerifyParameters: "Unrecognized input parameter" is an
    invalid-input error (400, code 3); a parameter left without a value fails CreateRun's
    executionSpec.Validate(false, false), an internal error (500, code 13). No run is
    stored either way."""
    uploaded = _uploaded(held_server, f"asm-unknown-{time.time_ns()}")
    runs_before = _count(held_server, "runs")
    answer = _run_v1(held_server, uploaded, a="1", c="2")
    assert answer.status_code == 400
    assert answer.json()["code"] == 3
    assert "Unrecognized input parameter: c" in answer.json()["message"]
    workflow = copy.deepcopy(v1_workflow(ASM))
    del workflow["spec"]["arguments"]["parameters"][2]["value"]
    unset = _uploaded(held_server, f"asm-unset-{time.time_ns()}", workflow)
    answer = _run_v1(held_server, unset, a="1")
    assert answer.status_code == 500, answer.text
    assert answer.json()["code"] == 13
    assert (
        "spec.arguments.expected.value or spec.arguments.expected.valueFrom is required"
        in (answer.json()["message"])
    )
    assert _run_v1(held_server, unset, expected="4").status_code == 200
    runs_after = _count(held_server, "runs")
    assert runs_after == runs_before + 1


def test_an_inline_workflow_runs_with_the_values_it_carries(held_server) -> None:
    """A v2beta1 run whose pipeline_spec is a Workflow (its template is made in CreateRun):
    the values are the workflow's spec.arguments.parameters; a workflow Argo refuses is the
    internal error of a template that cannot be fetched (500, code 13)."""
    workflow = copy.deepcopy(v1_workflow(ASM))
    workflow["spec"]["arguments"]["parameters"] = [
        {"name": "a", "value": "6"},
        {"name": "b", "value": "4"},
        {"name": "expected", "value": "20"},
    ]
    answer = requests.post(
        f"{held_server.url}{V2}/runs",
        json={"display_name": "inline", "pipeline_spec": workflow},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["pipeline_spec"]["kind"] == "Workflow"
    _spec, parameters = _submitted(held_server, answer.json()["run_id"])
    assert parameters == {"a": "6", "b": "4", "expected": "20"}
    workflow["spec"]["templates"].append(copy.deepcopy(workflow["spec"]["templates"][0]))
    answer = requests.post(
        f"{held_server.url}{V2}/runs",
        json={"display_name": "inline", "pipeline_spec": workflow},
        timeout=30,
    )
    assert answer.status_code == 500 and answer.json()["code"] == 13
    assert "spec.templates[5].name 'add' is not unique" in answer.json()["message"]


def test_a_retried_v1_run_executes_the_workflow_it_ran(held_server) -> None:
    """KFP retries a run's stored workflow (common/util/workflow.go GenerateRetryExecution):
    the same values again, even after its version is deleted."""
    uploaded = _uploaded(held_server, f"asm-retry-{time.time_ns()}")
    run_id = _run_v1(held_server, uploaded, a="9").json()["run"]["id"]
    held_server._executor.finish(run_id, "FAILED", "task failed")
    requests.delete(
        f"{held_server.url}{V2}/pipelines/{uploaded['pipeline_id']}",
        params={"cascade": "true"},
        timeout=30,
    )
    answer = requests.post(f"{held_server.url}{V2}/runs/{run_id}:retry", timeout=30)
    assert answer.status_code == 200, answer.text
    again = [p for rid, _s, p in held_server._executor.submitted if rid == run_id]
    assert again == [{"a": "9", "b": "3.0", "expected": "16.0"}] * 2
    assert run_id in held_server._executor.retried


# -- runs that really execute (the local Argo engine) ---------------------------------


def test_the_values_a_v1_run_executes_with(real_server) -> None:
    """Executed for real: (a + b) * (a - b) is checked against `expected` by the last task.
    Values given the v1beta1 way reach the tasks (7, 2 -> 45: SUCCEEDED; a wrong expected
    value: FAILED); values given the v2beta1 way are not applied, so the defaults
    (5, 3 -> 16) run and a wrong `expected` there changes nothing (SUCCEEDED)."""
    uploaded = _uploaded(real_server, f"asm-real-{time.time_ns()}")
    right = _run_v1(real_server, uploaded, a="7", b="2", expected="45").json()["run"]["id"]
    wrong = _run_v1(real_server, uploaded, a="7", b="2", expected="16").json()["run"]["id"]
    ignored = requests.post(
        f"{real_server.url}{V2}/runs",
        json={
            "display_name": "v2 values",
            "pipeline_version_reference": _reference(uploaded),
            "runtime_config": {"parameters": {"a": "7", "b": "2", "expected": "45"}},
        },
        timeout=30,
    ).json()["run_id"]
    assert _wait_final(real_server, right)["state"] == "SUCCEEDED"
    assert _wait_final(real_server, wrong)["state"] == "FAILED"
    assert _wait_final(real_server, ignored)["state"] == "SUCCEEDED"
