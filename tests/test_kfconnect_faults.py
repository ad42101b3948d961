"""KfConnect and the app against a deliberately misbehaving KFP: error mapping, time-outs,
read retries, credentials and request ids. The KFP side is a real HTTP server on a free
port whose answers each test scripts (tests.adapter_support.ScriptedKfp)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest
import requests

from kfadapter import errors
from kfadapter.app import create_app
from kfadapter.kfp import KfConnect
from kfadapter.serving import ServerThread
from kfadapter.settings import Settings
from tests.adapter_support import KFP_ERROR_STATUSES, Answer, ScriptedKfp, Seen
from tests.support import free_port

pytestmark = pytest.mark.e2e  # real servers and processes on free ports

RUNS = "/pipeline/apis/v2beta1/runs"


def _settings(url: str, **overrides) -> Settings:
    values = {
        "kfp_endpoint": url + "/pipeline",
        "tracking_enabled": False,
        "kfp_timeout": 2.0,
        "kfp_read_retries": 2,
    }
    return Settings(**(values | overrides))


@pytest.fixture
def scripted():
    """Start ScriptedKfp servers for a test and stop them after it."""
    servers = []

    def start(script) -> ScriptedKfp:
        server = ScriptedKfp(script).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def _kfp_error(status: int, message: str) -> Answer:
    return Answer(status=status, body={"error": message, "code": 3, "message": message})


@pytest.mark.parametrize(("status", "error_class", "http_status"), KFP_ERROR_STATUSES)
def test_kfp_error_answers_are_mapped_once(scripted, status, error_class, http_status):
    server = scripted(lambda seen: _kfp_error(status, f"kfp says {status}"))
    kfp = KfConnect(_settings(server.url))
    with pytest.raises(error_class) as caught:
        kfp.get_run("r1")
    assert int(caught.value.status) == http_status
    assert f"kfp says {status}" in caught.value.message + str(caught.value.details)
    assert len(server.requests) == 1  # an HTTP answer is not retried


def test_the_app_answers_json_with_kfps_message(scripted):
    server = scripted(lambda seen: _kfp_error(500, "database is on fire"))
    client = create_app(_settings(server.url)).test_client()
    answer = client.get("/runs/abc")
    assert answer.status_code == 502
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.json["status"] == 502
    assert "database is on fire" in answer.json["message"]


def test_not_found_names_the_subject(scripted):
    server = scripted(lambda seen: _kfp_error(404, "no such run"))
    client = create_app(_settings(server.url)).test_client()
    answer = client.get("/runs/r-42")
    assert answer.status_code == 404
    assert answer.json["message"] == "run 'r-42' not found"


def test_unreachable_kfp_is_503_after_bounded_read_retries(scripted):
    server = scripted(lambda seen: Answer(drop=True))
    kfp = KfConnect(_settings(server.url, kfp_read_retries=2))
    with pytest.raises(errors.KfpUnavailable):
        kfp.get_run("r1")
    assert len(server.requests) == 3  # one call and two retries


def test_writes_are_not_retried(scripted):
    server = scripted(lambda seen: Answer(drop=True))
    kfp = KfConnect(_settings(server.url, kfp_read_retries=2))
    with pytest.raises(errors.KfpUnavailable):
        kfp.terminate_run("r1")
    assert len(server.requests) == 1


def test_a_read_succeeds_when_a_retry_gets_through(scripted):
    def flaky(seen: Seen) -> Answer:
        if len(server.requests) == 1:
            return Answer(drop=True)
        return Answer(body={"run_id": "r1", "display_name": "n", "state": "RUNNING"})

    server = scripted(flaky)
    run = KfConnect(_settings(server.url)).get_run("r1")
    assert run["state"] == "RUNNING"
    assert len(server.requests) == 2


def test_connection_refused_is_503():
    kfp = KfConnect(_settings(f"http://127.0.0.1:{free_port()}", kfp_read_retries=0))
    with pytest.raises(errors.KfpUnavailable, match="connection refused"):
        kfp.healthz()


def test_slow_kfp_is_504_and_not_retried(scripted):
    server = scripted(lambda seen: Answer(delay=1.5, body={}))
    kfp = KfConnect(_settings(server.url, kfp_timeout=0.3))
    started = time.monotonic()
    with pytest.raises(errors.KfpTimeout, match="within 0.3 s"):
        kfp.get_run("r1")
    assert time.monotonic() - started < 1.4  # the time-out, not KFP's pace
    assert len(server.requests) == 1


def test_the_app_maps_timeouts_and_outages(scripted):
    slow = scripted(lambda seen: Answer(delay=1.0, body={}))
    client = create_app(_settings(slow.url, kfp_timeout=0.2)).test_client()
    answer = client.get("/experiments")
    assert (answer.status_code, answer.json["status"]) == (504, 504)
    down = create_app(_settings(f"http://127.0.0.1:{free_port()}", kfp_read_retries=0))
    answer = down.test_client().get("/pipelines")
    assert answer.status_code == 503
    assert answer.headers["Content-Type"] == "application/json"


def test_non_json_answer_is_502(scripted):
    server = scripted(lambda seen: Answer(body=b"<html>proxy page</html>"))
    with pytest.raises(errors.KfpError, match="not JSON"):
        KfConnect(_settings(server.url)).get_run("r1")


def test_a_redirect_without_login_settings_is_502_about_authentication(scripted):
    server = scripted(lambda seen: Answer(status=302, headers={"Location": "/dex/auth"}))
    with pytest.raises(errors.KfpError, match="authentication is probably required"):
        KfConnect(_settings(server.url)).get_run("r1")


@pytest.mark.parametrize("header", ["Location", "location"])
def test_a_redirect_is_a_json_502_naming_where_kfp_sent_the_adapter(scripted, header):
    # Envoy (Istio's gateway in front of KFP) sends header names in lower case.
    server = scripted(lambda seen: Answer(status=302, headers={header: "/dex/auth?x=1"}))
    answer = create_app(_settings(server.url)).test_client().get("/runs/r1")
    assert answer.status_code == 502
    assert answer.json["status"] == 502
    assert "redirected get_run to /dex/auth?x=1" in answer.json["message"]


def test_readiness(scripted):
    healthy = scripted(lambda seen: Answer(body={"multi_user": False}))
    answer = create_app(_settings(healthy.url)).test_client().get("/readiness")
    assert (answer.status_code, answer.json["ready"]) == (200, True)
    down = create_app(_settings(f"http://127.0.0.1:{free_port()}", kfp_read_retries=0))
    answer = down.test_client().get("/readiness")
    assert answer.status_code == 503
    assert "unreachable" in answer.json["message"]
    assert healthy.requests[0].path == "/pipeline/apis/v2beta1/healthz"


def test_the_app_starts_and_lives_while_kfp_is_down():
    app = create_app(_settings(f"http://127.0.0.1:{free_port()}"))
    answer = app.test_client().get("/liveness")
    assert (answer.status_code, answer.get_data(as_text=True)) == (200, "Okay")


def test_bearer_token_and_request_id_are_sent(scripted):
    server = scripted(lambda seen: Answer(body={"runs": []}))
    app = create_app(_settings(server.url, kfp_token="secret-token"))
    adapter = ServerThread(app).start()
    try:
        answer = requests.get(
            adapter.url + "/runs", headers={"X-Request-ID": "req-123"}, timeout=10
        )
    finally:
        adapter.stop()
    assert answer.status_code == 200
    assert answer.headers["X-Request-ID"] == "req-123"
    sent = server.requests[0].headers
    assert sent["Authorization"] == "Bearer secret-token"
    assert sent["X-Request-ID"] == "req-123"


def test_token_file_is_reread_when_it_changes(scripted, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("first\n")
    server = scripted(lambda seen: Answer(body={}))
    kfp = KfConnect(_settings(server.url, kfp_token_file=str(token_file)))
    kfp.healthz()
    token_file.write_text("second\n")
    later = time.time() + 5
    os.utime(token_file, (later, later))
    kfp.healthz()
    assert [r.headers["Authorization"] for r in server.requests] == [
        "Bearer first",
        "Bearer second",
    ]


def test_a_missing_token_file_is_503(tmp_path, scripted):
    server = scripted(lambda seen: Answer(body={}))
    kfp = KfConnect(_settings(server.url, kfp_token_file=str(tmp_path / "absent")))
    with pytest.raises(errors.KfpUnavailable, match="token file"):
        kfp.healthz()
    assert server.requests == []


def test_cookie_is_sent(scripted):
    server = scripted(lambda seen: Answer(body={}))
    KfConnect(_settings(server.url, kfp_cookie="authservice_session=abc")).healthz()
    assert server.requests[0].headers["Cookie"] == "authservice_session=abc"


class _DexLike:
    """Serves KFP behind a Dex-like login whose sessions expire after `lifetime` API calls."""

    def __init__(self, lifetime: int) -> None:
        self.lifetime = lifetime
        self.sessions: dict[str, int] = {}
        self.issued = 0

    def __call__(self, seen: Seen) -> Answer:
        if seen.path.startswith("/dex/login"):
            if seen.method == "GET":
                return Answer(body=b"<form>login</form>", headers={"Content-Type": "text/html"})
            if b"login=user" in seen.body and b"password=pw" in seen.body:
                self.issued += 1
                session = f"s{self.issued}"
                self.sessions[session] = 0
                return Answer(
                    status=303,
                    headers={
                        "Location": "/pipeline",
                        "Set-Cookie": f"authservice_session={session}; Path=/",
                    },
                )
            return Answer(status=401, body=b"bad credentials")
        cookie = seen.headers.get("Cookie", "")
        session = cookie.partition("authservice_session=")[2].split(";")[0]
        if session in self.sessions and "/apis/" not in seen.path:
            return Answer(body=b"the KFP UI", headers={"Content-Type": "text/html"})
        if session in self.sessions and self.sessions[session] < self.lifetime:
            self.sessions[session] += 1
            return Answer(body={"runs": []} if "runs" in seen.path else {})
        return Answer(status=302, headers={"Location": "/dex/login?back=" + seen.path})


def test_dex_login_and_relogin_when_the_session_expires(scripted):
    dex = _DexLike(lifetime=2)
    server = scripted(dex)
    kfp = KfConnect(_settings(server.url, kfp_username="user", kfp_password="pw"))
    for _ in range(5):
        kfp.healthz()
    assert dex.issued == 3  # sessions s1 (2 calls), s2 (2 calls), s3 (1 call)
    assert kfp.auth.logins == 3


def test_dex_login_with_wrong_password_is_502(scripted):
    server = scripted(_DexLike(lifetime=10))
    kfp = KfConnect(_settings(server.url, kfp_username="user", kfp_password="wrong"))
    with pytest.raises(errors.KfpError, match="check KFP_USERNAME and KFP_PASSWORD"):
        kfp.healthz()


def test_a_write_is_repeated_once_after_a_relogin(scripted):
    dex = _DexLike(lifetime=1)
    server = scripted(dex)
    kfp = KfConnect(_settings(server.url, kfp_username="user", kfp_password="pw"))
    kfp.healthz()  # uses up session s1
    kfp.terminate_run("r1")  # 302 -> login (s2) -> the same POST again
    posts = [r for r in server.requests if r.method == "POST" and "terminate" in r.path]
    assert len(posts) == 2
    assert "authservice_session=s2" in posts[1].headers["Cookie"]


def test_run_states_asks_for_run_ids_in_chunks(scripted):
    def answer(seen: Seen) -> Answer:
        return Answer(body={"runs": [{"run_id": "r5", "state": "SUCCEEDED"}]})

    server = scripted(answer)
    kfp = KfConnect(_settings(server.url))
    states = kfp.run_states([f"r{i}" for i in range(250)])
    assert states == {"r5": "SUCCEEDED"}
    assert len(server.requests) == 3  # 250 ids, 100 a call
    assert all("filter=" in r.path and "IN" in r.path for r in server.requests)
    assert kfp.run_states([]) == {}
    assert len(server.requests) == 3


DEFAULT_LISTED = Answer(body={"experiments": [{"experiment_id": "e1", "display_name": "Default"}]})


def _execution_kfp(
    experiments: Callable[[Seen], Answer], run_state: str = "PENDING"
) -> Callable[[Seen], Answer]:
    """A scripted KFP for /execution: `experiments` answers the experiment calls; pipeline
    `pipe` has one version; a created run comes back in `run_state`."""

    def kfp(seen: Seen) -> Answer:
        path = seen.path.split("?")[0].removeprefix("/pipeline/apis/v2beta1")
        if path == "/experiments":
            return experiments(seen)
        if path == "/pipelines":
            return Answer(body={"pipelines": [{"pipeline_id": "p1", "display_name": "pipe"}]})
        if path == "/pipelines/p1/versions":
            version = {"pipeline_version_id": "v1", "display_name": "pipe", "pipeline_spec": {}}
            return Answer(body={"pipeline_versions": [version]})
        if path == "/runs" and seen.method == "POST":
            return Answer(body={"run_id": "r1", "display_name": "job-1", "state": run_state})
        return _kfp_error(404, f"unexpected {seen.method} {path}")

    return kfp


def _execute(server_url: str):
    """The TM's execution call for pipeline `pipe` in the Default experiment."""
    client = create_app(_settings(server_url)).test_client()
    return client.post(
        "/trainingjobs/job-1/execution",
        json={"pipeline_name": "pipe", "experiment_name": "Default", "arguments": {}},
    )


def test_execution_survives_a_concurrent_creation_of_default(scripted):
    """KFP in multi-user mode has no "Default": when two executions create it at once, KFP
    answers 409 to one; that one reads the experiment the other made and starts its run."""
    listed = {"count": 0}

    def experiments(seen: Seen) -> Answer:
        if seen.method == "GET":
            listed["count"] += 1
            return Answer(body={}) if listed["count"] == 1 else DEFAULT_LISTED
        return _kfp_error(409, "experiment Default already exists")

    server = scripted(_execution_kfp(experiments))
    answer = _execute(server.url)
    assert answer.status_code == 200, answer.json
    assert (answer.json["run_status"], answer.json["experiment_id"]) == ("scheduled", "e1")
    posts = [r.path.split("?")[0] for r in server.requests if r.method == "POST"]
    assert posts == ["/pipeline/apis/v2beta1/experiments", "/pipeline/apis/v2beta1/runs"]


@pytest.mark.parametrize("state", ["RUNNING", "SUCCEEDED", "FAILED", "CANCELED"])
def test_run_status_is_scheduled_whatever_state_kfp_gives_the_new_run(scripted, state):
    """CONTRACT: run_status must equal "scheduled" for any run KFP accepted, even one KFP
    reports already started or finished (the older adapter answered otherwise)."""
    server = scripted(_execution_kfp(lambda seen: DEFAULT_LISTED, run_state=state))
    answer = _execute(server.url)
    assert answer.status_code == 200, answer.json
    assert answer.headers["Content-Type"] == "application/json"
    assert (answer.json["run_status"], answer.json["run_state"]) == ("scheduled", state)
