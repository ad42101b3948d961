"""Timestamps: stored as integer microseconds since the epoch, shown as KFP shows them."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from kfadapter.localkfp.apierrors import bad_request

EPOCH = "1970-01-01T00:00:00Z"
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})")


def now_us() -> int:
    """The current time in microseconds since the epoch."""
    return time.time_ns() // 1000


def to_rfc3339(us: int | None) -> str:
    """RFC 3339 in UTC with whole seconds, as KFP answers (its store keeps seconds)."""
    if not us:
        return EPOCH
    moment = datetime.fromtimestamp(us // 1_000_000, tz=UTC)
    return f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}Z"  # %Y does not pad year 1 on Linux


def to_datetime(us: int) -> datetime:
    """The aware UTC datetime of a time in microseconds."""
    return datetime.fromtimestamp(us / 1_000_000, tz=UTC)


def from_datetime(value: datetime | None) -> int | None:
    """Microseconds of an aware (or UTC-naive) datetime."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1_000_000)


def parse_rfc3339(text: str, field: str) -> int:
    """Microseconds of an RFC 3339 string; 400 naming the field when it is not one.

    The form protojson reads a google.protobuf.Timestamp in (Go's time.RFC3339Nano): a
    `T`, seconds, at most 9 fractional digits and a `Z` or `±hh:mm` offset; a date alone
    or a time without an offset is refused, as KFP refuses it.
    """
    if not isinstance(text, str) or not _RFC3339.fullmatch(text):
        raise bad_request(f"{field} must be an RFC 3339 timestamp, got {text!r}")
    value = text[:-1] + "+00:00" if text.endswith("Z") else text
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise bad_request(f"{field} must be an RFC 3339 timestamp, got {text!r}") from None
    return from_datetime(parsed) or 0
