"""List filters as KFP reads them: the sortable/filterable fields of a list (`Column`,
`Listable`) and the filter JSON turned into SQL conditions.

KFP parses the filter in `backend/src/apiserver/filter/filter.go` after URL-unescaping it once
more (`server/list_request_util.go`, parseAPIFilter); it is a v2beta1 `Filter` message read by
protojson, so unknown fields are refused and camelCase names accepted. Here: `query_unescape`,
predicate operation/value decoding, `parse_int64` (proto3 JSON int64), whole-second time
ranges, `tags.<key>` predicates and `parse_filter`. Page size, sort, page tokens and the SQL
statement are in `query.py`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_to_bytes

from kfadapter.localkfp.apierrors import bad_request, parse_json_text, require_json_value
from kfadapter.localkfp.timefmt import parse_rfc3339

INT64_MAX = 2**63 - 1
MAX_IN_VALUES = 10_000  # keeps an IN list under every SQLite build's bound-parameter limit
# Whole seconds whose microseconds (and the next second's) still fit SQLite's 64-bit integers.
_MAX_SECONDS = INT64_MAX // 1_000_000 - 1
_DECIMAL = re.compile(r"[+-]?[0-9]+")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")

STRING = "string"
TIME = "time"  # integer microseconds in the store; compared at whole seconds like KFP
ENUM = "enum"  # a string column holding an enum name (state, storage_state, ...)
METRIC_PREFIX = "metric:"  # runs sort by a run metric (`model/run.go`, GetField)
TAG_PREFIX = "tags."  # pipelines and versions filter on a tag (`server/pipeline_server.go`)

OPERATIONS = {
    "EQUALS": 1,
    "NOT_EQUALS": 2,
    "GREATER_THAN": 3,
    "GREATER_THAN_EQUALS": 5,
    "LESS_THAN": 6,
    "LESS_THAN_EQUALS": 7,
    "IN": 8,
    "IS_SUBSTRING": 9,
}
_OPERATION_BY_NUMBER = {number: name for name, number in OPERATIONS.items()}
_COMPARISON_SQL = {
    "EQUALS": "=",
    "NOT_EQUALS": "!=",
    "GREATER_THAN": ">",
    "GREATER_THAN_EQUALS": ">=",
    "LESS_THAN": "<",
    "LESS_THAN_EQUALS": "<=",
}
_PREDICATE_KEYS = {"key", "operation"}
_VALUE_KEYS = {
    "string_value": "stringValue",
    "int_value": "intValue",
    "long_value": "longValue",
    "timestamp_value": "timestampValue",
    "string_values": "stringValues",
    "int_values": "intValues",
    "long_values": "longValues",
}


@dataclass(frozen=True)
class Column:
    """A field clients may sort or filter on: its SQL column and kind."""

    sql: str
    kind: str = STRING


@dataclass(frozen=True)
class Listable:
    """What one list endpoint exposes: table, the fields clients may sort and filter on by
    API name, the request parameters that limit it (`scopes`, e.g. experiment_id), default
    sort, and whether it sorts by `metric:<name>` (runs) or filters on `tags.<key>`."""

    kind: str
    table: str
    fields: dict[str, Column]
    default_sort: str = "created_at"
    key: str = "id"
    scopes: dict[str, str] = field(default_factory=dict)  # request parameter -> SQL column
    metric_sort: bool = False
    tag_filter: bool = False

    def sort_column(self, name: str) -> Column | None:
        """The column behind a sort field, None when the field is not sortable here."""
        if name in self.fields:
            return self.fields[name]
        if self.metric_sort and name.startswith(METRIC_PREFIX):
            return Column("NULL")  # no run here reports metrics: every value is NULL
        return None


def query_unescape(text: str) -> str:
    """The filter text as KFP reads it: URL-unescaped once more after the query string's own
    decoding (`server/list_request_util.go`, parseAPIFilter: Go's url.QueryUnescape), so
    `+` is a space, `%XX` a byte, and a `%` without two hex digits a 400."""
    if "%" not in text and "+" not in text:
        return text
    if _BAD_ESCAPE.search(text):
        raise bad_request(f"failed to parse valid filter from {text[:200]!r}: invalid URL escape")
    try:
        return unquote_to_bytes(text.replace("+", " ")).decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request("failed to parse valid filter: it is not UTF-8 once unescaped") from None


def _predicate_operation(predicate: dict[str, Any]) -> str:
    """The operation as protojson reads an enum: its exact name or its number."""
    raw = predicate.get("operation")
    if isinstance(raw, bool):
        raw = None
    if isinstance(raw, int) and raw in _OPERATION_BY_NUMBER:
        return _OPERATION_BY_NUMBER[raw]
    if isinstance(raw, str) and raw in OPERATIONS:
        return raw
    raise bad_request(
        f"filter predicate has an invalid operation {raw!r}; one of {', '.join(OPERATIONS)}"
    )


def _check_predicate_fields(predicate: dict[str, Any]) -> None:
    """400 for a field the v2beta1 Predicate message does not have (protojson's rule)."""
    known = _PREDICATE_KEYS | set(_VALUE_KEYS) | set(_VALUE_KEYS.values())
    unknown = sorted(set(predicate) - known)
    if unknown:
        raise bad_request(f"filter predicate has unknown fields: {', '.join(unknown)}")


def _predicate_value(predicate: dict[str, Any]) -> tuple[str, Any]:
    found = []
    for snake, camel in _VALUE_KEYS.items():
        for key in (snake, camel):
            if key in predicate:
                found.append((snake, predicate[key]))
    if len(found) != 1:
        raise bad_request(
            "filter predicate needs exactly one value field (string_value, int_value, "
            f"long_value, timestamp_value, string_values, int_values, long_values): {predicate}"
        )
    return found[0]


def _scalar(kind: str, key: str, value_field: str, value: Any) -> Any:
    """The SQL value of one predicate value for a column of that kind."""
    if kind == TIME:
        if value_field == "timestamp_value":
            seconds = parse_rfc3339(value, f"filter value for {key!r}") // 1_000_000
            return max(-_MAX_SECONDS, min(seconds, _MAX_SECONDS))
        if value_field in ("int_value", "long_value", "int_values", "long_values"):
            seconds = parse_int64(value, f"filter value for {key!r}")
            if value_field.startswith("int_") and not -(2**31) <= seconds < 2**31:
                raise bad_request(f"filter {value_field} for {key!r} is not an int32: {value!r}")
            return max(-_MAX_SECONDS, min(seconds, _MAX_SECONDS))  # beyond: before/after all
        raise bad_request(f"filter on {key!r} needs a timestamp_value or an int_value")
    if value_field not in ("string_value", "string_values"):
        raise bad_request(f"filter on {key!r} needs a string_value, got {value_field}")
    if not isinstance(value, str):
        raise bad_request(f"filter value for {key!r} must be a string, got {value!r}")
    if kind == ENUM:
        return value.upper().removeprefix("STORAGESTATE_")
    return value


def parse_int64(value: Any, what: str) -> int:
    """A 64-bit integer given as a JSON number or a decimal string (proto3 JSON int64)."""
    if isinstance(value, bool):
        raise bad_request(f"{what} must be an integer, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
        value = int(value.strip())
    if not isinstance(value, int):
        raise bad_request(f"{what} must be an integer, got {value!r}")
    if not -INT64_MAX - 1 <= value <= INT64_MAX:
        raise bad_request(f"{what} is out of the 64-bit integer range: {value}")
    return value


def _time_clause(column: str, operation: str, seconds: int) -> tuple[str, list[Any]]:
    """A whole-second comparison as an index-friendly range on microseconds."""
    low, high = seconds * 1_000_000, (seconds + 1) * 1_000_000
    if operation == "EQUALS":
        return f"({column} >= ? AND {column} < ?)", [low, high]
    if operation == "NOT_EQUALS":
        return f"({column} < ? OR {column} >= ?)", [low, high]
    if operation == "GREATER_THAN":
        return f"{column} >= ?", [high]
    if operation == "GREATER_THAN_EQUALS":
        return f"{column} >= ?", [low]
    if operation == "LESS_THAN":
        return f"{column} < ?", [low]
    return f"{column} < ?", [high]  # LESS_THAN_EQUALS


def parse_filter(listable: Listable, raw: Any) -> tuple[list[str], list[Any]]:
    """SQL conditions and parameters from KFP's filter JSON; 400 on anything malformed."""
    if raw is None or raw == "":
        return [], []
    if isinstance(raw, str):
        document = parse_json_text(query_unescape(raw), "filter")
    else:
        document = require_json_value(raw, "filter")
    if not isinstance(document, dict):
        raise bad_request('filter must be a JSON object like {"predicates": [...]}')
    unknown = set(document) - {"predicates"}
    if unknown:
        raise bad_request(f"filter has unknown fields: {', '.join(sorted(unknown))}")
    predicates = document.get("predicates")
    if predicates is None:
        predicates = []
    if not isinstance(predicates, list):
        raise bad_request("filter predicates must be a list")
    conditions: list[str] = []
    params: list[Any] = []
    for predicate in predicates:
        if not isinstance(predicate, dict):
            raise bad_request(f"filter predicate must be an object, got {predicate!r}")
        _check_predicate_fields(predicate)
        key = predicate.get("key")
        if not isinstance(key, str) or not key:
            raise bad_request(f"filter predicate key must be a non-empty string, got {key!r}")
        operation = _predicate_operation(predicate)
        value_field, value = _predicate_value(predicate)
        if listable.tag_filter and key.startswith(TAG_PREFIX):
            clause, clause_params = _tag_clause(listable, key, operation, value_field, value)
            conditions.append(clause)
            params.extend(clause_params)
            continue
        if key not in listable.fields:
            allowed = ", ".join(sorted(listable.fields))
            extra = f" or {TAG_PREFIX}<key>" if listable.tag_filter else ""
            raise bad_request(
                f"no support for filtering on unrecognized field {key!r} of {listable.kind}; "
                f"allowed: {allowed}{extra}"
            )
        column = listable.fields[key]
        if operation == "IN":
            if value_field not in ("string_values", "int_values", "long_values"):
                raise bad_request(f"IN on {key!r} needs string_values, int_values or long_values")
            values = value.get("values") if isinstance(value, dict) else None
            if not isinstance(values, list) or set(value) != {"values"}:
                raise bad_request(f'IN on {key!r} needs {{"values": [...]}} and nothing else')
            if len(values) > MAX_IN_VALUES:
                raise bad_request(f"IN on {key!r} takes at most {MAX_IN_VALUES} values")
            if not values:
                conditions.append("0")
                continue
            scalars = [_scalar(column.kind, key, value_field, item) for item in values]
            if column.kind == TIME:
                ranges = [_time_clause(column.sql, "EQUALS", item) for item in scalars]
                conditions.append("(" + " OR ".join(clause for clause, _ in ranges) + ")")
                for _, clause_params in ranges:
                    params.extend(clause_params)
            else:
                conditions.append(f"{column.sql} IN ({', '.join('?' for _ in scalars)})")
                params.extend(scalars)
            continue
        if value_field in ("string_values", "int_values", "long_values"):
            raise bad_request(f"{operation} on {key!r} needs a single value, not {value_field}")
        scalar = _scalar(column.kind, key, value_field, value)
        if operation == "IS_SUBSTRING":
            if column.kind == TIME:
                raise bad_request(f"IS_SUBSTRING is not supported on {key!r}")
            # KFP puts the value into LIKE '%value%' as it is: % and _ stay wildcards
            conditions.append(f"{column.sql} LIKE ?")
            params.append(f"%{scalar}%")
        elif column.kind == TIME:
            clause, clause_params = _time_clause(column.sql, operation, scalar)
            conditions.append(clause)
            params.extend(clause_params)
        else:
            conditions.append(f"{column.sql} {_COMPARISON_SQL[operation]} ?")
            params.append(scalar)
    return conditions, params


def _tag_clause(
    listable: Listable, key: str, operation: str, value_field: str, value: Any
) -> tuple[str, list[Any]]:
    """`tags.<key>` EQUALS a string: rows whose tags hold that key with that value."""
    tag = key[len(TAG_PREFIX) :]
    if not tag:
        raise bad_request(f"filter key {key!r} names no tag")
    if operation != "EQUALS" or value_field != "string_value" or not isinstance(value, str):
        raise bad_request(
            f"filter on tag {key!r} supports only EQUALS with a string_value, got "
            f"{operation} with {value_field}"
        )
    clause = (
        f"EXISTS (SELECT 1 FROM json_each({listable.table}.tags) "
        "WHERE json_each.key = ? AND json_each.value = ?)"
    )
    return clause, [tag, value]
