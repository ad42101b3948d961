"""Errors of the embedded KFP server, answered as KFP's grpc-gateway JSON error body."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from kfadapter import jsontext

# gRPC status codes that grpc-gateway maps to the HTTP statuses KFP answers with.
GRPC_CODES = {
    HTTPStatus.BAD_REQUEST: 3,  # INVALID_ARGUMENT
    HTTPStatus.UNAUTHORIZED: 16,  # UNAUTHENTICATED
    HTTPStatus.FORBIDDEN: 7,  # PERMISSION_DENIED
    HTTPStatus.NOT_FOUND: 5,  # NOT_FOUND
    HTTPStatus.METHOD_NOT_ALLOWED: 12,  # UNIMPLEMENTED
    HTTPStatus.CONFLICT: 6,  # ALREADY_EXISTS
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: 8,  # RESOURCE_EXHAUSTED
    HTTPStatus.UNSUPPORTED_MEDIA_TYPE: 3,
    HTTPStatus.INTERNAL_SERVER_ERROR: 13,  # INTERNAL
    HTTPStatus.NOT_IMPLEMENTED: 12,
}
# The gRPC code KFP gives refusals that depend on a resource's state.
FAILED_PRECONDITION = 9
# gRPC ABORTED: KFP's util.NewBadRequestError (delete the Default experiment, retry a run
# that did not fail), which grpc-gateway answers with HTTP 409.
ABORTED = 10
# gRPC INTERNAL: KFP's util.NewInternalServerError (HTTP 500).
INTERNAL = 13


class ApiError(Exception):
    """An error answered to the client with an HTTP status and KFP's JSON error body."""

    def __init__(self, status: int, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.status = int(status)
        self.message = message
        self.code = code

    def body(self) -> dict[str, Any]:
        """grpc-gateway v2's error body, a google.rpc.Status: {"code", "message", "details"}
        (`runtime.DefaultHTTPErrorHandler`; v1's "error" key is gone)."""
        code = self.code if self.code is not None else GRPC_CODES.get(self.status, 2)
        return {"code": code, "message": self.message, "details": []}


class UploadError(ApiError):
    """An error of the upload endpoints, which answer `{"error_message", "error_details"}`
    (`server/pipeline_upload_server.go`, `writeErrorToResponse`), not grpc-gateway's body."""

    def body(self) -> dict[str, Any]:
        """The upload endpoints' error body."""
        return {"error_message": self.message, "error_details": self.message}


def bad_request(message: str) -> ApiError:
    """400: the request's arguments are invalid."""
    return ApiError(HTTPStatus.BAD_REQUEST, message)


def not_found(message: str) -> ApiError:
    """404: the named resource does not exist."""
    return ApiError(HTTPStatus.NOT_FOUND, message)


def conflict(message: str) -> ApiError:
    """409: the resource already exists."""
    return ApiError(HTTPStatus.CONFLICT, message)


def require_json_value(value: Any, where: str) -> Any:
    """The decoded value, if it can be stored and served as JSON; 400 saying why not.

    Refused: strings with a lone UTF-16 surrogate (a JSON escape such as "\\ud800": SQLite
    and the run's process need UTF-8), NaN and Infinity (YAML's .nan and .inf), and YAML-only
    values (binary, sets, recursion).
    """
    try:
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except UnicodeEncodeError:
        raise bad_request(
            f"{where} holds an invalid unicode escape (a lone UTF-16 surrogate such as \\ud800)"
        ) from None
    except (TypeError, ValueError) as error:
        raise bad_request(f"{where} holds a value that is not JSON: {error}") from None
    return value


def parse_json_text(raw: str | bytes, where: str) -> Any:
    """The JSON value of a client's text (parsed as the adapter parses it: no NaN, at most
    jsontext.MAX_DEPTH levels), if it can be stored and served; 400 saying why not."""
    try:
        document = jsontext.parse(raw)
    except jsontext.TooDeep as error:
        raise bad_request(f"{where} {error}") from None
    except ValueError as error:
        raise bad_request(f"{where} is not valid JSON: {error}") from None
    return require_json_value(document, where)
