"""The web UI's routes in process (Flask's test client): the page and its bundle, the browser
logins (a token exchanged for a session cookie; Dex), and the local extension routes that
read what a run's tasks wrote (`/apis/local/v1/...`, docs/local-kfp.md "Extensions").

KFP 2.17 serves its UI from another server (`frontend/server/server.ts`), whose hash routes
(`frontend/src/components/Router.tsx`: `#/runs/details/:id`...) kfp.Client prints
(`sdk/python/kfp/client/client.py`, `_get_url_prefix`); its REST API has no route for a
task's artifacts and metrics (`backend/api/v2beta1/swagger/*.json`), hence the extension.
The records read here are written as the worker writes them (attempts.TaskResults with
attempts.encode_outputs of kfp's own artifact classes); the browser tests
(tests/localkfp/test_ui.py) read what real runs wrote.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from kfp import dsl

from kfadapter.localkfp import attempts
from kfadapter.localkfp.app import create_app
from kfadapter.localkfp.auth import UI_SESSION_COOKIE, AuthConfig
from kfadapter.localkfp.services import KfpServices
from kfadapter.localkfp.storage import Store
from kfadapter.localkfp.ui import bundle_dir
from tests.localkfp.conftest import SPEC

V2 = "/apis/v2beta1"
LOCAL = "/apis/local/v1"
TOKEN = "s3cret-token"


@pytest.fixture
def app_for(tmp_path: Path) -> Iterator[Any]:
    """Make the app (over a fresh store and data dir) with the given auth."""
    stores: list[Store] = []

    def make(auth: AuthConfig | None = None) -> FlaskClient:
        store = Store(tmp_path / "kfp.sqlite3")
        stores.append(store)
        return create_app(KfpServices.over(store), auth, tmp_path).test_client()

    yield make
    for store in stores:
        store.close()


def _json_error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.content_type == "application/json"
    return response.get_json()


# -- the page and its bundle ------------------------------------------------------------------


def test_the_bundle_ships_in_the_package() -> None:
    assert (bundle_dir() / "index.html").is_file()
    assert (bundle_dir() / "assets" / "app.js").is_file()


def test_setup_py_ships_every_file_of_the_bundle() -> None:
    """A non-editable install has the bundle: setup.py's package_data covers each file."""
    import ast
    from pathlib import PurePosixPath

    setup_py = Path(__file__).parents[2] / "setup.py"
    call = next(
        node
        for node in ast.walk(ast.parse(setup_py.read_text()))
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setup"
    )
    package_data = ast.literal_eval(next(k.value for k in call.keywords if k.arg == "package_data"))
    patterns = package_data["kfadapter.localkfp"]
    shipped = bundle_dir().parent
    files = [p.relative_to(shipped).as_posix() for p in bundle_dir().rglob("*") if p.is_file()]
    assert "ui/index.html" in files
    for name in files:  # setuptools' globs: `*` stays within one directory
        path = PurePosixPath(name)
        assert any(
            path.match(pattern) and len(path.parts) == len(PurePosixPath(pattern).parts)
            for pattern in patterns
        ), f"{name} is not in setup.py's package_data"


def test_the_page_and_its_assets_are_served_at_the_root_and_under_pipeline(app_for) -> None:
    client = app_for()
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert page.headers["Cache-Control"] == "no-cache" and page.headers["ETag"]
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert b"assets/app.js" in page.data
    assert client.get("/", headers={"If-None-Match": page.headers["ETag"]}).status_code == 304
    # kfp.Client(host=.../pipeline) prints .../pipeline/#/runs/details/ID
    moved = client.get("/pipeline")
    assert moved.status_code == 308 and moved.headers["Location"].endswith("/pipeline/")
    assert client.get("/pipeline/").data == page.data
    script = client.get("/pipeline/assets/app.js")
    assert script.status_code == 200 and "javascript" in script.mimetype
    assert script.headers["Cache-Control"] == "no-cache"


@pytest.mark.parametrize(
    "path",
    [
        "/assets/nope.js",
        "/assets/../ui.py",
        "/assets/../../ui.py",
        "/assets/%2e%2e/%2e%2e/ui.py",
        "/assets/..%2f..%2fui.py",
        "/assets//etc/passwd",
        "/pipeline/assets/../../ui.py",
    ],
)
def test_unknown_or_hostile_asset_paths_are_json_404s(app_for, path: str) -> None:
    body = _json_error(app_for().get(path), 404)
    assert body["code"] == 5


def test_api_errors_stay_json(app_for) -> None:
    client = app_for()
    assert _json_error(client.get(f"{V2}/nothing-here"), 404)["code"] == 5
    assert _json_error(client.get(f"{V2}/runs/no-such-run"), 404)["code"] == 5
    assert _json_error(client.get(f"{V2}/runs//nothing"), 404)["code"] == 5  # no HTML 308
    assert _json_error(client.get(f"{LOCAL}/runs/no-such-run/tasks"), 404)["code"] == 5


# -- browser logins ---------------------------------------------------------------------------


def test_under_a_token_a_page_without_it_goes_to_the_token_form(app_for) -> None:
    client = app_for(AuthConfig(token=TOKEN))
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?back=%2F"
    form = client.get("/login?back=%2F")
    assert form.status_code == 200 and form.mimetype == "text/html"
    assert b'name="token"' in form.data
    # the API keeps answering 401 JSON, never HTML
    body = _json_error(client.get(f"{V2}/runs"), 401)
    assert body["code"] == 16
    assert _json_error(client.get(f"{LOCAL}/runs/x/tasks"), 401)["code"] == 16
    assert _json_error(client.get("/assets/app.js"), 401)["code"] == 16


def test_the_token_form_exchanges_the_token_for_a_session_cookie(app_for) -> None:
    client = app_for(AuthConfig(token=TOKEN))
    wrong = client.post("/login?back=%2F", data={"token": "wrong", "hash": "#/runs"})
    assert wrong.status_code == 401 and b"Invalid token" in wrong.data
    assert b'value="#/runs"' in wrong.data  # the page to return to, kept for the next try
    assert "Set-Cookie" not in wrong.headers
    assert client.get(f"{V2}/runs").status_code == 401
    right = client.post("/login?back=%2F", data={"token": TOKEN, "hash": "#/runs/details/r1"})
    assert right.status_code == 303
    assert right.headers["Location"] == "/#/runs/details/r1"  # the page the link named
    cookie = right.headers["Set-Cookie"]
    # named after the port (the test client's host is localhost, no port: the bare name)
    assert cookie.startswith(f"{UI_SESSION_COOKIE}=") and TOKEN not in cookie
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert client.get("/").status_code == 200
    assert client.get(f"{V2}/runs").status_code == 200
    assert client.get("/assets/app.js").status_code == 200


def test_the_token_in_the_page_url_logs_in_and_is_dropped_from_it(app_for) -> None:
    client = app_for(AuthConfig(token=TOKEN))
    wrong = client.get("/?token=nope")
    assert wrong.status_code == 401 and wrong.mimetype == "text/html"
    right = client.get(f"/pipeline/?token={TOKEN}")
    assert right.status_code == 303 and right.headers["Location"] == "/pipeline/"
    assert right.headers["Referrer-Policy"] == "no-referrer"
    assert client.get(f"/pipeline{V2}/experiments").status_code == 200


def test_the_session_cookie_is_named_after_the_port(app_for) -> None:
    client = app_for(AuthConfig(token=TOKEN))
    host = {"Host": "127.0.0.1:8765"}
    response = client.get(f"/?token={TOKEN}", headers=host)
    assert response.headers["Set-Cookie"].startswith(f"{UI_SESSION_COOKIE}-8765=")
    assert client.get(f"{V2}/runs", headers=host).status_code == 200
    assert client.get(f"{V2}/runs", headers={"Host": "127.0.0.1:8766"}).status_code == 401


@pytest.mark.parametrize("mode", ["token", "dex"])
def test_a_cookie_authenticated_change_from_another_origin_is_refused(app_for, mode) -> None:
    """CSRF: a page on another port of this host is the same *site* (SameSite ignores
    ports), so its text/plain POST carries the session cookie with no preflight; only this
    server's own pages may change anything with it. Non-browser clients send neither
    Origin nor Sec-Fetch-Site, and a bearer token is never sent by a browser on its own."""
    if mode == "token":
        client = app_for(AuthConfig(token=TOKEN))
        assert client.get(f"/?token={TOKEN}", headers={"Host": "127.0.0.1:8888"}).status_code == 303
    else:
        client = app_for(AuthConfig(dex_user="user@example.com", dex_password="pw"))
        login = client.post(
            "/dex/auth/local/login?back=%2F",
            data={"login": "user@example.com", "password": "pw"},
            headers={"Host": "127.0.0.1:8888"},
        )
        assert login.status_code == 303
    url, body = f"{V2}/experiments", '{"display_name": "forged"}'
    own = {"Host": "127.0.0.1:8888", "Content-Type": "text/plain"}
    for foreign in (
        {"Origin": "http://127.0.0.1:9999"},
        {"Sec-Fetch-Site": "same-site", "Origin": "http://127.0.0.1:9999"},
        {"Sec-Fetch-Site": "cross-site"},
    ):
        refused = client.post(url, data=body, headers={**own, **foreign})
        assert _json_error(refused, 403)["code"] == 7, foreign
    listed = client.get(f"{V2}/experiments", headers={**own, "Sec-Fetch-Site": "cross-site"})
    assert "forged" not in listed.get_data(as_text=True)  # (a read is allowed, nothing made)
    for same in (
        {"Origin": "http://127.0.0.1:8888", "Sec-Fetch-Site": "same-origin"},
        {"Origin": "http://127.0.0.1:8888"},
        {},  # kfp.Client with the cookie: no browser headers
    ):
        made = client.post(url, json={"display_name": f"made-{len(same)}"}, headers={**own, **same})
        assert made.status_code == 200, (same, made.get_data(as_text=True))


def test_a_forged_session_cookie_or_a_wrong_bearer_is_refused(app_for) -> None:
    client = app_for(AuthConfig(token=TOKEN))
    client.set_cookie(UI_SESSION_COOKIE, TOKEN)  # the token itself is not a session
    assert client.get(f"{V2}/runs").status_code == 401
    assert client.get(f"{V2}/runs", headers={"Authorization": "Bearer x"}).status_code == 401
    assert client.get(f"{V2}/runs", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


@pytest.mark.parametrize(
    "back, fragment, location",
    [
        ("//evil.example/x", "#/runs", "/#/runs"),
        ("https://evil.example/", "", "/"),
        ("/\\evil.example/", "", "/"),
        ("/\tevil", "", "/"),
        ("/", "javascript:alert(1)", "/"),
        ("/", "#/a b", "/"),
        ("/", "#/x\r\nSet-Cookie: a=b", "/"),
    ],
)
def test_logins_return_only_to_a_local_page_and_hash(
    app_for, back: str, fragment: str, location: str
) -> None:
    client = app_for(AuthConfig(token=TOKEN))
    response = client.post(
        "/login", query_string={"back": back}, data={"token": TOKEN, "hash": fragment}
    )
    assert response.status_code == 303 and response.headers["Location"] == location


def test_under_dex_the_page_redirects_to_the_login_and_back_to_its_hash(app_for) -> None:
    client = app_for(AuthConfig(dex_user="user@example.com", dex_password="pw"))
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/dex/auth/local/login?back=%2F"
    login = client.post(
        "/dex/auth/local/login?back=%2F",
        data={"login": "user@example.com", "password": "pw", "hash": "#/experiments"},
    )
    assert login.status_code == 303 and login.headers["Location"] == "/#/experiments"
    assert client.get("/").status_code == 200
    assert client.get(f"{LOCAL}/runs/x/tasks").status_code == 404  # authenticated, no such run


# -- what a run's tasks wrote -----------------------------------------------------------------


def _run(client: FlaskClient) -> str:
    response = client.post(f"{V2}/runs", json={"display_name": "r", "pipeline_spec": SPEC})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["run_id"]


def _artifact(cls: type, name: str, uri: str, metadata: dict[str, Any]) -> Any:
    return cls(name=name, uri=uri, metadata=metadata)


def _write_results(run_directory: Path, spec: dict[str, Any]) -> None:
    """A run directory as the worker leaves it: its spec and two ended tasks' records."""
    outputs = run_directory / "outputs" / "p-1"
    (outputs / "train").mkdir(parents=True)
    (outputs / "train" / "model").write_text("weights")
    (outputs / "train" / "dir" / "sub").mkdir(parents=True)
    (outputs / "train" / "dir" / "sub" / "a.txt").write_text("A")
    (outputs / "train" / "dir" / "escape").symlink_to("/etc/passwd")
    (outputs / "train" / "link").symlink_to("/etc/passwd")
    (run_directory / "spec.json").write_text(json.dumps(spec))
    metrics = _artifact(dsl.Metrics, "metrics", str(outputs / "train" / "metrics"), {"acc": 0.9})
    matrix = {
        "confusionMatrix": {
            "annotationSpecs": [{"displayName": "cat"}, {"displayName": "dog"}],
            "rows": [{"row": [8.0, 2.0]}, {"row": [1.0, 9.0]}],
        }
    }
    classification = _artifact(
        dsl.ClassificationMetrics, "cm", str(outputs / "train" / "cm"), matrix
    )
    model = _artifact(dsl.Model, "model", str(outputs / "train" / "model"), {})
    directory = _artifact(dsl.Artifact, "dir", str(outputs / "train" / "dir"), {})
    outside = _artifact(dsl.Artifact, "outside", "/etc/passwd", {})
    link = _artifact(dsl.Artifact, "link", str(outputs / "train" / "link"), {})
    results = attempts.TaskResults(run_directory / attempts.TASK_RESULTS)
    start, end = "2026-01-01T00:00:00.5+00:00", "2026-01-01T00:00:02.25+00:00"
    results.record(
        attempts.TaskResult(
            "train",
            "SUCCEEDED",
            start,
            end,
            "train",
            attempts.encode_outputs(
                {
                    "metrics": metrics,
                    "cm": classification,
                    "model": model,
                    "dir": directory,
                    "outside": outside,
                    "link": link,
                    "Output": "ok",
                }
            ),
            attempts.encode_outputs({"epochs": 3}),
        )
    )
    results.record(
        attempts.TaskResult(
            "check",
            "FAILED",
            start,
            end,
            "check",
            {},
            attempts.encode_outputs({"model": model}),
            "ValueError: expected 1, got 2",
        )
    )


SPEC_TWO_TASKS = {
    **SPEC,
    "pipelineInfo": {"name": "two-tasks"},
    "components": {
        "comp-train": {"executorLabel": "exec-train"},
        "comp-check": {"executorLabel": "exec-check"},
    },
    "deploymentSpec": {
        "executors": {"exec-train": {"container": {}}, "exec-check": {"container": {}}}
    },
    "root": {
        "dag": {
            "tasks": {
                "train": {"componentRef": {"name": "comp-train"}, "taskInfo": {"name": "train"}},
                "check": {"componentRef": {"name": "comp-check"}, "taskInfo": {"name": "check"}},
            }
        }
    },
}


@pytest.fixture
def run_with_results(app_for, tmp_path: Path) -> tuple[FlaskClient, str]:
    client = app_for()
    run_id = _run(client)
    _write_results(tmp_path / "runs" / run_id, SPEC_TWO_TASKS)
    return client, run_id


def test_tasks_show_state_error_inputs_outputs_and_metrics(run_with_results) -> None:
    from kfadapter.localkfp import argo_names

    client, run_id = run_with_results
    tasks = client.get(f"{LOCAL}/runs/{run_id}/tasks").get_json()["tasks"]
    assert [(t["name"], t["state"], t["error"]) for t in tasks] == [
        ("train", "SUCCEEDED", None),
        ("check", "FAILED", "ValueError: expected 1, got 2"),
    ]
    train, check = tasks
    assert train["path"] == [] and train["kind"] == "container"
    assert (train["start_time"], train["end_time"]) == (
        "2026-01-01T00:00:00Z",
        "2026-01-01T00:00:02Z",
    )
    workflow = argo_names.workflow_name(SPEC_TWO_TASKS, run_id)
    node = argo_names.task_node_name(SPEC_TWO_TASKS, workflow, ("train",))
    assert train["node_id"] == argo_names.node_id(workflow, node)
    assert train["task_id"] == argo_names.task_detail_id(run_id, node)
    assert train["pod_name"] == argo_names.executor_pod_name(
        argo_names.node_id(workflow, f"{node}.executor")
    )
    assert train["inputs"] == {"parameters": {"epochs": 3}, "artifacts": []}
    assert train["outputs"]["parameters"] == {"Output": "ok"}
    by_name = {a["name"]: a for a in train["outputs"]["artifacts"]}
    assert by_name["metrics"]["type"] == "system.Metrics"
    assert by_name["metrics"]["metadata"] == {"acc": 0.9}
    assert by_name["metrics"]["download"] is None  # Metrics write no file
    assert by_name["cm"]["metadata"]["confusionMatrix"]["rows"][0] == {"row": [8.0, 2.0]}
    assert by_name["model"]["download"] == f"apis/local/v1/runs/{run_id}/artifacts/train/model"
    assert by_name["outside"]["download"] is None and by_name["link"]["download"] is None
    assert [a["name"] for a in check["inputs"]["artifacts"]] == ["model"]
    assert check["inputs"]["artifacts"][0]["download"] is None
    listed = client.get(f"{LOCAL}/runs/{run_id}/artifacts").get_json()["artifacts"]
    assert {(a["task"], a["name"]) for a in listed} == {("train", n) for n in by_name}


def test_artifact_files_download_and_directories_zip(run_with_results) -> None:
    client, run_id = run_with_results
    model = client.get(f"{LOCAL}/runs/{run_id}/artifacts/train/model")
    assert model.status_code == 200 and model.data == b"weights"
    assert "attachment" in model.headers["Content-Disposition"]
    folder = client.get(f"{LOCAL}/runs/{run_id}/artifacts/train/dir")
    assert folder.status_code == 200 and folder.mimetype == "application/zip"
    with zipfile.ZipFile(io.BytesIO(folder.data)) as archive:
        assert archive.namelist() == ["sub/a.txt"]  # the symlink out is left out


@pytest.mark.parametrize(
    "suffix, status",
    [
        ("train/metrics", 404),  # no file
        ("train/outside", 404),  # a uri outside the run's directory
        ("train/link", 404),  # a symlink out of it
        ("train/nope", 404),
        ("nope/model", 404),
        ("..%2F..%2Fetc/passwd", 404),
        ("train/model?index=1", 404),
        ("train/model?index=-1", 400),
        ("train/model?index=x", 400),
        ("train/model?index=%C2%B2", 400),  # "²": a digit to str.isdigit, not to int()
    ],
)
def test_missing_or_hostile_artifact_requests_are_json_errors(
    run_with_results, suffix: str, status: int
) -> None:
    client, run_id = run_with_results
    body = _json_error(client.get(f"{LOCAL}/runs/{run_id}/artifacts/{suffix}"), status)
    assert body["message"]


@pytest.mark.parametrize("run_id", ["..", "a..b", "%2e%2e", "no-such-run"])
def test_hostile_or_unknown_run_ids_are_404s(app_for, run_id: str) -> None:
    client = app_for()
    for route in ("tasks", "artifacts", "artifacts/train/model"):
        response = client.get(f"{LOCAL}/runs/{run_id}/{route}")
        assert _json_error(response, 404)["code"] == 5


def test_a_run_without_results_has_no_tasks_yet(app_for) -> None:
    client = app_for()
    run_id = _run(client)
    assert client.get(f"{LOCAL}/runs/{run_id}/tasks").get_json() == {"tasks": []}
    assert client.get(f"/pipeline{LOCAL}/runs/{run_id}/artifacts").get_json() == {"artifacts": []}


def test_a_v1_runs_tasks_are_its_argo_nodes_with_their_pods_states_and_errors(
    app_for, tmp_path: Path
) -> None:
    """A V1 run (an Argo Workflow) records each ended node by its Argo name
    (workflows/nodes.py, as the engine ends them): the extension gives each with the id of
    its task_details entry and node (`common/util/workflow.go` `NodeStatuses`), the pod the
    v1alpha1 log route takes (`RetrievePodName`, POD_NAMES v2) and KFP's state of its phase
    (`model.RuntimeState.ToV2`: Error is FAILED), a failed pod's message as its error."""
    from kfadapter.localkfp.worker import StatusWriter
    from kfadapter.localkfp.workflows import nodes
    from tests.pipelines import v1_workflow

    client = app_for()
    run_id = _run(client)
    run_directory = tmp_path / "runs" / run_id
    run_directory.mkdir(parents=True, exist_ok=True)
    spec = v1_workflow("add_subtract_multiply")
    (run_directory / "spec.json").write_text(json.dumps(spec))
    workflow = nodes.workflow_name(spec, run_id)
    with (tmp_path / "events.jsonl").open("wb") as events:
        results = attempts.TaskResults(run_directory / attempts.TASK_RESULTS)
        tree = nodes.NodeTree(workflow, StatusWriter(events), results)
        tree.start(workflow, nodes.DAG, spec["spec"]["entrypoint"], None)
        tree.start(f"{workflow}.add", nodes.POD, "add", workflow)
        tree.finish(
            f"{workflow}.add", nodes.SUCCEEDED, outputs={"parameters": {"add-Output": "9.0"}}
        )
        tree.start(f"{workflow}.check-equals", nodes.POD, "check-equals", workflow)
        tree.finish(f"{workflow}.check-equals", nodes.ERROR, "ValueError: expected 44.0, got 45.0")
        tree.finish(workflow, nodes.FAILED, "task 'check-equals' failed")
    tasks = client.get(f"{LOCAL}/runs/{run_id}/tasks").get_json()["tasks"]
    by_name = {t["name"]: t for t in tasks}
    assert [t["name"] for t in tasks] == ["add", "check-equals", workflow]
    add, check = by_name["add"], by_name["check-equals"]
    assert (add["path"], add["kind"], add["state"], add["error"]) == (
        [workflow],
        "container",
        "SUCCEEDED",
        None,
    )
    assert add["pod_name"] == nodes.pod_name(workflow, f"{workflow}.add", "add")
    assert add["outputs"]["parameters"] == {"add-Output": "9.0"}
    details = nodes.task_details(
        run_id,
        workflow,
        [{"name": f"{workflow}.add", "display_name": "add", "phase": nodes.SUCCEEDED}],
        created="2026-01-01T00:00:00Z",
    )
    assert add["task_id"] == details[0]["task_id"]
    assert add["node_id"] == f"{workflow}-{nodes.fnv32a(f'{workflow}.add')}"
    assert (check["state"], check["error"]) == ("FAILED", "ValueError: expected 44.0, got 45.0")
    root = by_name[workflow]
    assert (root["path"], root["kind"], root["pod_name"], root["node_id"]) == (
        [],
        "dag",
        None,
        workflow,
    )
