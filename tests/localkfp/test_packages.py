"""Unit tests of pipeline package parsing: YAML/JSON IR, platform specs, archives, bad input."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile

import pytest
import yaml

from kfadapter.localkfp.apierrors import ApiError
from kfadapter.localkfp.packages import parse_package

SPEC = {
    "pipelineInfo": {"name": "p"},
    "root": {"dag": {"tasks": {}}},
    "schemaVersion": "2.1.0",
    "sdkVersion": "kfp-2.17.0",
}
PLATFORM = {"platforms": {"kubernetes": {"deploymentSpec": {"executors": {}}}}}


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_yaml_json_and_archives_give_the_spec(compiled) -> None:
    """As KFP's ReadPipelineFile (backend/src/apiserver/server/util.go): *.yaml/*.yml/*.json
    by name; a .zip or .tar.gz by its first bytes, whose pipeline.yaml (else first member,
    which must be YAML) is the pipeline."""
    text = compiled["add_subtract_multiply"].read_bytes()
    spec = parse_package(text, "p.yaml")
    assert spec["pipelineInfo"]["name"] == "add-subtract-multiply"
    assert parse_package(text, "p.yml") == spec
    assert parse_package(json.dumps(spec).encode(), "p.json") == spec
    assert parse_package(_zip({"README.md": b"hi", "pipeline.yaml": text}), "file") == spec
    assert parse_package(_zip({"any.yml": text, "README.md": b"hi"}), "p.zip") == spec
    assert parse_package(_tar({"first.yaml": text}), "p.tar.gz") == spec
    assert parse_package(_tar({"README.md": b"hi", "pipeline.yaml": text}), "x") == spec


def test_platform_spec_document_is_kept_apart() -> None:
    text = yaml.safe_dump(SPEC) + "---\n" + yaml.safe_dump(PLATFORM)
    assert parse_package(text.encode(), "p.yaml") == {
        "pipeline_spec": SPEC,
        "platform_spec": PLATFORM,
    }


def test_yaml_anchors_and_dates_read_as_kfp_reads_them() -> None:
    """Anchors used a few times are fine; an unquoted date stays text (KFP reads YAML as JSON)."""
    text = (
        b"pipelineInfo: &info {name: p, description: 2024-01-02}\n"
        b"root: {dag: {tasks: {}}, x: *info, y: *info}\nschemaVersion: 2.1.0\n"
    )
    spec = parse_package(text, "p.yaml")
    assert spec["pipelineInfo"] == {"name": "p", "description": "2024-01-02"}
    assert spec["root"]["x"] == spec["root"]["y"] == spec["pipelineInfo"]
    assert json.loads(json.dumps(spec)) == spec


_V = b"schemaVersion: 2.1.0\n"


@pytest.mark.parametrize(
    ("data", "filename", "words"),
    [
        (b"", "p.yaml", "empty"),
        (b"   \n", "p.yaml", "empty"),
        (yaml.safe_dump(SPEC).encode(), "file", "unexpected pipeline file format"),
        (yaml.safe_dump(SPEC).encode(), "p.YAML", "unexpected pipeline file format"),
        (yaml.safe_dump(SPEC).encode(), "p.txt", "unexpected pipeline file format"),
        (b"key: [unclosed", "p.yaml", "not valid YAML"),
        (b"- a\n- b\n", "p.yaml", "expected a mapping"),
        (b"just text", "p.yaml", "expected a mapping"),
        (b"apiVersion: v1\nkind: ConfigMap\n", "p.yaml", "Kubernetes manifest"),
        (b"apiVersion: argoproj.io/v1\nkind: Workflow\n", "p.yaml", "Unsupported argo version"),
        (b"name: x\nimplementation: {}\n", "p.yaml", "unknown fields"),
        (b"pipelineInfo: {name: p}\nroot: {dag: {}}\n", "p.yaml", "schema version 2.1.0"),
        (b"pipelineInfo: {name: p}\nroot: {dag: {}}\nschemaVersion: 2.0.0\n", "p.yaml", "2.0.0"),
        (_V + b"pipelineInfo: {}\nroot: {dag: {}}\n", "p.yaml", "pipelineInfo.name"),
        (_V + b"pipelineInfo: {name: p}\n", "p.yaml", "root"),
        (yaml.safe_dump(SPEC).encode() + b"---\nfoo: 1\n", "p.yaml", "platform spec"),
        (b"PK\x03\x04broken", "p.zip", ".zip"),
        (b"\x1f\x8b\x08broken", "p.tar.gz", ".tar.gz"),
        (_zip({"notes.txt": b"x", "a.yaml": b"y"}), "p.zip", "expecting a pipeline.yaml"),
        (_zip({"p.json": json.dumps(SPEC).encode()}), "p.zip", "expecting a pipeline.yaml"),
        (_zip({}), "p.zip", "empty"),
        (_tar({"notes.txt": b"x"}), "p.tar.gz", "expecting a pipeline.yaml"),
        (b"\xff\xfe\x00binary", "p.yaml", "UTF-8"),
        (_V + b"pipelineInfo: {name: p}\nroot: {dag: !!set {a, b}}\n", "p.yaml", "not JSON"),
        (b"pipelineInfo: {name: p}\nroot: " + b"[" * 3000 + b"]" * 3000, "p.yaml", "too deeply"),
    ],
)
def test_bad_packages_are_bad_requests_saying_why(data: bytes, filename: str, words: str) -> None:
    """KFP refuses these with 400 (server/util.go ReadPipelineFile, template/v2_template.go
    NewV2SpecTemplate: schemaVersion must be 2.1.0)."""
    with pytest.raises(ApiError) as error:
        parse_package(data, filename)
    assert error.value.status == 400
    assert words in error.value.message
