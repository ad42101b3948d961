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
    text = compiled["add_subtract_multiply"].read_bytes()
    spec = parse_package(text)
    assert spec["pipelineInfo"]["name"] == "add-subtract-multiply"
    assert parse_package(json.dumps(spec).encode()) == spec
    assert parse_package(_zip({"pipeline.yaml": text, "README.md": b"hi"})) == spec
    assert parse_package(_tar({"dir/anything.yaml": text})) == spec


def test_platform_spec_document_is_kept_apart() -> None:
    text = yaml.safe_dump(SPEC) + "---\n" + yaml.safe_dump(PLATFORM)
    assert parse_package(text.encode()) == {"pipeline_spec": SPEC, "platform_spec": PLATFORM}


def test_yaml_anchors_and_dates_read_as_kfp_reads_them() -> None:
    """Anchors used a few times are fine; an unquoted date stays text (KFP reads YAML as JSON)."""
    text = (
        b"pipelineInfo: &info {name: p, description: 2024-01-02}\n"
        b"root: {dag: {tasks: {}}, x: *info, y: *info}\n"
    )
    spec = parse_package(text)
    assert spec["pipelineInfo"] == {"name": "p", "description": "2024-01-02"}
    assert spec["root"]["x"] == spec["root"]["y"] == spec["pipelineInfo"]
    assert json.loads(json.dumps(spec)) == spec


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"key: [unclosed", "not valid YAML"),
        (b"- a\n- b\n", "expected a mapping"),
        (b"just text", "expected a mapping"),
        (b"apiVersion: argoproj.io/v1alpha1\nkind: Workflow\n", "Argo"),
        (b"name: x\nimplementation: {}\n", "unknown fields"),
        (b"pipelineInfo: {}\nroot: {dag: {}}\n", "pipelineInfo.name"),
        (b"pipelineInfo: {name: p}\n", "root"),
        (yaml.safe_dump(SPEC).encode() + b"---\nfoo: 1\n", "platform spec"),
        (b"PK\x03\x04broken", ".zip"),
        (b"\x1f\x8b\x08broken", ".tar.gz"),
        (_zip({"a.yaml": b"x", "b.yaml": b"y"}), "several"),
        (_zip({"notes.txt": b"x"}), "no pipeline"),
        (b"\xff\xfe\x00binary", "UTF-8"),
        (b"pipelineInfo: {name: p}\nroot: {dag: !!set {a, b}}\n", "not JSON"),
        (b"pipelineInfo: {name: p}\nroot: " + b"[" * 3000 + b"]" * 3000, "nested too deeply"),
    ],
)
def test_bad_packages_are_bad_requests_saying_why(data: bytes, words: str) -> None:
    with pytest.raises(ApiError) as error:
        parse_package(data)
    assert error.value.status == 400
    assert words in error.value.message
