"""GET /openapi.json is true to the app: every route described, every real answer in schema.

The adapter runs over real HTTP against the embedded KFP server; every answer it gives in
this module (successes and errors) is checked against the described status codes, content
types and JSON schemas, and every described operation must have been seen answering 2xx.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest
import requests
from jsonschema.exceptions import ValidationError
from openapi_schema_validator import OAS30Validator, validate
from openapi_spec_validator import validate as validate_spec

from kfadapter.api.docs import load_spec
from kfadapter.app import create_app
from kfadapter.settings import Settings
from tests.adapter_support import FINAL_STATES


def openapi_path(rule: str) -> str:
    """A Flask URL rule as an OpenAPI path template: /runs/<run_id> -> /runs/{run_id}."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


@dataclass
class SpecChecker:
    """Checks answers against the OpenAPI document and records what it has seen."""

    spec: dict[str, Any]
    seen: set[tuple[str, str, int]] = field(default_factory=set)

    def check(self, method: str, path: str, response: Any) -> None:
        """Raise AssertionError/ValidationError when the answer leaves the description."""
        operations = self.spec["paths"].get(path)
        assert operations is not None, f"{path} is not described"
        operation = operations.get(method.lower())
        assert operation is not None, f"{method} {path} is not described"
        status = response.status_code
        described = operation["responses"].get(str(status))
        assert described is not None, f"{method} {path} answered {status}, not described"
        described = self._resolve(described)
        mimetype = response.headers.get("Content-Type", "").split(";")[0].strip()
        content = described.get("content") or {}
        assert mimetype in content, (
            f"{method} {path} {status}: Content-Type {mimetype!r} not in {sorted(content)}"
        )
        schema = content[mimetype].get("schema") or {}
        if mimetype == "application/json":
            assert response.headers["Content-Type"] == "application/json"
            body = response.json()
            validate(body, {**schema, "components": self.spec["components"]}, cls=OAS30Validator)
            if status >= 400:
                assert body["status"] == status
        elif schema.get("type") == "string" and schema.get("format") != "binary":
            text = response.text
            if "enum" in schema:
                assert text in schema["enum"], f"{method} {path}: {text!r} not in the enum"
        self.seen.add((method.upper(), path, status))

    def _resolve(self, item: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in item:
            name = item["$ref"].rsplit("/", 1)[-1]
            item = self.spec["components"]["responses"][name]
        return item


@dataclass
class Api:
    """Calls the adapter by OpenAPI path template and checks every answer."""

    url: str
    checker: SpecChecker

    def call(
        self,
        method: str,
        path: str,
        expect: int,
        path_params: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        concrete = path
        for name, value in (path_params or {}).items():
            concrete = concrete.replace("{" + name + "}", quote(value, safe=""))
        kwargs.setdefault("timeout", 60)
        response = requests.request(method, self.url + concrete, **kwargs)
        assert response.status_code == expect, (
            f"{method} {concrete}: {response.status_code} {response.text[:500]}"
        )
        self.checker.check(method, path, response)
        return response


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return load_spec()


def test_spec_is_valid_openapi_3(spec):
    validate_spec(spec)
    assert spec["openapi"].startswith("3.")


def test_every_route_is_described_and_every_description_is_a_route(spec):
    app = create_app(Settings(kfp_endpoint="http://127.0.0.1:9/pipeline", tracking_enabled=False))
    routes = {
        (method, openapi_path(rule.rule))
        for rule in app.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    described = {
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        for method in operations
        if method in {"get", "post", "put", "patch", "delete"}
    }
    assert routes - described == set(), "routes missing from openapi.yaml"
    assert described - routes == set(), "openapi.yaml describes routes the app lacks"


def test_every_operation_has_request_and_response_schemas(spec):
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method == "parameters":
                continue
            assert operation.get("summary"), f"{method} {path} has no summary"
            assert any(code.startswith("2") for code in operation["responses"]), (
                f"{method} {path} describes no success"
            )
            for code, answer in operation["responses"].items():
                if "$ref" in answer:
                    continue
                for media in answer["content"].values():
                    assert media.get("schema"), f"{method} {path} {code} has no schema"
            if method in ("post", "put", "patch") and path != "/runs/{run_id}":
                assert "requestBody" in operation, f"{method} {path} has no request body"


class FakeResponse:
    """A stand-in answer, to show the checker rejects what leaves the description."""

    def __init__(self, status: int, body: Any, content_type: str = "application/json") -> None:
        self.status_code = status
        self._body = body
        self.headers = {"Content-Type": content_type}
        self.text = str(body)

    def json(self) -> Any:
        return self._body


def test_checker_rejects_answers_that_leave_the_schema(spec):
    checker = SpecChecker(spec)
    good = {
        "pipelines": [
            {
                "pipeline_id": "p1",
                "display_name": "one",
                "name": "one",
                "description": "",
                "created_at": "2025-01-01T00:00:00Z",
            }
        ],
        "next_page_token": "",
        "total_size": 1,
    }
    checker.check("GET", "/pipelines", FakeResponse(200, good))
    missing_key = {k: v for k, v in good.items() if k != "total_size"}
    with pytest.raises(ValidationError):
        checker.check("GET", "/pipelines", FakeResponse(200, missing_key))
    wrong_type = {**good, "pipelines": [{**good["pipelines"][0], "pipeline_id": 7}]}
    with pytest.raises(ValidationError):
        checker.check("GET", "/pipelines", FakeResponse(200, wrong_type))
    with pytest.raises(AssertionError, match="not described"):
        checker.check("GET", "/pipelines", FakeResponse(418, {"status": 418, "message": "x"}))
    with pytest.raises(AssertionError, match="Content-Type"):
        checker.check("GET", "/pipelines", FakeResponse(200, good, "text/html"))
    with pytest.raises(AssertionError):
        checker.check("GET", "/pipelines", FakeResponse(200, good, "application/json; utf-8"))
    scheduled = {
        "trainingjob_id": "t",
        "run_id": "r",
        "run_name": "t",
        "run_status": "running",
        "run_state": "RUNNING",
        "experiment_id": "e",
        "experiment_name": "Default",
        "pipeline_id": "p",
        "pipeline_name": "n",
        "ignored_arguments": [],
    }
    with pytest.raises(ValidationError):  # the TM requires run_status == "scheduled"
        checker.check(
            "POST", "/trainingjobs/{trainingjob_id}/execution", FakeResponse(200, scheduled)
        )


@pytest.mark.e2e
def test_docs_page_loads_its_bundled_assets(tracked_adapter, spec):
    adapter = tracked_adapter.url
    api = Api(adapter, SpecChecker(spec))
    page = api.call("GET", "/docs", 200).text
    assert '<div id="swagger-ui">' in page
    assert "https://" not in page and "http://" not in page  # no CDN
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert len(assets) >= 4
    for asset in assets:
        response = requests.get(adapter + asset, timeout=30)
        assert response.status_code == 200, asset
        assert len(response.content) > 100, asset
        if asset.endswith(".js"):
            assert "javascript" in response.headers["Content-Type"]
        if asset.endswith(".css"):
            assert response.headers["Content-Type"].startswith("text/css")
    bundle = next(a for a in assets if a.endswith("swagger-ui-bundle.js"))
    assert "SwaggerUIBundle" in requests.get(adapter + bundle, timeout=30).text
    init = api.call("GET", "/docs/init.js", 200).text
    assert '"/openapi.json"' in init
    for name in ("swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png"):
        api.call("GET", "/docs/assets/{filename}", 200, {"filename": name})
    api.call("GET", "/docs/assets/{filename}", 404, {"filename": "index.html"})
    api.call("GET", "/docs/assets/{filename}", 404, {"filename": "..%2fsettings.py"})


@pytest.mark.e2e
def test_openapi_json_is_served_with_this_server(tracked_adapter, spec):
    api = Api(tracked_adapter.url, SpecChecker(spec))
    served = api.call("GET", "/openapi.json", 200).json()
    assert served["paths"] == spec["paths"]
    assert served["servers"] == [{"url": "/"}]


def wait_for_final_state(api: Api, run_id: str, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run = api.call("GET", "/runs/{run_id}", 200, {"run_id": run_id}).json()
        if run["run_status"] in FINAL_STATES:
            return run
        assert time.monotonic() < deadline, f"run {run_id} still {run['run_status']}"
        time.sleep(0.3)


@pytest.mark.e2e
def test_real_answers_of_every_endpoint_match_the_description(
    tracked_adapter, spec, compiled, kfp_client
):
    checker = SpecChecker(spec)
    api = Api(tracked_adapter.url, checker)
    tag = uuid.uuid4().hex[:8]
    name = f"openapi-{tag}"
    package = compiled["add_subtract_multiply"].read_bytes()

    # health and operations
    api.call("GET", "/liveness", 200)
    api.call("GET", "/readiness", 200)
    api.call("GET", "/docs", 200)

    # pipelines: upload (new pipeline, then a version), bad uploads
    upload_path = "/pipelineIds/{name}"
    first = api.call(
        "POST",
        upload_path,
        200,
        {"name": name},
        files={"file": ("file", package)},
        data={"description": "checked against openapi.yaml"},
    ).json()
    second = api.call(
        "POST", upload_path, 200, {"name": name}, files={"file": ("file", package)}
    ).json()
    assert second["version_name"] == "2"
    api.call("POST", upload_path, 400, {"name": name}, files={"file": ("file", b"")})
    api.call("POST", upload_path, 400, {"name": name}, files={"file": ("file", b"- a\n- list\n")})
    api.call("POST", upload_path, 400, {"name": name}, data={"description": "no file"})
    api.call("GET", upload_path, 200, {"name": name})
    api.call("GET", upload_path, 404, {"name": f"missing-{tag}"})

    api.call("GET", "/pipelines", 200)
    page = api.call("GET", "/pipelines", 200, params={"page_size": 1}).json()
    assert len(page["pipelines"]) == 1
    api.call("GET", "/pipelines", 400, params={"page_size": "many"})

    pipeline_path = "/pipelines/{id_or_name}"
    detail = api.call("GET", pipeline_path, 200, {"id_or_name": first["id"]}).json()
    assert set(detail["arguments"]) == {"a", "b", "expected"}
    api.call("GET", pipeline_path, 404, {"id_or_name": f"missing-{tag}"})
    versions = api.call("GET", pipeline_path + "/versions", 200, {"id_or_name": name}).json()
    assert versions["versions_list"] == [name, "2"] or len(versions["versions_list"]) == 2
    api.call("GET", pipeline_path + "/versions", 404, {"id_or_name": f"missing-{tag}"})
    version_path = "/pipelines/{id_or_name}/versions/{version}"
    version = api.call(
        "GET", version_path, 200, {"id_or_name": name, "version": second["version_id"]}
    ).json()
    assert [task["name"] for task in version["tasks"]]
    api.call("GET", version_path, 404, {"id_or_name": name, "version": f"missing-{tag}"})

    # experiments
    experiment = f"experiment-{tag}"
    api.call("POST", "/experiments", 201, json={"name": experiment, "description": "d"})
    api.call("POST", "/experiments", 409, json={"name": experiment})
    api.call("POST", "/experiments", 400, json={"description": "no name"})
    api.call("POST", "/experiments", 400, data="not json", headers={"Content-Type": "text/plain"})
    experiments = api.call("GET", "/experiments", 200).json()
    assert experiment in experiments
    api.call("GET", "/experiments/{name}", 200, {"name": experiment})
    api.call("GET", "/experiments/{name}", 404, {"name": f"missing-{tag}"})

    # training jobs: start runs
    execution_path = "/trainingjobs/{trainingjob_id}/execution"
    job = f"job-{tag}"
    body = {
        "pipeline_name": name,
        "pipeline_version": "2",
        "experiment_name": experiment,
        "arguments": {"a": "6", "b": "2", "expected": "32", "trainingjob_id": job},
    }
    started = api.call("POST", execution_path, 200, {"trainingjob_id": job}, json=body).json()
    assert started["run_status"] == "scheduled"
    api.call("POST", execution_path, 400, {"trainingjob_id": job}, json={"arguments": {}})
    api.call(
        "POST",
        execution_path,
        404,
        {"trainingjob_id": job},
        json={**body, "pipeline_name": f"missing-{tag}"},
    )
    # a second run to terminate, sharing the first one's display name
    doomed = api.call("POST", execution_path, 200, {"trainingjob_id": job}, json=body).json()
    api.call("DELETE", "/runs/{run_id}", 200, {"run_id": doomed["run_id"]})

    # runs
    runs = api.call("GET", "/runs", 200).json()
    assert {started["run_id"], doomed["run_id"]} <= {run["run_id"] for run in runs.values()}
    api.call("GET", "/runs/{run_id}", 404, {"run_id": str(uuid.uuid4())})
    finished = wait_for_final_state(api, started["run_id"])
    assert finished["run_status"] == "SUCCEEDED", finished
    logs = api.call("GET", "/runs/{run_id}/logs", 200, {"run_id": started["run_id"]}).json()
    assert any(task["log"] for task in logs["tasks"])
    api.call("GET", "/runs/{run_id}/logs", 404, {"run_id": str(uuid.uuid4())})
    pipeline_runs = api.call(
        "GET", pipeline_path + "/runs", 200, {"id_or_name": name}, params={"page_size": 1}
    ).json()
    assert len(pipeline_runs["runs"]) == 1 and pipeline_runs["next_page_token"]
    api.call("GET", pipeline_path + "/runs", 200, {"id_or_name": first["id"]})

    # tracked training jobs
    api.call("GET", "/trainingjobs", 200)
    api.call("GET", "/trainingjobs", 200, params={"notification_status": "untracked"})
    api.call("GET", "/trainingjobs", 400, params={"notification_status": "lost"})
    api.call("GET", "/trainingjobs/{trainingjob_id}", 200, {"trainingjob_id": job})
    api.call("GET", "/trainingjobs/{trainingjob_id}", 404, {"trainingjob_id": f"missing-{tag}"})

    # recurring runs (created directly in KFP: the adapter only reads them)
    recurring = kfp_client.create_recurring_run(
        experiment_id=experiments[experiment],
        job_name=f"recurring-{tag}",
        pipeline_id=first["id"],
        version_id=first["version_id"],
        cron_expression="0 0 0 1 1 *",
        enabled=False,
    )
    api.call("GET", "/recurringruns", 200)
    api.call(
        "GET",
        "/recurringruns/{recurring_run_id}",
        200,
        {"recurring_run_id": recurring.recurring_run_id},
    )
    api.call("GET", "/recurringruns/{recurring_run_id}", 404, {"recurring_run_id": "missing"})

    # deletions, on a pipeline of their own
    other = api.call(
        "POST", upload_path, 200, {"name": f"{name}-delete"}, files={"file": ("file", package)}
    ).json()
    extra = api.call(
        "POST", upload_path, 200, {"name": f"{name}-delete"}, files={"file": ("file", package)}
    ).json()
    api.call(
        "DELETE", version_path, 200, {"id_or_name": other["id"], "version": extra["version_id"]}
    )
    api.call("DELETE", pipeline_path, 200, {"id_or_name": other["id"]})
    api.call("DELETE", pipeline_path, 404, {"id_or_name": other["id"]})

    api.call("GET", "/metrics", 200)
    api.call("GET", "/openapi.json", 200)
    api.call("GET", "/docs/init.js", 200)
    api.call("GET", "/docs/assets/{filename}", 200, {"filename": "swagger-ui.css"})

    # every described operation answered 2xx at least once, in schema
    succeeded = {(method, path) for method, path, status in checker.seen if status < 300}
    described = {
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        for method in operations
        if method != "parameters"
    }
    assert described - succeeded == set()
