"""KfpAuth in process: how the Dex login fails, when to log in again, and rotated tokens.

Dex is scripted with requests-mock (the login speaks `requests`). A successful login is
tested over real HTTP only (test_api_auth.py, test_kfconnect_faults.py): requests-mock
does not put a response's Set-Cookie into the session's cookie jar, where the login reads
the session cookie from (requests-mock issue #17, open).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import requests

from kfadapter.errors import KfpError, KfpTimeout, KfpUnavailable
from kfadapter.kfp.auth import KfpAuth
from kfadapter.settings import Settings

ENDPOINT = "http://kf.test/pipeline"
LOGIN_FORM = "http://kf.test/dex/auth/local/login?back=&state=abc"


def _dex_auth(**settings: object) -> KfpAuth:
    values = {"kfp_endpoint": ENDPOINT, "kfp_username": "user@x", "kfp_password": "pw"}
    return KfpAuth(Settings(**(values | settings)))


def _script_dex(requests_mock) -> None:
    """KFP redirects to Dex's form; posting the form gives no session (wrong password)."""
    requests_mock.get(ENDPOINT, status_code=302, headers={"Location": LOGIN_FORM})
    requests_mock.get(LOGIN_FORM, text="<form method=post>")
    requests_mock.post(LOGIN_FORM, status_code=200, text="Invalid Email Address and password")


def test_a_login_without_a_session_cookie_names_the_settings_to_check(requests_mock):
    _script_dex(requests_mock)
    with pytest.raises(KfpError, match="check KFP_USERNAME and KFP_PASSWORD"):
        _dex_auth().headers()
    [form_post] = [r for r in requests_mock.request_history if r.method == "POST"]
    assert parse_qs(form_post.text) == {"login": ["user@x"], "password": ["pw"]}


@pytest.mark.parametrize(
    ("failure", "error"),
    [(requests.ConnectTimeout, KfpTimeout), (requests.ConnectionError, KfpUnavailable)],
)
def test_dex_unreachable_or_slow_is_503_or_504(requests_mock, failure, error):
    requests_mock.get(ENDPOINT, exc=failure)
    with pytest.raises(error, match="Dex login"):
        _dex_auth().headers()


@pytest.mark.parametrize(
    ("status", "location", "challenge"),
    [
        (401, "", True),
        (302, "http://kf.test/dex/auth?x", True),
        (303, "/oauth2/start", True),
        (302, "http://kf.test/somewhere", False),
        (403, "", False),
    ],
)
def test_which_answers_mean_log_in_again(status: int, location: str, challenge: bool):
    assert _dex_auth().is_login_challenge(status, {"location": location}) is challenge
    assert KfpAuth(Settings(kfp_endpoint=ENDPOINT)).is_login_challenge(status, {}) is False


def test_a_token_file_is_read_again_when_it_changes(tmp_path: Path):
    token_file = tmp_path / "token"
    token_file.write_text("first\n")
    auth = KfpAuth(Settings(kfp_endpoint=ENDPOINT, kfp_token_file=str(token_file)))
    assert auth.headers() == {"Authorization": "Bearer first"}
    token_file.write_text("second")
    os.utime(token_file, (1, 1))  # a new modification time, as a rotated token has
    assert auth.headers() == {"Authorization": "Bearer second"}
    token_file.unlink()
    with pytest.raises(KfpUnavailable, match="cannot read the KFP token file"):
        auth.headers()
