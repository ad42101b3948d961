"""Strict parsing of JSON text from clients: one place for what the adapter accepts."""

from __future__ import annotations

import json
from typing import Any

# Deepest nesting of arrays and objects accepted: deeper documents would exhaust the
# recursion of the code that serializes them again (for KFP, for the answer).
MAX_DEPTH = 100


class TooDeep(ValueError):
    """The document nests arrays and objects more than MAX_DEPTH levels."""

    def __init__(self) -> None:
        super().__init__(f"nests more than {MAX_DEPTH} levels deep")


def parse(text: str | bytes) -> Any:
    """The JSON value of `text`; ValueError saying what is wrong when it is not JSON,
    holds NaN or Infinity (not JSON), or nests deeper than MAX_DEPTH (TooDeep).
    Bytes that are not UTF-8 raise UnicodeDecodeError (a ValueError)."""
    try:
        document = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise TooDeep() from None
    if depth(document) > MAX_DEPTH:
        raise TooDeep()
    return document


def depth(document: Any) -> int:
    """How deeply arrays and objects nest in a parsed JSON document (a scalar is 0); stops
    counting just past MAX_DEPTH."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(document, 0)]
    while pending:
        value, level = pending.pop()
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        deepest = max(deepest, level + 1)
        if deepest > MAX_DEPTH:
            return deepest
        pending.extend((child, level + 1) for child in children)
    return deepest


def _reject_constant(name: str) -> Any:
    """NaN and Infinity are not JSON: refuse them rather than pass them on."""
    raise ValueError(f"{name} is not a JSON value")
