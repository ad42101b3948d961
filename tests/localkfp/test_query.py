"""Unit tests of list query parsing: page sizes, sorting, filters and page tokens."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from kfadapter.localkfp import query as q
from kfadapter.localkfp.apierrors import ApiError
from kfadapter.localkfp.fields import PIPELINES, RUNS


def test_page_size_follows_kfp_rules() -> None:
    assert q.parse_page_size(None) == 20
    assert q.parse_page_size("0") == 20
    assert q.parse_page_size("7") == 7
    assert q.parse_page_size("100000") == 200
    for bad in ("-1", "ten", "1.5"):
        with pytest.raises(ApiError) as error:
            q.parse_page_size(bad)
        assert error.value.status == 400


def test_sort_by_field_and_direction() -> None:
    assert q.parse_sort(PIPELINES, "") == ("created_at", False)
    assert q.parse_sort(PIPELINES, "display_name desc") == ("display_name", True)
    assert q.parse_sort(PIPELINES, "name ASC") == ("name", False)
    for bad in ("nope", "name sideways", "name desc extra"):
        with pytest.raises(ApiError) as error:
            q.parse_sort(PIPELINES, bad)
        assert error.value.status == 400


def test_filter_accepts_camel_case_and_numeric_operations() -> None:
    raw = json.dumps({"predicates": [{"operation": 1, "key": "display_name", "stringValue": "x"}]})
    assert q.parse_filter(PIPELINES, raw) == (["display_name = ?"], ["x"])
    raw = json.dumps(
        {"predicates": [{"operation": "IN", "key": "state", "string_values": {"values": ["a"]}}]}
    )
    assert q.parse_filter(RUNS, raw) == (["state IN (?)"], ["A"])


def test_timestamp_filter_is_a_whole_second_range() -> None:
    raw = json.dumps(
        {
            "predicates": [
                {
                    "operation": "GREATER_THAN",
                    "key": "created_at",
                    "timestamp_value": "1970-01-01T00:00:10Z",
                }
            ]
        }
    )
    assert q.parse_filter(PIPELINES, raw) == (["created_at >= ?"], [11_000_000])


def test_substring_filter_keeps_like_wildcards_as_kfp_does() -> None:
    """KFP builds LIKE '%value%' from the value as it is (`filter/filter.go`, AddToSelect)."""
    raw = json.dumps(
        {"predicates": [{"operation": "IS_SUBSTRING", "key": "name", "string_value": "50%_"}]}
    )
    conditions, params = q.parse_filter(PIPELINES, quote(raw))  # KFP unescapes it once more
    assert params == ["%50%_%"]
    assert conditions == ["name LIKE ?"]


def test_filter_text_is_url_unescaped_once_more_as_kfp_does() -> None:
    """`server/list_request_util.go`, parseAPIFilter: url.QueryUnescape before protojson."""
    raw = json.dumps({"predicates": [{"operation": 1, "key": "name", "string_value": "a+b%41"}]})
    assert q.parse_filter(PIPELINES, raw)[1] == ["a bA"]
    assert q.parse_filter(PIPELINES, quote(raw))[1] == ["a+b%41"]
    for bad in ('{"predicates": [{"operation": 1, "key": "name", "string_value": "50%"}]}', "%ff"):
        with pytest.raises(ApiError) as error:
            q.parse_filter(PIPELINES, bad)
        assert error.value.status == 400


@pytest.mark.parametrize(
    "raw",
    [
        "{not json",
        "[]",
        '{"predicates": {}}',
        '{"predicates": [{"key": "name", "operation": "EQUALS"}]}',
        '{"predicates": [{"key": "nope", "operation": "EQUALS", "string_value": "x"}]}',
        '{"predicates": [{"key": "name", "operation": "SOUNDS_LIKE", "string_value": "x"}]}',
        '{"predicates": [{"key": "name", "operation": "EQUALS", "int_value": 3}]}',
        '{"predicates": [{"key": "name", "operation": "IN", "string_value": "x"}]}',
        '{"predicates": [{"key": "created_at", "operation": "EQUALS", "string_value": "x"}]}',
        '{"predicates": [{"key": "created_at", "operation": "EQUALS", "timestamp_value": "x"}]}',
        '{"predicates": [], "extra": 1}',
        '{"predicates": [{"key": "name", "op": "EQUALS", "string_value": "x"}]}',
        '{"predicates": [{"key": "name", "operation": "equals", "string_value": "x"}]}',
        '{"predicates": [{"key": "name", "operation": "EQUALS", "string_value": "x", "y": 1}]}',
        '{"predicates": [{"key": "", "operation": "EQUALS", "string_value": "x"}]}',
        '{"predicates": [{"key": "tags.team", "operation": "NOT_EQUALS", "string_value": "x"}]}',
        '{"predicates": [{"key": "tags.", "operation": "EQUALS", "string_value": "x"}]}',
        '{"predicates": [{"key": "created_at", "operation": 3, "int_value": 3000000000}]}',
        '{"predicates": [{"key": "id", "operation": 8, "string_values": {"values": [], "y": 1}}]}',
    ],
)
def test_malformed_filters_are_bad_requests(raw: str) -> None:
    with pytest.raises(ApiError) as error:
        q.parse_filter(PIPELINES, raw)
    assert error.value.status == 400


def test_page_token_round_trip_and_rejections() -> None:
    query = q.build_query(
        PIPELINES, page_size=5, page_token=None, sort_by="name desc", filter_json=None
    )
    token = q.next_token(query, {q.SORT_VALUE: "n", "id": "i"})
    again = q.build_query(PIPELINES, page_size=5, page_token=token, sort_by="", filter_json=None)
    assert (again.sort_field, again.desc, again.after) == ("name", True, ("n", "i"))
    for bad in ("garbage!!", "eyJ4IjogMX0", token + "x"):
        with pytest.raises(ApiError) as error:
            q.build_query(PIPELINES, page_size=5, page_token=bad, sort_by="", filter_json=None)
        assert error.value.status == 400
    with pytest.raises(ApiError):
        q.build_query(RUNS, page_size=5, page_token=token, sort_by="", filter_json=None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(5, 5), ("-7", -7), (" 12 ", 12), (3.0, 3), (2**63 - 1, 2**63 - 1)],
)
def test_int64_values_as_proto3_json_gives_them(value, expected) -> None:
    assert q.parse_int64(value, "x") == expected


@pytest.mark.parametrize("value", [True, 1.5, "+-5", "²", "1e3", None, [], 2**63, "nan"])
def test_values_that_are_not_int64_are_bad_requests(value) -> None:
    with pytest.raises(ApiError) as error:
        q.parse_int64(value, "x")
    assert error.value.status == 400


def test_page_size_is_an_int32() -> None:
    """grpc-gateway parses page_size as an int32 (`runtime/query.go`)."""
    assert q.parse_page_size("+7") == 7
    for bad in (str(2**31), " 7", True):
        with pytest.raises(ApiError):
            q.parse_page_size(bad)


def test_each_list_has_kfps_keys() -> None:
    """`model/*.go` APIToModelFieldMap at 2.17.0: runs have no pipeline ids, recurring runs
    no experiment_id/status; request parameters limit lists as scopes instead."""
    from kfadapter.localkfp.fields import EXPERIMENTS, RECURRING_RUNS, VERSIONS

    assert "pipeline_id" not in RUNS.fields and "pipeline_version_id" not in RUNS.fields
    assert {"state_history", "runtime_details"} <= set(RUNS.fields)
    assert set(RECURRING_RUNS.fields) == {
        "id",
        "recurring_run_id",
        "name",
        "display_name",
        "created_at",
        "updated_at",
        "description",
    }
    assert set(RECURRING_RUNS.scopes) == {"experiment_id", "namespace"}
    assert {"status", "pipeline_spec"} <= set(VERSIONS.fields)
    assert "pipeline_id" not in VERSIONS.fields and VERSIONS.scopes == {
        "pipeline_id": "pipeline_id"
    }
    assert RUNS.sort_column("metric:acc") is not None
    assert EXPERIMENTS.sort_column("metric:acc") is None


def test_a_token_given_with_another_sort_or_filter_is_refused() -> None:
    """`server/list_request_util.go`, validatedListOptions."""
    by_name = json.dumps({"predicates": [{"key": "name", "operation": 1, "string_value": "a"}]})
    query = q.build_query(
        PIPELINES, page_size=1, page_token=None, sort_by="name", filter_json=by_name
    )
    token = q.next_token(query, {q.SORT_VALUE: "a", "id": "i"})
    same = json.dumps({"predicates": [{"key": "name", "operation": "EQUALS", "stringValue": "a"}]})
    again = q.build_query(
        PIPELINES, page_size=1, page_token=token, sort_by="name asc", filter_json=same
    )
    assert again.after == ("a", "i")
    for sort_by, filter_json in (("name desc", by_name), ("", by_name), ("name", None)):
        with pytest.raises(ApiError) as error:
            q.build_query(
                PIPELINES, page_size=1, page_token=token, sort_by=sort_by, filter_json=filter_json
            )
        assert "page token does not match" in error.value.message


def test_tag_filter_is_a_json_each_lookup() -> None:
    raw = json.dumps({"predicates": [{"key": "tags.team", "operation": 1, "string_value": "x"}]})
    conditions, params = q.parse_filter(PIPELINES, raw)
    assert "json_each(pipelines.tags)" in conditions[0] and params == ["team", "x"]
    with pytest.raises(ApiError):
        q.parse_filter(RUNS, raw)
