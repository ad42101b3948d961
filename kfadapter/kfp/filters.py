"""KFP's list filters (`backend/api/v2beta1/filter.proto` as JSON) the adapter sends.

KFP URL-unescapes the `filter` parameter once more after the query string is decoded
(`backend/src/apiserver/server/list_request_util.go`, parseAPIFilter: url.QueryUnescape),
so the JSON is sent quoted: a name holding `+` or `%` is then matched as it is, not as a
space or an invalid escape. Only keys KFP 2.17 lists for the resource may be used
(`backend/src/apiserver/model/*.go`, APIToModelFieldMap).
"""

from __future__ import annotations

import json
from collections.abc import Collection
from urllib.parse import quote


def _encoded(predicate: dict[str, object]) -> str:
    return quote(json.dumps({"predicates": [predicate]}), safe="")


def equals(key: str, value: str) -> str:
    """KFP's filter for `key == value`."""
    return _encoded({"key": key, "operation": "EQUALS", "string_value": value})


def is_in(key: str, values: Collection[str]) -> str:
    """KFP's filter for `key IN values`."""
    return _encoded({"key": key, "operation": "IN", "string_values": {"values": list(values)}})
