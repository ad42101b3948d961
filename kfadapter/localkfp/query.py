"""List queries as KFP does them: page size, opaque page tokens, sort_by and the SQL.

KFP parses them in `backend/src/apiserver/list/list.go` (NewOptions, NewOptionsFromToken)
and `server/list_request_util.go` (validatedListOptions). Everything becomes one SQL statement
(plus one COUNT) with keyset pagination on (sort column, id), so a deep page costs the same as
the first one. The filter JSON and the list fields (`Column`, `Listable`) are in `filters.py`,
re-exported here so callers keep using `query` as the one entry point.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from kfadapter.localkfp.apierrors import bad_request, require_json_value
from kfadapter.localkfp.filters import (
    _DECIMAL,
    ENUM,
    INT64_MAX,
    MAX_IN_VALUES,
    METRIC_PREFIX,
    OPERATIONS,
    STRING,
    TAG_PREFIX,
    TIME,
    Column,
    Listable,
    parse_filter,
    parse_int64,
    query_unescape,
)

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "ENUM",
    "INT64_MAX",
    "MAX_IN_VALUES",
    "MAX_PAGE_SIZE",
    "METRIC_PREFIX",
    "OPERATIONS",
    "SORT_VALUE",
    "STRING",
    "TAG_PREFIX",
    "TIME",
    "Column",
    "ListQuery",
    "Listable",
    "build_query",
    "decode_token",
    "encode_token",
    "from_args",
    "next_token",
    "parse_filter",
    "parse_int64",
    "parse_page_size",
    "parse_sort",
    "query_unescape",
    "scope",
    "select_sql",
]

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 200  # KFP caps larger page sizes at 200 (list.go: maxPageSize)
SORT_VALUE = "_sort_value"  # the alias under which a page's rows carry their sort value


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
