"""POST /trainingjobs/<id>/execution exactly as the TM calls it, and the tracking endpoints."""

from __future__ import annotations

import json
import math

import pytest
import requests

from kfadapter.app import create_app
from kfadapter.kfp import PAGE_SIZE
from kfadapter.serving import ServerThread
from tests.adapter_support import tm_upload, unique, wait_for_state

pytestmark = pytest.mark.e2e  # real servers and processes on free ports

JSON = "application/json"


def tm_arguments(trainingjob_id: str, **extra: str) -> dict[str, str]:
    """The arguments the TM always sends (every value a string), plus the job's own."""
    return {
        "trainingjob_id": trainingjob_id,
        "featuregroup_name": "cellmetrics",
        "modelName": "qoe-model",
        "modelVersion": "2",
        "modellocation": "s3://models/qoe",
        **extra,
    }


def execute(adapter, trainingjob_id: str, pipeline: str, arguments: dict, **body):
    """The TM's call: requests.post(url, data=json.dumps(...), headers=JSON)."""
    payload = {
        "pipeline_name": pipeline,
        "pipeline_version": body.pop("pipeline_version", pipeline),
        "experiment_name": body.pop("experiment_name", "Default"),
        "arguments": arguments,
        **body,
    }
    return adapter.post(
        f"/trainingjobs/{trainingjob_id}/execution",
        data=json.dumps(payload),
        headers={"Content-Type": "application/json"},
    )


def test_tm_execution_maps_arguments_and_the_component_receives_them(adapter, uploaded):
    job = unique("job")
    pipeline = uploaded["qoe_training"]
    answer = execute(adapter, job, pipeline, tm_arguments(job, epochs="4"))
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"] == JSON
    body = answer.json()
    assert body["run_status"] == "scheduled"
    assert body["run_state"] in {"PENDING", "RUNNING", "SUCCEEDED"}
    assert {
        "trainingjob_id",
        "run_id",
        "run_name",
        "experiment_id",
        "experiment_name",
        "pipeline_id",
        "pipeline_name",
    } <= set(body)
    assert body["trainingjob_id"] == job and body["pipeline_name"] == pipeline
    assert body["experiment_name"] == "Default"
    assert body["parameters"] == {
        "featurepath": f"cellmetrics_{job}",
        "epochs": 4,
        "modelname": "qoe-model",
        "modelversion": "2",
    }
    assert body["ignored_arguments"] == ["featuregroup_name", "modellocation", "trainingjob_id"]
    # The component rejects a non-integer epochs (`epochs < 1` on a str raises): SUCCEEDED
    # shows the integer arrived; its log shows every value it was given.
    run = wait_for_state(adapter, body["run_id"])
    assert run["state"] == "SUCCEEDED", run
    assert run["parameters"] == body["parameters"]
    logs = adapter.get(f"/runs/{body['run_id']}/logs").json()["tasks"]
    train_log = next(t["log"] for t in logs if t["name"] == "train")
    assert f'"featurepath": "cellmetrics_{job}"' in train_log
    assert '"epochs": 4' in train_log


def test_run_status_is_scheduled_for_a_run_that_is_already_running(adapter, uploaded):
    job = unique("sleepy")
    first = execute(adapter, job, uploaded["sleeps"], tm_arguments(job, seconds="60")).json()
    assert first["run_status"] == "scheduled"
    running = wait_for_state(adapter, first["run_id"], {"RUNNING"})
    assert running["state"] == "RUNNING"
    # Executing again while KFP runs the job: still "scheduled", whatever KFP's state.
    second = execute(adapter, job, uploaded["sleeps"], tm_arguments(job, seconds="60"))
    assert second.status_code == 200
    assert second.json()["run_status"] == "scheduled"
    for run_id in (first["run_id"], second.json()["run_id"]):
        assert adapter.delete(f"/runs/{run_id}").status_code == 200
    for run_id in (first["run_id"], second.json()["run_id"]):
        assert wait_for_state(adapter, run_id)["state"] == "FAILED"  # terminated, on Argo


def test_newest_version_when_no_version_is_named(adapter, uploaded):
    job = unique("noversion")
    answer = execute(
        adapter,
        job,
        uploaded["always_fails"],
        {"reason": "expected failure"},
        pipeline_version="",
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["pipeline_version_name"] == uploaded["always_fails"]
    assert body["parameters"] == {"reason": "expected failure"}
    run = wait_for_state(adapter, body["run_id"])
    assert run["state"] == "FAILED"
    # KFP gives no error text for a failed run (server/api_converter.go): its log has it
    logs = adapter.get(f"/runs/{body['run_id']}/logs").json()["tasks"]
    assert any("expected failure" in (task["log"] or "") for task in logs)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ("", "the request body is empty"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object, got list"),
        ('"text"', "must be a JSON object, got str"),
        ("{}", "lacks 'pipeline_name', 'arguments'"),
        ('{"pipeline_name": "p"}', "lacks 'arguments'"),
        ('{"pipeline_name": 5, "arguments": {}}', "'pipeline_name' must be a string, got int"),
        ('{"pipeline_name": "", "arguments": {}}', "pipeline_name must be a non-empty string"),
        ('{"pipeline_name": "p", "arguments": []}', "'arguments' must be a JSON object"),
        ('{"pipeline_name": "p", "arguments": {}, "pipeline_version": 2}', "must be a string"),
        ('{"pipeline_name": "p", "arguments": {}, "experiment_name": []}', "must be a string"),
        ("[" * 100_000 + "]" * 100_000, "more than 100 levels deep"),
        ('{"a": ' * 20_000 + "1" + "}" * 20_000, "more than 100 levels deep"),
        ('{"pipeline_name": "p", "arguments": {"a": ' + "[" * 150 + "]" * 150 + "}}", "levels"),
        ('{"pipeline_name": "p", "arguments": {"a": NaN}}', "NaN is not a JSON value"),
        ('{"pipeline_name": "p", "arguments": {"a": -Infinity}}', "Infinity is not a JSON"),
    ],
)
def test_malformed_bodies_are_400_saying_what_is_wrong(adapter, data, fragment):
    answer = adapter.post(
        "/trainingjobs/j1/execution", data=data, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 400, answer.text
    assert answer.headers["Content-Type"] == JSON
    assert fragment in answer.json()["message"]


def test_null_and_out_of_range_arguments_are_400_not_passed_on(adapter, uploaded):
    job = unique("nulls")
    pipeline = uploaded["qoe_training"]
    arguments = tm_arguments(job, epochs="3") | {"modelName": None, "featuregroup_name": None}
    answer = execute(adapter, job, pipeline, arguments)
    assert answer.status_code == 400, answer.text
    assert answer.json()["missing_parameters"] == ["featurepath", "modelname"]
    answer = execute(adapter, job, pipeline, tm_arguments(job, epochs="9223372036854775808"))
    assert answer.status_code == 400, answer.text
    assert "epochs: expected a 64-bit integer" in answer.json()["message"]


def test_non_utf8_body_is_400(adapter):
    answer = adapter.post("/trainingjobs/j1/execution", data=b"\xff\xfe\x00{")
    assert answer.status_code == 400
    assert answer.json()["status"] == 400


def test_unknown_names_are_404_naming_what_is_missing(adapter, uploaded):
    job = unique("missing")
    pipeline = uploaded["qoe_training"]
    answer = execute(adapter, job, "no-such-pipeline", tm_arguments(job))
    assert answer.status_code == 404
    assert answer.json()["message"] == "pipeline 'no-such-pipeline' not found"
    answer = execute(adapter, job, pipeline, tm_arguments(job), pipeline_version="v9")
    assert answer.status_code == 404
    assert answer.json()["message"] == f"version 'v9' of pipeline '{pipeline}' not found"
    answer = execute(adapter, job, pipeline, tm_arguments(job), experiment_name="nope-exp")
    assert answer.status_code == 404
    assert answer.json()["message"] == "experiment 'nope-exp' not found"


def test_missing_and_badly_typed_parameters_are_400(adapter, uploaded):
    job = unique("badargs")
    pipeline = uploaded["qoe_training"]
    answer = execute(adapter, job, pipeline, tm_arguments(job))  # no epochs
    assert answer.status_code == 400
    body = answer.json()
    assert body["missing_parameters"] == ["epochs"]
    assert "missing required parameters: epochs" in body["message"]
    answer = execute(adapter, job, pipeline, tm_arguments(job, epochs="many"))
    assert answer.status_code == 400
    assert answer.json()["invalid_parameters"] == ["epochs: expected an integer, got 'many'"]


def test_odd_training_job_ids(adapter, uploaded):
    answer = adapter.post(
        "/trainingjobs/" + "j" * 600 + "/execution", json={"pipeline_name": "p", "arguments": {}}
    )
    assert answer.status_code == 400
    job = "job with spaces-ü"
    answer = execute(adapter, job, uploaded["always_fails"], {"reason": "r"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["trainingjob_id"] == job


def test_tracking_endpoints_are_503_when_tracking_is_off(adapter):
    for path in ("/trainingjobs", "/trainingjobs/any"):
        answer = adapter.get(path)
        assert answer.status_code == 503
        assert "tracking is disabled" in answer.json()["message"]


def test_executed_runs_are_tracked_and_terminated_ones_untracked(tracked_adapter, uploaded):
    adapter = tracked_adapter
    job = unique("tracked")
    body = execute(adapter, job, uploaded["sleeps"], tm_arguments(job, seconds="60")).json()
    assert body["tracked"] is True
    tracked = adapter.get(f"/trainingjobs/{job}")
    assert tracked.status_code == 200, tracked.text
    assert tracked.json()["run_id"] == body["run_id"]
    assert tracked.json()["pipeline_name"] == uploaded["sleeps"]
    assert tracked.json()["run_state"] in {"PENDING", "RUNNING"}  # known before any poll
    listed = adapter.get("/trainingjobs", params={"notification_status": "waiting"}).json()
    assert body["run_id"] in {job["run_id"] for job in listed["trainingjobs"]}
    assert adapter.delete(f"/runs/{body['run_id']}").status_code == 200
    after = adapter.get(f"/trainingjobs/{job}").json()
    assert after["notification"]["status"] == "untracked"
    assert adapter.get("/trainingjobs/never-seen").status_code == 404
    bad = adapter.get("/trainingjobs", params={"notification_status": "bogus"})
    assert bad.status_code == 400


class _BrokenTracker:
    """A tracker whose store fails: the one fault that cannot be caused from outside."""

    def track(self, trainingjob_id: str, run_id: str, **info) -> dict:
        raise OSError("disk full")

    def stats(self) -> dict:
        return {}


def test_a_run_that_cannot_be_tracked_is_terminated_and_reported(adapter, uploaded):
    app = create_app(adapter.settings, tracker=_BrokenTracker())
    server = ServerThread(app).start()
    try:
        job = unique("untrackable")
        answer = requests.post(
            f"{server.url}/trainingjobs/{job}/execution",
            json={
                "pipeline_name": uploaded["sleeps"],
                "pipeline_version": uploaded["sleeps"],
                "experiment_name": "Default",
                "arguments": tm_arguments(job, seconds="60"),
            },
            timeout=60,
        )
    finally:
        server.stop()
    assert answer.status_code == 503
    body = answer.json()
    assert "disk full" in body["message"] and body["run_terminated"] is True
    run = wait_for_state(adapter, body["run_id"])
    assert run["state"] == "FAILED"  # a terminated run, as KFP on Argo reports it


def test_the_tm_calls_cost_a_fixed_number_of_kfp_calls(adapter, uploaded):
    """No KFP call per pipeline, version or experiment: each TM call costs a fixed few."""
    pipeline = uploaded["qoe_training"]
    job = unique("counted")
    body = {
        "pipeline_name": pipeline,
        "pipeline_version": pipeline,
        "experiment_name": "Default",
        "arguments": tm_arguments(job, epochs="1"),
    }
    pipeline_id = adapter.get(f"/pipelineIds/{pipeline}").json()["id"]
    assert adapter.kfp_calls("POST", f"/trainingjobs/{job}/execution", json=body) == [
        "GET /experiments",
        "GET /pipelines",
        f"GET /pipelines/{pipeline_id}/versions",
        "POST /runs",
    ]
    pages = math.ceil(adapter.get("/pipelines").json()["total_size"] / PAGE_SIZE)
    assert adapter.kfp_calls("GET", "/pipelines") == ["GET /pipelines"] * pages
    assert adapter.kfp_calls("GET", "/experiments") == ["GET /experiments"]
    assert adapter.kfp_calls("GET", f"/pipelines/{pipeline}/versions") == [
        "GET /pipelines",
        f"GET /pipelines/{pipeline_id}/versions",
    ]


def test_kfps_synchronous_400_for_parameters_is_a_clear_400(adapter, tmp_path):
    """KFP validates a run's parameters when it is created and answers 400 / 3
    (`template/v2_template.go` validatePipelineJobInputs): here a pipeline written by an
    older SDK whose parameter has only the legacy `type`, which KFP counts as unspecified.
    The adapter passes KFP's reason on in its own JSON 400 and starts nothing."""
    spec = {
        "pipelineInfo": {"name": "legacy-typed"},
        "root": {
            "dag": {"tasks": {}},
            "inputDefinitions": {"parameters": {"epochs": {"type": "INT"}}},
        },
        "schemaVersion": "2.1.0",
        "sdkVersion": "kfp-1.8.22",
    }
    path = tmp_path / "legacy.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    name = unique("legacy-typed")
    assert tm_upload(adapter, name, path).status_code == 200
    job = unique("legacy")
    answer = execute(adapter, job, name, tm_arguments(job, epochs="3"))
    assert answer.status_code == 400, answer.text
    assert answer.headers["Content-Type"] == JSON
    body = answer.json()
    assert body["status"] == 400
    assert "KFP rejected" in body["message"]
    assert "input parameter epochs has unspecified type" in body["message"]
    assert "run_id" not in body
