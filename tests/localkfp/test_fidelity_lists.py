"""The embedded server's list options, JSON encoding and routes, as KFP 2.17.0 has them.

Each test talks HTTP (requests or the unmodified kfp.Client) to a server on a free port and
cites the KFP source (repository kubeflow/pipelines, tag 2.17.0) it follows.
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import quote

import kfp_server_api
import pytest
import requests

from tests.localkfp.conftest import SPEC, client_for

pytestmark = pytest.mark.e2e  # a real server on a free port

V2 = "/apis/v2beta1"


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _filter(key: str, value: Any, operation: str = "EQUALS", field: str = "string_value") -> str:
    return json.dumps({"predicates": [{"key": key, "operation": operation, field: value}]})


def _get(server, path: str, **params: Any) -> requests.Response:
    return requests.get(f"{server.url}{V2}{path}", params=params, timeout=10)


def _post(server, path: str, body: Any) -> requests.Response:
    return requests.post(f"{server.url}{V2}{path}", json=body, timeout=10)


def _assert_kfp_error(response: requests.Response, status: int, code: int) -> dict:
    """grpc-gateway v2's error body is a google.rpc.Status: code, message, details (no v1
    "error" key; `runtime/errors.go`, DefaultHTTPErrorHandler)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "message", "details"}
    assert body["code"] == code and body["message"]
    return body


def _experiment(server) -> str:
    response = _post(server, "/experiments", {"display_name": _unique("exp")})
    assert response.status_code == 200, response.text
    return response.json()["experiment_id"]


def _run(server, experiment_id: str) -> dict:
    body = {"display_name": _unique("run"), "experiment_id": experiment_id, "pipeline_spec": SPEC}
    response = _post(server, "/runs", body)
    assert response.status_code == 200, response.text
    return response.json()


def _pipeline(server, name: str | None = None, **extra: Any) -> dict:
    response = _post(server, "/pipelines", {"display_name": name or _unique("p"), **extra})
    assert response.status_code == 200, response.text
    return response.json()


def test_runs_take_only_kfps_filter_and_sort_keys(held_server) -> None:
    """Runs filter and sort on `runAPIToModelFieldMap` only (`backend/src/apiserver/model/
    run.go`): `pipeline_id` and `pipeline_version_id` are no keys at 2.17.0, so a filter on
    them is a 400 (`filter/filter.go`, ReplaceKeys) and so is a sort (`list/list.go`,
    NewOptions); `state_history` and `runtime_details` are keys."""
    experiment_id = _experiment(held_server)
    run = _run(held_server, experiment_id)
    for key in ("pipeline_id", "pipeline_version_id", "pipeline_version_reference.pipeline_id"):
        body = _assert_kfp_error(_get(held_server, "/runs", filter=_filter(key, "x")), 400, 3)
        assert "unrecognized field" in body["message"]
        _assert_kfp_error(_get(held_server, "/runs", sort_by=key), 400, 3)
    for key in ("state_history", "runtime_details", "status", "state", "run_id", "name"):
        response = _get(held_server, "/runs", experiment_id=experiment_id, sort_by=f"{key} desc")
        assert response.status_code == 200, response.text
    found = _get(
        held_server,
        "/runs",
        experiment_id=experiment_id,
        filter=_filter("run_id", {"values": [run["run_id"]]}, "IN", "string_values"),
    ).json()
    assert found == {"runs": found["runs"], "total_size": 1}
    assert found["runs"][0]["run_id"] == run["run_id"]


def test_kfp_client_gets_a_400_for_a_run_filter_kfp_lacks(held_server) -> None:
    """The unmodified kfp.Client meets the same 400 (`model/run.go`: no pipeline_id)."""
    client = client_for(held_server)
    with pytest.raises(kfp_server_api.ApiException) as error:
        client.list_runs(filter=_filter("pipeline_id", "x"))
    assert error.value.status == 400


def test_runs_sort_by_a_metric_but_cannot_page_on_one_they_lack(held_server) -> None:
    """`metric:<name>` is a run sort key (`model/run.go`, GetField). No run here reports
    metrics, and KFP cannot make the next page's token for a run without the metric
    (`list/list.go`, nextPageToken: "cannot sort by field"), so a second page is a 400."""
    experiment_id = _experiment(held_server)
    _run(held_server, experiment_id)
    _run(held_server, experiment_id)
    one_page = _get(held_server, "/runs", experiment_id=experiment_id, sort_by="metric:accuracy")
    assert one_page.status_code == 200 and one_page.json()["total_size"] == 2
    paged = _get(
        held_server,
        "/runs",
        experiment_id=experiment_id,
        sort_by="metric:accuracy desc",
        page_size=1,
    )
    assert "cannot sort by field" in _assert_kfp_error(paged, 400, 3)["message"]
    _assert_kfp_error(
        _get(held_server, "/runs", filter=_filter("metric:accuracy", "x")), 400, 3
    )  # a sort key only: the filter map has no metrics
    _assert_kfp_error(_get(held_server, "/experiments", sort_by="metric:accuracy"), 400, 3)


def test_recurring_runs_filter_only_on_their_own_keys(held_server) -> None:
    """Recurring runs: `id, recurring_run_id, name, display_name, created_at, updated_at,
    description` (`model/job.go`, jobAPIToModelFieldMap); experiment_id and namespace are
    request parameters of ListRecurringRuns, not filter keys."""
    experiment_id = _experiment(held_server)
    for key in ("experiment_id", "status", "pipeline_id", "pipeline_version_id", "namespace"):
        response = _get(held_server, "/recurringruns", filter=_filter(key, "x"))
        _assert_kfp_error(response, 400, 3)
    for key in ("updated_at", "recurring_run_id", "display_name", "description"):
        response = _get(held_server, "/recurringruns", experiment_id=experiment_id, sort_by=key)
        assert response.status_code == 200 and response.json() == {}


def test_versions_filter_on_status_and_spec_not_on_pipeline_id(held_server) -> None:
    """Versions: `id, pipeline_version_id, name, display_name, created_at, status,
    description, pipeline_spec` (`model/pipeline_version.go`, APIToModelFieldMap)."""
    pipeline = _pipeline(held_server)
    versions = f"/pipelines/{pipeline['pipeline_id']}/versions"
    _assert_kfp_error(_get(held_server, versions, filter=_filter("pipeline_id", "x")), 400, 3)
    ready = _get(held_server, versions, filter=_filter("status", "READY"), sort_by="pipeline_spec")
    assert ready.status_code == 200, ready.text
    assert ready.json().get("total_size", 0) == _get(held_server, versions).json().get(
        "total_size", 0
    )
    none = _get(held_server, versions, filter=_filter("status", "DELETING"))
    assert none.status_code == 200 and none.json() == {}


def test_pipelines_and_versions_filter_on_a_tag(held_server) -> None:
    """`tags.<key>` EQUALS a string filters pipelines and versions (the v2beta1 Pipeline and
    PipelineVersion `tags` doc in `backend/api/v2beta1/pipeline.proto`; handled in
    `server/pipeline_server.go`); any other operation on a tag is a 400."""
    team = _unique("team")
    tagged = _pipeline(held_server, tags={"team": team})
    _pipeline(held_server, tags={"team": "other"})
    found = _get(held_server, "/pipelines", filter=_filter("tags.team", team)).json()
    assert [p["pipeline_id"] for p in found["pipelines"]] == [tagged["pipeline_id"]]
    assert found["pipelines"][0]["tags"] == {"team": team}
    refused = _get(held_server, "/pipelines", filter=_filter("tags.team", team, "IS_SUBSTRING"))
    _assert_kfp_error(refused, 400, 3)
    _assert_kfp_error(_get(held_server, "/runs", filter=_filter("tags.team", team)), 400, 3)
    _assert_kfp_error(_get(held_server, "/experiments", filter=_filter("tags.x", "y")), 400, 3)

    upload = requests.post(
        f"{held_server.url}{V2}/pipelines/upload_version",
        params={"pipelineid": tagged["pipeline_id"], "name": _unique("v")},
        files={"uploadfile": ("v.yaml", json.dumps(SPEC))},
        timeout=10,
    )
    assert upload.status_code == 200, upload.text
    version_id = upload.json()["pipeline_version_id"]
    path = f"/pipelines/{tagged['pipeline_id']}/versions"
    patched = requests.patch(
        f"{held_server.url}{V2}{path}/{version_id}", json={"tags": {"stage": team}}, timeout=10
    )
    assert patched.status_code == 200, patched.text
    versions = _get(held_server, path, filter=_filter("tags.stage", team)).json()
    assert [v["pipeline_version_id"] for v in versions["pipeline_versions"]] == [version_id]


def test_page_token_with_another_sort_or_filter_is_a_400(held_server) -> None:
    """A page token comes with its own sort and filter; a sort_by or filter given beside it
    must mean the same, else 400 "page token does not match" (`server/list_request_util.go`,
    validatedListOptions, comparing with `list.Options.Matches`)."""
    prefix = _unique("paged")
    for index in range(3):
        _pipeline(held_server, f"{prefix}-{index}")
    by_prefix = _filter("display_name", prefix, "IS_SUBSTRING")
    first = _get(held_server, "/pipelines", page_size=1, sort_by="name", filter=by_prefix).json()
    token = first["next_page_token"]
    assert first["total_size"] == 3

    same = _get(held_server, "/pipelines", page_token=token, sort_by="name asc", filter=by_prefix)
    assert same.status_code == 200, same.text
    assert same.json()["pipelines"][0]["display_name"] == f"{prefix}-1"
    alone = _get(held_server, "/pipelines", page_token=token)
    assert alone.json()["pipelines"] == same.json()["pipelines"]

    for mismatch in (
        {"sort_by": "name desc", "filter": by_prefix},
        {"sort_by": "created_at", "filter": by_prefix},
        {"sort_by": "name"},  # the token's filter is not given: another filter
        {"filter": by_prefix},  # no sort_by means the default sort, not the token's
        {"sort_by": "name", "filter": _filter("display_name", f"{prefix}-2")},
    ):
        response = _get(held_server, "/pipelines", page_token=token, **mismatch)
        body = _assert_kfp_error(response, 400, 3)
        assert "page token does not match" in body["message"]


def test_filters_are_read_as_a_v2beta1_filter_message(held_server) -> None:
    """The filter is a v2beta1 `Filter` read by protojson (`server/list_request_util.go`,
    parseAPIFilter; `backend/api/v2beta1/filter.proto`): camelCase names and enum numbers
    are read, v1's `op`, unknown fields and lower-case enum names are not."""
    name = _unique("camel")
    _pipeline(held_server, name)
    camel = json.dumps(
        {"predicates": [{"key": "display_name", "operation": 1, "stringValue": name}]}
    )
    assert _get(held_server, "/pipelines", filter=camel).json()["total_size"] == 1
    for predicate in (
        {"key": "display_name", "op": "EQUALS", "string_value": name},
        {"key": "display_name", "operation": "equals", "string_value": name},
        {"key": "display_name", "operation": "EQUALS", "string_value": name, "extra": 1},
        {"key": "", "operation": "EQUALS", "string_value": name},
        {"key": "created_at", "operation": "GREATER_THAN", "int_value": 2**31},  # an int32
        {"key": "display_name", "operation": "IN", "string_values": {"values": [], "x": 1}},
    ):
        response = _get(held_server, "/pipelines", filter=json.dumps({"predicates": [predicate]}))
        _assert_kfp_error(response, 400, 3)


def test_is_substring_keeps_like_wildcards(held_server) -> None:
    """KFP turns IS_SUBSTRING into LIKE '%value%' with the value as given, so `_` matches
    any character (`filter/filter.go`, AddToSelect)."""
    prefix = _unique("wild")
    _pipeline(held_server, f"{prefix}-a_b")
    _pipeline(held_server, f"{prefix}-axb")
    found = _get(
        held_server, "/pipelines", filter=_filter("display_name", f"{prefix}-a_b", "IS_SUBSTRING")
    ).json()
    assert sorted(p["display_name"] for p in found["pipelines"]) == [
        f"{prefix}-a_b",
        f"{prefix}-axb",
    ]


def test_page_size_bounds(held_server) -> None:
    """0 or absent means 20, above 200 is 200, negative is a 400 (`list/list.go`,
    validatePageSize)."""
    _assert_kfp_error(_get(held_server, "/pipelines", page_size=-1), 400, 3)
    for size in (0, 100000):
        assert _get(held_server, "/pipelines", page_size=size).status_code == 200


def test_answers_leave_out_zero_values(held_server) -> None:
    """`common.CustomMarshaler` (`backend/src/apiserver/common/utils.go`) is protojson with
    UseProtoNames and EmitUnpopulated false: empty strings, false, 0 (`total_size: 0`
    included), empty lists and enum zero values are left out; timestamps that are set
    (1970 for a run that has not finished) and values inside a Struct stay."""
    experiment = _post(held_server, "/experiments", {"display_name": _unique("bare")}).json()
    assert "description" not in experiment and "namespace" not in experiment
    assert experiment["storage_state"] == "AVAILABLE"

    run = _run(held_server, experiment["experiment_id"])
    for absent in ("description", "recurring_run_id", "error"):
        assert absent not in run
    assert run["service_account"] == "pipeline-runner"  # KFP's default (test_fidelity_runs)
    assert run["finished_at"] == "1970-01-01T00:00:00Z"
    assert run["pipeline_spec"]["root"] == {"dag": {"tasks": {}}}  # a Struct keeps {}

    empty = _get(held_server, "/runs", filter=_filter("display_name", _unique("none")))
    assert empty.status_code == 200 and empty.json() == {}

    pipeline = _pipeline(held_server)
    assert "description" not in pipeline and "namespace" not in pipeline
    client = client_for(held_server)  # the generated client reads omitted fields as None
    assert client.get_pipeline(pipeline["pipeline_id"]).description is None
    assert client.get_experiment(experiment_id=experiment["experiment_id"]).description is None


def test_requests_refuse_unknown_fields_and_take_camel_case(held_server) -> None:
    """`common.CustomMarshaler` reads requests with DiscardUnknown false: an unknown field,
    nested ones included, is a 400 (gRPC 3); protojson also reads a field by its JSON
    (lowerCamelCase) name."""
    body = _assert_kfp_error(
        _post(held_server, "/experiments", {"display_name": _unique("e"), "colour": "red"}),
        400,
        3,
    )
    assert "colour" in body["message"]
    experiment_id = _experiment(held_server)
    nested = {
        "display_name": _unique("run"),
        "experiment_id": experiment_id,
        "pipeline_spec": SPEC,
        "runtime_config": {"parameters": {}, "pipelineRootDir": "/x"},
    }
    _assert_kfp_error(_post(held_server, "/runs", nested), 400, 3)

    name = _unique("camel")
    created = _post(held_server, "/experiments", {"displayName": name, "description": "d"})
    assert created.status_code == 200, created.text
    assert created.json()["display_name"] == name
    run = _post(
        held_server,
        "/runs",
        {
            "displayName": _unique("run"),
            "experimentId": experiment_id,
            "pipelineSpec": SPEC,
            "runtimeConfig": {"parameters": {}},
        },
    )
    assert run.status_code == 200, run.text
    assert run.json()["experiment_id"] == experiment_id


def test_healthz_carries_the_build_and_v1beta1_has_one(held_server) -> None:
    """healthz is hand-written JSON with `commit_sha`, `tag_name`, `multi_user` and, on
    v2beta1, `pipeline_store`; `/apis/v1beta1/healthz` exists too (`backend/src/apiserver/
    main.go`, startHTTPProxy)."""
    for prefix in ("", "/pipeline"):
        v2 = requests.get(f"{held_server.url}{prefix}{V2}/healthz", timeout=10).json()
        assert v2 == {
            "commit_sha": "unknown",
            "tag_name": "2.17.0",
            "multi_user": False,
            "pipeline_store": "database",
        }
        v1 = requests.get(f"{held_server.url}{prefix}/apis/v1beta1/healthz", timeout=10)
        assert v1.status_code == 200
        assert v1.json() == {"commit_sha": "unknown", "tag_name": "2.17.0", "multi_user": False}
    assert client_for(held_server).get_kfp_healthz().multi_user is False


def test_wrong_http_method_is_501_unimplemented(held_server) -> None:
    """grpc-gateway answers a known path with another method as Unimplemented: HTTP 501,
    gRPC 12 (grpc-gateway v2 `runtime/mux.go` ServeHTTP and DefaultRoutingErrorHandler);
    an unknown path is 404, gRPC 5."""
    for method, path in (("PUT", "/runs"), ("DELETE", "/experiments"), ("POST", "/runs/x")):
        response = requests.request(method, f"{held_server.url}{V2}{path}", timeout=10)
        _assert_kfp_error(response, 501, 12)
    options = requests.options(f"{held_server.url}/pipeline{V2}/pipelines", timeout=10)
    _assert_kfp_error(options, 501, 12)  # the gateway has no OPTIONS handler either
    assert requests.head(f"{held_server.url}{V2}/runs", timeout=10).status_code == 501
    _assert_kfp_error(requests.get(f"{held_server.url}{V2}/nowhere", timeout=10), 404, 5)


def test_hand_registered_routes_take_every_method(held_server) -> None:
    """The uploads, the log route and healthz are registered on KFP's top mux without a
    method (`backend/src/apiserver/main.go`, startHTTPProxy): any method reaches them, so a
    GET upload is the upload handler's 400 (`server/pipeline_upload_server.go`: no file),
    not a 501."""
    for path in ("/pipelines/upload", "/pipelines/upload_version"):
        response = requests.get(f"{held_server.url}{V2}{path}", timeout=10)
        assert response.status_code == 400, response.text
        assert set(response.json()) == {"error_message", "error_details"}
    log = f"{held_server.url}/apis/v1alpha1/runs/{uuid.uuid4()}/nodes/x/log"
    assert requests.post(log, timeout=10).status_code == requests.get(log, timeout=10).status_code
    assert requests.delete(f"{held_server.url}{V2}/healthz", timeout=10).status_code == 200


def test_query_parameters_are_read_as_grpc_gateway_reads_them(held_server) -> None:
    """page_size is an int32 and `cascade` a bool query parameter: grpc-gateway parses them
    with Go's strconv (ParseInt 32 bits; ParseBool: 1, t, T, TRUE, true, True and their
    false forms) and answers anything else with 400, code 3 (`runtime/query.go`)."""
    _assert_kfp_error(_get(held_server, "/pipelines", page_size=2**31), 400, 3)
    _assert_kfp_error(_get(held_server, "/pipelines", page_size="1.5"), 400, 3)
    upload = requests.post(
        f"{held_server.url}{V2}/pipelines/upload",
        params={"name": _unique("cascade")},
        files={"uploadfile": ("p.yaml", json.dumps(SPEC))},
        timeout=10,
    )
    assert upload.status_code == 200, upload.text
    url = f"{held_server.url}{V2}/pipelines/{upload.json()['pipeline_id']}"
    _assert_kfp_error(requests.delete(url, params={"cascade": "yes"}, timeout=10), 400, 3)
    assert requests.delete(url, params={"cascade": "T"}, timeout=10).status_code == 200
    assert requests.get(url, timeout=10).status_code == 404


def test_timestamps_are_read_in_rfc3339_only(held_server) -> None:
    """protojson reads a google.protobuf.Timestamp with Go's time.RFC3339Nano (protobuf-go
    `encoding/protojson/well_known_types.go`, unmarshalTimestamp): nanoseconds and offsets
    are fine; a date alone, a time without an offset or a space for the `T` is a 400.
    The filter text is URL-unescaped once more (`server/list_request_util.go`), so a `+`
    offset must be sent quoted."""

    def created_after(stamp: str, *, quoted: bool = True) -> requests.Response:
        text = _filter("created_at", stamp, "GREATER_THAN", "timestamp_value")
        return _get(held_server, "/pipelines", filter=quote(text) if quoted else text)

    for good in ("2026-01-01T00:00:00.123456789Z", "2026-01-01T01:00:00+01:00"):
        assert created_after(good).status_code == 200, good
    for bad in ("2026-01-01", "2026-01-01T00:00:00", "2026-01-01 00:00:00Z", "yesterday"):
        _assert_kfp_error(created_after(bad), 400, 3)
    _assert_kfp_error(created_after("2026-01-01T01:00:00+01:00", quoted=False), 400, 3)


def test_filter_text_is_unescaped_once_more(held_server) -> None:
    """KFP URL-unescapes the filter parameter after grpc-gateway decoded the query string
    (`server/list_request_util.go`, parseAPIFilter: url.QueryUnescape), so in an unquoted
    filter `+` means a space and a `%` without two hex digits is a 400; quoting the filter
    text keeps every character, as the adapter's filters do."""
    name = _unique("a+b")
    _pipeline(held_server, name)
    text = _filter("display_name", name)
    assert _get(held_server, "/pipelines", filter=text).json() == {}  # looked for "a b"
    assert _get(held_server, "/pipelines", filter=quote(text)).json()["total_size"] == 1
    _assert_kfp_error(_get(held_server, "/pipelines", filter=_filter("name", "50%")), 400, 3)


def test_the_adapter_finds_names_holding_plus_and_percent(held_server) -> None:
    """The adapter's filters are sent URL-quoted (`kfadapter/kfp/filters.py`), so KFP's
    extra unescape (`server/list_request_util.go`, parseAPIFilter) gives back the name."""
    from kfadapter.kfp.client import KfConnect
    from kfadapter.settings import Settings

    name = _unique("odd+50%_name")
    created = _pipeline(held_server, name)
    _pipeline(held_server, name.replace("+", " "))
    settings = Settings(
        kfp_endpoint=held_server.url + "/pipeline", tracking_enabled=False, kfp_timeout=5.0
    )
    found = KfConnect(settings).find_pipeline(name)
    assert found is not None and found["pipeline_id"] == created["pipeline_id"]


def test_requests_may_give_enums_by_number(held_server) -> None:
    """protojson reads an enum by name or by number; the numbers are the proto's
    (`backend/api/v2beta1/recurring_run.proto`: Mode ENABLE = 1, DISABLE = 2)."""
    body = {
        "displayName": _unique("rr"),
        "pipelineSpec": SPEC,
        "maxConcurrency": 1,
        "mode": 2,
        "trigger": {"periodicSchedule": {"intervalSecond": 3600}},
    }
    created = _post(held_server, "/recurringruns", body)
    assert created.status_code == 200, created.text
    assert created.json()["mode"] == "DISABLE" and created.json()["status"] == "DISABLED"
    _assert_kfp_error(_post(held_server, "/recurringruns", {**body, "mode": "disable"}), 400, 3)


def _names_listed(server, path: str, name: str, key: str = "display_name") -> list:
    found = _get(server, path, filter=quote(_filter(key, name)))
    assert found.status_code == 200, found.text
    return found.json().get(path.strip("/").replace("recurringruns", "recurringRuns"), [])


def test_request_values_must_have_their_fields_json_type(held_server) -> None:
    """`common.CustomMarshaler` (`backend/src/apiserver/common/utils.go`) reads a body with
    protojson, which refuses a value of the wrong JSON type before KFP's server runs: 400,
    gRPC 3, naming the field, nothing stored. `tags` is a map<string, string> (a null or a
    number in it is refused on create, `/pipelines/create` and PATCH alike), `error` a
    google.rpc.Status (its `code` an int32, `details` Any objects naming their "@type";
    protobuf-go `encoding/protojson/well_known_types.go`), `created_at` a Timestamp
    (an RFC 3339 string), `no_catchup` a bool; an int64 may be quoted and a field's own
    null is unset."""
    for wrong in (
        {"tags": {"t": None}},
        {"tags": {"a": 1}},
        {"tags": ["a"]},
        {"error": True},
        {"error": {"code": "x"}},
        {"error": {"code": 0, "details": [None, None]}},
        {"error": {"details": [{"@type": None, "value": {}}]}},
        {"created_at": 5},
        {"display_name": 5},
    ):
        name = _unique("typed")
        response = _post(held_server, "/pipelines", {"name": name, **wrong})
        body = _assert_kfp_error(response, 400, 3)
        assert next(iter(wrong)) in body["message"], body["message"]
        assert _names_listed(held_server, "/pipelines", name, "name") == []
    _post(held_server, "/pipelines", {"name": name, "tags": {"t": "1"}})
    assert len(_names_listed(held_server, "/pipelines", name, "name")) == 1  # the lookup works

    name = _unique("typed")
    both = {"pipeline": {"name": name, "tags": {"a": 1}}, "pipeline_version": {"name": name}}
    body = _assert_kfp_error(_post(held_server, "/pipelines/create", both), 400, 3)
    assert "tags" in body["message"]
    assert _names_listed(held_server, "/pipelines", name, "name") == []

    pipeline = _pipeline(held_server, tags={"a": "b"})
    url = f"{held_server.url}{V2}/pipelines/{pipeline['pipeline_id']}"
    for tags in ({"a": None}, {"a": 2}):
        patched = requests.patch(url, json={"tags": tags}, timeout=10)
        assert "tags" in _assert_kfp_error(patched, 400, 3)["message"]
    assert requests.get(url, timeout=10).json()["tags"] == {"a": "b"}

    name = _unique("exp")
    stamp = {"display_name": name, "last_run_created_at": "¿È¼"}
    assert (
        "last_run_created_at"
        in _assert_kfp_error(_post(held_server, "/experiments", stamp), 400, 3)["message"]
    )
    assert _names_listed(held_server, "/experiments", name) == []
    unset = _post(held_server, "/experiments", {"display_name": name, "description": None})
    assert unset.status_code == 200, unset.text
    assert len(_names_listed(held_server, "/experiments", name)) == 1

    recurring = {
        "display_name": _unique("rr"),
        "pipeline_spec": SPEC,
        "max_concurrency": "2",
        "mode": "DISABLE",
        "trigger": {"periodic_schedule": {"interval_second": "3600"}},
    }
    for wrong in ({"no_catchup": "true"}, {"max_concurrency": "1.5"}, {"mode": True}):
        _assert_kfp_error(_post(held_server, "/recurringruns", {**recurring, **wrong}), 400, 3)
    assert _names_listed(held_server, "/recurringruns", recurring["display_name"]) == []
    created = _post(held_server, "/recurringruns", recurring)
    assert created.status_code == 200, created.text
    assert created.json()["max_concurrency"] == "2"
    assert len(_names_listed(held_server, "/recurringruns", recurring["display_name"])) == 1


def test_enum_query_parameters_take_only_names_or_numbers(held_server) -> None:
    """grpc-gateway fills query parameters into the request message (`runtime/query.go`,
    PopulateQueryParameters): an enum takes one of its names or a number it has, anything
    else is a 400 with gRPC 3 before KFP's server runs. The enums are
    AuthorizeRequest.Verb and .Resources (`backend/api/v2beta1/auth.proto`) and
    DeletePropagationPolicy (`recurring_run.proto`)."""
    for prefix in ("", "/pipeline"):
        auth = f"{held_server.url}{prefix}{V2}/auth"
        for good in ({"verb": "GET"}, {"verb": "3"}, {"resources": "VIEWERS", "verb": "CREATE"}):
            assert requests.get(auth, params=good, timeout=10).status_code == 200, good
        for bad in ({"verb": "AAA"}, {"verb": "get"}, {"verb": "9"}, {"resources": "x"}):
            response = requests.get(auth, params=bad, timeout=10)
            assert next(iter(bad)) in _assert_kfp_error(response, 400, 3)["message"]

    body = {
        "display_name": _unique("rr"),
        "pipeline_spec": SPEC,
        "max_concurrency": 1,
        "mode": "DISABLE",
        "trigger": {"periodic_schedule": {"interval_second": 3600}},
    }
    created = _post(held_server, "/recurringruns", body)
    assert created.status_code == 200, created.text
    url = f"{held_server.url}{V2}/recurringruns/{created.json()['recurring_run_id']}"
    for bad in ("AAA", "foreground", "7"):
        response = requests.delete(url, params={"propagation_policy": bad}, timeout=10)
        assert "propagation_policy" in _assert_kfp_error(response, 400, 3)["message"]
    assert requests.get(url, timeout=10).status_code == 200  # still there
    deleted = requests.delete(url, params={"propagation_policy": "FOREGROUND"}, timeout=10)
    assert deleted.status_code == 200, deleted.text
    assert requests.get(url, timeout=10).status_code == 404
