"""List queries as KFP does them: page size, opaque page tokens, sort_by and filter predicates.

KFP parses them in `backend/src/apiserver/list/list.go` (NewOptions, NewOptionsFromToken),
`filter/filter.go` and `server/list_request_util.go` (validatedListOptions); the filter is a
v2beta1 `Filter` message read by protojson, so unknown fields are refused and camelCase
names accepted. Everything becomes one SQL statement (plus one COUNT) with keyset
pagination on (sort column, id), so a deep page costs the same as the first one.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_to_bytes

from kfadapter.localkfp.apierrors import bad_request, parse_json_text, require_json_value
from kfadapter.localkfp.timefmt import parse_rfc3339

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 200  # KFP caps larger page sizes at 200 (list.go: maxPageSize)
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
SORT_VALUE = "_sort_value"  # the alias under which a page's rows carry their sort value

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


@dataclass
class ListQuery:
    """A parsed list request: where clauses, order and position."""

    listable: Listable
    page_size: int
    sort_field: str
    desc: bool
    filter_json: Any = None
    conditions: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)
    after: tuple[Any, str] | None = None  # (sort value, id) of the first row of this page
    scope: dict[str, str] = field(default_factory=dict)


def parse_page_size(raw: str | int | None) -> int:
    """KFP's rule: 0/absent means 20, negative is an error, above 200 is capped at 200.

    page_size is an int32 query parameter: grpc-gateway refuses anything else (a number
    beyond 32 bits included) with a 400.
    """
    if raw is None or raw == "":
        return DEFAULT_PAGE_SIZE
    if isinstance(raw, bool) or not (isinstance(raw, int) or _DECIMAL.fullmatch(str(raw))):
        raise bad_request(f"page_size must be an integer, got {raw!r}")
    size = int(raw)
    if not -(2**31) <= size < 2**31:
        raise bad_request(f"page_size is out of the 32-bit integer range: {raw!r}")
    if size < 0:
        raise bad_request(f"The page size should be greater than 0. Got {size}")
    if size == 0:
        return DEFAULT_PAGE_SIZE
    return min(size, MAX_PAGE_SIZE)


def parse_sort(listable: Listable, sort_by: str | None) -> tuple[str, bool]:
    """("field", desc) from "field", "field desc" or "field asc"."""
    words = (sort_by or "").lower().split()
    if len(words) > 2 or (len(words) == 2 and words[1] not in ("asc", "desc")):
        raise bad_request(
            f'Received invalid sort by format {sort_by!r}. Supported format: "field_name", '
            '"field_name desc", or "field_name asc"'
        )
    if not words:
        return listable.default_sort, False
    if listable.sort_column(words[0]) is None:
        allowed = ", ".join(sorted(listable.fields))
        extra = f" or {METRIC_PREFIX}<name>" if listable.metric_sort else ""
        raise bad_request(
            f"Invalid sorting field: {words[0]!r} on {listable.kind}; sortable fields: "
            f"{allowed}{extra}"
        )
    return words[0], len(words) == 2 and words[1] == "desc"


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


def encode_token(payload: dict[str, Any]) -> str:
    """An opaque page token (URL-safe base64 of JSON)."""
    raw = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, listable: Listable) -> dict[str, Any]:
    """The payload of a token made by next_token for this list; 400 for anything else.

    Tokens are not signed: every part of a tampered one is checked before it reaches SQL.
    """
    invalid = f"Invalid page token {token[:64]!r}"
    try:
        padded = token + "=" * (-len(token) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeError, RecursionError):
        raise bad_request(invalid) from None
    if not isinstance(payload, dict) or payload.get("kind") != listable.kind:
        raise bad_request(f"{invalid}: not a token of a {listable.kind} list")
    require_json_value(payload, "page token")
    sort_field, desc, after = payload.get("sort"), payload.get("desc"), payload.get("after")
    scope = payload.get("scope") or {}
    if (
        not isinstance(sort_field, str)
        or sort_field not in listable.fields
        or not isinstance(desc, bool)
        or not (isinstance(after, list) and len(after) == 2 and isinstance(after[1], str))
        or not isinstance(scope, dict)
        or not all(k in listable.scopes and isinstance(v, str) for k, v in scope.items())
        or not isinstance(payload.get("filter"), str | dict | None)
    ):
        raise bad_request(invalid)
    position = after[0]
    if listable.fields[sort_field].kind == TIME:
        if isinstance(position, bool) or not isinstance(position, int):
            raise bad_request(invalid)
        if not -INT64_MAX - 1 <= position <= INT64_MAX:
            raise bad_request(invalid)
    elif not isinstance(position, str):
        raise bad_request(invalid)
    return payload


def build_query(
    listable: Listable,
    *,
    page_size: str | int | None,
    page_token: str | None,
    sort_by: str | None,
    filter_json: Any,
    scope: dict[str, str] | None = None,
) -> ListQuery:
    """A ListQuery from the request's list arguments; a page token carries sort and filter.

    With a page token, a sort_by or filter given as well must mean the same as the token's
    (KFP: `server/list_request_util.go`, validatedListOptions), else 400.
    """
    size = parse_page_size(page_size)
    scope = {key: value for key, value in (scope or {}).items() if value}
    if page_token:
        payload = decode_token(page_token, listable)
        sort_field = payload["sort"]
        if sort_by or filter_json not in (None, ""):
            _require_token_match(listable, payload, sort_by, filter_json)
        filter_json = payload.get("filter")
        token_scope = payload.get("scope") or {}
        for key, value in scope.items():  # e.g. the pipeline of /pipelines/{id}/versions
            if token_scope.get(key) != value:
                raise bad_request(
                    f"Invalid page token {page_token[:64]!r}: it continues a list with "
                    f"another {key}"
                )
        scope = token_scope
        query = ListQuery(listable, size, sort_field, payload["desc"], filter_json)
        query.after = (payload["after"][0], payload["after"][1])
    else:
        sort_field, desc = parse_sort(listable, sort_by)
        query = ListQuery(listable, size, sort_field, desc, filter_json)
    conditions, params = parse_filter(listable, query.filter_json)
    for key, value in scope.items():
        conditions.append(f"{listable.scopes[key]} = ?")
        params.append(value)
    query.conditions, query.params, query.scope = conditions, params, scope
    return query


def _require_token_match(
    listable: Listable, payload: dict[str, Any], sort_by: str | None, filter_json: Any
) -> None:
    """400 unless the request's sort_by and filter mean what the page token's do."""
    sort_field, desc = parse_sort(listable, sort_by)
    column = listable.sort_column(sort_field)
    same_sort = (column.sql if column else None, desc) == (
        listable.fields[payload["sort"]].sql,
        payload["desc"],
    )
    if not same_sort or parse_filter(listable, filter_json) != parse_filter(
        listable, payload.get("filter")
    ):
        raise bad_request(
            "page token does not match the supplied sort by and/or filtering criteria. "
            "Either specify the same criteria or leave the latter empty if page token is "
            "specified."
        )


def from_args(
    listable: Listable, args: dict[str, Any], scope: dict[str, str] | None = None
) -> ListQuery:
    """A ListQuery from a request's list arguments (page_size, page_token, sort_by, filter),
    limited to the rows whose fields equal `scope` (e.g. one pipeline's versions)."""
    return build_query(
        listable,
        page_size=args.get("page_size"),
        page_token=args.get("page_token"),
        sort_by=args.get("sort_by"),
        filter_json=args.get("filter"),
        scope=scope,
    )


def scope(args: dict[str, Any], *keys: str) -> dict[str, str]:
    """The request's values of the given list arguments (e.g. experiment_id, namespace),
    by which a list is limited ("" for those not given: not limited)."""
    return {key: args.get(key, "") for key in keys}


def select_sql(query: ListQuery, columns: str) -> tuple[str, list[Any], str, list[Any]]:
    """(page SQL, its params, count SQL, its params) for the query."""
    listable = query.listable
    sort_sql = _sort_sql(query)
    where = list(query.conditions)
    params = list(query.params)
    count_where = " AND ".join(where) if where else "1"
    if query.after is not None:
        where.append(f"({sort_sql}, {listable.key}) {'<=' if query.desc else '>='} (?, ?)")
        params.extend(query.after)
    order = "DESC" if query.desc else "ASC"
    sql = (
        f"SELECT {columns}, {sort_sql} AS {SORT_VALUE} FROM {listable.table} "
        f"WHERE {' AND '.join(where) if where else '1'} "
        f"ORDER BY {sort_sql} {order}, {listable.key} {order} LIMIT ?"
    )
    params.append(query.page_size + 1)
    count_sql = f"SELECT COUNT(*) FROM {listable.table} WHERE {count_where}"
    return sql, params, count_sql, list(query.params)


def _sort_sql(query: ListQuery) -> str:
    column = query.listable.sort_column(query.sort_field)
    assert column is not None  # parse_sort and decode_token admit only sortable fields
    return column.sql


def next_token(query: ListQuery, row: dict[str, Any]) -> str:
    """The token of the page starting at row (the first row past this page).

    Sorted by a run metric the row does not have, KFP cannot make a token and answers 400
    (`list/list.go`, nextPageToken: "cannot sort by field"); no run here has metrics.
    """
    if query.sort_field not in query.listable.fields:
        raise bad_request(
            f"cannot sort by field {query.sort_field!r} on type {query.listable.kind!r}: "
            "a run on the next page has no such metric"
        )
    return encode_token(
        {
            "kind": query.listable.kind,
            "sort": query.sort_field,
            "desc": query.desc,
            "filter": query.filter_json if query.filter_json not in ("", None) else None,
            "scope": query.scope,
            "after": [row[SORT_VALUE], row[query.listable.key]],
        }
    )
