"""Pipelines and their versions: KFP's PipelineService and PipelineUploadService."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kfadapter import argo_workflows
from kfadapter.localkfp import query as q
from kfadapter.localkfp import validation as v
from kfadapter.localkfp import views
from kfadapter.localkfp.apierrors import ApiError, UploadError, bad_request, not_found
from kfadapter.localkfp.fields import PIPELINES, VERSIONS
from kfadapter.localkfp.package_urls import Fetcher, Resolver, download, fetch, file_name, resolve
from kfadapter.localkfp.packages import (
    parse_documents,
    parse_package,
    read_pipeline_file,
    spec_name,
)
from kfadapter.localkfp.sources import SYSTEM, Sources
from kfadapter.localkfp.storage import PipelineStore, dumps


class PipelineService:
    """Pipelines and versions: created from package URLs or uploaded packages, listed, changed.

    `fetcher` and `resolver` GET a package URL and resolve its host; tests replace them to
    stand in for a network the machine does not have.
    """

    def __init__(
        self,
        store: PipelineStore,
        sources: Sources = SYSTEM,
        *,
        fetcher: Fetcher = fetch,
        resolver: Resolver = resolve,
    ) -> None:
        self._store = store
        self._sources = sources
        self.fetcher = fetcher
        self.resolver = resolver

    # -- pipelines -------------------------------------------------------------------

    def create_pipeline(self, body: Any) -> dict[str, Any]:
        """POST /pipelines: a pipeline without versions (`server/pipeline_server.go`)."""
        row = self._new_pipeline_row(v.json_object(body, "pipeline"), "")
        if not row["name"]:
            raise bad_request("Failed to create a pipeline: name is required")
        self._store.insert(row)
        return views.pipeline_json(row)

    def create_pipeline_and_version(self, body: Any) -> dict[str, Any]:
        """POST /pipelines/create: a pipeline and its first version from the version's
        package_url (its name, display name and description are the pipeline's)."""
        body = v.json_object(body, "request body")
        pipeline_body = v.json_object(body.get("pipeline"), "pipeline")
        version_body = v.json_object(body.get("pipeline_version"), "pipeline_version")
        url = _package_url(version_body)
        pipeline = self._new_pipeline_row(pipeline_body, file_name(url))
        if not url:
            raise bad_request(
                "Failed to create a pipeline: invalid pipeline spec URL: pipeline_version."
                "package_url.pipeline_url is empty (KFP creates versions from a package URL; "
                "upload a package file with POST /pipelines/upload instead)"
            )
        spec = self._spec_at(url)
        version = self._new_version_row(
            pipeline["id"],
            {
                "name": pipeline["name"],
                "display_name": pipeline["display_name"],
                "description": pipeline["description"],
                "tags": version_body.get("tags"),
            },
            spec,
            url,
        )
        self._store.insert(pipeline, version)
        return views.pipeline_json(pipeline)

    def upload_pipeline(
        self,
        data: bytes,
        filename: str,
        name: str,
        display_name: str,
        description: str,
        namespace: str,
        tags: str = "",
        code_source_url: str = "",
    ) -> dict[str, Any]:
        """POST /pipelines/upload: a pipeline and its first version from a package file,
        named after the file (with its extension) when no name is given; `tags` (a JSON
        object of strings) are the pipeline's."""
        with _upload_errors("Failed to create a pipeline and a pipeline version"):
            text = read_pipeline_file(data, filename)
            name = name or display_name or filename
            pipeline_tags = _tags_param(tags)
            for field, value in (("Namespace", namespace), ("Name", name)):
                problem = v.field_length_error("Pipeline", field, value)
                if problem:
                    raise bad_request(problem)
            spec = parse_documents(text)
            pipeline = self._new_pipeline_row(
                {
                    "name": name,
                    "display_name": display_name,
                    "description": description,
                    "tags": pipeline_tags,
                },
                spec_name(spec),  # with no file name either, as KFP
            )
            version = self._new_version_row(
                pipeline["id"],
                {
                    "name": pipeline["name"],
                    "display_name": pipeline["display_name"],
                    "description": description,
                    "code_source_url": code_source_url,
                },
                spec,
                "",
            )
            self._store.insert(pipeline, version)
        return views.pipeline_json(pipeline)

    def get_pipeline(self, pipeline_id: str) -> dict[str, Any]:
        """GET /pipelines/{id}."""
        return views.pipeline_json(self.pipeline_row(pipeline_id))

    def get_pipeline_by_name(self, name: str, namespace: str) -> dict[str, Any]:
        """GET /pipelines/names/{name}?namespace=."""
        row = self._store.find_by_name(v.single_user_namespace(namespace), name)
        if row is None:
            raise not_found(f"Pipeline with name {name!r} not found in namespace {namespace!r}")
        return views.pipeline_json(row)

    def list_pipelines(self, args: dict[str, Any]) -> dict[str, Any]:
        """GET /pipelines?namespace=."""
        query = q.from_args(PIPELINES, args, {"namespace": v.single_user_namespace("")})
        return views.page("pipelines", views.pipeline_json, self._store.list(query))

    def delete_pipeline(self, pipeline_id: str, cascade: bool) -> dict[str, Any]:
        """DELETE /pipelines/{id}: refused while versions remain unless cascade."""
        self._store.delete_cascading(pipeline_id, cascade)
        return {}

    def update_pipeline(self, pipeline_id: str, body: Any) -> dict[str, Any]:
        """PATCH /pipelines/{id}: change display_name and/or tags."""
        body = v.json_object(body, "pipeline")
        fields = v.mutable_fields(body, "pipeline")
        self.pipeline_row(pipeline_id)
        self._store.update(pipeline_id, **fields)
        return self.get_pipeline(pipeline_id)

    def pipeline_row(self, pipeline_id: str) -> dict[str, Any]:
        """The stored pipeline; 404 when there is none."""
        return self._store.existing(pipeline_id)

    # -- versions --------------------------------------------------------------------

    def create_version(self, pipeline_id: str, body: Any) -> dict[str, Any]:
        """POST /pipelines/{id}/versions: a version from its package_url, which KFP needs,
        as it needs the body's pipeline_id (the path's id is the one used)."""
        body = v.json_object(body, "pipeline_version")
        if not isinstance(body.get("package_url"), dict):
            raise bad_request(
                "Failed to create a pipeline version. Package URL is nil (KFP creates "
                "versions from package_url.pipeline_url; upload a package file with "
                "POST /pipelines/upload_version instead)"
            )
        url = _package_url(body)
        if not url:
            raise bad_request("Failed to create a pipeline version. Package URL is empty")
        body_pipeline_id = v.text(body, "pipeline_id", "pipeline_version")
        if not pipeline_id or not body_pipeline_id:
            raise bad_request(
                "Failed to create a pipeline version. Parent pipeline id is empty "
                "(pipeline_version.pipeline_id is required)"
            )
        display_name = v.text(body, "display_name", "pipeline_version")
        name = v.text(body, "name", "pipeline_version") or display_name
        v.model_fields(
            "PipelineVersion", "pipeline version", Name=name, PipelineId=body_pipeline_id
        )
        if not name:
            raise bad_request("Failed to create a pipeline version: name is required")
        version = self._new_version_row(pipeline_id, body, self._spec_at(url), url)
        self._store.insert_version(version)
        return views.version_json(version)

    def upload_version(
        self,
        data: bytes,
        filename: str,
        pipeline_id: str,
        name: str,
        display_name: str,
        description: str,
        tags: str = "",
        code_source_url: str = "",
    ) -> dict[str, Any]:
        """POST /pipelines/upload_version?pipelineid=: a version of an existing pipeline."""
        with _upload_errors("Failed to create a pipeline version"):
            text = read_pipeline_file(data, filename)
            if not pipeline_id:
                raise bad_request("Failed to create a pipeline version: pipelineid is missing")
            name = name or display_name or filename
            problem = v.field_length_error("PipelineVersion", "Name", name)
            if problem:
                raise bad_request(problem)
            if self._store.get(pipeline_id) is None:
                raise bad_request(
                    f"Failed to create a pipeline version: pipeline {pipeline_id} not found"
                )
            version = self._new_version_row(
                pipeline_id,
                {
                    "name": name,
                    "display_name": display_name,
                    "description": description,
                    "tags": _tags_param(tags),
                    "code_source_url": code_source_url,
                },
                parse_documents(text),
                "",
            )
            self._store.insert_version(version)
        return views.version_json(version)

    def get_version(self, pipeline_id: str, version_id: str) -> dict[str, Any]:
        """GET /pipelines/{pid}/versions/{vid}."""
        return views.version_json(self._version_by_id(version_id))

    def list_versions(self, pipeline_id: str, args: dict[str, Any]) -> dict[str, Any]:
        """GET /pipelines/{pid}/versions."""
        self.pipeline_row(pipeline_id)
        query = q.from_args(VERSIONS, args, {"pipeline_id": pipeline_id})
        return views.page("pipeline_versions", views.version_json, self._store.list(query))

    def delete_version(self, pipeline_id: str, version_id: str) -> dict[str, Any]:
        """DELETE /pipelines/{pid}/versions/{vid}."""
        self._version_by_id(version_id)
        self._store.delete_version(version_id)
        return {}

    def update_version(self, pipeline_id: str, version_id: str, body: Any) -> dict[str, Any]:
        """PATCH /pipelines/{pid}/versions/{vid}: change display_name and/or tags."""
        body = v.json_object(body, "pipeline_version")
        fields = v.mutable_fields(body, "pipeline_version")
        self._version_by_id(version_id)
        self._store.update_version(version_id, **fields)
        return self.get_version(pipeline_id, version_id)

    def version_row(self, pipeline_id: str, version_id: str) -> dict[str, Any]:
        """The stored version (of that pipeline, when one is named); 404 when there is none."""
        row = self._store.get_version(version_id)
        if row is None or (pipeline_id and row["pipeline_id"] != pipeline_id):
            raise not_found(f"Pipeline version {version_id} not found in pipeline {pipeline_id}")
        return row

    def _version_by_id(self, version_id: str) -> dict[str, Any]:
        """The stored version with this id, whatever pipeline the path names (KFP's Get,
        Update and DeletePipelineVersion look the version up by its id alone); 404."""
        row = self._store.get_version(version_id)
        if row is None:
            raise not_found(f"Pipeline version {version_id} not found")
        return row

    def stored_version(self, version_id: str) -> dict[str, Any] | None:
        """The stored version with this id, or None."""
        return self._store.get_version(version_id)

    def latest_version(self, pipeline_id: str) -> dict[str, Any] | None:
        """The newest version of a pipeline, or None."""
        return self._store.latest_version(pipeline_id)

    # -- new rows ----------------------------------------------------------------------

    def _spec_at(self, url: str) -> dict[str, Any]:
        """The stored spec of the package behind a package URL, fetched under KFP's rules."""
        data = download(url, self.fetcher, self.resolver)
        return parse_package(data, file_name(url))

    def _new_pipeline_row(self, body: dict[str, Any], fallback_name: str) -> dict[str, Any]:
        """A pipeline row from a body: name, else display_name, else `fallback_name`."""
        display_name = v.text(body, "display_name", "pipeline")
        name = v.text(body, "name", "pipeline") or display_name
        namespace = v.text(body, "namespace", "pipeline")
        v.model_fields("Pipeline", "pipeline", Name=name, Namespace=namespace)
        name = name or fallback_name
        return {
            "id": self._sources.new_id(),
            "name": name,
            "display_name": display_name or name,
            "description": v.text(body, "description", "pipeline"),
            "namespace": v.single_user_namespace(namespace),
            "created_at": self._sources.clock(),
            "tags": v.tags(body, "pipeline"),
        }

    def _new_version_row(
        self, pipeline_id: str, body: dict[str, Any], spec: dict[str, Any], package_url: str
    ) -> dict[str, Any]:
        """A version row; 400 unless a v2 spec's pipelineInfo.name is one KFP stores (a V1
        workflow carries no name KFP checks)."""
        if not argo_workflows.is_workflow(spec):
            v.spec_pipeline_name(spec_name(spec))
        display_name = v.text(body, "display_name", "pipeline_version")
        name = v.text(body, "name", "pipeline_version") or display_name
        return {
            "id": self._sources.new_id(),
            "pipeline_id": pipeline_id,
            "name": name,
            "display_name": display_name or name,
            "description": v.text(body, "description", "pipeline_version"),
            "created_at": self._sources.clock(),
            "pipeline_spec": dumps(spec),
            "package_url": package_url,
            "code_source_url": v.text(body, "code_source_url", "pipeline_version"),
            "tags": v.tags(body, "pipeline_version"),
        }


def _tags_param(raw: str) -> dict[str, str] | None:
    """The `tags` query parameter of an upload: a JSON object of strings (None when absent)."""
    if not raw:
        return None
    try:
        tags = json.loads(raw)
    except ValueError:
        tags = None
    if not isinstance(tags, dict) or not all(isinstance(t, str) for t in tags.values()):
        raise bad_request(
            "Failed to parse tags query parameter. Expected JSON object with string keys and values"
        )
    return tags


def _package_url(body: dict[str, Any]) -> str:
    """A version body's package_url.pipeline_url ("" when absent)."""
    raw = v.json_object(body.get("package_url"), "pipeline_version.package_url")
    return v.text(raw, "pipeline_url", "pipeline_version.package_url")


@contextmanager
def _upload_errors(failure: str) -> Iterator[None]:
    """The upload endpoints' errors (`server/pipeline_upload_server.go`): their own JSON
    body; a name already taken is 409, invalid input 400, anything else 500."""
    try:
        yield
    except UploadError:
        raise
    except ApiError as error:
        if error.status == 409:
            raise UploadError(409, f"{failure}: {error.message}") from None
        if error.status >= 500:  # KFP's message is `failure` alone; this one adds why
            raise UploadError(500, f"{failure}: {error.message}") from None
        raise UploadError(400, error.message) from None
