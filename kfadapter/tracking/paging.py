"""Page tokens of GET /trainingjobs: opaque to clients, checked strictly when they come back."""

from __future__ import annotations

import base64
import binascii
import math

from kfadapter.errors import BadRequest
from kfadapter.tracking.model import PagePosition

_TOKEN_PREFIX = "v1:"


def encode_page_token(position: PagePosition) -> str:
    """An opaque token for a list position."""
    created_at, rowid = position
    raw = f"{_TOKEN_PREFIX}{created_at!r}:{rowid}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str) -> PagePosition:
    """The list position a token stands for; BadRequest if this server did not issue it."""
    shown = token if len(token) <= 80 else token[:80] + "..."
    invalid = BadRequest(f"page_token {shown!r} is not a token this server issued")
    try:
        padded = token + "=" * (-len(token) % 4)
        raw = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise invalid from None
    created, _, rowid = raw.removeprefix(_TOKEN_PREFIX).partition(":")
    digits = rowid.isascii() and rowid.isdigit() and len(rowid) <= 19
    if not raw.startswith(_TOKEN_PREFIX) or not digits:
        raise invalid
    try:
        created_at = float(created)
    except ValueError:
        raise invalid from None
    if not math.isfinite(created_at) or int(rowid) >= 2**63:  # beyond SQLite's integers
        raise invalid
    return created_at, int(rowid)
