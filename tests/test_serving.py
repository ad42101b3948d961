"""The in-process server answers requests it rejects itself in JSON, not HTML."""

import socket

import pytest
import requests

from kfadapter.app import create_app
from kfadapter.serving import ServerThread
from kfadapter.settings import Settings

pytestmark = pytest.mark.e2e  # real servers and processes on free ports


@pytest.fixture
def adapter_url():
    server = ServerThread(
        create_app(Settings(kfp_endpoint="http://127.0.0.1:9/pipeline", tracking_enabled=False))
    ).start()
    yield server.url
    server.stop()


def test_overlong_url_is_a_json_414(adapter_url):
    response = requests.get(f"{adapter_url}/pipelines?filter={'x' * 70_000}", timeout=10)
    assert response.status_code == 414
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {
        "status": 414,
        "message": "Request-URI Too Long",
        "code": 414,
        "error": "Request-URI Too Long",
    }


def test_malformed_request_line_is_a_json_400(adapter_url):
    host, port = adapter_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(b'GET /x"y z w HTTP/1.1\r\n\r\n')
        answer = b""
        while chunk := connection.recv(4096):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 400") or head.startswith(b"HTTP/1.1 400")
    assert b"Content-Type: application/json" in head
    assert b'"status": 400' in body


def test_request_lines_are_logged_without_a_token_in_the_query(adapter_url, caplog):
    """The web UI's `/?token=T` login must not leave the token in the access log."""
    import logging

    with caplog.at_level(logging.INFO, logger="werkzeug"):
        requests.get(f"{adapter_url}/liveness?token=s3cret-value&x=1", timeout=10)
        requests.get(f"{adapter_url}/liveness?a=1&password=hunter2", timeout=10)
    lines = [record.getMessage() for record in caplog.records if record.name == "werkzeug"]
    assert any("/liveness?token=***&x=1" in line for line in lines), lines
    assert any("password=***" in line for line in lines), lines
    assert not any("s3cret-value" in line or "hunter2" in line for line in lines), lines


def test_a_path_with_a_double_slash_is_a_json_404_not_an_html_redirect(adapter_url):
    response = requests.get(f"{adapter_url}/pipelines//versions", timeout=10, allow_redirects=False)
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/json"
