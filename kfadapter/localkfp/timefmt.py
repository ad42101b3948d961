"""Timestamps: stored as integer microseconds since the epoch, shown as KFP shows them."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from kfadapter.localkfp.apierrors import bad_request

EPOCH = "1970-01-01T00:00:00Z"


def now_us() -> int:
    """The current time in microseconds since the epoch."""
    return time.time_ns() // 1000


def to_rfc3339(us: int | None) -> str:
    """RFC 3339 in UTC with whole seconds, as KFP answers (its store keeps seconds)."""
    if not us:
        return EPOCH
    return datetime.fromtimestamp(us // 1_000_000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_datetime(value: datetime | None) -> int | None:
    """Microseconds of an aware (or UTC-naive) datetime."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1_000_000)


def parse_rfc3339(text: str, field: str) -> int:
    """Microseconds of an RFC 3339 string; 400 naming the field when it is not one."""
    if not isinstance(text, str) or not text.strip():
        raise bad_request(f"{field} must be an RFC 3339 timestamp, got {text!r}")
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise bad_request(f"{field} must be an RFC 3339 timestamp, got {text!r}") from None
    return from_datetime(parsed) or 0
