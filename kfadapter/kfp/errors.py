"""KFP's failures as the adapter's typed errors: the one place they are mapped.

KFP 400 -> BadRequest, 404 -> NotFound, 409 -> Conflict, a redirect (a login page) or any
other KFP error -> KfpError (502), no connection -> KfpUnavailable (503), no answer in
time -> KfpTimeout (504).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import urllib3

from kfadapter.errors import (
    AdapterError,
    BadRequest,
    Conflict,
    KfpError,
    KfpTimeout,
    KfpUnavailable,
    NotFound,
)
from kfadapter.kfp.auth import header

# The longest KFP error text passed on to clients.
MAX_MESSAGE = 1000


@contextmanager
def mapped_errors(
    operation: str, subject: str | None, *, endpoint: str, timeout: float
) -> Iterator[None]:
    """Turn whatever goes wrong in the SDK call inside the block into a typed error."""
    from kfp_server_api.exceptions import ApiException, ApiValueError

    try:
        yield
    except ApiException as error:
        raise http_error(error, operation, subject) from None
    except ApiValueError as error:
        raise BadRequest(f"{subject or operation}: {error}") from None
    except urllib3.exceptions.ReadTimeoutError:
        raise KfpTimeout(
            f"KFP at {endpoint} did not answer {operation} within {timeout:g} s"
        ) from None
    except urllib3.exceptions.HTTPError as error:
        raise KfpUnavailable(
            f"KFP at {endpoint} is unreachable ({operation}): {_reason(error)}"
        ) from None
    except OSError as error:
        raise KfpUnavailable(f"KFP at {endpoint} is unreachable ({operation}): {error}") from None


def http_error(error: Any, operation: str, subject: str | None) -> AdapterError:
    """The adapter error for a KFP HTTP error answer (an SDK ApiException)."""
    status = int(error.status or 0)
    message = kfp_message(error.body) or (error.reason or "").strip() or f"HTTP {status}"
    what = subject or operation
    if status == 0:
        return KfpUnavailable(f"KFP call {operation} failed: {message}")
    if status == 404:
        return NotFound(f"{what} not found", kfp_message=message)
    if status == 409:
        return Conflict(f"{what}: {message}", kfp_message=message)
    if status == 400:
        return BadRequest(f"KFP rejected {what}: {message}", kfp_message=message)
    if 300 <= status < 400:
        location = header(error.headers, "Location") or "?"
        return KfpError(
            f"KFP redirected {operation} to {location}: authentication is probably required "
            "(set KFP_TOKEN, KFP_TOKEN_FILE, KFP_COOKIE or KFP_USERNAME/KFP_PASSWORD)",
            kfp_status=status,
        )
    if status in (401, 403):
        return KfpError(
            f"KFP refused {operation} (HTTP {status}): {message}; check the adapter's KFP "
            "credentials",
            kfp_status=status,
        )
    return KfpError(f"KFP failed {operation} (HTTP {status}): {message}", kfp_status=status)


def kfp_message(body: Any) -> str:
    """The message of KFP's JSON error body ({"error", "code", "message"}, or the upload and
    log routes' {"error_message", "error_details"}), else its text."""
    if body is None:
        return ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if isinstance(document, dict):
        for key in ("message", "error", "error_message"):
            if isinstance(document.get(key), str) and document[key].strip():
                return document[key].strip()[:MAX_MESSAGE]
    if "<html" in text[:500].lower():
        return "KFP answered with an HTML page"
    return text.strip()[:MAX_MESSAGE]


def _reason(error: Exception) -> str:
    """A short reason for a urllib3 connection error."""
    reason = getattr(error, "reason", None) or error
    text = str(reason)
    if "Connection refused" in text:
        return "connection refused"
    return text[:300]
