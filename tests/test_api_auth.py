"""The adapter against an embedded KFP server that requires a bearer token or a Dex login."""

from __future__ import annotations

import pytest

from kfadapter.app import create_app
from kfadapter.localkfp.server import LocalKfpServer
from kfadapter.settings import Settings


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


def test_dex_session_cookie_given_directly(dex_kfp, tmp_path):
    import requests

    with requests.Session() as browser:
        form = browser.get(dex_kfp.url + "/pipeline", timeout=10)
        browser.post(form.url, data={"login": "user@example.com", "password": "12341234"})
        cookie = browser.cookies.get("authservice_session")
    assert cookie
    client = _client(dex_kfp, tmp_path, kfp_cookie=f"authservice_session={cookie}")
    assert client.get("/experiments").status_code == 200
