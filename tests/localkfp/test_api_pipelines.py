"""Pipelines and pipeline versions through the unmodified kfp.Client over real HTTP."""

from __future__ import annotations

import base64
import io
import json
import tarfile
import uuid
import zipfile

import kfp_server_api
import pytest
import requests
import yaml

from tests.localkfp.conftest import SPEC, HeldExecutor, client_for, upload_spec

pytestmark = pytest.mark.e2e  # real servers and processes on free ports


@pytest.fixture
def fresh(make_server):
    """A server of the test's own: lists see only what the test made (a single-user KFP
    keeps every pipeline in the namespace "", so namespaces cannot set tests apart)."""
    return make_server(executor_factory=HeldExecutor)


def _upload(
    server, name: str, data: bytes, filename: str = "p.yaml", **params
) -> requests.Response:
    return requests.post(
        f"{server.url}/apis/v2beta1/pipelines/upload",
        params={"name": name, **params},
        files={"uploadfile": (filename, data)},
        timeout=10,
    )


_ALIAS_BOMB = (
    "pipelineInfo: {name: bomb}\nroot:\n  a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
    + "".join(f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 8))
).encode()


def _created_at_predicate(value: dict) -> str:
    return json.dumps({"predicates": [{"key": "created_at", "operation": "GREATER_THAN", **value}]})


def _token(change: dict) -> str:
    """A page token as the server makes them (base64 JSON), with some parts changed."""
    payload = {
        "kind": "pipelines",
        "sort": "created_at",
        "desc": False,
        "filter": None,
        "scope": {},
        "after": [0, "id"],
        **change,
    }
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


def _upload_error(response: requests.Response, status: int) -> dict:
    """The upload endpoints' error body (backend/src/apiserver/server/pipeline_upload_server.go,
    writeErrorToResponse)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error_message", "error_details"}
    return body


def _kfp_error(response: requests.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"code", "message", "details"}
    return body


def test_upload_get_and_versions_with_kfp_client(held_server, compiled, tmp_path) -> None:
    client = client_for(held_server)
    path = str(compiled["add_subtract_multiply"])
    name = f"asm-{uuid.uuid4().hex[:6]}"
    pipeline = client.upload_pipeline(path, name, description="the classic")
    assert pipeline.display_name == name and pipeline.description == "the classic"
    assert client.get_pipeline_id(name) == pipeline.pipeline_id
    assert client.get_pipeline(pipeline.pipeline_id).name == name

    version = client.upload_pipeline_version(path, "v2", pipeline_name=name, description="second")
    assert version.pipeline_id == pipeline.pipeline_id
    fetched = client.get_pipeline_version(pipeline.pipeline_id, version.pipeline_version_id)
    assert fetched.description == "second"
    assert fetched.pipeline_spec["pipelineInfo"]["name"] == "add-subtract-multiply"
    params = fetched.pipeline_spec["root"]["inputDefinitions"]["parameters"]
    assert set(params) == {"a", "b", "expected"}

    versions = client.list_pipeline_versions(pipeline.pipeline_id, sort_by="created_at")
    assert [v.display_name for v in versions.pipeline_versions] == [name, "v2"]
    assert versions.total_size == 2

    by_name = requests.get(f"{held_server.url}/apis/v2beta1/pipelines/names/{name}", timeout=5)
    assert by_name.json()["pipeline_id"] == pipeline.pipeline_id

    client.delete_pipeline_version(pipeline.pipeline_id, version.pipeline_version_id)
    with pytest.raises(kfp_server_api.ApiException) as error:
        client.get_pipeline_version(pipeline.pipeline_id, version.pipeline_version_id)
    assert error.value.status == 404


def test_delete_pipeline_needs_cascade_while_versions_remain(held_server) -> None:
    client = client_for(held_server)
    name = f"cascade-{uuid.uuid4().hex[:6]}"
    assert _upload(held_server, name, yaml.safe_dump(SPEC).encode()).status_code == 200
    pipeline_id = client.get_pipeline_id(name)
    with pytest.raises(kfp_server_api.ApiException) as error:
        client.delete_pipeline(pipeline_id)
    assert error.value.status == 400 and "cascade" in error.value.body
    assert client.get_pipeline(pipeline_id).pipeline_id == pipeline_id
    response = requests.delete(
        f"{held_server.url}/apis/v2beta1/pipelines/{pipeline_id}", params={"cascade": "true"}
    )
    assert response.status_code == 200 and response.json() == {}
    assert client.get_pipeline_id(name) is None


def test_platform_spec_and_archives_are_stored_as_kfp_returns_them(held_server) -> None:
    platform = {"platforms": {"kubernetes": {"deploymentSpec": {}}}}
    multi = (yaml.safe_dump(SPEC) + "---\n" + yaml.safe_dump(platform)).encode()
    response = _upload(held_server, f"platform-{uuid.uuid4().hex[:6]}", multi)
    assert response.status_code == 200, response.text
    pipeline_id = response.json()["pipeline_id"]
    versions = requests.get(
        f"{held_server.url}/apis/v2beta1/pipelines/{pipeline_id}/versions"
    ).json()
    assert versions["pipeline_versions"][0]["pipeline_spec"] == {
        "pipeline_spec": SPEC,
        "platform_spec": platform,
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("pipeline.yaml", yaml.safe_dump(SPEC))
    zipped = _upload(held_server, "", buffer.getvalue(), filename=f"z{uuid.uuid4().hex[:6]}.zip")
    assert zipped.status_code == 200, zipped.text
    assert zipped.json()["name"].endswith(".zip")  # named after the file, as KFP names it
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        data = json.dumps(SPEC).encode()  # a JSON IR (JSON is YAML), inside a .tar.gz
        info = tarfile.TarInfo("pipeline.yaml")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    stem = f"t{uuid.uuid4().hex[:6]}"
    tarred = _upload(held_server, "", buffer.getvalue(), filename=f"{stem}.tar.gz")
    assert tarred.status_code == 200, tarred.text
    assert tarred.json()["name"] == f"{stem}.tar.gz"
    versions = requests.get(
        f"{held_server.url}/apis/v2beta1/pipelines/{tarred.json()['pipeline_id']}/versions"
    ).json()
    assert versions["pipeline_versions"][0]["pipeline_spec"] == SPEC


def test_pagination_walks_every_page_without_loss_or_repeat(fresh) -> None:
    client = client_for(fresh)
    namespace = "ignored"  # single-user KFP lists every pipeline whatever the namespace
    empty = client.list_pipelines(namespace=namespace)
    assert empty.pipelines is None and not empty.total_size and not empty.next_page_token

    names = [f"p{i:02d}-{uuid.uuid4().hex[:4]}" for i in range(23)]
    for name in names:
        response = _upload(fresh, name, yaml.safe_dump(SPEC).encode(), namespace=namespace)
        assert response.status_code == 200
    one_page = client.list_pipelines(namespace=namespace, page_size=50)
    assert len(one_page.pipelines) == 23 and not one_page.next_page_token

    for sort_by, expected in (("name", sorted(names)), ("name desc", sorted(names)[::-1])):
        seen, token, pages = [], "", 0
        while True:
            page = client.list_pipelines(
                namespace=namespace, page_size=5, page_token=token, sort_by=sort_by
            )
            assert page.total_size == 23
            seen += [p.name for p in page.pipelines]
            pages += 1
            token = page.next_page_token
            if not token:
                break
        assert pages == 5 and seen == expected

    created = client.list_pipelines(namespace=namespace, page_size=100, sort_by="created_at")
    assert [p.name for p in created.pipelines] == names


def test_a_page_token_only_continues_its_own_list(held_server) -> None:
    """A token from pipeline A's versions does not list A's versions under pipeline B."""
    pipelines = held_server.services.pipelines
    first, second = (
        pipelines.create_pipeline({"name": f"tokens-{uuid.uuid4().hex[:6]}"})["pipeline_id"]
        for _ in range(2)
    )
    for pipeline_id in (first, second):
        for n in range(3):
            upload_spec(held_server, f"v{n}", pipeline_id=pipeline_id)
    url = f"{held_server.url}/apis/v2beta1/pipelines/{{}}/versions"
    token = requests.get(url.format(first), params={"page_size": 1}).json()["next_page_token"]
    rest = requests.get(url.format(first), params={"page_token": token}).json()
    assert {v["pipeline_id"] for v in rest["pipeline_versions"]} == {first}
    assert len(rest["pipeline_versions"]) == 2
    body = _kfp_error(requests.get(url.format(second), params={"page_token": token}), 400)
    assert "another pipeline_id" in body["message"]


def test_filters_on_pipelines(fresh) -> None:
    client = client_for(fresh)
    namespace = ""
    for name in ("alpha-one", "alpha-two", "beta", "50%_off"):
        _upload(fresh, name, yaml.safe_dump(SPEC).encode())

    def names(predicates: list[dict]) -> list[str]:
        page = client.list_pipelines(
            namespace=namespace, filter=json.dumps({"predicates": predicates}), sort_by="name"
        )
        return [p.name for p in page.pipelines or []]

    assert names([{"key": "name", "operation": "IS_SUBSTRING", "string_value": "alpha"}]) == [
        "alpha-one",
        "alpha-two",
    ]
    # KFP URL-unescapes the filter once more (server/list_request_util.go, parseAPIFilter):
    # an unquoted "%_" is an invalid escape, a 400
    with pytest.raises(kfp_server_api.ApiException) as refused:
        names([{"key": "name", "operation": "IS_SUBSTRING", "string_value": "%_"}])
    assert refused.value.status == 400
    assert names([{"key": "name", "operation": "NOT_EQUALS", "stringValue": "beta"}]) == [
        "50%_off",
        "alpha-one",
        "alpha-two",
    ]
    assert names(
        [{"key": "name", "operation": "IN", "string_values": {"values": ["beta", "x"]}}]
    ) == ["beta"]
    assert names([{"key": "name", "operation": "GREATER_THAN", "string_value": "alpha-one"}]) == [
        "alpha-two",
        "beta",
    ]
    assert (
        names(
            [
                {
                    "key": "created_at",
                    "operation": "LESS_THAN",
                    "timestamp_value": "2000-01-01T00:00:00Z",
                }
            ]
        )
        == []
    )
    assert (
        len(
            names(
                [
                    {
                        "key": "created_at",
                        "operation": "GREATER_THAN_EQUALS",
                        "timestamp_value": "2000-01-01T00:00:00Z",
                    }
                ]
            )
        )
        == 4
    )


@pytest.mark.parametrize(
    "params",
    [
        {"filter": "{oops"},
        {"filter": '{"predicates":[{"key":"colour","operation":"EQUALS","string_value":"x"}]}'},
        {"page_token": "not-a-token"},
        {"page_size": "-3"},
        {"page_size": "many"},
        {"sort_by": "colour"},
        {"sort_by": "name upwards"},
        # numbers SQLite cannot hold, and values that are not integers
        {"filter": _created_at_predicate({"int_value": 10**30})},
        {"filter": _created_at_predicate({"long_value": "1e400"})},
        {"filter": _created_at_predicate({"int_value": 1.5})},
        {"filter": _created_at_predicate({"int_value": True})},
        {"filter": '{"predicates":[{"key":"name","operation":"EQUALS","string_value":"\\ud800"}]}'},
        {"filter": "[" * 5_000 + "]" * 5_000},
        # tampered page tokens: each part is checked before it reaches SQL
        {"page_token": _token({"after": [{"a": 1}, "x"]})},
        {"page_token": _token({"after": [10**30, "x"]})},
        {"page_token": _token({"after": ["not-a-time", "x"]})},
        {"page_token": _token({"sort": ["name"]})},
        {"page_token": _token({"desc": "yes"})},
        {"page_token": _token({"scope": {"colour": "x"}})},
        {"page_token": _token({"filter": 7})},
        {"page_token": _token({"kind": "runs"})},
    ],
)
def test_bad_list_arguments_are_kfp_400s(held_server, params) -> None:
    for prefix in ("", "/pipeline"):
        response = requests.get(f"{held_server.url}{prefix}/apis/v2beta1/pipelines", params=params)
        assert _kfp_error(response, 400)["code"] == 3


def test_huge_page_size_is_capped_at_200(fresh) -> None:
    for i in range(205):
        fresh.services.pipelines.create_pipeline({"name": f"many-{i}"})
    response = requests.get(f"{fresh.url}/apis/v2beta1/pipelines", params={"page_size": 10**9})
    body = response.json()
    assert len(body["pipelines"]) == 200 and body["total_size"] == 205 and body["next_page_token"]


def test_bad_uploads_store_nothing(held_server) -> None:
    before = requests.get(f"{held_server.url}/apis/v2beta1/pipelines").json()["total_size"]
    cases = [
        (b"", "empty"),
        (b"hello: world\n", "unknown fields"),
        (b"apiVersion: v1\nkind: Workflow\n", "neither a KFP v2 pipeline spec nor an Argo"),
        (b"{broken", "not valid YAML"),
        # 1 KB of anchors and aliases that would expand to 10^8 nodes (and as many bytes)
        (_ALIAS_BOMB, "anchors and aliases"),
        (b"pipelineInfo: {name: p}\nroot: &r {dag: {tasks: *r}}\n", "recursive alias"),
        (b"pipelineInfo: {name: p}\nroot: {dag: !!binary aGVsbG8=}\n", "not JSON"),
        (b'pipelineInfo: {name: "\\ud800"}\nroot: {dag: {}}\n', "not valid YAML"),
        (b"pipelineInfo: {name: p}\nroot: {dag: {}, x: .nan}\n", "not JSON"),
    ]
    for data, words in cases:
        body = _upload_error(_upload(held_server, f"bad-{uuid.uuid4().hex[:6]}", data), 400)
        assert words in body["error_message"]
    missing_field = requests.post(
        f"{held_server.url}/apis/v2beta1/pipelines/upload",
        params={"name": "no-file"},
        files={"file": ("p.yaml", yaml.safe_dump(SPEC))},
    )
    assert "uploadfile" in _upload_error(missing_field, 400)["error_message"]
    not_multipart = requests.post(
        f"{held_server.url}/apis/v2beta1/pipelines/upload", data="x", params={"name": "raw"}
    )
    _upload_error(not_multipart, 400)
    after = requests.get(f"{held_server.url}/apis/v2beta1/pipelines").json()["total_size"]
    assert after == before


def test_names_duplicate_odd_and_invalid(held_server) -> None:
    client = client_for(held_server)
    data = yaml.safe_dump(SPEC).encode()
    odd = f"ünï cødé / with spaces & ?query=#frag {uuid.uuid4().hex[:4]}"
    response = _upload(held_server, odd, data)
    assert response.status_code == 200, response.text
    assert client.get_pipeline_id(odd) == response.json()["pipeline_id"]
    by_name = requests.get(
        f"{held_server.url}/apis/v2beta1/pipelines/names/{requests.utils.quote(odd, safe='')}"
    )
    assert by_name.status_code == 200 and by_name.json()["name"] == odd

    body = _upload_error(_upload(held_server, odd, data), 409)
    assert "already exists" in body["error_message"]
    # KFP checks a pipeline's name for length only (validation/length.go: 128 bytes)
    for accepted in (f"   {uuid.uuid4().hex[:4]}", f"tab\there {uuid.uuid4().hex[:4]}"):
        assert _upload(held_server, accepted, data).status_code == 200
    too_long = _upload_error(_upload(held_server, "é" * 65, data), 400)  # 130 bytes
    assert "cannot exceed 128" in too_long["error_message"]


def test_unknown_ids_routes_and_methods(held_server) -> None:
    base = f"{held_server.url}/apis/v2beta1"
    unknown = str(uuid.uuid4())
    for url in (
        f"{base}/pipelines/{unknown}",
        f"{base}/pipelines/{unknown}/versions",
        f"{base}/pipelines/{unknown}/versions/{unknown}",
        f"{base}/pipelines/names/nothing-here",
        f"{base}/nothing",
        f"{held_server.url}/apis/nothing",  # (/ itself is the web UI's page)
    ):
        assert _kfp_error(requests.get(url), 404)["code"] == 5
    _kfp_error(requests.delete(f"{base}/pipelines/{unknown}"), 404)
    _kfp_error(requests.put(f"{base}/pipelines"), 501)  # grpc-gateway: Unimplemented
    upload = requests.post(
        f"{base}/pipelines/upload_version",
        params={"pipelineid": unknown, "name": "v"},
        files={"uploadfile": ("p.yaml", yaml.safe_dump(SPEC))},
    )
    assert unknown in _upload_error(upload, 400)["error_message"]  # KFP: 400, not 404
    no_id = requests.post(
        f"{base}/pipelines/upload_version", files={"uploadfile": ("p.yaml", yaml.safe_dump(SPEC))}
    )
    assert "pipelineid" in _upload_error(no_id, 400)["error_message"]
    not_json = requests.post(
        f"{base}/pipelines", data="{{", headers={"Content-Type": "application/json"}
    )
    _kfp_error(not_json, 400)
    wrong_type = requests.post(f"{base}/pipelines", json={"display_name": 5})
    _kfp_error(wrong_type, 400)


def test_update_pipeline_and_version_mutable_fields(held_server) -> None:
    base = f"{held_server.url}/apis/v2beta1"
    created = upload_spec(held_server, f"upd-{uuid.uuid4().hex[:6]}")
    pid = created["pipeline_id"]
    patched = requests.patch(
        f"{base}/pipelines/{pid}", json={"display_name": "Shown", "tags": {"team": "ran"}}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["display_name"] == "Shown" and patched.json()["tags"] == {"team": "ran"}
    assert patched.json()["name"] == created["name"]
    vid = requests.get(f"{base}/pipelines/{pid}/versions").json()["pipeline_versions"][0][
        "pipeline_version_id"
    ]
    version = requests.patch(f"{base}/pipelines/{pid}/versions/{vid}", json={"display_name": "V"})
    assert version.status_code == 200 and version.json()["display_name"] == "V"
    _kfp_error(requests.patch(f"{base}/pipelines/{pid}", json={}), 400)
    _kfp_error(requests.patch(f"{base}/pipelines/{pid}", json={"tags": {"a": 1}}), 400)
    _kfp_error(requests.patch(f"{base}/pipelines/{uuid.uuid4()}", json={"display_name": "x"}), 404)


def test_concurrent_uploads_all_land(fresh) -> None:
    from concurrent.futures import ThreadPoolExecutor

    data = yaml.safe_dump(SPEC).encode()
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(
            pool.map(
                lambda i: _upload(fresh, f"c{i}", data).status_code,
                range(40),
            )
        )
    assert statuses == [200] * 40
    listed = requests.get(f"{fresh.url}/apis/v2beta1/pipelines").json()
    assert listed["total_size"] == 40
