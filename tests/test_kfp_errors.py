"""KFP's error answers as the adapter's typed errors (kfadapter/kfp/errors.py), in process.

The same mapping against a real, scripted KFP over HTTP is in test_kfconnect_faults.py.
"""

from __future__ import annotations

import json

import pytest
import urllib3
from kfp_server_api.exceptions import ApiException, ApiValueError

from kfadapter import errors
from kfadapter.kfp.errors import http_error, kfp_message, mapped_errors
from tests.adapter_support import KFP_ERROR_STATUSES


def _answer(status: int, body: object = None, headers: dict | None = None) -> ApiException:
    """The SDK's exception for a KFP answer with this status, body and headers."""
    error = ApiException(status=status, reason="Reason")
    error.body = json.dumps(body).encode() if isinstance(body, dict) else body
    error.headers = headers or {}
    return error


@pytest.mark.parametrize(
    ("status", "kind", "http_status"),
    [*KFP_ERROR_STATUSES, (0, errors.KfpUnavailable, 503)],  # 0: the SDK saw no answer
)
def test_each_kfp_status_becomes_one_typed_error(status, kind, http_status):
    mapped = http_error(_answer(status, {"message": "kfp says no"}), "get_run", "run 'r1'")
    assert type(mapped) is kind and int(mapped.status) == http_status
    assert "kfp says no" in mapped.message + json.dumps(mapped.details)


def test_a_redirect_names_its_target_and_the_settings_to_set():
    mapped = http_error(_answer(302, b"", {"location": "/dex/auth"}), "list_runs", None)
    assert isinstance(mapped, errors.KfpError) and mapped.details == {"kfp_status": 302}
    assert "to /dex/auth" in mapped.message and "KFP_USERNAME/KFP_PASSWORD" in mapped.message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"error": "e", "message": "  the message  "}', "the message"),
        (b'{"error": "only the error"}', "only the error"),
        (b"<html><body>502 Bad Gateway</body></html>", "KFP answered with an HTML page"),
        (b"plain text\n", "plain text"),
        (b"x" * 5000, "x" * 1000),
        (None, ""),
    ],
)
def test_the_message_is_taken_from_kfps_body(body, message):
    assert kfp_message(body) == message


@pytest.mark.parametrize(
    ("raised", "kind"),
    [
        (urllib3.exceptions.ReadTimeoutError(None, "/x", "read timed out"), errors.KfpTimeout),
        (urllib3.exceptions.NewConnectionError(None, "Connection refused"), errors.KfpUnavailable),
        (ConnectionResetError("reset by peer"), errors.KfpUnavailable),
        (ApiValueError("Missing the required parameter `run_id`"), errors.BadRequest),
        (_answer(404, {"message": "gone"}), errors.NotFound),
    ],
)
def test_what_goes_wrong_in_a_call_leaves_as_a_typed_error(raised, kind):
    with pytest.raises(kind), mapped_errors("get_run", "run 'r1'", endpoint="http://k", timeout=5):
        raise raised
