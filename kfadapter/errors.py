"""Typed errors and the one place that turns any error into a JSON answer."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class AdapterError(Exception):
    """An error a client is told about: an HTTP status, a message and extra JSON fields."""

    status: HTTPStatus = HTTPStatus.INTERNAL_SERVER_ERROR

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The JSON body: {"status", "message", ...details}."""
        return {"status": int(self.status), "message": self.message, **self.details}


class BadRequest(AdapterError):
    status = HTTPStatus.BAD_REQUEST


class NotFound(AdapterError):
    status = HTTPStatus.NOT_FOUND


class Conflict(AdapterError):
    status = HTTPStatus.CONFLICT


class KfpError(AdapterError):
    """KFP answered, with an error the adapter cannot attribute to the client."""

    status = HTTPStatus.BAD_GATEWAY


class KfpUnavailable(AdapterError):
    """KFP could not be reached."""

    status = HTTPStatus.SERVICE_UNAVAILABLE


class KfpTimeout(AdapterError):
    """KFP did not answer in time."""

    status = HTTPStatus.GATEWAY_TIMEOUT


class TrackingUnavailable(AdapterError):
    """The tracking database cannot be reached or did not answer in time."""

    status = HTTPStatus.SERVICE_UNAVAILABLE


def json_error(status: int, message: str, **details: Any):
    """A Flask response with the adapter's JSON error body."""
    response = jsonify({"status": status, "message": message, **details})
    response.status_code = status
    return response


def register_error_handlers(app: Flask) -> None:
    """Make every error, expected or not, a JSON answer with no traceback."""

    @app.errorhandler(AdapterError)
    def _adapter_error(error: AdapterError):
        return json_error(int(error.status), error.message, **error.details)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        status = error.code or 500
        message = error.description or HTTPStatus(status).phrase
        if status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE:
            message = _too_large_message(app)
        response = json_error(status, message)
        if status == HTTPStatus.METHOD_NOT_ALLOWED and error.valid_methods:
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        log.exception("unhandled error")
        return json_error(500, "internal error; see the adapter's log")


def _too_large_message(app: Flask) -> str:
    """Why a request is too large: its body, or (within the body limit) a form field or parts."""
    limit = app.config.get("MAX_CONTENT_LENGTH")
    length = request.content_length
    if limit is None or length is None or length > limit:
        return f"request body is larger than the limit of {limit} bytes"
    return (
        "the multipart form is too large: a field other than the file (or a part's headers) "
        "is longer than "
        f"{app.config.get('MAX_FORM_MEMORY_SIZE')} bytes, or the form has more than "
        f"{app.config.get('MAX_FORM_PARTS')} parts"
    )
