"""Pipelines and their versions: list, look up, upload, delete, and a pipeline's runs."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request

from kfadapter.api import uploads
from kfadapter.api.common import checked_description, checked_name, kfp, page_args, query_page_size
from kfadapter.errors import BadRequest, NotFound

bp = Blueprint("pipelines", __name__)

UPLOAD_FIELD = "file"


@bp.get("/pipelines")
def list_pipelines():
    """Every pipeline (all of KFP's pages), or one page when page parameters are given."""
    page = page_args()
    if page is not None:
        return jsonify(kfp().list_pipelines(page))
    pipelines = kfp().all_pipelines()
    return jsonify({"pipelines": pipelines, "next_page_token": "", "total_size": len(pipelines)})


@bp.get("/pipelineIds/<name>")
def pipeline_id(name: str):
    """{"name", "id"} of the pipeline with this name."""
    checked_name(name, "pipeline name")
    pipeline = kfp().find_pipeline(name)
    if pipeline is None:
        raise NotFound(f"pipeline {name!r} not found")
    return jsonify(
        {
            "name": pipeline["display_name"],
            "id": pipeline["pipeline_id"],
            "description": pipeline["description"],
            "created_at": pipeline["created_at"],
        }
    )


@bp.post("/pipelineIds/<name>")
def upload_pipeline(name: str):
    """Upload a compiled pipeline (multipart `file`): a new pipeline or a new version."""
    checked_name(name, "pipeline name")
    package = _uploaded_package()
    description = checked_description(request.form.get("description") or None)
    version_name = request.form.get("version_name") or None
    if version_name is not None:
        checked_name(version_name, "version_name")
    return jsonify(
        uploads.upload(kfp(), name, package, description=description, version_name=version_name)
    )


@bp.get("/pipelines/<id_or_name>")
def get_pipeline(id_or_name: str):
    """A pipeline with `arguments` and `parameters` read from its newest version's spec."""
    checked_name(id_or_name, "pipeline id")
    pipeline = kfp().resolve_pipeline(id_or_name)
    newest = kfp().versions_page(pipeline["pipeline_id"], page_size=1, sort_by="created_at desc")
    version = next(iter(newest["pipeline_versions"]), None)
    parameters = version["parameters"] if version else []
    return jsonify(
        {
            **pipeline,
            "id": pipeline["pipeline_id"],
            "name": pipeline["display_name"],
            "arguments": {p["name"]: p["default"] for p in parameters},
            "parameters": parameters,
            "template_type": version["template_type"] if version else None,
            "default_version": _version_summary(version),
            "versions_count": newest["total_size"] or len(newest["pipeline_versions"]),
        }
    )


@bp.delete("/pipelines/<id_or_name>")
def delete_pipeline(id_or_name: str):
    """Delete a pipeline with all its versions."""
    checked_name(id_or_name, "pipeline id")
    pipeline = kfp().resolve_pipeline(id_or_name)
    kfp().delete_pipeline(pipeline["pipeline_id"])
    return jsonify(
        {"id": pipeline["pipeline_id"], "name": pipeline["display_name"], "status": "Deleted"}
    )


@bp.get("/pipelines/<id_or_name>/versions")
def list_versions(id_or_name: str):
    """{"versions_list": [names], "versions": [versions]} of a pipeline given by id or name."""
    checked_name(id_or_name, "pipeline id or name")
    pipeline = kfp().resolve_pipeline(id_or_name)
    versions = kfp().list_versions(pipeline["pipeline_id"])
    return jsonify(
        {
            "pipeline_id": pipeline["pipeline_id"],
            "pipeline_name": pipeline["display_name"],
            "versions_list": [v["display_name"] for v in versions],
            "versions": versions,
        }
    )


@bp.get("/pipelines/<id_or_name>/versions/<version>")
def get_version(id_or_name: str, version: str):
    """One version (by id or name) with its parameters and task list."""
    pipeline, found = _version(id_or_name, version)
    return jsonify({**found, "pipeline_name": pipeline["display_name"]})


@bp.delete("/pipelines/<id_or_name>/versions/<version>")
def delete_version(id_or_name: str, version: str):
    """Delete one version of a pipeline."""
    pipeline, found = _version(id_or_name, version)
    kfp().delete_version(pipeline["pipeline_id"], found["pipeline_version_id"])
    return jsonify(
        {
            "id": found["pipeline_version_id"],
            "name": found["display_name"],
            "pipeline_id": pipeline["pipeline_id"],
            "status": "Deleted",
        }
    )


@bp.get("/pipelines/<id_or_name>/runs")
def pipeline_runs(id_or_name: str):
    """The runs of a pipeline, newest first, a page at a time (page_size, page_token).

    KFP cannot filter runs by pipeline: KfConnect.runs_of_pipeline reads the namespace's
    runs newest first until the page is full, so the answer has no `total_size`.
    """
    checked_name(id_or_name, "pipeline id or name")
    pipeline = kfp().resolve_pipeline(id_or_name)
    page = kfp().runs_of_pipeline(
        pipeline["pipeline_id"],
        page_size=query_page_size(),
        page_token=request.args.get("page_token") or None,
    )
    experiments = {e["experiment_id"]: e["name"] for e in kfp().all_experiments()}
    versions = {
        v["pipeline_version_id"]: v["display_name"]
        for v in kfp().list_versions(pipeline["pipeline_id"])
    }
    for run in page["runs"]:
        run["pipeline_name"] = pipeline["display_name"]
        run["experiment_name"] = experiments.get(run["experiment_id"], "")
        run["pipeline_version_name"] = versions.get(run["pipeline_version_id"], "")
    return jsonify(
        {"pipeline_id": pipeline["pipeline_id"], "pipeline_name": pipeline["display_name"], **page}
    )


def _version(id_or_name: str, version: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pipeline, version) from path segments: ids or names; NotFound naming what is missing."""
    checked_name(id_or_name, "pipeline id or name")
    checked_name(version, "version id or name")
    pipeline = kfp().resolve_pipeline(id_or_name)
    found = kfp().find_version(pipeline["pipeline_id"], version)
    if found is None:
        raise NotFound(f"version {version!r} of pipeline {pipeline['display_name']!r} not found")
    return pipeline, found


def _uploaded_package() -> bytes:
    """The bytes of the multipart `file` part, checked to look like a pipeline package."""
    if not request.mimetype.startswith("multipart/form-data"):
        raise BadRequest(
            "upload the compiled pipeline as multipart/form-data with a part named "
            f"{UPLOAD_FIELD!r}"
        )
    upload = request.files.get(UPLOAD_FIELD)
    if upload is None:
        raise BadRequest(f"the multipart form has no file part named {UPLOAD_FIELD!r}")
    package = upload.read()
    if not package.strip():
        raise BadRequest("the uploaded file is empty")
    uploads.check_package(package)
    return package


def _version_summary(version: dict[str, Any] | None) -> dict[str, Any] | None:
    """{"id", "name", "created_at"} of a version, or None."""
    if version is None:
        return None
    return {
        "id": version["pipeline_version_id"],
        "name": version["display_name"],
        "created_at": version["created_at"],
    }
