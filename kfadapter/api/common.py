"""What every blueprint shares: the app's services and strict parsing of request input."""

from __future__ import annotations

import unicodedata
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from flask import current_app, request

from kfadapter import jsontext
from kfadapter.errors import AdapterError, BadRequest
from kfadapter.kfp import KfpClient, PageRequest
from kfadapter.settings import Settings

SERVICES_EXTENSION = "kfadapter"
# Longest name accepted in a path or body (KFP's own limits are lower for some objects).
MAX_NAME_LENGTH = 512
# Longest description accepted: KFP's upload API takes it in the URL's query string,
# which KFP and the proxies in front of it refuse beyond a few kB.
MAX_DESCRIPTION_LENGTH = 1000
MAX_PAGE_SIZE = 1000


class TrackingDisabled(AdapterError):
    """Run tracking is switched off (KFADAPTER_TRACKING=false)."""

    status = 503


class RunTracker(Protocol):
    """Run tracking as the API uses it (`kfadapter.tracking.Tracker`)."""

    def track(self, trainingjob_id: str, run_id: str, **info: Any) -> dict[str, Any]:
        """Start watching a run of a training job; durable when it returns."""
        ...

    def untracking(self, run_id: str) -> AbstractContextManager[None]:
        """Untrack a run for the block that terminates it; track it again if the block fails."""
        ...

    def get(self, trainingjob_id: str) -> dict[str, Any] | None:
        """The latest tracked run of a training job, or None."""
        ...

    def list_page(
        self, notification_status: str | None, page_size: int, page_token: str | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        """One page of tracked runs, newest first, and the next page's token ("" at the end)."""
        ...

    def stats(self) -> dict[str, Any]:
        """Figures for metrics: runs by notification status, leadership."""
        ...

    def ping(self) -> str:
        """What the tracking store is, after it answered; raises when it does not."""
        ...

    def stop(self) -> None:
        """Stop background work and release the store."""
        ...


@dataclass
class Services:
    """The objects request handlers use, one set per app."""

    settings: Settings
    kfconnect: KfpClient
    tracker: RunTracker | None = None


def services() -> Services:
    """The current app's services."""
    return current_app.extensions[SERVICES_EXTENSION]


def kfp() -> KfpClient:
    """The current app's KFP client."""
    return services().kfconnect


def tracker_or_503() -> RunTracker:
    """The run tracker; 503 when tracking is off."""
    tracker = services().tracker
    if tracker is None:
        raise TrackingDisabled(
            "run tracking is disabled (KFADAPTER_TRACKING=false): no training jobs are tracked"
        )
    return tracker


def checked_name(value: str, what: str) -> str:
    """A name from the path or body: non-empty, not too long, no control characters."""
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{what} must be a non-empty string")
    if len(value) > MAX_NAME_LENGTH:
        raise BadRequest(f"{what} is longer than {MAX_NAME_LENGTH} characters ({len(value)})")
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in value):
        raise BadRequest(f"{what} contains control characters")
    return value


def checked_description(value: str | None, what: str = "description") -> str | None:
    """A free-text description: not too long, no NUL or lone surrogates (newlines are fine)."""
    if value is None:
        return None
    if len(value) > MAX_DESCRIPTION_LENGTH:
        raise BadRequest(
            f"{what} is longer than {MAX_DESCRIPTION_LENGTH} characters ({len(value)})"
        )
    if "\x00" in value or any(unicodedata.category(c) == "Cs" for c in value):
        raise BadRequest(f"{what} contains a NUL character or a lone surrogate")
    return value


def json_object() -> dict[str, Any]:
    """The request body as a JSON object; BadRequest saying what is wrong otherwise."""
    raw = request.get_data(cache=True)
    if not raw or not raw.strip():
        raise BadRequest("the request body is empty; expected a JSON object")
    try:
        document = jsontext.parse(raw)
    except UnicodeDecodeError:
        raise BadRequest("the request body is not UTF-8 text; expected a JSON object") from None
    except jsontext.TooDeep as error:
        raise BadRequest(f"the request body {error}") from None
    except ValueError as error:
        raise BadRequest(f"the request body is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise BadRequest(f"the request body must be a JSON object, got {type(document).__name__}")
    return document


def text_field(
    body: dict[str, Any], key: str, *, required: bool = True, default: str | None = None
) -> str | None:
    """A string field of a JSON body; BadRequest when missing (if required) or not a string."""
    if key not in body or body[key] is None:
        if required:
            raise BadRequest(f"the JSON body has no {key!r}", missing=[key])
        return default
    value = body[key]
    if not isinstance(value, str):
        raise BadRequest(f"{key!r} must be a string, got {type(value).__name__}")
    return value


def page_args() -> PageRequest | None:
    """page_size/page_token/sort_by/filter from the query string, or None when none is given."""
    args = request.args
    keys = ("page_size", "page_token", "sort_by", "filter")
    if not any(key in args for key in keys):
        return None
    page = PageRequest(
        page_size=query_page_size(),
        page_token=args.get("page_token") or None,
        sort_by=args.get("sort_by") or None,
        filter=args.get("filter") or None,
    )
    if page.filter is not None:
        try:
            jsontext.parse(page.filter)
        except jsontext.TooDeep as error:
            raise BadRequest(f"filter must be KFP's filter JSON: it {error}") from None
        except ValueError as error:
            raise BadRequest(f"filter must be KFP's filter JSON: {error}") from None
    return page


def query_page_size() -> int | None:
    """The query string's `page_size` (a whole number from 1 to MAX_PAGE_SIZE), or None."""
    raw = request.args.get("page_size")
    return None if raw is None else page_size(raw)


def page_size(raw: str) -> int:
    """A page size from the query string: a whole number from 1 to MAX_PAGE_SIZE."""
    try:
        size = int(raw)
    except ValueError:
        raise BadRequest(f"page_size must be a whole number, got {raw!r}") from None
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise BadRequest(f"page_size must be between 1 and {MAX_PAGE_SIZE}, got {size}")
    return size
