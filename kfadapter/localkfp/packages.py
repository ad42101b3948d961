"""Reading pipeline packages: KFP v2 IR or a KFP v1 Argo Workflow, as YAML or JSON, alone
or in a .zip / .tar.gz.

The stored form is what KFP returns as a version's `pipeline_spec`: the IR document
itself, or `{"pipeline_spec": IR, "platform_spec": PLATFORM}` when the package also
holds a platform spec document (as kfp-kubernetes adds), or the Argo Workflow itself
(a V1 template, `template/template.go`; checked as `argo_workflows.check_upload` says).
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from typing import Any

import yaml

from kfadapter import argo_workflows
from kfadapter.localkfp.apierrors import INTERNAL, ApiError, bad_request, require_json_value

MAX_PACKAGE_BYTES = 32 * 1024 * 1024  # KFP's limit on an uploaded pipeline file
MAX_ALIASED_NODES = 1_000_000
"""How many YAML nodes a document using anchors/aliases may expand to (a "billion laughs"
upload of 1 KB would otherwise be stored, and served, as hundreds of megabytes)."""
PIPELINE_SPEC_FIELDS = {
    "pipelineInfo",
    "pipeline_info",
    "deploymentSpec",
    "deployment_spec",
    "sdkVersion",
    "sdk_version",
    "schemaVersion",
    "schema_version",
    "components",
    "root",
    "defaultPipelineRoot",
    "default_pipeline_root",
}
SCHEMA_VERSION = "2.1.0"  # the only IR schema version KFP 2.17 accepts
_YAML_SUFFIXES = (".yaml", ".yml")
_ARCHIVE_PIPELINE_FILE = "pipeline.yaml"


def _archive_member(names: list[str], kind: str) -> str:
    """The pipeline file of an archive as KFP picks it (`server/util.go`, `ReadPipelineFile`):
    the member named exactly pipeline.yaml, else the first member, which must be YAML."""
    if not names:
        raise bad_request(f"Invalid package: the {kind} archive is empty")
    if _ARCHIVE_PIPELINE_FILE in names:
        return _ARCHIVE_PIPELINE_FILE
    if not names[0].endswith(_YAML_SUFFIXES):
        raise bad_request(
            f"Invalid package: expecting a pipeline.yaml file inside the {kind}, got {names[0]!r}"
        )
    return names[0]


def _from_zip(data: bytes) -> bytes:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            member = _archive_member([info.filename for info in infos], "zip")
            info = archive.getinfo(member)
            if info.is_dir():
                raise bad_request(f"Invalid package: {member} in the zip is a directory")
            if info.file_size > MAX_PACKAGE_BYTES:
                raise bad_request(f"Invalid package: {member} is larger than 32 MiB")
            return archive.read(member)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as error:
        raise bad_request(f"Invalid package: not a readable .zip archive ({error})") from None


def _from_tar(data: bytes) -> bytes:
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            members = archive.getmembers()
            name = _archive_member([member.name for member in members], "tarball")
            member = next(m for m in members if m.name == name)
            if member.size > MAX_PACKAGE_BYTES:
                raise bad_request(f"Invalid package: {name} is larger than 32 MiB")
            handle = archive.extractfile(member) if member.isfile() else None
            if handle is None:
                raise bad_request(f"Invalid package: cannot read {name} in the tarball")
            return handle.read()
    except (tarfile.TarError, OSError, EOFError) as error:
        raise bad_request(f"Invalid package: not a readable .tar.gz archive ({error})") from None


def validate_pipeline_spec(spec: Any, where: str = "pipeline spec") -> dict[str, Any]:
    """The IR document if it looks like a KFP v2 pipeline spec; 400 saying what is wrong."""
    if not isinstance(spec, dict):
        raise bad_request(f"Invalid {where}: expected a mapping, got {type(spec).__name__}")
    if "apiVersion" in spec and "kind" in spec:
        raise bad_request(
            f"Invalid {where}: this is a Kubernetes manifest (kind {spec.get('kind')!r}, "
            f"apiVersion {spec.get('apiVersion')!r}), neither a KFP v2 pipeline spec nor an "
            "Argo Workflow (apiVersion argoproj.io/v1alpha1, kind Workflow) as kfp 1.8 compiles"
        )
    unknown = sorted(set(spec) - PIPELINE_SPEC_FIELDS)
    if unknown:
        raise bad_request(
            f"Invalid {where}: unknown fields {', '.join(map(repr, unknown[:5]))}; "
            "expected a KFP v2 pipeline spec (pipelineInfo, root, components, deploymentSpec)"
        )
    schema_version = spec.get("schemaVersion", spec.get("schema_version", ""))
    if schema_version != SCHEMA_VERSION:
        raise bad_request(
            f"Invalid {where}: KFP only supports schema version {SCHEMA_VERSION}, but the "
            f"pipeline spec has version {schema_version!r}"
        )
    info = spec.get("pipelineInfo", spec.get("pipeline_info"))
    if not isinstance(info, dict) or not isinstance(info.get("name"), str) or not info["name"]:
        raise bad_request(f"Invalid {where}: pipelineInfo.name is missing")
    root = spec.get("root")
    if not isinstance(root, dict) or not root:
        raise bad_request(f"Invalid {where}: root is missing")
    components = spec.get("components", {})
    if not isinstance(components, dict):
        raise bad_request(f"Invalid {where}: components must be a mapping")
    return spec


def normalize_spec(value: Any, where: str = "pipeline_spec") -> dict[str, Any]:
    """A spec as stored: bare IR, or {"pipeline_spec", "platform_spec"}; validated."""
    if isinstance(value, dict) and "pipeline_spec" in value and "root" not in value:
        extra = sorted(set(value) - {"pipeline_spec", "platform_spec"})
        if extra:
            raise bad_request(f"Invalid {where}: unknown fields {', '.join(extra)}")
        validate_pipeline_spec(value["pipeline_spec"], where)
        platform = value.get("platform_spec")
        if platform in (None, {}):
            return value["pipeline_spec"]
        if not isinstance(platform, dict):
            raise bad_request(f"Invalid {where}: platform_spec must be a mapping")
        return {"pipeline_spec": value["pipeline_spec"], "platform_spec": platform}
    return validate_pipeline_spec(value, where)


def ir_of(stored: dict[str, Any]) -> dict[str, Any]:
    """The IR document of a stored spec (without any platform spec); a workflow as it is."""
    if "pipeline_spec" in stored and "root" not in stored:
        return stored["pipeline_spec"]
    return stored


def spec_name(stored: dict[str, Any]) -> str:
    """The pipeline name a stored spec carries: a v2 spec's pipelineInfo.name, "" for a
    V1 workflow (KFP reads no name from it: `tmpl.IsV2()` is false)."""
    if argo_workflows.is_workflow(stored):
        return ""
    return ir_of(stored)["pipelineInfo"]["name"]


def checked_workflow(document: Any) -> dict[str, Any]:
    """A V1 workflow KFP stores; KFP's 400 for invalid input, and a 500 (code 13) when
    Argo's validation refuses it, as KFP passes that error on unwrapped."""
    try:
        return argo_workflows.check_upload(document)
    except argo_workflows.WorkflowError as error:
        if error.argo:
            raise ApiError(
                500,
                f"template creation error (Argo workflow validation): {error.message}",
                INTERNAL,
            ) from None
        raise bad_request(error.message) from None


class _SpecLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """YAML safe loading with timestamps kept as text (as KFP reads YAML: into JSON)."""


_SpecLoader.add_constructor(
    "tag:yaml.org,2002:timestamp",
    lambda loader, node: loader.construct_scalar(node),
)


def _expanded_size(root: yaml.Node) -> int:
    """How many nodes the document has once every alias is expanded; 400 if it is too many.

    Shared (aliased) nodes are counted once per use; each node's size is computed once,
    so a document of N nodes costs O(N) however much it would expand.
    """
    sizes: dict[int, int] = {}
    in_progress: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in in_progress:
            raise bad_request("Invalid package: the YAML has a recursive alias")
        in_progress.add(key)
        total = 1
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                total += size(key_node) + size(value_node)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                total += size(item)
        in_progress.discard(key)
        sizes[key] = min(total, MAX_ALIASED_NODES + 1)
        return sizes[key]

    try:
        return size(root)
    except RecursionError:
        raise bad_request("Invalid package: the YAML is nested too deeply") from None


def _load_yaml_documents(text: str) -> list[Any]:
    """Every document of the YAML/JSON text, refusing alias bombs and non-JSON values."""
    loader = _SpecLoader(text)
    documents = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if _expanded_size(node) > MAX_ALIASED_NODES:
                raise bad_request(
                    "Invalid package: the YAML expands (through anchors and aliases) to more "
                    f"than {MAX_ALIASED_NODES} nodes"
                )
            documents.append(loader.construct_document(node))
    except yaml.YAMLError as error:
        raise bad_request(
            f"Invalid package: the file is not valid YAML or JSON ({error})"
        ) from None
    except RecursionError:
        raise bad_request("Invalid package: the YAML is nested too deeply") from None
    finally:
        loader.dispose()
    return [require_json_value(doc, "Invalid package: the file") for doc in documents]


def parse_documents(text: str) -> dict[str, Any]:
    """The stored spec from YAML/JSON text, possibly several YAML documents."""
    documents = [doc for doc in _load_yaml_documents(text) if doc is not None]
    if not documents:
        raise bad_request("Invalid package: the file holds no pipeline spec (it is empty)")
    if argo_workflows.is_workflow(documents[0]):
        return checked_workflow(documents[0])  # KFP reads the first document only
    spec = validate_pipeline_spec(documents[0], "pipeline package")
    platform: dict[str, Any] = {}
    for document in documents[1:]:
        if not isinstance(document, dict) or "platforms" not in document:
            raise bad_request(
                "Invalid package: a document after the pipeline spec is not a platform spec "
                "(a mapping with 'platforms')"
            )
        platform.update(document)
    if platform:
        return {"pipeline_spec": spec, "platform_spec": platform}
    return spec


def read_pipeline_file(data: bytes, filename: str) -> str:
    """The text of the pipeline file in an uploaded or fetched package; 400 if unreadable.

    As KFP's `ReadPipelineFile` (`server/util.go`): a file named *.yaml, *.yml or *.json is
    read as it is; otherwise a .zip or .tar.gz is recognised by its first bytes; anything
    else is refused.
    """
    if not data or not data.strip():
        raise bad_request("Invalid package: the uploaded file is empty")
    if len(data) > MAX_PACKAGE_BYTES:
        raise bad_request("Invalid package: the file is larger than 32 MiB")
    if filename.endswith((*_YAML_SUFFIXES, ".json")):
        pass
    elif data[:2] == b"PK":
        data = _from_zip(data)
    elif data[:2] == b"\x1f\x8b":
        data = _from_tar(data)
    else:
        raise bad_request(
            f"Invalid package: unexpected pipeline file format of {filename!r}; KFP reads "
            ".zip, .tar.gz, .json or YAML (a file named *.yaml, *.yml or *.json)"
        )
    if not data.strip():
        raise bad_request("Invalid package: the pipeline file is empty")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise bad_request("Invalid package: the pipeline file is not UTF-8 YAML or JSON") from None


def parse_package(data: bytes, filename: str) -> dict[str, Any]:
    """The stored spec of a package file: read (`read_pipeline_file`), then validated."""
    return parse_documents(read_pipeline_file(data, filename))
