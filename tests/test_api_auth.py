"""The adapter against an embedded KFP server that requires a bearer token or a Dex login."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from kfadapter.app import create_app
from kfadapter.localkfp.server import LocalKfpServer
from kfadapter.serving import ServerThread
from kfadapter.settings import Settings
from tests.adapter_support import RecordingProxy, unique

pytestmark = pytest.mark.e2e  # real servers and processes on free ports

SESSION_TTL = 1.0


@pytest.fixture(scope="module")
def token_kfp(tmp_path_factory):
    server = LocalKfpServer(
        data_dir=tmp_path_factory.mktemp("token-kfp"), port=0, auth_token="s3cret"
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def dex_kfp(tmp_path_factory):
    server = LocalKfpServer(
        data_dir=tmp_path_factory.mktemp("dex-kfp"),
        port=0,
        dex_user="user@example.com",
        dex_password="12341234",
    ).start()
    yield server
    server.stop()


def _client(server, tmp_path, **auth):
    settings = Settings(
        kfp_endpoint=server.url + "/pipeline",
        data_dir=tmp_path,
        tracking_enabled=False,
        kfp_read_retries=0,
        **auth,
    )
    return create_app(settings).test_client()


def test_token(token_kfp, tmp_path):
    assert _client(token_kfp, tmp_path, kfp_token="s3cret").get("/experiments").status_code == 200
    refused = _client(token_kfp, tmp_path).get("/experiments")
    assert refused.status_code == 502
    assert "credentials" in refused.json["message"]
    wrong = _client(token_kfp, tmp_path, kfp_token="nope").get("/experiments")
    assert wrong.status_code == 502


def test_token_file(token_kfp, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    client = _client(token_kfp, tmp_path, kfp_token_file=str(token_file))
    assert client.get("/experiments").status_code == 200
    assert client.get("/readiness").status_code == 200


def test_dex_login(dex_kfp, tmp_path):
    client = _client(dex_kfp, tmp_path, kfp_username="user@example.com", kfp_password="12341234")
    answer = client.get("/experiments")
    assert answer.status_code == 200, answer.json
    assert "Default" in answer.json
    anonymous = _client(dex_kfp, tmp_path).get("/experiments")
    assert anonymous.status_code == 502
    assert "authentication is probably required" in anonymous.json["message"]
    wrong = _client(dex_kfp, tmp_path, kfp_username="user@example.com", kfp_password="bad")
    answer = wrong.get("/experiments")
    assert answer.status_code == 502
    assert "KFP_USERNAME and KFP_PASSWORD" in answer.json["message"]


def _dex_browser(server: LocalKfpServer) -> requests.Session:
    """A session logged in to the embedded server's Dex the way a browser does."""
    browser = requests.Session()
    form = browser.get(server.url + "/pipeline", timeout=10)
    browser.post(form.url, data={"login": "user@example.com", "password": "12341234"})
    return browser


def test_dex_session_cookie_given_directly(dex_kfp, tmp_path):
    with _dex_browser(dex_kfp) as browser:
        cookie = browser.cookies.get("authservice_session")
    assert cookie
    client = _client(dex_kfp, tmp_path, kfp_cookie=f"authservice_session={cookie}")
    assert client.get("/experiments").status_code == 200


def test_a_cookie_change_from_another_origin_is_refused_over_http(dex_kfp):
    """CSRF, as a browser would send it: a text/plain POST from a page on another port of
    this host carries the Dex cookie; the embedded server refuses it with KFP's 403 JSON
    and creates nothing, while the same POST from its own origin, or with no browser
    headers at all (kfp.Client with the cookie), goes through."""
    url = f"{dex_kfp.url}/apis/v2beta1/experiments"
    name = unique("csrf")
    with _dex_browser(dex_kfp) as browser:
        forged = browser.post(
            url,
            data=f'{{"display_name": "{name}"}}',
            headers={"Content-Type": "text/plain", "Origin": "http://127.0.0.1:9"},
            timeout=10,
        )
        assert forged.status_code == 403 and forged.json()["code"] == 7, forged.text
        assert name not in browser.get(url, timeout=10).text
        own = browser.post(
            url, json={"display_name": name}, headers={"Origin": dex_kfp.url}, timeout=10
        )
        assert own.status_code == 200, own.text
        plain = browser.post(url, json={"display_name": name + "-2"}, timeout=10)
        assert plain.status_code == 200, plain.text


class StallingProxy(RecordingProxy):
    """A RecordingProxy that can hold back KFP's answer to the next GET by `seconds`.

    The call itself reaches KFP at once, only its answer is late: the adapter's next call
    then comes after the Dex session has expired.
    """

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self._stall = 0.0
        self._stall_lock = threading.Lock()

    def stall_next_get(self, seconds: float) -> None:
        with self._stall_lock:
            self._stall = seconds

    def _app(self, environ, start_response):
        stall = 0.0
        if environ["REQUEST_METHOD"] == "GET":
            with self._stall_lock:
                stall, self._stall = self._stall, 0.0

        def late_start_response(*args, **kwargs):
            time.sleep(stall)  # called once KFP has answered
            return start_response(*args, **kwargs)

        return super()._app(environ, late_start_response)


@pytest.fixture(scope="module")
def expiring_dex(tmp_path_factory):
    """An adapter logging in (KFP_USERNAME/KFP_PASSWORD) to a KFP whose sessions last 1 s."""
    kfp_server = LocalKfpServer(
        data_dir=tmp_path_factory.mktemp("expiring-dex-kfp"),
        port=0,
        dex_user="user@example.com",
        dex_password="12341234",
        dex_session_ttl=SESSION_TTL,
    ).start()
    proxy = StallingProxy(kfp_server.url).start()
    settings = Settings(
        kfp_endpoint=proxy.url + "/pipeline",
        data_dir=tmp_path_factory.mktemp("expiring-dex-adapter"),
        tracking_enabled=False,
        kfp_read_retries=0,
        kfp_timeout=30.0,
        kfp_username="user@example.com",
        kfp_password="12341234",
    )
    adapter = ServerThread(create_app(settings)).start()
    yield kfp_server, proxy, adapter.url
    adapter.stop()
    proxy.stop()
    kfp_server.stop()


def _dex_list(server: LocalKfpServer, path: str) -> dict:
    """GET an API list on the embedded server after a login of our own."""
    with _dex_browser(server) as browser:
        answer = browser.get(f"{server.url}/apis/v2beta1/{path}", timeout=10)
    answer.raise_for_status()
    return answer.json()


def test_adapter_logs_in_again_when_the_dex_session_expired(expiring_dex, compiled):
    kfp_server, proxy, adapter = expiring_dex
    first = requests.get(adapter + "/pipelines", timeout=60)
    assert first.status_code == 200, first.text
    assert kfp_server.auth.logins == 1

    # a read after the session expired: refused by KFP, then repeated after a new login
    time.sleep(SESSION_TTL + 0.1)
    mark = proxy.mark()
    answer = requests.get(adapter + "/pipelines", timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json() == first.json()
    assert kfp_server.auth.logins == 2
    assert proxy.count("GET", "/apis/v2beta1/pipelines", since=mark) == 2
    assert proxy.count("POST", "/dex/auth/local/login", since=mark) == 1

    # a write whose session expires between the adapter's look-up and its create
    name = unique("after-expiry")
    mark = proxy.mark()
    proxy.stall_next_get(SESSION_TTL + 0.1)
    created = requests.post(adapter + "/experiments", json={"name": name}, timeout=60)
    assert created.status_code == 201, created.text
    assert kfp_server.auth.logins == 3
    assert proxy.count("POST", "/apis/v2beta1/experiments", since=mark) == 2  # refused, repeated
    experiments = _dex_list(kfp_server, "experiments?page_size=100")["experiments"]
    assert [e["display_name"] for e in experiments].count(name) == 1
    assert created.json()["experiment_id"] in {e["experiment_id"] for e in experiments}

    # an upload (multipart) the same way: the package is sent again after the new login
    pipeline = unique("after-expiry")
    mark = proxy.mark()
    proxy.stall_next_get(SESSION_TTL + 0.1)
    with open(compiled["add_subtract_multiply"], "rb") as package:
        uploaded = requests.post(
            f"{adapter}/pipelineIds/{pipeline}", files={"file": ("file", package)}, timeout=60
        )
    assert uploaded.status_code == 200, uploaded.text
    assert kfp_server.auth.logins == 5  # ours in _dex_list, then the adapter's
    assert proxy.count("POST", "/pipelines/upload", since=mark) == 2
    pipelines = _dex_list(kfp_server, "pipelines?page_size=100")["pipelines"]
    assert [p["display_name"] for p in pipelines].count(pipeline) == 1
    listed = requests.get(adapter + "/pipelines", timeout=60).json()
    assert pipeline in str(listed)
