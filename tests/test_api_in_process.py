"""The adapter's own rules, in process: what each endpoint answers to bad input and to KFP
failures, and that bad input changes nothing in KFP.

`create_app(settings, kfconnect=FakeKfp())` with Flask's test client: every request goes
through the whole WSGI app (routing, validation, error handler, content type, request
ids) with no socket and no KFP. The same behaviours over real HTTP against the embedded
KFP server are in the end-to-end modules (test_api_*.py).
"""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask.testing import FlaskClient

from kfadapter.app import create_app
from kfadapter.errors import KfpError, KfpTimeout, KfpUnavailable
from kfadapter.settings import Settings
from kfadapter.tracking import Tracker
from tests.fake_kfp import FakeKfp
from tests.pipelines import V1_DIRECTORY

JSON = "application/json"
PIPELINE_YAML = b"pipelineInfo:\n  name: p\nroot:\n  dag:\n    tasks: {}\n"
# A TM request for the pipeline FakeKfp.add_pipeline("qoe", QOE_PARAMETERS) declares.
QOE_PARAMETERS = {
    "featurepath": {"parameterType": "STRING"},
    "epochs": {"parameterType": "NUMBER_INTEGER"},
    "modelname": {"parameterType": "STRING"},
}
TM_BODY = {
    "pipeline_name": "qoe",
    "experiment_name": "Default",
    "arguments": {
        "trainingjob_id": "job-1",
        "featuregroup_name": "cells",
        "modelName": "m",
        "epochs": "3",
    },
}


def error_of(answer: Any, status: int) -> dict[str, Any]:
    """The JSON error body of an answer that must have this status."""
    assert answer.status_code == status, answer.get_data(as_text=True)
    assert answer.headers["Content-Type"] == JSON
    body = answer.get_json()
    assert body["status"] == status and body["message"], body
    return body


# ---------------------------------------------------------------------- request bodies


@pytest.mark.parametrize("path", ["/experiments", "/trainingjobs/job-1/execution"])
@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "the request body is empty"),
        (b"  \n", "the request body is empty"),
        (b"{broken", "is not valid JSON"),
        (b"\xff\xfe{", "not UTF-8 text"),
        (b"[]", "must be a JSON object, got list"),
        (b"42", "must be a JSON object, got int"),
        (b"[" * 101 + b"]" * 101, "more than 100 levels deep"),
        (b'{"name": NaN}', "NaN is not a JSON value"),
    ],
)
def test_bodies_that_are_not_a_json_object_are_400_and_change_nothing(
    fast_client: FlaskClient, fake_kfp: FakeKfp, path: str, data: bytes, fragment: str
) -> None:
    answer = fast_client.post(path, data=data, content_type=JSON)
    assert fragment in error_of(answer, 400)["message"]
    assert fake_kfp.calls == []  # refused before KFP is asked anything


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"arguments": {}}, "lacks 'pipeline_name'"),
        ({"pipeline_name": "qoe"}, "lacks 'arguments'"),
        ({"pipeline_name": ["qoe"], "arguments": {}}, "'pipeline_name' must be a string"),
        ({"pipeline_name": "q\x07oe", "arguments": {}}, "contains control characters"),
        ({"pipeline_name": "q" * 513, "arguments": {}}, "longer than 512 characters"),
        ({"pipeline_name": "qoe", "arguments": "epochs=3"}, "'arguments' must be a JSON object"),
        ({**TM_BODY, "pipeline_version": 7}, "'pipeline_version' must be a string"),
        ({**TM_BODY, "experiment_name": {}}, "'experiment_name' must be a string"),
    ],
)
def test_execution_requests_missing_or_mistyped_fields_are_400(
    fast_client: FlaskClient, fake_kfp: FakeKfp, body: dict[str, Any], fragment: str
) -> None:
    answer = fast_client.post("/trainingjobs/job-1/execution", json=body)
    assert fragment in error_of(answer, 400)["message"]
    assert fake_kfp.writes() == []


def test_arguments_that_do_not_fit_the_pipeline_are_one_400_and_start_no_run(
    fast_client: FlaskClient, fake_kfp: FakeKfp
) -> None:
    fake_kfp.add_pipeline("qoe", QOE_PARAMETERS)
    arguments = {"trainingjob_id": "job-1", "epochs": "many"}  # no featuregroup, no model
    answer = fast_client.post(
        "/trainingjobs/job-1/execution", json={**TM_BODY, "arguments": arguments}
    )
    body = error_of(answer, 400)
    assert body["missing_parameters"] == ["featurepath", "modelname"]
    assert body["invalid_parameters"] == ["epochs: expected an integer, got 'many'"]
    assert "create_run" not in fake_kfp.calls


def test_a_fitting_request_starts_one_run_with_the_declared_parameters(
    fast_client: FlaskClient, fake_kfp: FakeKfp
) -> None:
    fake_kfp.add_pipeline("qoe", QOE_PARAMETERS)
    answer = fast_client.post("/trainingjobs/job-1/execution", json=TM_BODY)
    assert answer.status_code == 200 and answer.headers["Content-Type"] == JSON
    body = answer.get_json()
    assert body["run_status"] == "scheduled"
    assert body["parameters"] == {"featurepath": "cells_job-1", "epochs": 3, "modelname": "m"}
    assert body["ignored_arguments"] == ["featuregroup_name", "trainingjob_id"]
    assert fake_kfp.writes() == ["create_experiment", "create_run"]  # Default was missing


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({}, "has no 'name'"),
        ({"name": ""}, "name must be a non-empty string"),
        ({"name": "e", "description": ["x"]}, "'description' must be a string"),
        ({"name": "e", "description": "d" * 1001}, "longer than 1000 characters"),
    ],
)
def test_experiment_bodies_are_checked_before_kfp_is_asked(
    fast_client: FlaskClient, fake_kfp: FakeKfp, body: dict[str, Any], fragment: str
) -> None:
    assert fragment in error_of(fast_client.post("/experiments", json=body), 400)["message"]
    assert fake_kfp.writes() == []


# ---------------------------------------------------------------------- names in paths


@pytest.mark.parametrize(
    "template",
    [
        "GET /pipelineIds/{}",
        "POST /pipelineIds/{}",
        "GET /pipelines/{}",
        "DELETE /pipelines/{}",
        "GET /pipelines/{}/versions",
        "GET /pipelines/{}/versions/v1",
        "GET /pipelines/p/versions/{}",
        "GET /pipelines/{}/runs",
        "GET /experiments/{}",
        "GET /runs/{}",
        "DELETE /runs/{}",
        "GET /runs/{}/logs",
        "GET /recurringruns/{}",
        "POST /trainingjobs/{}/execution",
    ],
)
@pytest.mark.parametrize(
    ("segment", "fragment"),
    [("n" * 513, "longer than 512 characters"), ("a%01b", "contains control characters")],
)
def test_names_in_paths_are_checked_on_every_endpoint(
    fast_client: FlaskClient, fake_kfp: FakeKfp, template: str, segment: str, fragment: str
) -> None:
    method, path = template.split(" ")
    answer = fast_client.open(path.format(segment), method=method)
    assert fragment in error_of(answer, 400)["message"]
    assert fake_kfp.calls == []


# ---------------------------------------------------------------------- query strings


BAD_PAGES = {
    "/pipelines?page_size=ten": "page_size must be a whole number",
    "/pipelines?page_size=0": "between 1 and 1000",
    "/pipelines?page_size=1001": "between 1 and 1000",
    "/pipelines?filter=%7Bnope": "filter must be KFP's filter JSON",
    "/pipelines?filter=" + "%5B" * 101 + "%5D" * 101: "more than 100 levels",
    "/pipelines/p/runs?page_size=-1": "between 1 and 1000",
}


@pytest.mark.parametrize("url", BAD_PAGES)
def test_bad_page_parameters_are_400_before_kfp_lists_anything(
    fast_client: FlaskClient, fake_kfp: FakeKfp, url: str
) -> None:
    fragment = BAD_PAGES[url]
    fake_kfp.add_pipeline("p")
    fake_kfp.calls.clear()
    answer = fast_client.get(url)
    assert fragment in error_of(answer, 400)["message"]
    assert "list_pipelines" not in fake_kfp.calls and "runs_of_pipeline" not in fake_kfp.calls


# ---------------------------------------------------------------------- uploads


@pytest.mark.parametrize(
    ("files", "data", "fragment"),
    [
        (None, {"description": "no file"}, "no file part named 'file'"),
        ({"other": (PIPELINE_YAML, "file")}, {}, "no file part named 'file'"),
        ({"file": (b"", "file")}, {}, "the uploaded file is empty"),
        ({"file": (b"key: [unclosed\n", "file")}, {}, "neither YAML/JSON"),
        ({"file": (b"- 1\n- 2\n", "file")}, {}, "expected a YAML mapping"),
        ({"file": (b"a: 1\n", "file")}, {}, "has none of pipelineInfo, root"),
        ({"file": (PIPELINE_YAML, "file")}, {"description": "d" * 1001}, "longer than 1000"),
        ({"file": (PIPELINE_YAML, "file")}, {"description": "a\x00b"}, "NUL character"),
        ({"file": (PIPELINE_YAML, "file")}, {"version_name": "v2"}, "does not exist yet"),
    ],
)
def test_uploads_that_cannot_be_a_pipeline_are_400_and_store_nothing(
    fast_client: FlaskClient,
    fake_kfp: FakeKfp,
    files: dict[str, tuple[bytes, str]] | None,
    data: dict[str, str],
    fragment: str,
) -> None:
    form: dict[str, Any] = dict(data)
    for field, (content, filename) in (files or {}).items():
        form[field] = (io.BytesIO(content), filename)
    answer = fast_client.post("/pipelineIds/new-one", data=form, content_type="multipart/form-data")
    assert fragment in error_of(answer, 400)["message"]
    assert fake_kfp.writes() == []


def archived(kind: str, members: dict[str, bytes]) -> bytes:
    """A .zip ("zip") or .tar.gz ("tar.gz") holding `members` (name -> content)."""
    buffer = io.BytesIO()
    if kind == "zip":
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, content in members.items():
                archive.writestr(name, content)
    else:
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            for name, content in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def v1_package(duplicated_template: bool) -> bytes:
    """tests/pipelines/v1/add_subtract_multiply.yaml, its first template twice if asked."""
    workflow = yaml.safe_load((V1_DIRECTORY / "add_subtract_multiply.yaml").read_bytes())
    if duplicated_template:
        workflow["spec"]["templates"].append(workflow["spec"]["templates"][0])
    return yaml.safe_dump(workflow).encode()


def upload_file(fast_client: FlaskClient, name: str, package: bytes) -> Any:
    form = {"file": (io.BytesIO(package), "file")}
    return fast_client.post(f"/pipelineIds/{name}", data=form, content_type="multipart/form-data")


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_a_v1_workflow_in_an_archive_is_checked_as_the_same_plain_yaml(
    fast_client: FlaskClient, fake_kfp: FakeKfp, kind: str
) -> None:
    """KFP reads an archive's pipeline.yaml (`backend/src/apiserver/server/util.go`
    ReadPipelineFile) and answers Argo's validation error on it with a 500
    (`template/argo_template.go`): the adapter reads the archive the same way
    (localkfp/packages.py) and answers 400 with Argo's message, storing nothing; a valid
    workflow in the archive is uploaded as it is."""
    bad = upload_file(fast_client, "bad", archived(kind, {"pipeline.yaml": v1_package(True)}))
    assert "spec.templates[5].name 'add' is not unique" in error_of(bad, 400)["message"]
    assert fake_kfp.writes() == []
    good = archived(kind, {"pipeline.yaml": v1_package(False)})
    answer = upload_file(fast_client, "good", good)
    assert answer.status_code == 200, answer.get_json()
    assert fake_kfp.writes() == ["upload_pipeline"]


@pytest.mark.parametrize(
    ("package", "fragment"),
    [
        (b"PK\x03\x04 not really a zip", "not a readable .zip archive"),
        (b"\x1f\x8b not really a tarball", "not a readable .tar.gz archive"),
        (archived("zip", {"notes.txt": b"a: 1\n"}), "expecting a pipeline.yaml file"),
        (archived("tar.gz", {}), "the tarball archive is empty"),
        (archived("tar.gz", {"pipeline.yaml": b"\n"}), "the pipeline file is empty"),
        (archived("zip", {"pipeline.yaml": b"- 1\n"}), "expected a YAML mapping"),
    ],
)
def test_an_archive_that_holds_no_readable_pipeline_is_400(
    fast_client: FlaskClient, fake_kfp: FakeKfp, package: bytes, fragment: str
) -> None:
    """A broken archive, or one with no pipeline file in it, is a 400 saying so (never a
    5xx from KFP), and nothing reaches KFP."""
    assert fragment in error_of(upload_file(fast_client, "p", package), 400)["message"]
    assert fake_kfp.writes() == []


def test_an_upload_that_is_not_multipart_is_400(fast_client: FlaskClient) -> None:
    answer = fast_client.post("/pipelineIds/p", data=PIPELINE_YAML, content_type="text/yaml")
    assert "multipart/form-data" in error_of(answer, 400)["message"]


def test_a_body_over_the_limit_is_413_naming_the_limit(
    fast_client: FlaskClient, fast_settings: Settings, fake_kfp: FakeKfp
) -> None:
    big = b"#" * (fast_settings.max_upload_bytes + 1)
    answer = fast_client.post(
        "/pipelineIds/p",
        data={"file": (io.BytesIO(big), "file")},
        content_type="multipart/form-data",
    )
    assert str(fast_settings.max_upload_bytes) in error_of(answer, 413)["message"]
    assert fake_kfp.writes() == []


def test_uploads_of_a_known_name_get_the_next_free_version_number(
    fast_client: FlaskClient, fake_kfp: FakeKfp
) -> None:
    def upload(**form: str) -> dict[str, Any]:
        data: dict[str, Any] = {"file": (io.BytesIO(PIPELINE_YAML), "file"), **form}
        answer = fast_client.post("/pipelineIds/p", data=data, content_type="multipart/form-data")
        assert answer.status_code == 200, answer.get_json()
        return answer.get_json()

    assert upload()["version_name"] == "p"
    assert upload()["version_name"] == "2"
    assert upload(version_name="3")["version_name"] == "3"
    assert upload()["version_name"] == "4"
    taken = fast_client.post(
        "/pipelineIds/p",
        data={"file": (io.BytesIO(PIPELINE_YAML), "file"), "version_name": "2"},
        content_type="multipart/form-data",
    )
    assert "already has a version named '2'" in error_of(taken, 409)["message"]


# ---------------------------------------------------------------------- routing


@pytest.mark.parametrize(
    "request_line",
    [
        "GET /nowhere",
        "GET /pipelineIds/",
        "HEAD /trainingjobs/j/nowhere",
        "GET /pipelines//versions",  # Werkzeug would redirect "//" with an HTML page
    ],
)
def test_unknown_routes_are_json_404s(fast_client: FlaskClient, request_line: str) -> None:
    method, path = request_line.split(" ")
    answer = fast_client.open(path, method=method)
    assert answer.status_code == 404 and answer.headers["Content-Type"] == JSON


@pytest.mark.parametrize(
    "request_line",
    ["PUT /pipelines", "DELETE /experiments", "POST /runs", "PATCH /trainingjobs/j/execution"],
)
def test_wrong_methods_are_json_405s_saying_which_are_allowed(
    fast_client: FlaskClient, request_line: str
) -> None:
    method, path = request_line.split(" ")
    answer = fast_client.open(path, method=method)
    error_of(answer, 405)
    assert answer.headers["Allow"]


# ---------------------------------------------------------------------- KFP failures

ENDPOINTS = [
    "GET /pipelines",
    "GET /pipelineIds/p",
    "GET /pipelines/p",
    "GET /pipelines/p/versions",
    "GET /experiments",
    "GET /runs",
    "GET /runs/r-1",
    "DELETE /runs/r-1",
    "GET /recurringruns",
]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(
    ("failure", "status"),
    [
        (KfpUnavailable("KFP at x is unreachable"), 503),
        (KfpTimeout("KFP at x did not answer within 5 s"), 504),
        (KfpError("KFP failed (HTTP 500): boom"), 502),
    ],
)
def test_kfp_failures_become_json_answers_with_their_status_on_every_endpoint(
    fast_client: FlaskClient, fake_kfp: FakeKfp, endpoint: str, failure: Exception, status: int
) -> None:
    fake_kfp.fail_with = failure
    method, path = endpoint.split(" ")
    body = error_of(fast_client.open(path, method=method), status)
    assert body["message"] == failure.message


def test_an_unexpected_error_is_a_json_500_without_a_traceback(
    fast_client: FlaskClient, fake_kfp: FakeKfp
) -> None:
    fake_kfp.fail_with = RuntimeError("secret internals")
    answer = fast_client.get("/pipelines")
    body = error_of(answer, 500)
    assert "secret internals" not in answer.get_data(as_text=True)
    assert "Traceback" not in answer.get_data(as_text=True)
    assert body["message"] == "internal error; see the adapter's log"


def test_readiness_is_503_with_the_reason_while_kfp_is_down(
    fast_client: FlaskClient, fake_kfp: FakeKfp
) -> None:
    assert fast_client.get("/readiness").get_json()["ready"] is True
    fake_kfp.fail_with = KfpUnavailable("KFP at x is unreachable (healthz): connection refused")
    body = error_of(fast_client.get("/readiness"), 503)
    assert body["ready"] is False and "connection refused" in body["message"]
    assert fast_client.get("/liveness").status_code == 200  # alive all the same


def test_unknown_resources_are_404_naming_them(fast_client: FlaskClient) -> None:
    assert "'nope'" in error_of(fast_client.get("/pipelineIds/nope"), 404)["message"]
    assert "'nope'" in error_of(fast_client.get("/experiments/nope"), 404)["message"]
    assert "'r-9'" in error_of(fast_client.get("/runs/r-9"), 404)["message"]
    body = error_of(fast_client.post("/trainingjobs/j/execution", json=TM_BODY), 404)
    assert body["message"] == "pipeline 'qoe' not found"


# ---------------------------------------------------------------------- tracking


def test_tracking_endpoints_are_503_while_tracking_is_off(fast_client: FlaskClient) -> None:
    for path in ("/trainingjobs", "/trainingjobs/job-1"):
        assert "tracking is disabled" in error_of(fast_client.get(path), 503)["message"]


class _UnwritableTracker:
    """A RunTracker whose store refuses writes (a full disk)."""

    def track(self, trainingjob_id: str, run_id: str, **info: Any) -> dict[str, Any]:
        raise OSError("disk full")

    def untracking(self, run_id: str) -> Any:
        raise AssertionError("not called")

    def get(self, trainingjob_id: str) -> dict[str, Any] | None:
        return None

    def list_page(self, *args: Any, **kwargs: Any) -> tuple[list[dict[str, Any]], str]:
        return [], ""

    def stats(self) -> dict[str, Any]:
        return {}

    def stop(self) -> None:
        pass


def test_a_run_tracking_cannot_record_is_terminated_and_a_503_says_so(
    fast_settings: Settings, fake_kfp: FakeKfp
) -> None:
    fake_kfp.add_pipeline("qoe", QOE_PARAMETERS)
    app = create_app(fast_settings, kfconnect=fake_kfp, tracker=_UnwritableTracker())
    body = error_of(app.test_client().post("/trainingjobs/job-1/execution", json=TM_BODY), 503)
    assert "disk full" in body["message"] and body["run_terminated"] is True
    assert fake_kfp.writes()[-2:] == ["create_run", "terminate_run"]


@pytest.fixture
def tracked_client(fast_settings: Settings, fake_kfp: FakeKfp) -> Any:
    """An in-process adapter with a real Tracker on a SQLite store (its threads not started)."""
    tracker = Tracker(fast_settings, fake_kfp)
    app = create_app(fast_settings, kfconnect=fake_kfp, tracker=tracker)
    yield app.test_client()
    tracker.stop()


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("notification_status=lost", "notification_status must be one of"),
        ("page_size=0", "between 1 and 1000"),
        ("page_token=not-a-token", "is not a token this server issued"),
    ],
)
def test_bad_trainingjob_listings_are_400(tracked_client: Any, query: str, fragment: str) -> None:
    answer = tracked_client.get(f"/trainingjobs?{query}")
    assert fragment in error_of(answer, 400)["message"]


def test_a_started_run_is_tracked_before_the_answer_and_untracked_when_deleted(
    tracked_client: Any, fake_kfp: FakeKfp
) -> None:
    fake_kfp.add_pipeline("qoe", QOE_PARAMETERS)
    started = tracked_client.post("/trainingjobs/job-1/execution", json=TM_BODY).get_json()
    job = tracked_client.get("/trainingjobs/job-1").get_json()
    assert (job["run_id"], job["notification"]["status"]) == (started["run_id"], "waiting")
    assert tracked_client.delete(f"/runs/{started['run_id']}").status_code == 200
    job = tracked_client.get("/trainingjobs/job-1").get_json()
    assert job["notification"]["status"] == "untracked"


# ---------------------------------------------------------------------- every answer


def test_every_json_answer_says_exactly_application_json_and_echoes_the_request_id(
    fast_client: FlaskClient, fake_kfp: FakeKfp
) -> None:
    fake_kfp.add_pipeline("p")
    for path in ("/pipelines", "/experiments", "/runs", "/pipelineIds/p", "/nowhere"):
        answer = fast_client.get(path, headers={"X-Request-ID": "req-42"})
        assert answer.headers["Content-Type"] == JSON, path
        assert answer.headers["X-Request-ID"] == "req-42", path


@pytest.mark.parametrize("state", ["CANCELING", "SUCCEEDED", "FAILED"])
def test_terminating_a_run_kfp_cannot_terminate_is_400_saying_its_state(
    fast_client: FlaskClient, fake_kfp: FakeKfp, state: str
) -> None:
    """KFP terminates only PENDING, RUNNING or PAUSED runs and answers 400 otherwise
    (`storage/run_store.go` TerminateRun): the adapter's 400 says the run's state."""
    fake_kfp.add_pipeline("qoe", QOE_PARAMETERS)
    run_id = fast_client.post("/trainingjobs/job-1/execution", json=TM_BODY).get_json()["run_id"]
    fake_kfp.runs[run_id]["state"] = state
    body = error_of(fast_client.delete(f"/runs/{run_id}"), 400)
    assert body["run_state"] == state
    assert f"it is {state}" in body["message"]
    assert "Row not found" in body["kfp_message"]
    assert fake_kfp.runs[run_id]["state"] == state


def test_a_v1_pipeline_is_described_and_started_the_v1_way(
    fast_client: FlaskClient, fake_kfp: FakeKfp
) -> None:
    """A KFP v1 pipeline (an Argo Workflow) uploaded the TM's way: its parameters are
    spec.arguments.parameters (strings, template_type V1); /execution maps the TM's
    arguments to them and starts the run through KFP's v1beta1 runs API, the only one
    that applies values to a V1 run (backend/src/apiserver/template/argo_template.go
    RunWorkflow reads only the v1 parameters)."""
    workflow = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": "train-"},
        "spec": {
            "entrypoint": "train",
            "arguments": {"parameters": [{"name": "featurepath"}, {"name": "epochs", "value": 3}]},
            "templates": [
                {
                    "name": "train",
                    "inputs": {"parameters": [{"name": "featurepath"}, {"name": "epochs"}]},
                    "container": {
                        "image": "python:3.11",
                        "command": ["echo", "{{inputs.parameters.featurepath}}"],
                        "args": ["{{inputs.parameters.epochs}}"],
                    },
                }
            ],
        },
    }
    package = yaml.safe_dump(workflow).encode()
    answer = fast_client.post("/pipelineIds/train-v1", data={"file": (io.BytesIO(package), "file")})
    assert answer.status_code == 200, answer.json
    pipeline = fast_client.get("/pipelines/train-v1").json
    assert (pipeline["template_type"], pipeline["arguments"]) == (
        "V1",
        {"featurepath": None, "epochs": "3"},
    )
    started = fast_client.post(
        "/trainingjobs/job-1/execution", json={**TM_BODY, "pipeline_name": "train-v1"}
    )
    assert started.status_code == 200, started.json
    run = fake_kfp.runs[started.json["run_id"]]
    assert run["runtime_config"]["parameters"] == {"featurepath": "cells_job-1", "epochs": "3"}
    assert started.json["parameters"] == {"featurepath": "cells_job-1", "epochs": "3"}


def test_a_v1_workflow_kfp_would_refuse_is_a_400_before_kfp_is_called(
    fast_client: FlaskClient, fake_kfp: FakeKfp
) -> None:
    """KFP answers a workflow Argo's validation refuses with a 500 (argo_template.go returns
    Argo's error unwrapped); the adapter checks it first and says what is wrong."""
    package = (
        b"apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nspec:\n  templates:\n"
        b"  - {name: a, container: {image: x}}\n  - {name: a, container: {image: y}}\n"
    )
    answer = fast_client.post("/pipelineIds/dup", data={"file": (io.BytesIO(package), "file")})
    assert "spec.templates[1].name 'a' is not unique" in error_of(answer, 400)["message"]
    assert fake_kfp.writes() == []


def test_logs_of_a_v1_run_read_its_version_once_and_each_task_s_pod(
    fast_client: FlaskClient, fake_kfp: FakeKfp
) -> None:
    """A V1 run's pods are named after their templates, which only the workflow (its
    version's pipeline_spec) holds: /runs/<id>/logs reads the version once, then each
    task's pod (`<workflow>-<template>-<hash>`, backend/src/common/util/workflow.go
    RetrievePodName); GET /runs/<id> does not read it. Task details: a recorded run of
    tests/pipelines/v1/add_subtract_multiply.yaml (tests/data/v1_task_details.json)."""
    package = (V1_DIRECTORY / "add_subtract_multiply.yaml").read_bytes()
    answer = fast_client.post("/pipelineIds/asm-v1", data={"file": (io.BytesIO(package), "file")})
    assert answer.status_code == 200, answer.json
    started = fast_client.post(
        "/trainingjobs/job-1/execution", json={**TM_BODY, "pipeline_name": "asm-v1"}
    )
    assert started.status_code == 200, started.json
    recorded = json.loads((Path(__file__).parent / "data" / "v1_task_details.json").read_text())
    run_id = started.json["run_id"]
    details = recorded["add_subtract_multiply"]["task_details"]
    fake_kfp.runs[run_id] |= {"state": "SUCCEEDED", "run_details": {"task_details": details}}
    fake_kfp.calls.clear()
    assert fast_client.get(f"/runs/{run_id}").status_code == 200
    assert fake_kfp.calls == ["get_run"]
    fake_kfp.calls.clear()
    tasks = fast_client.get(f"/runs/{run_id}/logs").json["tasks"]
    assert fake_kfp.calls == ["get_run", "get_pipeline_version"] + ["task_log"] * 4
    wf = "add-subtract-multiply-v1-z9pbj"
    errors = {task["name"]: task["error"] for task in tasks}
    for name, digits in {
        "add": 4043146587,
        "subtract": 4240564804,
        "multiply": 1902980712,
        "check-equals": 3491207706,
    }.items():
        assert f"'{wf}-{name}-{digits}'" in errors[name]  # the fake has no log: it names the pod
