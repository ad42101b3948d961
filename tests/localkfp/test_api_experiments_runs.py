"""Experiments and the run lifecycle through kfp.Client, with runs held by a fake executor.

The real execution of runs is in test_runs_e2e.py; here the HeldExecutor lets each test
put a run in the state it needs without waiting for kfp.local.
"""

from __future__ import annotations

import json
import uuid

import kfp_server_api
import pytest
import requests

from tests.localkfp.conftest import client_for

pytestmark = pytest.mark.e2e  # real servers and processes on free ports

SPEC = {
    "pipelineInfo": {"name": "tiny"},
    "root": {
        "dag": {"tasks": {}},
        "inputDefinitions": {"parameters": {"n": {"parameterType": "NUMBER_INTEGER"}}},
    },
    "schemaVersion": "2.1.0",
    "sdkVersion": "kfp-2.17.0",
}


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _run(server, experiment_id: str = "", **extra) -> dict:
    body = {
        "display_name": _unique("run"),
        "pipeline_spec": SPEC,
        "runtime_config": {"parameters": {"n": 3}},
        **extra,
    }
    if experiment_id:
        body["experiment_id"] = experiment_id
    response = requests.post(f"{server.url}/apis/v2beta1/runs", json=body, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def _executor(server):
    return server._executor


def test_default_experiment_and_experiment_lifecycle(held_server) -> None:
    client = client_for(held_server)
    default = client.get_experiment(experiment_name="Default")
    assert default.storage_state == "AVAILABLE"

    name = _unique("exp")
    created = client.create_experiment(name, description="d")
    assert created.display_name == name and created.description == "d"
    assert client.create_experiment(name).experiment_id == created.experiment_id  # kfp reuses
    assert client.get_experiment(experiment_id=created.experiment_id).display_name == name

    duplicate = requests.post(
        f"{held_server.url}/apis/v2beta1/experiments", json={"display_name": name}
    )
    assert duplicate.status_code == 409 and duplicate.json()["code"] == 6

    client.archive_experiment(created.experiment_id)
    assert client.get_experiment(experiment_id=created.experiment_id).storage_state == "ARCHIVED"
    archived = client.list_experiments(
        filter=json.dumps(
            {
                "predicates": [
                    {"key": "storage_state", "operation": "EQUALS", "string_value": "ARCHIVED"}
                ]
            }
        ),
        page_size=200,
    )
    assert created.experiment_id in [e.experiment_id for e in archived.experiments]
    client.unarchive_experiment(created.experiment_id)
    assert client.get_experiment(experiment_id=created.experiment_id).storage_state == "AVAILABLE"

    client.delete_experiment(created.experiment_id)
    with pytest.raises(kfp_server_api.ApiException) as error:
        client.get_experiment(experiment_id=created.experiment_id)
    assert error.value.status == 404
    with pytest.raises(ValueError, match="No experiment"):
        client.get_experiment(experiment_name=name)


def test_run_goes_to_default_experiment_with_history(held_server) -> None:
    client = client_for(held_server)
    run = _run(held_server)
    default = client.get_experiment(experiment_name="Default")
    assert run["experiment_id"] == default.experiment_id
    assert run["state"] == "PENDING" and run["storage_state"] == "AVAILABLE"
    assert run["finished_at"] == "1970-01-01T00:00:00Z"  # as KFP shows an unfinished run
    assert run["runtime_config"] == {"parameters": {"n": 3}}
    submitted = [s for s in _executor(held_server).submitted if s[0] == run["run_id"]]
    assert submitted == [(run["run_id"], SPEC, {"n": 3})]

    _executor(held_server).finish(run["run_id"], "SUCCEEDED")
    fetched = client.get_run(run["run_id"])
    assert fetched.state == "SUCCEEDED"
    assert [s.state for s in fetched.state_history] == ["PENDING", "SUCCEEDED"]
    assert fetched.finished_at.year > 1970
    assert client.get_experiment(experiment_id=run["experiment_id"]).last_run_created_at.year > 1970


def test_run_from_version_reference_runs_that_versions_spec(held_server, tmp_path) -> None:
    base = f"{held_server.url}/apis/v2beta1"
    client = client_for(held_server)
    package = tmp_path / "tiny.json"
    package.write_text(json.dumps(SPEC), encoding="utf-8")
    created = {"pipeline_id": client.upload_pipeline(str(package), _unique("ref")).pipeline_id}
    version = requests.get(f"{base}/pipelines/{created['pipeline_id']}/versions").json()
    version_id = version["pipeline_versions"][0]["pipeline_version_id"]
    experiment = client.create_experiment(_unique("refexp"))
    run = client.run_pipeline(
        experiment.experiment_id,
        "by reference",
        pipeline_id=created["pipeline_id"],
        version_id=version_id,
        params={"n": 1},
    )
    assert run.pipeline_version_reference.pipeline_version_id == version_id
    assert run.pipeline_spec is None
    assert _executor(held_server).submitted[-1][1:] == (SPEC, {"n": 1})
    listed = client.list_runs(experiment_id=experiment.experiment_id)
    assert [r.run_id for r in listed.runs] == [run.run_id]

    latest = requests.post(
        f"{base}/runs",
        json={
            "display_name": "latest version",
            "pipeline_version_reference": {"pipeline_id": created["pipeline_id"]},
            "runtime_config": {"parameters": {"n": 2}},
        },
    )
    assert latest.json()["pipeline_version_reference"]["pipeline_version_id"] == version_id


def test_terminate_archive_retry_and_delete(held_server) -> None:
    client = client_for(held_server)
    run = _run(held_server)
    client.terminate_run(run["run_id"])
    assert client.get_run(run["run_id"]).state == "FAILED"  # as Argo ends a terminated run
    states = [s.state for s in client.get_run(run["run_id"]).state_history]
    assert states == ["PENDING", "FAILED"]
    with pytest.raises(kfp_server_api.ApiException) as error:
        client.terminate_run(run["run_id"])
    assert error.value.status == 400

    failed = _run(held_server)
    _executor(held_server).finish(failed["run_id"], "FAILED", "component exploded")
    got = client.get_run(failed["run_id"])
    assert got.state == "FAILED" and got.error is None  # KFP gives no error text
    client._run_api.run_service_retry_run(run_id=failed["run_id"])
    retried = client.get_run(failed["run_id"])
    assert retried.state == "PENDING" and retried.error is None
    assert [s.state for s in retried.state_history] == ["PENDING", "FAILED", "PENDING"]
    assert sum(1 for s in _executor(held_server).submitted if s[0] == failed["run_id"]) == 2
    with pytest.raises(kfp_server_api.ApiException) as error:
        client._run_api.run_service_retry_run(run_id=failed["run_id"])
    assert error.value.status == 409

    client.archive_run(failed["run_id"])
    assert client.get_run(failed["run_id"]).storage_state == "ARCHIVED"
    client.unarchive_run(failed["run_id"])
    assert client.get_run(failed["run_id"]).storage_state == "AVAILABLE"
    client.delete_run(failed["run_id"])
    with pytest.raises(kfp_server_api.ApiException) as error:
        client.get_run(failed["run_id"])
    assert error.value.status == 404


def test_archived_experiment_archives_its_runs_and_still_takes_new_ones(held_server) -> None:
    client = client_for(held_server)
    experiment = client.create_experiment(_unique("arch"))
    run = _run(held_server, experiment.experiment_id)
    client.archive_experiment(experiment.experiment_id)
    assert client.get_run(run["run_id"]).storage_state == "ARCHIVED"
    accepted = _run(held_server, experiment.experiment_id)  # KFP allows it (fidelity row 9)
    assert accepted["experiment_id"] == experiment.experiment_id
    with pytest.raises(kfp_server_api.ApiException):
        client.unarchive_run(run["run_id"])


def test_list_runs_filters_sorts_and_pages(held_server) -> None:
    client = client_for(held_server)
    experiment = client.create_experiment(_unique("list"))
    runs = [_run(held_server, experiment.experiment_id) for _ in range(7)]
    for run in runs[:3]:
        _executor(held_server).finish(run["run_id"], "SUCCEEDED")
    state_filter = json.dumps(
        {"predicates": [{"key": "state", "operation": "EQUALS", "string_value": "SUCCEEDED"}]}
    )
    done = client.list_runs(experiment_id=experiment.experiment_id, filter=state_filter)
    assert sorted(r.run_id for r in done.runs) == sorted(r["run_id"] for r in runs[:3])

    seen, token = [], ""
    while True:
        page = client.list_runs(
            experiment_id=experiment.experiment_id,
            page_size=2,
            page_token=token,
            sort_by="created_at desc",
        )
        assert page.total_size == 7
        seen += [r.run_id for r in page.runs]
        token = page.next_page_token
        if not token:
            break
    assert seen == [r["run_id"] for r in reversed(runs)]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({}, 400),
        ({"display_name": "no source"}, 400),
        ({"pipeline_spec": SPEC}, 400),
        ({"display_name": "x", "pipeline_spec": {"not": "a pipeline"}}, 400),
        ({"display_name": "x", "pipeline_spec": SPEC, "runtime_config": {"parameters": [1]}}, 400),
        ({"display_name": "x", "pipeline_spec": SPEC, "experiment_id": str(uuid.uuid4())}, 404),
        # KFP: an unknown version is a 500 (test_fidelity_runs.py)
        ({"display_name": "x", "pipeline_version_reference": {"pipeline_version_id": "nope"}}, 500),
        ({"display_name": "x", "pipeline_version_reference": {}}, 400),
        ({"display_name": "lone \ud800 surrogate", "pipeline_spec": SPEC}, 400),
        (
            {
                "display_name": "x",
                "pipeline_spec": SPEC,
                "runtime_config": {"parameters": {"\udfff": 1}},
            },
            400,
        ),
    ],
)
def test_bad_runs_are_refused_and_not_stored(held_server, body, status) -> None:
    url = f"{held_server.url}/apis/v2beta1/runs"
    before = requests.get(url).json().get("total_size", 0)
    response = requests.post(url, json=body)
    assert response.status_code == status, response.text
    assert set(response.json()) == {"code", "message", "details"}
    assert requests.get(url).json().get("total_size", 0) == before


@pytest.mark.parametrize(
    ("value", "words"),
    [("NaN", "NaN"), ("-Infinity", "Infinity"), ("[" * 101 + "]" * 101, "levels deep")],
)
def test_run_bodies_that_are_not_strict_json_are_refused(held_server, value, words) -> None:
    """NaN, Infinity and too-deep nesting would be stored and served as invalid JSON."""
    url = f"{held_server.url}/apis/v2beta1/runs"
    before = requests.get(url).json().get("total_size", 0)
    text = (
        f'{{"display_name": "x", "pipeline_spec": {json.dumps(SPEC)}, '
        f'"runtime_config": {{"parameters": {{"n": {value}}}}}}}'
    )
    response = requests.post(url, data=text, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert words in response.json()["message"]
    assert requests.get(url).json().get("total_size", 0) == before


def test_filters_that_are_not_strict_json_are_refused(held_server) -> None:
    predicate = {"key": "created_at", "operation": "GREATER_THAN", "int_value": 0}
    text = json.dumps({"predicates": [predicate]}).replace("0}", "NaN}")
    response = requests.get(f"{held_server.url}/apis/v2beta1/runs", params={"filter": text})
    assert response.status_code == 400 and "NaN" in response.json()["message"]


def test_unknown_run_ids_are_404(held_server) -> None:
    base = f"{held_server.url}/apis/v2beta1/runs/{uuid.uuid4()}"
    assert requests.get(base).status_code == 404
    assert requests.delete(base).status_code == 404
    for action in ("terminate", "archive", "unarchive", "retry"):
        response = requests.post(f"{base}:{action}")
        assert response.status_code == 404 and response.json()["code"] == 5
    log = requests.get(f"{held_server.url}/apis/v1alpha1/runs/{uuid.uuid4()}/nodes/x/log")
    assert log.status_code == 500  # KFP's ReadLog answers 500 for a log it does not have
