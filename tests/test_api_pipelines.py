"""Pipelines and versions end to end: the adapter over HTTP against the embedded KFP server."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import yaml

from tests.adapter_support import tm_upload, unique

pytestmark = pytest.mark.e2e  # real servers and processes on free ports

JSON = "application/json"


def _json(answer, status: int = 200):
    assert answer.status_code == status, answer.text
    assert answer.headers["Content-Type"] == JSON
    return answer.json()


def _upload_dirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("kfadapter-upload-*")}


def test_every_pipeline_is_listed_not_one_page(adapter, compiled):
    names = {unique("many") for _ in range(26)}
    for name in names:
        assert tm_upload(adapter, name, compiled["add_subtract_multiply"]).status_code == 200
    body = _json(adapter.get("/pipelines"))
    listed = {p["display_name"] for p in body["pipelines"]}
    assert names <= listed
    assert body["total_size"] == len(body["pipelines"]) >= 26
    assert body["next_page_token"] == ""
    first = body["pipelines"][0]
    assert {"pipeline_id", "display_name", "description", "created_at"} <= set(first)
    assert first["created_at"].endswith("Z") or "+" in first["created_at"]


def test_pages_pass_through_when_asked_for(adapter, uploaded):
    seen, token, pages = [], None, 0
    while True:
        query = {"page_size": 3} | ({"page_token": token} if token else {})
        body = _json(adapter.get("/pipelines", params=query))
        assert len(body["pipelines"]) <= 3
        seen += [p["pipeline_id"] for p in body["pipelines"]]
        pages += 1
        token = body["next_page_token"]
        if not token:
            break
    assert len(seen) == len(set(seen)) == body["total_size"]
    assert pages >= 2
    filtered = _json(
        adapter.get(
            "/pipelines",
            params={
                "filter": '{"predicates": [{"key": "display_name", "operation": "EQUALS", '
                f'"string_value": "{uploaded["qoe_training"]}"}}]}}'
            },
        )
    )
    assert [p["display_name"] for p in filtered["pipelines"]] == [uploaded["qoe_training"]]
    for order, reverse in (("display_name", False), ("display_name desc", True)):
        page = _json(adapter.get("/pipelines", params={"sort_by": order, "page_size": 50}))
        names = [p["display_name"] for p in page["pipelines"]]
        assert len(names) > 1 and names == sorted(names, reverse=reverse), order


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ({"page_size": "ten"}, "page_size must be a whole number"),
        ({"page_size": "0"}, "between 1 and"),
        ({"page_size": "100000"}, "between 1 and"),
        ({"filter": "{not json"}, "filter must be KFP's filter JSON"),
        ({"filter": "[" * 3000 + "]" * 3000}, "nests more than 100 levels"),
        ({"filter": "[" * 150 + "]" * 150}, "nests more than 100 levels"),
        ({"page_token": "garbage-token"}, ""),
        ({"sort_by": "no_such_field"}, ""),
    ],
)
def test_bad_page_parameters_are_400(adapter, query, fragment):
    body = _json(adapter.get("/pipelines", params=query), 400)
    assert body["status"] == 400
    assert fragment in body["message"]


def test_pipeline_id_by_name(adapter, uploaded):
    name = uploaded["qoe_training"]
    body = _json(adapter.get(f"/pipelineIds/{name}"))
    assert body["name"] == name
    assert body["id"]
    missing = _json(adapter.get("/pipelineIds/no-such-pipeline"), 404)
    assert missing == {"status": 404, "message": "pipeline 'no-such-pipeline' not found"}


def test_upload_new_pipeline_then_numbered_versions(adapter, compiled):
    name = unique("versions")
    path = compiled["qoe_training"]
    first = _json(tm_upload(adapter, name, path, description="first"))
    assert first["name"] == name and first["version_name"] == name
    second = _json(tm_upload(adapter, name, path))
    third = _json(tm_upload(adapter, name, path))
    assert (second["version_name"], third["version_name"]) == ("2", "3")
    assert second["id"] == third["id"] == first["id"]
    with open(path, "rb") as handle:
        named = adapter.post(
            f"/pipelineIds/{name}",
            files={"file": ("file", handle)},
            data={"version_name": "v-release"},
        )
    assert _json(named)["version_name"] == "v-release"
    with open(path, "rb") as handle:
        again = adapter.post(
            f"/pipelineIds/{name}",
            files={"file": ("file", handle)},
            data={"version_name": "v-release"},
        )
    assert "already has a version named 'v-release'" in _json(again, 409)["message"]
    versions = _json(adapter.get(f"/pipelines/{name}/versions"))
    assert versions["versions_list"] == [name, "2", "3", "v-release"]
    assert [v["display_name"] for v in versions["versions"]] == versions["versions_list"]
    # A deleted version's number is free again.
    deleted = _json(adapter.delete(f"/pipelines/{name}/versions/2"))
    assert deleted["status"] == "Deleted"
    assert _json(tm_upload(adapter, name, path))["version_name"] == "2"


def test_pipeline_details_read_arguments_from_the_newest_version(adapter, compiled):
    name = unique("details")
    first = _json(tm_upload(adapter, name, compiled["qoe_training"], description="qoe"))
    _json(tm_upload(adapter, name, compiled["add_subtract_multiply"]))
    body = _json(adapter.get(f"/pipelines/{first['id']}"))
    assert body["id"] == first["id"] and body["name"] == name
    assert body["description"] == "qoe"
    assert body["arguments"] == {"a": 5.0, "b": 3.0, "expected": 16.0}
    assert {p["name"]: p["type"] for p in body["parameters"]} == {
        "a": "NUMBER_DOUBLE",
        "b": "NUMBER_DOUBLE",
        "expected": "NUMBER_DOUBLE",
    }
    assert body["versions_count"] == 2
    assert body["default_version"]["name"] == "2"
    assert body["created_at"]
    assert "namespace" in body


def test_pipeline_details_read_the_pipeline_once(adapter, uploaded):
    name = uploaded["qoe_training"]
    pipeline_id = _json(adapter.get(f"/pipelineIds/{name}"))["id"]
    assert adapter.kfp_calls("GET", f"/pipelines/{pipeline_id}") == [
        f"GET /pipelines/{pipeline_id}",
        f"GET /pipelines/{pipeline_id}/versions",
    ]
    assert adapter.kfp_calls("GET", f"/pipelines/{name}") == [
        "GET /pipelines",
        f"GET /pipelines/{pipeline_id}/versions",
    ]
    assert _json(adapter.get(f"/pipelines/{name}"))["id"] == pipeline_id


def test_one_version_with_parameters_and_tasks(adapter, uploaded):
    name = uploaded["add_subtract_multiply"]
    versions = _json(adapter.get(f"/pipelines/{name}/versions"))["versions"]
    version_id = versions[0]["pipeline_version_id"]
    pipeline_id = versions[0]["pipeline_id"]
    body = _json(adapter.get(f"/pipelines/{pipeline_id}/versions/{version_id}"))
    assert body["pipeline_version_id"] == version_id
    assert {p["name"]: p["default"] for p in body["parameters"]} == {
        "a": 5.0,
        "b": 3.0,
        "expected": 16.0,
    }
    tasks = {t["name"]: t for t in body["tasks"]}
    assert sorted(tasks["multiply"]["dependencies"]) == ["add", "subtract"]
    by_name = _json(adapter.get(f"/pipelines/{name}/versions/{versions[0]['display_name']}"))
    assert by_name["pipeline_version_id"] == version_id
    _json(adapter.get(f"/pipelines/{pipeline_id}/versions/no-such-version"), 404)


def test_delete_pipeline_with_its_versions(adapter, compiled):
    name = unique("doomed")
    pipeline_id = _json(tm_upload(adapter, name, compiled["sleeps"]))["id"]
    _json(tm_upload(adapter, name, compiled["sleeps"]))
    assert _json(adapter.delete(f"/pipelines/{pipeline_id}")) == {
        "id": pipeline_id,
        "name": name,
        "status": "Deleted",
    }
    assert _json(adapter.get(f"/pipelines/{pipeline_id}"), 404)["status"] == 404
    _json(adapter.get(f"/pipelineIds/{name}"), 404)
    _json(adapter.delete(f"/pipelines/{pipeline_id}"), 404)


@pytest.mark.parametrize(
    "name",
    ["with spaces", "ünïcødé-名前", "dots.and_underscores", "quote'mark", "percent%sign"],
)
def test_odd_but_valid_names_round_trip(adapter, compiled, name):
    name = f"{name}-{unique('x')}"
    uploaded = _json(tm_upload(adapter, name, compiled["always_fails"]))
    assert uploaded["name"] == name
    assert _json(adapter.get(f"/pipelineIds/{name}"))["id"] == uploaded["id"]
    assert _json(adapter.get(f"/pipelines/{name}/versions"))["versions_list"] == [name]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/pipelineIds/" + "x" * 600, 400),
        ("/pipelineIds/%2E%2E", 404),
        ("/pipelineIds/a%00b", 400),
        ("/pipelines/" + "y" * 600, 400),
        ("/pipelines/%2E%2E/versions", 404),
        ("/pipelines/no%20such/versions", 404),
        ("/pipelines/00000000-0000-0000-0000-000000000000", 404),
    ],
)
def test_odd_names_in_paths_get_json_4xx(adapter, path, status):
    body = _json(adapter.get(path), status)
    assert body["status"] == status and body["message"]


def test_uploads_with_bad_content_are_400_and_store_nothing(adapter):
    name = unique("bad-upload")
    cases = {
        "empty": b"",
        "blank": b"   \n",
        "not a pipeline": b"a: 1\nb: [2]\n",
        "a list": b"- 1\n- 2\n",
        "broken yaml": b"key: [unclosed\n",
        "binary": bytes(range(256)) * 4,
        "deeply nested list": b"[" * 100_000,
        "deeply nested mapping": b"pipelineInfo: " + b"{a: " * 20_000,
    }
    for label, content in cases.items():
        answer = adapter.post(f"/pipelineIds/{name}", files={"file": ("file", content)})
        body = _json(answer, 400)
        assert body["message"], label
    _json(adapter.get(f"/pipelineIds/{name}"), 404)


def test_upload_requests_without_the_file_part_are_400(adapter, compiled):
    name = unique("no-file")
    no_part = adapter.post(f"/pipelineIds/{name}", files={"other": ("file", b"x")})
    assert "no file part named 'file'" in _json(no_part, 400)["message"]
    not_multipart = adapter.post(f"/pipelineIds/{name}", data=b"raw", headers={"X": "y"})
    assert "multipart/form-data" in _json(not_multipart, 400)["message"]
    json_body = adapter.post(f"/pipelineIds/{name}", json={"file": "x"})
    _json(json_body, 400)


def test_oversized_upload_is_413_json(adapter):
    big = b"# padding\n" * (adapter.settings.max_upload_bytes // 10 + 100)
    answer = adapter.post(f"/pipelineIds/{unique('big')}", files={"file": ("file", big)})
    body = _json(answer, 413)
    assert str(adapter.settings.max_upload_bytes) in body["message"]


def test_hostile_file_names_are_ignored_and_nothing_is_left_behind(adapter, compiled, tmp_path):
    before = _upload_dirs()
    target = tmp_path / "victim.yaml"
    name = unique("hostile")
    content = compiled["qoe_training"].read_bytes()
    for filename in ("../../../../tmp/evil.yaml", str(target), "a\x00b", "..", "/"):
        answer = adapter.post(f"/pipelineIds/{name}", files={"file": (filename, content)})
        assert answer.status_code == 200, answer.text
    assert not target.exists()
    assert not Path("/tmp/evil.yaml").exists()
    assert _upload_dirs() == before
    versions = _json(adapter.get(f"/pipelines/{name}/versions"))["versions_list"]
    assert versions == [name, "2", "3", "4", "5"]


def test_json_and_zip_packages_upload(adapter, compiled, tmp_path):
    import json
    import zipfile

    spec = yaml.safe_load(compiled["add_subtract_multiply"].read_text())
    as_json = json.dumps(spec).encode()
    answer = adapter.post(f"/pipelineIds/{unique('json')}", files={"file": ("file", as_json)})
    assert _json(answer)["version_id"]
    archive = tmp_path / "p.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.write(compiled["add_subtract_multiply"], "pipeline.yaml")
    answer = adapter.post(
        f"/pipelineIds/{unique('zip')}", files={"file": ("file", archive.read_bytes())}
    )
    assert _json(answer)["version_id"]


def test_pipeline_runs_unknown_pipeline_is_404(adapter):
    body = _json(adapter.get("/pipelines/no-such-pipeline/runs"), 404)
    assert "no-such-pipeline" in body["message"]


def test_version_name_for_a_new_pipeline_is_400_and_creates_nothing(adapter, compiled):
    name = unique("fresh")
    with open(compiled["sleeps"], "rb") as handle:
        answer = adapter.post(
            f"/pipelineIds/{name}",
            files={"file": ("file", handle)},
            data={"version_name": "v1"},
        )
    assert "does not exist yet" in _json(answer, 400)["message"]
    _json(adapter.get(f"/pipelineIds/{name}"), 404)


@pytest.mark.parametrize(
    ("description", "fragment"),
    [
        ("d" * 1001, "description is longer than 1000 characters (1001)"),
        ("bad\x00byte", "description contains a NUL character"),
    ],
)
def test_bad_descriptions_are_400_and_store_nothing(adapter, compiled, description, fragment):
    # KFP takes the description in its upload URL's query string: a long one was a 502 (414).
    name = unique("described")
    answer = tm_upload(adapter, name, compiled["sleeps"], description=description)
    assert fragment in _json(answer, 400)["message"]
    _json(adapter.get(f"/pipelineIds/{name}"), 404)


def test_a_long_multiline_description_within_the_limit_is_kept(adapter, compiled):
    description = "line one\nline two\t" + "ü" * 970
    uploaded = _json(tm_upload(adapter, unique("described"), compiled["sleeps"], description))
    assert _json(adapter.get(f"/pipelines/{uploaded['id']}"))["description"] == description


def test_a_form_with_too_many_parts_is_413_saying_so(adapter, compiled):
    parts = [("file", ("file", compiled["sleeps"].read_bytes()))]
    parts += [(f"extra{i}", (None, "x")) for i in range(1001)]
    answer = adapter.post(f"/pipelineIds/{unique('parts')}", files=parts)
    body = _json(answer, 413)
    assert "more than 1000 parts" in body["message"]
    assert "larger than the limit" not in body["message"]


def test_tm_uploads_kfp_would_refuse_are_json_400s_that_say_why(adapter, compiled, tmp_path):
    """The TM's upload (part `file`, file name `file`) reaches KFP as pipeline.yaml, which
    KFP's ReadPipelineFile needs (backend/src/apiserver/server/util.go). A name longer than
    KFP stores (validation/length.go: 127 bytes for the first version, which takes the
    pipeline's name) and a spec KFP refuses (template/v2_template.go: schemaVersion 2.1.0;
    common/utils.go ValidatePipelineName: pipelineInfo.name) are 400s with KFP's reason."""
    uploaded = _json(tm_upload(adapter, unique("plain"), compiled["always_fails"]))
    assert uploaded["id"]
    long_name = "é" * 64  # 128 bytes
    body = _json(tm_upload(adapter, long_name, compiled["always_fails"]), 400)
    assert "127 bytes" in body["message"]
    spec = yaml.safe_load(compiled["always_fails"].read_text())
    for change, words in (
        ({"schemaVersion": "2.0.0"}, "2.1.0"),
        ({"pipelineInfo": {"name": "Upper_Case"}}, "lowercase"),
    ):
        path = tmp_path / "changed.yaml"
        path.write_text(yaml.safe_dump({**spec, **change}))
        name = unique("refused")
        body = _json(tm_upload(adapter, name, path), 400)
        assert words in body["message"], body
        _json(adapter.get(f"/pipelineIds/{name}"), 404)
    _json(adapter.get(f"/pipelineIds/{long_name}"), 404)
