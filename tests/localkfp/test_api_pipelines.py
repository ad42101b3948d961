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

from tests.localkfp.conftest import SPEC, client_for

pytestmark = pytest.mark.e2e  # real servers and processes on free ports


def _namespace() -> str:
    return f"ns-{uuid.uuid4().hex[:8]}"


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


def _kfp_error(response: requests.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "code", "message", "details"}
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


def test_create_pipeline_then_versions_by_json(held_server) -> None:
    base = f"{held_server.url}/pipeline/apis/v2beta1"
    both = requests.post(
        f"{base}/pipelines/create",
        json={
            "pipeline": {"display_name": "made by json", "description": "d"},
            "pipeline_version": {"display_name": "first", "pipeline_spec": SPEC},
        },
    )
    assert both.status_code == 200, both.text
    pipeline_id = both.json()["pipeline_id"]
    versions = requests.get(f"{base}/pipelines/{pipeline_id}/versions").json()
    assert [v["display_name"] for v in versions["pipeline_versions"]] == ["first"]
    assert versions["pipeline_versions"][0]["pipeline_spec"] == SPEC

    bare = requests.post(f"{base}/pipelines", json={"display_name": "no versions yet"})
    assert bare.status_code == 200
    bare_id = bare.json()["pipeline_id"]
    added = requests.post(
        f"{base}/pipelines/{bare_id}/versions",
        json={"display_name": "v1", "pipeline_spec": {"pipeline_spec": SPEC}},
    )
    assert added.status_code == 200, added.text
    assert added.json()["pipeline_spec"] == SPEC
    dup = requests.post(
        f"{base}/pipelines/{bare_id}/versions", json={"display_name": "v1", "pipeline_spec": SPEC}
    )
    assert _kfp_error(dup, 409)["code"] == 6
    assert requests.get(f"{base}/pipelines/{bare_id}/versions").json()["total_size"] == 1


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
    assert zipped.json()["name"].startswith("z")  # named after the file without extension
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        data = json.dumps(SPEC).encode()  # a JSON IR, inside a .tar.gz
        info = tarfile.TarInfo("dir/pipeline.json")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    stem = f"t{uuid.uuid4().hex[:6]}"
    tarred = _upload(held_server, "", buffer.getvalue(), filename=f"{stem}.tar.gz")
    assert tarred.status_code == 200, tarred.text
    assert tarred.json()["name"] == stem
    versions = requests.get(
        f"{held_server.url}/apis/v2beta1/pipelines/{tarred.json()['pipeline_id']}/versions"
    ).json()
    assert versions["pipeline_versions"][0]["pipeline_spec"] == SPEC


def test_pagination_walks_every_page_without_loss_or_repeat(held_server) -> None:
    client = client_for(held_server)
    namespace = _namespace()
    empty = client.list_pipelines(namespace=namespace)
    assert empty.pipelines is None and empty.total_size == 0 and not empty.next_page_token

    names = [f"p{i:02d}-{uuid.uuid4().hex[:4]}" for i in range(23)]
    for name in names:
        response = _upload(held_server, name, yaml.safe_dump(SPEC).encode(), namespace=namespace)
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
            pipelines.create_version(pipeline_id, {"name": f"v{n}", "pipeline_spec": SPEC})
    url = f"{held_server.url}/apis/v2beta1/pipelines/{{}}/versions"
    token = requests.get(url.format(first), params={"page_size": 1}).json()["next_page_token"]
    rest = requests.get(url.format(first), params={"page_token": token}).json()
    assert {v["pipeline_id"] for v in rest["pipeline_versions"]} == {first}
    assert len(rest["pipeline_versions"]) == 2
    body = _kfp_error(requests.get(url.format(second), params={"page_token": token}), 400)
    assert "another pipeline_id" in body["message"]


def test_filters_on_pipelines(held_server) -> None:
    client = client_for(held_server)
    namespace = _namespace()
    for name in ("alpha-one", "alpha-two", "beta", "50%_off"):
        _upload(held_server, name, yaml.safe_dump(SPEC).encode(), namespace=namespace)

    def names(predicates: list[dict]) -> list[str]:
        page = client.list_pipelines(
            namespace=namespace, filter=json.dumps({"predicates": predicates}), sort_by="name"
        )
        return [p.name for p in page.pipelines or []]

    assert names([{"key": "name", "operation": "IS_SUBSTRING", "string_value": "alpha"}]) == [
        "alpha-one",
        "alpha-two",
    ]
    assert names([{"key": "name", "operation": "IS_SUBSTRING", "string_value": "%_"}]) == [
        "50%_off"
    ]
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


def test_huge_page_size_is_capped_at_200(held_server) -> None:
    namespace = _namespace()
    for i in range(205):
        held_server.services.pipelines.create_pipeline(
            {"name": f"many-{i}", "namespace": namespace}
        )
    response = requests.get(
        f"{held_server.url}/apis/v2beta1/pipelines",
        params={"namespace": namespace, "page_size": 10**9},
    )
    body = response.json()
    assert len(body["pipelines"]) == 200 and body["total_size"] == 205 and body["next_page_token"]


def test_bad_uploads_store_nothing(held_server) -> None:
    before = requests.get(f"{held_server.url}/apis/v2beta1/pipelines").json()["total_size"]
    cases = [
        (b"", "empty"),
        (b"hello: world\n", "unknown fields"),
        (b"apiVersion: v1\nkind: Workflow\n", "not a KFP v2"),
        (b"{broken", "not valid YAML"),
        # 1 KB of anchors and aliases that would expand to 10^8 nodes (and as many bytes)
        (_ALIAS_BOMB, "anchors and aliases"),
        (b"pipelineInfo: {name: p}\nroot: &r {dag: {tasks: *r}}\n", "recursive alias"),
        (b"pipelineInfo: {name: p}\nroot: {dag: !!binary aGVsbG8=}\n", "not JSON"),
        (b'pipelineInfo: {name: "\\ud800"}\nroot: {dag: {}}\n', "not valid YAML"),
        (b"pipelineInfo: {name: p}\nroot: {dag: {}, x: .nan}\n", "not JSON"),
    ]
    for data, words in cases:
        body = _kfp_error(_upload(held_server, f"bad-{uuid.uuid4().hex[:6]}", data), 400)
        assert words in body["message"]
    missing_field = requests.post(
        f"{held_server.url}/apis/v2beta1/pipelines/upload",
        params={"name": "no-file"},
        files={"file": ("p.yaml", yaml.safe_dump(SPEC))},
    )
    assert "uploadfile" in _kfp_error(missing_field, 400)["message"]
    not_multipart = requests.post(
        f"{held_server.url}/apis/v2beta1/pipelines/upload", data="x", params={"name": "raw"}
    )
    _kfp_error(not_multipart, 400)
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

    body = _kfp_error(_upload(held_server, odd, data), 409)
    assert body["code"] == 6 and "already exists" in body["message"]
    assert _kfp_error(_upload(held_server, "x" * 300, data), 400)
    assert _kfp_error(_upload(held_server, "   ", data, filename="   .yaml"), 400)
    assert _kfp_error(_upload(held_server, "tab\there", data), 400)


def test_unknown_ids_routes_and_methods(held_server) -> None:
    base = f"{held_server.url}/apis/v2beta1"
    unknown = str(uuid.uuid4())
    for url in (
        f"{base}/pipelines/{unknown}",
        f"{base}/pipelines/{unknown}/versions",
        f"{base}/pipelines/{unknown}/versions/{unknown}",
        f"{base}/pipelines/names/nothing-here",
        f"{base}/nothing",
        f"{held_server.url}/",
    ):
        assert _kfp_error(requests.get(url), 404)["code"] == 5
    _kfp_error(requests.delete(f"{base}/pipelines/{unknown}"), 404)
    _kfp_error(requests.put(f"{base}/pipelines"), 405)
    upload = requests.post(
        f"{base}/pipelines/upload_version",
        params={"pipelineid": unknown, "name": "v"},
        files={"uploadfile": ("p.yaml", yaml.safe_dump(SPEC))},
    )
    _kfp_error(upload, 404)
    no_id = requests.post(
        f"{base}/pipelines/upload_version", files={"uploadfile": ("p.yaml", yaml.safe_dump(SPEC))}
    )
    assert "pipelineid" in _kfp_error(no_id, 400)["message"]
    not_json = requests.post(
        f"{base}/pipelines", data="{{", headers={"Content-Type": "application/json"}
    )
    _kfp_error(not_json, 400)
    wrong_type = requests.post(f"{base}/pipelines", json={"display_name": 5})
    _kfp_error(wrong_type, 400)


def test_update_pipeline_and_version_mutable_fields(held_server) -> None:
    base = f"{held_server.url}/apis/v2beta1"
    created = requests.post(
        f"{base}/pipelines/create",
        json={
            "pipeline": {"name": f"upd-{uuid.uuid4().hex[:6]}"},
            "pipeline_version": {"name": "v1", "pipeline_spec": SPEC},
        },
    ).json()
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


def test_concurrent_uploads_all_land(held_server) -> None:
    from concurrent.futures import ThreadPoolExecutor

    namespace = _namespace()
    data = yaml.safe_dump(SPEC).encode()
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(
            pool.map(
                lambda i: _upload(held_server, f"c{i}", data, namespace=namespace).status_code,
                range(40),
            )
        )
    assert statuses == [200] * 40
    listed = requests.get(
        f"{held_server.url}/apis/v2beta1/pipelines", params={"namespace": namespace}
    ).json()
    assert listed["total_size"] == 40
