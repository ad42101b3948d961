"""Runs and experiments answer as KFP 2.17 does (../shared/kfp-fidelity.md rows 2, 3, 4, 8,
9, 13 and the error codes of terminate, retry, delete Default and unknown versions).

Each test drives the embedded server over HTTP with the unmodified kfp.Client or requests;
runs are held by a stand-in executor so that each test puts a run where it needs it. The
KFP source each behaviour follows (kubeflow/pipelines, backend/src/apiserver, tag 2.17.0)
is named in the test's docstring.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import kfp_server_api
import pytest
import requests

from kfadapter.localkfp.server import LocalKfpServer, build_parser
from tests.localkfp.conftest import HeldExecutor, client_for

pytestmark = pytest.mark.e2e  # real servers on free ports

SPEC = {
    "pipelineInfo": {"name": "typed"},
    "root": {
        "dag": {"tasks": {}},
        "inputDefinitions": {
            "parameters": {
                "n": {"parameterType": "NUMBER_INTEGER"},
                "ratio": {"parameterType": "NUMBER_DOUBLE", "defaultValue": 0.5},
                "name": {"parameterType": "STRING", "defaultValue": "x"},
                "flag": {"parameterType": "BOOLEAN", "isOptional": True},
                "items": {"parameterType": "LIST", "isOptional": True},
                "config": {"parameterType": "STRUCT", "isOptional": True},
            }
        },
    },
    "schemaVersion": "2.1.0",
    "sdkVersion": "kfp-2.17.0",
}


class SlowStopExecutor(HeldExecutor):
    """A HeldExecutor whose terminate only asks: the run stays CANCELING until the test
    reports its end, as Argo takes a moment to stop a workflow."""

    def terminate(self, run_id: str) -> bool:
        with self.lock:
            return run_id in self.active


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> LocalKfpServer:
    """A server standing in for a cluster (local_extras off) whose runs never execute."""
    started = LocalKfpServer(
        tmp_path_factory.mktemp("fidelity-runs"), port=0, executor_factory=SlowStopExecutor
    ).start()
    yield started
    started.stop()


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _api(server: LocalKfpServer) -> str:
    return f"{server.url}/apis/v2beta1"


def _create_run(server: LocalKfpServer, parameters: Any = None, **extra: Any) -> requests.Response:
    body = {
        "display_name": _unique("run"),
        "pipeline_spec": SPEC,
        "runtime_config": {"parameters": {"n": 3} if parameters is None else parameters},
        **extra,
    }
    return requests.post(f"{_api(server)}/runs", json=body, timeout=10)


def _run(server: LocalKfpServer, **extra: Any) -> dict[str, Any]:
    response = _create_run(server, **extra)
    assert response.status_code == 200, response.text
    return response.json()


def _get(server: LocalKfpServer, run_id: str) -> dict[str, Any]:
    response = requests.get(f"{_api(server)}/runs/{run_id}", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def _executor(server: LocalKfpServer) -> HeldExecutor:
    return server._executor  # type: ignore[return-value]


def _assert_error(response: requests.Response, status: int, code: int, *words: str) -> None:
    """KFP's grpc-gateway error body, with the status and gRPC code given."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code and isinstance(body["message"], str)
    assert isinstance(body["details"], list)
    for word in words:
        assert word in body["message"], body["message"]


def _history(run: dict[str, Any]) -> list[str]:
    return [entry["state"] for entry in run.get("state_history", [])]


# -- row 2: terminate ---------------------------------------------------------------------


def test_terminate_is_canceling_then_failed_and_a_second_terminate_is_400(server) -> None:
    """KFP: TerminateRun sets CANCELING only from PAUSED, PENDING, RUNNING or unspecified
    and refuses any other state with InvalidInputError, 400 / 3
    (`storage/run_store.go` TerminateRun, `resource/resource_manager.go` TerminateRun); it
    does not append CANCELING to state_history (its TODO). The workflow gets
    activeDeadlineSeconds 0 and Argo ends it Failed, which KFP reports as FAILED."""
    client = client_for(server)
    run_id = _run(server)["run_id"]
    answer = requests.post(f"{_api(server)}/runs/{run_id}:terminate", timeout=10)
    assert answer.status_code == 200 and answer.json() == {}
    canceling = _get(server, run_id)
    assert canceling["state"] == "CANCELING"
    assert _history(canceling) == ["PENDING"]

    again = requests.post(f"{_api(server)}/runs/{run_id}:terminate", timeout=10)
    _assert_error(again, 400, 3, run_id, "CANCELING")

    _executor(server).finish(run_id, "CANCELED")  # what the executor reports once stopped
    ended = client.wait_for_run_completion(run_id, timeout=10)
    assert ended.state == "FAILED"
    final = _get(server, run_id)
    assert final["state"] == "FAILED" and "error" not in final
    assert _history(final) == ["PENDING", "FAILED"]
    assert final["finished_at"] != "1970-01-01T00:00:00Z"


def test_terminate_a_finished_run_is_400_invalid_argument(server) -> None:
    """KFP: a finished run matches no row of TerminateRun's UPDATE, so it answers
    util.NewInvalidInputError: 400 / 3 (`storage/run_store.go` TerminateRun); the run
    keeps its state."""
    client = client_for(server)
    run_id = _run(server)["run_id"]
    _executor(server).finish(run_id, "SUCCEEDED")
    refused = requests.post(f"{_api(server)}/runs/{run_id}:terminate", timeout=10)
    _assert_error(refused, 400, 3, run_id, "SUCCEEDED")
    with pytest.raises(kfp_server_api.ApiException) as error:
        client.terminate_run(run_id)
    assert error.value.status == 400
    assert _get(server, run_id)["state"] == "SUCCEEDED"


def test_terminate_a_run_the_executor_does_not_hold_ends_it_failed(server) -> None:
    """KFP: every PENDING run has a workflow, which Argo fails once its deadline is 0
    (`resource/resource_manager.go` TerminateWorkflow): the run ends FAILED, not
    CANCELED, even when no process was running it here."""
    run_id = _run(server)["run_id"]
    with _executor(server).lock:
        _executor(server).active.discard(run_id)
    requests.post(f"{_api(server)}/runs/{run_id}:terminate", timeout=10).raise_for_status()
    run = _get(server, run_id)
    assert run["state"] == "FAILED" and _history(run) == ["PENDING", "FAILED"]


def test_a_run_without_a_service_account_gets_pipeline_runner(server) -> None:
    """KFP: CreateRun stores the workflow's service account, which setDefaultServiceAccount
    sets to `pipeline-runner` when the run names none (`template/template.go`,
    `resource/resource_manager.go` CreateRun); one that is given is kept."""
    assert _run(server)["service_account"] == "pipeline-runner"
    named = _run(server, service_account="trainer")
    assert _get(server, named["run_id"])["service_account"] == "trainer"


# -- row 3: the error of a failed run --------------------------------------------------------


def test_a_failed_run_has_no_error_and_history_has_time_and_state_only(server) -> None:
    """KFP: toApiRun fills Run.error only when the run cannot be converted, never with the
    reason a run failed; state_history entries carry update_time and state
    (`server/api_converter.go` toApiRun, toApiRuntimeStatus; the persistence agent
    records no error)."""
    client = client_for(server)
    run_id = _run(server)["run_id"]
    _executor(server).finish(run_id, "FAILED", "component exploded")
    run = _get(server, run_id)
    assert run["state"] == "FAILED" and "error" not in run
    assert all(set(entry) == {"update_time", "state"} for entry in run["state_history"])
    assert "component exploded" not in requests.get(f"{_api(server)}/runs/{run_id}").text
    assert client.get_run(run_id).error is None
    listed = requests.get(f"{_api(server)}/runs", params={"page_size": 200}, timeout=10).json()
    assert all("error" not in r for r in listed["runs"])


def test_history_errors_stored_by_an_earlier_release_are_not_shown(server) -> None:
    """Stores of earlier releases hold an error in FAILED history entries; served as KFP's
    toApiRuntimeStatus would have them here: time and state only (`server/api_converter.go`)."""
    run_id = _run(server)["run_id"]
    _executor(server).finish(run_id, "FAILED", "old reason")
    old = {"state": "FAILED", "error": {"message": "stale-history-reason"}}

    def earlier_release(row: dict[str, Any]) -> dict[str, Any]:
        at = row["created_at"]
        history = [{"update_time": at, "state": "PENDING"}, {"update_time": at, **old}]
        return {"state_history": json.dumps(history)}

    server.store.runs.change(run_id, earlier_release)
    run = _get(server, run_id)
    assert [set(entry) for entry in run["state_history"]] == [{"update_time", "state"}] * 2
    assert "old reason" not in json.dumps(run) and "stale-history-reason" not in json.dumps(run)


def test_local_extras_show_why_a_run_failed(make_server) -> None:
    """Deliberate difference (docs/local-kfp.md): with local_extras a failed run's `error`
    carries the component's message, which KFP does not give (`server/api_converter.go`
    toApiRun); off by default, as every test standing in for a cluster has it."""
    extras = make_server(executor_factory=HeldExecutor, local_extras=True)
    run_id = _run(extras)["run_id"]
    _executor(extras).finish(run_id, "FAILED", "component exploded")
    run = _get(extras, run_id)
    assert run["error"]["message"] == "component exploded"
    assert all(set(entry) == {"update_time", "state"} for entry in run["state_history"])
    assert build_parser().parse_args(["--local-extras"]).local_extras is True
    assert build_parser().parse_args([]).local_extras is False


# -- row 4: parameters checked at create -------------------------------------------------


@pytest.mark.parametrize(
    ("parameters", "words"),
    [
        ({}, ["parameter n is not optional"]),
        ({"n": "3"}, ["input parameter n requires type double or integer"]),
        ({"n": 3, "name": 7}, ["input parameter name requires type string"]),
        ({"n": 3, "flag": "true"}, ["input parameter flag requires type bool"]),
        ({"n": 3, "items": "a,b"}, ["input parameter items requires type list"]),
        ({"n": 3, "config": [1]}, ["input parameter config requires type struct"]),
        ({"n": 3, "extra": 1, "more": 2}, ["not required by pipeline: extra, more"]),
    ],
)
def test_parameters_that_do_not_fit_are_a_synchronous_400(server, parameters, words) -> None:
    """KFP: CreateRun compiles the run (`template/v2_template.go` V2Spec.RunWorkflow), whose
    validatePipelineJobInputs refuses a missing required parameter (no default, not
    optional), a value of the wrong kind and an undeclared parameter with
    util.NewInvalidInputError: 400 / 3, before anything is stored."""
    before = requests.get(f"{_api(server)}/runs", timeout=10).json().get("total_size", 0)
    submitted = len(_executor(server).submitted)
    refused = _create_run(server, parameters)
    _assert_error(refused, 400, 3, "invalid pipeline job inputs", *words)
    assert requests.get(f"{_api(server)}/runs", timeout=10).json().get("total_size", 0) == before
    assert len(_executor(server).submitted) == submitted


def test_parameters_that_fit_are_accepted(server) -> None:
    """KFP: NUMBER_INTEGER and NUMBER_DOUBLE accept any JSON number; defaults and optional
    parameters may be left out (`template/v2_template.go` validatePipelineJobInputs)."""
    for parameters in (
        {"n": 3},
        {"n": 2.5, "ratio": 1, "name": "y", "flag": False, "items": [1], "config": {"a": 1}},
    ):
        assert _create_run(server, parameters).status_code == 200


def test_kfp_client_sees_the_400_of_bad_parameters(server, tmp_path) -> None:
    """kfp.Client's run_pipeline of an uploaded version posts the same CreateRun; the
    400 / 3 of `template/v2_template.go` validatePipelineJobInputs reaches it as an
    ApiException."""
    client = client_for(server)
    package = tmp_path / "typed.yaml"
    package.write_text(json.dumps(SPEC), encoding="utf-8")
    pipeline = client.upload_pipeline(str(package), pipeline_name=_unique("typed"))
    versions = client.list_pipeline_versions(pipeline.pipeline_id).pipeline_versions
    experiment = client.create_experiment(_unique("typed-exp"))
    with pytest.raises(kfp_server_api.ApiException) as error:
        client.run_pipeline(
            experiment.experiment_id,
            _unique("bad"),
            pipeline_id=pipeline.pipeline_id,
            version_id=versions[0].pipeline_version_id,
            params={"n": 1, "unknown": 2},
        )
    assert error.value.status == 400 and "unknown" in error.value.body


def test_recurring_run_parameters_are_checked_the_same_way(server) -> None:
    """KFP: CreateJob builds the scheduled workflow with the same validatePipelineJobInputs
    (`template/v2_template.go` V2Spec.ScheduledWorkflow): 400 / 3 at creation."""
    refused = requests.post(
        f"{_api(server)}/recurringruns",
        json={
            "display_name": _unique("rr"),
            "pipeline_spec": SPEC,
            "runtime_config": {"parameters": {"n": "three"}},
            "trigger": {"periodic_schedule": {"interval_second": "3600"}},
            "max_concurrency": "1",
            "mode": "DISABLE",
        },
        timeout=10,
    )
    _assert_error(refused, 400, 3, "input parameter n requires type double or integer")


# -- row 8: single-user namespaces --------------------------------------------------------


def test_namespaces_are_blanked_on_create_list_and_get_by_name(server) -> None:
    """KFP single-user: ReplaceNamespace returns "" for every namespace given
    (`resource/resource_manager.go`), used by createExperiment, listRuns, listJobs,
    ListPipelines, GetPipelineByName and the upload (`server/experiment_server.go`,
    `server/run_server.go`, `server/job_server.go`, `server/pipeline_server.go`,
    `server/pipeline_upload_server.go`): a name is taken whatever namespace is given, and
    a namespace limits no list."""
    name = _unique("ns-exp")
    created = requests.post(
        f"{_api(server)}/experiments", json={"display_name": name, "namespace": "team-a"}
    )
    assert created.status_code == 200 and created.json().get("namespace", "") == ""
    twin = requests.post(
        f"{_api(server)}/experiments", json={"display_name": name, "namespace": "team-b"}
    )
    _assert_error(twin, 409, 6)
    listed = requests.get(
        f"{_api(server)}/experiments", params={"namespace": "elsewhere", "page_size": 200}
    ).json()
    assert created.json()["experiment_id"] in [e["experiment_id"] for e in listed["experiments"]]
    run = _run(server, experiment_id=created.json()["experiment_id"])
    runs = requests.get(f"{_api(server)}/runs", params={"namespace": "x", "page_size": 200})
    assert run["run_id"] in [r["run_id"] for r in runs.json()["runs"]]

    pipeline_name = _unique("ns-pipeline")
    pipeline = requests.post(
        f"{_api(server)}/pipelines", json={"display_name": pipeline_name, "namespace": "team-a"}
    ).json()
    assert pipeline.get("namespace", "") == ""
    by_name = requests.get(
        f"{_api(server)}/pipelines/names/{pipeline['name']}", params={"namespace": "team-z"}
    )
    assert by_name.status_code == 200 and by_name.json()["pipeline_id"] == pipeline["pipeline_id"]
    pipelines = requests.get(f"{_api(server)}/pipelines", params={"namespace": "team-z"}).json()
    assert pipeline["pipeline_id"] in [p["pipeline_id"] for p in pipelines["pipelines"]]


# -- row 9: experiments ---------------------------------------------------------------------


def test_deleting_the_default_experiment_is_409_aborted(server) -> None:
    """KFP: DeleteExperiment of the default experiment's id is util.NewBadRequestError, gRPC
    ABORTED, HTTP 409 (`resource/resource_manager.go` DeleteExperiment,
    `common/util/error.go` NewBadRequestError); the experiment stays."""
    client = client_for(server)
    default = client.get_experiment(experiment_name="Default")
    refused = requests.delete(f"{_api(server)}/experiments/{default.experiment_id}")
    _assert_error(refused, 409, 10, "default experiment cannot be deleted")
    with pytest.raises(kfp_server_api.ApiException) as error:
        client.delete_experiment(default.experiment_id)
    assert error.value.status == 409
    assert client.get_experiment(experiment_name="Default").experiment_id == default.experiment_id


def test_deleting_an_experiment_keeps_its_runs_and_recurring_runs(server) -> None:
    """KFP: ExperimentStore.DeleteExperiment removes the experiment and its resource
    references only (`storage/experiment_store.go`, `resource/resource_manager.go`
    DeleteExperiment): its runs and recurring runs stay."""
    experiment = client_for(server).create_experiment(_unique("doomed"))
    run = _run(server, experiment_id=experiment.experiment_id)
    recurring = requests.post(
        f"{_api(server)}/recurringruns",
        json={
            "display_name": _unique("kept"),
            "pipeline_spec": SPEC,
            "runtime_config": {"parameters": {"n": 1}},
            "experiment_id": experiment.experiment_id,
            "trigger": {"periodic_schedule": {"interval_second": "3600"}},
            "max_concurrency": "1",
            "mode": "DISABLE",
        },
        timeout=10,
    )
    assert recurring.status_code == 200, recurring.text
    deleted = requests.delete(f"{_api(server)}/experiments/{experiment.experiment_id}")
    assert deleted.status_code == 200 and deleted.json() == {}
    kept = requests.get(f"{_api(server)}/recurringruns/{recurring.json()['recurring_run_id']}")
    assert kept.status_code == 200
    assert kept.json()["experiment_id"] == experiment.experiment_id
    assert _get(server, run["run_id"])["experiment_id"] == experiment.experiment_id


def test_runs_may_be_created_in_an_archived_experiment(server) -> None:
    """KFP: createRun checks only that the experiment exists
    (`resource/resource_manager.go` GetValidExperimentNamespacePair), not its storage
    state: a run created in an archived experiment is accepted."""
    client = client_for(server)
    experiment = client.create_experiment(_unique("archived"))
    client.archive_experiment(experiment.experiment_id)
    run = _run(server, experiment_id=experiment.experiment_id)
    assert run["experiment_id"] == experiment.experiment_id and run["state"] == "PENDING"


def test_listing_runs_of_an_unknown_experiment_is_404(server) -> None:
    """KFP: listRuns with an experiment_id first fetches its namespace
    (`server/run_server.go` listRuns, `resource/resource_manager.go`
    GetNamespaceFromExperimentId): an unknown experiment is NotFound, 404 / 5; so is
    listJobs for recurring runs (`server/job_server.go`)."""
    client = client_for(server)
    missing = str(uuid.uuid4())
    for path in ("runs", "recurringruns"):
        answer = requests.get(f"{_api(server)}/{path}", params={"experiment_id": missing})
        _assert_error(answer, 404, 5, missing)
    with pytest.raises(kfp_server_api.ApiException) as error:
        client.list_runs(experiment_id=missing)
    assert error.value.status == 404


def test_creating_a_run_in_an_unknown_experiment_is_404(server) -> None:
    """KFP: GetValidExperimentNamespacePair fetches the experiment; an unknown one is
    NotFound, 404 / 5 (`resource/resource_manager.go`)."""
    missing = str(uuid.uuid4())
    _assert_error(_create_run(server, experiment_id=missing), 404, 5, missing)


# -- row 13 (service side): retry -----------------------------------------------------------


def test_retry_only_a_failed_run_terminated_ones_included(server) -> None:
    """KFP: RetryRun retries a workflow only in phase Failed or Error, else
    util.NewBadRequestError: 409 / 10 (`common/util/workflow.go` GenerateRetryExecution,
    `resource/resource_manager.go` RetryRun). A terminated run ends Failed, so it can be
    retried; it runs again under the same id, PENDING."""
    succeeded = _run(server)["run_id"]
    _executor(server).finish(succeeded, "SUCCEEDED")
    pending = _run(server)["run_id"]
    for run_id in (succeeded, pending):
        refused = requests.post(f"{_api(server)}/runs/{run_id}:retry", timeout=10)
        _assert_error(refused, 409, 10, run_id, "Failed/Error")

    terminated = _run(server)["run_id"]
    requests.post(f"{_api(server)}/runs/{terminated}:terminate").raise_for_status()
    canceling = requests.post(f"{_api(server)}/runs/{terminated}:retry", timeout=10)
    _assert_error(canceling, 409, 10, "CANCELING")
    _executor(server).finish(terminated, "CANCELED")
    client_for(server)._run_api.run_service_retry_run(run_id=terminated)
    retried = _get(server, terminated)
    assert retried["state"] == "PENDING"
    assert _history(retried) == ["PENDING", "FAILED", "PENDING"]
    assert sum(1 for s in _executor(server).submitted if s[0] == terminated) == 2
    assert _executor(server).retried.count(terminated) == 1  # from its previous attempt


# -- error row: a run referencing an unknown version ----------------------------------------


@pytest.mark.parametrize(
    "reference",
    [
        lambda pipeline: {"pipeline_id": pipeline, "pipeline_version_id": str(uuid.uuid4())},
        lambda pipeline: {"pipeline_id": str(uuid.uuid4())},
        lambda pipeline: {"pipeline_id": pipeline},
    ],
    ids=["unknown-version", "unknown-pipeline", "pipeline-without-versions"],
)
def test_a_run_of_an_unknown_version_or_pipeline_is_500_internal(
    server, reference: Callable[[str], dict[str, str]]
) -> None:
    """KFP: CreateRun wraps the failed template fetch (an unknown version or pipeline, or a
    pipeline without versions when only its id is given) in util.NewInternalServerError:
    500 / 13 (`resource/resource_manager.go` CreateRun, fetchTemplateFromPipelineSpec)."""
    pipeline = requests.post(
        f"{_api(server)}/pipelines", json={"display_name": _unique("ref")}, timeout=10
    ).json()
    answer = requests.post(
        f"{_api(server)}/runs",
        json={
            "display_name": _unique("ref-run"),
            "pipeline_version_reference": reference(pipeline["pipeline_id"]),
        },
        timeout=10,
    )
    _assert_error(answer, 500, 13, "Failed to create a run")


@pytest.mark.parametrize("kind", [["STRING"], {"a": 1}])
def test_a_parameter_type_that_is_not_a_name_is_a_400(server, kind) -> None:
    """KFP reads the spec into protobuf, where `parameterType` is an enum: a list or an
    object is no parameter type it knows, so validatePipelineJobInputs
    (`template/v2_template.go`) refuses the run with 400 / 3 (here no 500 either)."""
    spec = json.loads(json.dumps(SPEC))
    spec["root"]["inputDefinitions"]["parameters"]["n"]["parameterType"] = kind
    body = {
        "display_name": _unique("run"),
        "pipeline_spec": spec,
        "runtime_config": {"parameters": {"n": 3}},
    }
    refused = requests.post(f"{_api(server)}/runs", json=body, timeout=10)
    _assert_error(refused, 400, 3, "invalid pipeline job inputs", "requires type unknown")
