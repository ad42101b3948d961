"""Uploads the TM's way: a new name creates the pipeline, a known one gets version 2, 3, ..."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import yaml

from kfadapter import argo_workflows
from kfadapter.errors import BadRequest, Conflict
from kfadapter.kfp import KfpClient
from kfadapter.kfp.uploads import package_suffix
from kfadapter.localkfp.apierrors import ApiError
from kfadapter.localkfp.packages import read_pipeline_file


def upload(
    kfp: KfpClient,
    name: str,
    package: bytes,
    *,
    description: str | None = None,
    version_name: str | None = None,
) -> dict[str, Any]:
    """Upload a compiled pipeline under `name`; {"name", "id", "version_id", "version_name"}.

    A new version of a known pipeline is named `version_name`, else the next free whole
    number after 1 ("2", "3", ...), as the older adapter did.
    """
    _check_length(name, "pipeline name")
    if version_name is not None:
        _check_length(version_name, "version name")
    existing = kfp.find_pipeline(name)
    if existing is None:
        if version_name not in (None, name):
            raise BadRequest(
                f"pipeline {name!r} does not exist yet: its first version is named {name!r} "
                "by KFP; version_name applies to later uploads"
            )
        pipeline_id = kfp.upload_pipeline(name, package, description=description)["pipeline_id"]
        newest = kfp.versions_page(pipeline_id, page_size=1, sort_by="created_at desc")
        versions = newest["pipeline_versions"]
        return _answer(name, pipeline_id, versions[0] if versions else None)
    pipeline_id = existing["pipeline_id"]
    versions = kfp.list_versions(pipeline_id)
    taken = {v["display_name"] for v in versions} | {v["name"] for v in versions}
    if version_name is not None and version_name in taken:
        raise Conflict(f"pipeline {name!r} already has a version named {version_name!r}")
    version = kfp.upload_version(
        existing, version_name or next_version_name(taken), package, description=description
    )
    return _answer(name, pipeline_id, version)


MAX_NAME_BYTES = 127
"""The longest name (UTF-8 bytes) KFP 2.17 stores for a pipeline version
(`validation/length.go`); an upload's first version takes the pipeline's name, so a
pipeline name must fit too (KFP's own limit for it is 128)."""


def _check_length(name: str, what: str) -> None:
    """400 saying so when KFP would refuse the name for its length."""
    size = len(name.encode())
    if size > MAX_NAME_BYTES:
        raise BadRequest(
            f"{what} {name[:40]!r}... is {size} bytes in UTF-8; KFP accepts at most "
            f"{MAX_NAME_BYTES} bytes"
        )


def next_version_name(taken: Collection[str]) -> str:
    """The smallest whole number >= 2 not already used as a version name."""
    number = 2
    while str(number) in taken:
        number += 1
    return str(number)


def _answer(name: str, pipeline_id: str, version: dict[str, Any] | None) -> dict[str, Any]:
    """The answer to an upload: {"name", "id", "version_id", "version_name"}."""
    return {
        "name": name,
        "id": pipeline_id,
        "version_id": version["pipeline_version_id"] if version else None,
        "version_name": version["display_name"] if version else None,
    }


def check_package(package: bytes) -> None:
    """Reject what cannot be a pipeline package: not an archive and not a YAML/JSON mapping,
    or a KFP v1 pipeline (an Argo Workflow) that KFP 2.17 would refuse. KFP answers a
    workflow Argo's validation refuses with a 500 (it passes Argo's error on unwrapped,
    `template/argo_template.go`), so the adapter checks it first and answers 400.

    A .zip / .tar.gz is checked by its pipeline file, picked as KFP picks it (the embedded
    server's `read_pipeline_file`, after KFP's `ReadPipelineFile`, `server/util.go`)."""
    text: bytes | str = package
    suffix = package_suffix(package)
    if suffix in (".zip", ".tar.gz"):
        try:
            text = read_pipeline_file(package, f"pipeline{suffix}")
        except ApiError as error:
            raise BadRequest(f"the uploaded {suffix} archive: {error.message}") from None
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as error:
        raise BadRequest(
            f"the uploaded file is neither YAML/JSON nor a .zip/.tar.gz archive: {error}"
        ) from None
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("the uploaded file is not text, nor a .zip/.tar.gz archive") from None
    except RecursionError:
        raise BadRequest("the uploaded file is nested too deeply to be a pipeline") from None
    if not documents or not isinstance(documents[0], dict):
        raise BadRequest("the uploaded file is not a compiled pipeline (expected a YAML mapping)")
    first = documents[0]
    if argo_workflows.is_workflow(first):
        try:
            argo_workflows.check_upload(first)
        except argo_workflows.WorkflowError as error:
            raise BadRequest(
                f"the uploaded KFP v1 pipeline (Argo Workflow) is invalid: {error.message}"
            ) from None
        return
    if not any(key in first for key in ("pipelineInfo", "root", "pipeline_spec", "spec")):
        raise BadRequest(
            "the uploaded file is not a compiled pipeline: it has none of pipelineInfo, root"
        )
