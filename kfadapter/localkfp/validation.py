"""What the embedded server accepts in a request body, with a 400 that says what is wrong."""

from __future__ import annotations

from typing import Any

from kfadapter.localkfp import query as q
from kfadapter.localkfp.apierrors import bad_request, parse_json_text
from kfadapter.localkfp.storage.database import dumps

MAX_NAME_LENGTH = 255
MAX_RECURRING_CONCURRENCY = 10
RECURRING_MODES = ("ENABLE", "DISABLE", "MODE_UNSPECIFIED")


def parse_json_body(raw: bytes) -> Any:
    """The JSON document of a request body ({} when empty); 400 when it is not JSON."""
    if not raw or not raw.strip():
        return {}
    return parse_json_text(raw, "request body")


def json_object(value: Any, what: str) -> dict[str, Any]:
    """A JSON object ({} for null); 400 for anything else."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_request(f"{what} must be a JSON object")
    return value


def text(body: dict[str, Any], key: str, where: str) -> str:
    """A string field ("" when absent); 400 when it is not a string."""
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise bad_request(f"{where}.{key} must be a string, got {type(value).__name__}")
    return value


def name(value: str, what: str) -> str:
    """A resource name: not blank, at most MAX_NAME_LENGTH characters, no control characters."""
    if not value or not value.strip():
        raise bad_request(f"{what} name is empty; please specify a valid name")
    if len(value) > MAX_NAME_LENGTH:
        raise bad_request(f"{what} name is longer than {MAX_NAME_LENGTH} characters")
    if any(ord(char) < 32 for char in value):
        raise bad_request(f"{what} name contains control characters")
    return value


def tags(body: dict[str, Any], what: str, *, strings: bool = False) -> str | None:
    """The `tags` object of a body as stored (JSON text, None when absent or empty); with
    `strings`, its values must be strings too (as a PATCH is checked)."""
    value = body.get("tags")
    if value is None:
        return None
    if not isinstance(value, dict) or (
        strings and not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    ):
        raise bad_request(f"{what}.tags must be an object of strings")
    return dumps(value) if value else None


def mutable_fields(body: dict[str, Any], what: str) -> dict[str, Any]:
    """display_name and tags of a PATCH body (KFP's mutable fields), as stored."""
    fields: dict[str, Any] = {}
    if body.get("display_name") is not None:
        fields["display_name"] = name(text(body, "display_name", what), what.capitalize())
    if body.get("tags") is not None:
        fields["tags"] = tags(body, what, strings=True)
    if not fields:
        raise bad_request(f"nothing to update: {what} mutable fields are display_name, tags")
    return fields


def runtime_config(body: dict[str, Any], what: str) -> dict[str, Any]:
    """The runtime config of a run or recurring run: its parameters and pipeline root."""
    config = json_object(body.get("runtime_config"), f"{what}.runtime_config")
    parameters = config.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise bad_request(f"{what}.runtime_config.parameters must be an object")
    result: dict[str, Any] = {}
    if parameters:
        result["parameters"] = parameters
    root = config.get("pipeline_root")
    if root:
        if not isinstance(root, str):
            raise bad_request(f"{what}.runtime_config.pipeline_root must be a string")
        result["pipeline_root"] = root
    return result


def max_concurrency(raw: Any) -> int:
    """A recurring run's max_concurrency: 1 when absent, else 1 to MAX_RECURRING_CONCURRENCY."""
    value = 1 if raw in (None, "") else q.parse_int64(raw, "recurring_run.max_concurrency")
    if not 1 <= value <= MAX_RECURRING_CONCURRENCY:
        raise bad_request(
            "max_concurrency of a recurring run must be at least 1 and at most "
            f"{MAX_RECURRING_CONCURRENCY}, got {value}"
        )
    return value


def optional_bool(body: dict[str, Any], key: str, where: str) -> bool:
    """A boolean field (false when absent); 400 when it is not true or false."""
    value = body.get(key)
    if value is not None and not isinstance(value, bool):
        raise bad_request(f"{where}.{key} must be true or false, got {value!r}")
    return bool(value)


def recurring_mode(body: dict[str, Any]) -> str:
    """A recurring run's mode (ENABLE when absent)."""
    mode = body.get("mode") or "ENABLE"
    if mode not in RECURRING_MODES:
        raise bad_request(f"mode must be ENABLE or DISABLE, got {mode!r}")
    return mode


def file_stem(filename: str) -> str:
    """A pipeline name from an uploaded file name (KFP's fallback when no name is given)."""
    base = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    for suffix in (".tar.gz", ".tgz", ".zip", ".yaml", ".yml", ".json"):
        if base.lower().endswith(suffix):
            return base[: -len(suffix)]
    return base
