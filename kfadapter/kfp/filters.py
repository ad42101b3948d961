"""KFP's list filters (`backend/api/v2beta1/filter.proto` as JSON) the adapter sends."""

from __future__ import annotations

import json
from collections.abc import Collection


def equals(key: str, value: str) -> str:
    """KFP's filter JSON for `key == value`."""
    return json.dumps({"predicates": [{"key": key, "operation": "EQUALS", "string_value": value}]})


def is_in(key: str, values: Collection[str]) -> str:
    """KFP's filter JSON for `key IN values`."""
    return json.dumps(
        {"predicates": [{"key": key, "operation": "IN", "string_values": {"values": list(values)}}]}
    )
