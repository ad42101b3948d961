"""Experiments and recurring runs end to end, plus what every endpoint shares (JSON errors)."""

from __future__ import annotations

import pytest

from tests.adapter_support import unique

pytestmark = pytest.mark.e2e  # real servers and processes on free ports

JSON = "application/json"


def test_experiments_are_an_object_keyed_by_name(adapter):
    answer = adapter.get("/experiments")
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == JSON
    experiments = answer.json()
    assert isinstance(experiments, dict)
    assert "Default" in experiments and isinstance(experiments["Default"], str)


def test_create_and_get_an_experiment(adapter):
    name = unique("exp ü")
    created = adapter.post("/experiments", json={"name": name, "description": "for tests"})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["name"] == name and body["id"] and body["description"] == "for tests"
    got = adapter.get(f"/experiments/{name}").json()
    assert (got["name"], got["id"]) == (name, body["id"])
    assert adapter.get("/experiments").json()[name] == body["id"]
    again = adapter.post("/experiments", json={"name": name})
    assert again.status_code == 409
    assert again.json()["message"] == f"experiment {name!r} already exists"


def test_unknown_experiment_is_404(adapter):
    answer = adapter.get("/experiments/never-made")
    assert answer.status_code == 404
    assert answer.json() == {"status": 404, "message": "experiment 'never-made' not found"}


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (None, "the request body is empty"),
        ("nonsense", "not valid JSON"),
        ("[]", "must be a JSON object"),
        ("{}", "has no 'name'"),
        ('{"name": 3}', "'name' must be a string, got int"),
        ('{"name": "  "}', "name must be a non-empty string"),
        ('{"name": "ok", "description": 5}', "'description' must be a string"),
        ('{"name": "ok", "description": "%s"}' % ("d" * 1001), "longer than 1000 characters"),
        ('{"name": "ok", "description": "a\\u0000b"}', "contains a NUL character"),
    ],
)
def test_bad_experiment_bodies_are_400(adapter, payload, fragment):
    answer = adapter.post(
        "/experiments", data=payload, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 400
    assert fragment in answer.json()["message"]


def test_recurring_runs_list_and_get(adapter, uploaded, kfp_client):
    pipeline_id = adapter.get(f"/pipelineIds/{uploaded['sleeps']}").json()["id"]
    versions = adapter.get(f"/pipelines/{pipeline_id}/versions").json()["versions"]
    experiment_id = adapter.get("/experiments").json()["Default"]
    name = unique("nightly")
    created = kfp_client.create_recurring_run(
        experiment_id=experiment_id,
        job_name=name,
        cron_expression="0 0 3 * * *",
        max_concurrency=1,
        params={"seconds": 1.0},
        pipeline_id=pipeline_id,
        version_id=versions[0]["pipeline_version_id"],
        enabled=False,
    )
    listed = adapter.get("/recurringruns")
    assert listed.headers["Content-Type"] == JSON
    entries = {r["recurring_run_id"]: r for r in listed.json()["recurring_runs"]}
    entry = entries[created.recurring_run_id]
    assert entry["name"] == name
    assert entry["trigger"]["cron"] == "0 0 3 * * *"
    assert entry["max_concurrency"] == 1
    assert entry["status"] == "DISABLED"
    assert entry["pipeline_id"] == pipeline_id
    assert entry["parameters"] == {"seconds": 1.0}
    one = adapter.get(f"/recurringruns/{created.recurring_run_id}").json()
    assert one == entry
    assert adapter.get("/recurringruns/no-such").status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/no/such/route", 404),
        ("PUT", "/pipelines", 405),
        ("POST", "/runs", 405),
        ("PATCH", "/experiments", 405),
        ("GET", "/pipelineIds/", 404),
    ],
)
def test_routing_errors_are_json(adapter, method, path, status):
    import requests

    answer = requests.request(method, adapter.url + path, timeout=10)
    assert answer.status_code == status
    assert answer.headers["Content-Type"] == JSON
    assert answer.json()["status"] == status


def test_health_metrics_and_docs(adapter):
    live = adapter.get("/liveness")
    assert (live.status_code, live.text) == (200, "Okay")
    ready = adapter.get("/readiness")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert ready.headers["Content-Type"] == JSON
    adapter.get("/experiments")
    metrics = adapter.get("/metrics").text
    assert "kfadapter_kfp_calls" in metrics and 'operation="list_experiments"' in metrics
    assert adapter.get("/openapi.json").status_code == 200
