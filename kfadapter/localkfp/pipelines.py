"""Pipelines and their versions: KFP's PipelineService and PipelineUploadService."""

from __future__ import annotations

from typing import Any

from kfadapter.localkfp import query as q
from kfadapter.localkfp import validation as v
from kfadapter.localkfp import views
from kfadapter.localkfp.apierrors import bad_request, not_found
from kfadapter.localkfp.fields import PIPELINES, VERSIONS
from kfadapter.localkfp.packages import fetch_package, normalize_spec, parse_package
from kfadapter.localkfp.sources import SYSTEM, Sources
from kfadapter.localkfp.storage import PipelineStore, dumps


class PipelineService:
    """Pipelines and versions: created from bodies or uploaded packages, listed, changed."""

    def __init__(self, store: PipelineStore, sources: Sources = SYSTEM) -> None:
        self._store = store
        self._sources = sources

    # -- pipelines -------------------------------------------------------------------

    def create_pipeline(self, body: Any) -> dict[str, Any]:
        """POST /pipelines: a pipeline without versions."""
        row = self._new_pipeline_row(v.json_object(body, "pipeline"))
        self._store.insert(row)
        return views.pipeline_json(row)

    def create_pipeline_and_version(self, body: Any) -> dict[str, Any]:
        """POST /pipelines/create: a pipeline and its first version at once."""
        body = v.json_object(body, "request body")
        pipeline_body = v.json_object(body.get("pipeline"), "pipeline")
        version_body = v.json_object(body.get("pipeline_version"), "pipeline_version")
        if not pipeline_body:
            raise bad_request("request needs a pipeline")
        if not version_body:
            raise bad_request("request needs a pipeline_version")
        pipeline = self._new_pipeline_row(pipeline_body)
        if not version_body.get("name") and not version_body.get("display_name"):
            version_body = {**version_body, "name": pipeline["name"]}
        self._store.insert(pipeline, self._new_version_row(pipeline, version_body, None))
        return views.pipeline_json(pipeline)

    def upload_pipeline(
        self,
        data: bytes,
        filename: str,
        name: str,
        display_name: str,
        description: str,
        namespace: str,
    ) -> dict[str, Any]:
        """POST /pipelines/upload: a pipeline and its first version from a package file."""
        spec = parse_package(data)
        name = name or display_name or v.file_stem(filename)
        pipeline = self._new_pipeline_row(
            {
                "name": name,
                "display_name": display_name or name,
                "description": description,
                "namespace": namespace,
            }
        )
        version = self._new_version_row(
            pipeline,
            {"name": name, "display_name": display_name or name, "description": description},
            spec,
        )
        self._store.insert(pipeline, version)
        return views.pipeline_json(pipeline)

    def get_pipeline(self, pipeline_id: str) -> dict[str, Any]:
        """GET /pipelines/{id}."""
        return views.pipeline_json(self.pipeline_row(pipeline_id))

    def get_pipeline_by_name(self, name: str, namespace: str) -> dict[str, Any]:
        """GET /pipelines/names/{name}?namespace=."""
        row = self._store.find_by_name(namespace or "", name)
        if row is None:
            raise not_found(f"Pipeline with name {name!r} not found in namespace {namespace!r}")
        return views.pipeline_json(row)

    def list_pipelines(self, args: dict[str, Any]) -> dict[str, Any]:
        """GET /pipelines?namespace=."""
        query = q.from_args(PIPELINES, args, q.scope(args, "namespace"))
        return views.page("pipelines", views.pipeline_json, self._store.list(query))

    def delete_pipeline(self, pipeline_id: str, cascade: bool) -> dict[str, Any]:
        """DELETE /pipelines/{id}: refused while versions remain unless cascade."""
        self._store.delete_cascading(pipeline_id, cascade)
        return {}

    def update_pipeline(self, pipeline_id: str, body: Any) -> dict[str, Any]:
        """PATCH /pipelines/{id}: change display_name and/or tags."""
        body = v.json_object(body, "pipeline")
        if body.get("pipeline_id") not in (None, "", pipeline_id):
            raise bad_request("pipeline.pipeline_id does not match the path")
        fields = v.mutable_fields(body, "pipeline")
        self.pipeline_row(pipeline_id)
        self._store.update(pipeline_id, **fields)
        return self.get_pipeline(pipeline_id)

    def pipeline_row(self, pipeline_id: str) -> dict[str, Any]:
        """The stored pipeline; 404 when there is none."""
        return self._store.existing(pipeline_id)

    # -- versions --------------------------------------------------------------------

    def create_version(self, pipeline_id: str, body: Any) -> dict[str, Any]:
        """POST /pipelines/{id}/versions."""
        pipeline = self.pipeline_row(pipeline_id)
        body = v.json_object(body, "pipeline_version")
        if body.get("pipeline_id") not in (None, "", pipeline_id):
            raise bad_request("pipeline_version.pipeline_id does not match the path")
        version = self._new_version_row(pipeline, body, None)
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
    ) -> dict[str, Any]:
        """POST /pipelines/upload_version?pipelineid=."""
        if not pipeline_id:
            raise bad_request("Failed to create a pipeline version: pipelineid is missing")
        pipeline = self.pipeline_row(pipeline_id)
        spec = parse_package(data)
        name = name or display_name or v.file_stem(filename)
        version = self._new_version_row(
            pipeline,
            {"name": name, "display_name": display_name or name, "description": description},
            spec,
        )
        self._store.insert_version(version)
        return views.version_json(version)

    def get_version(self, pipeline_id: str, version_id: str) -> dict[str, Any]:
        """GET /pipelines/{pid}/versions/{vid}."""
        return views.version_json(self.version_row(pipeline_id, version_id))

    def list_versions(self, pipeline_id: str, args: dict[str, Any]) -> dict[str, Any]:
        """GET /pipelines/{pid}/versions."""
        self.pipeline_row(pipeline_id)
        query = q.from_args(VERSIONS, args, {"pipeline_id": pipeline_id})
        return views.page("pipeline_versions", views.version_json, self._store.list(query))

    def delete_version(self, pipeline_id: str, version_id: str) -> dict[str, Any]:
        """DELETE /pipelines/{pid}/versions/{vid}."""
        self.version_row(pipeline_id, version_id)
        self._store.delete_version(version_id)
        return {}

    def update_version(self, pipeline_id: str, version_id: str, body: Any) -> dict[str, Any]:
        """PATCH /pipelines/{pid}/versions/{vid}: change display_name and/or tags."""
        body = v.json_object(body, "pipeline_version")
        if body.get("pipeline_version_id") not in (None, "", version_id):
            raise bad_request("pipeline_version.pipeline_version_id does not match the path")
        fields = v.mutable_fields(body, "pipeline_version")
        self.version_row(pipeline_id, version_id)
        self._store.update_version(version_id, **fields)
        return self.get_version(pipeline_id, version_id)

    def version_row(self, pipeline_id: str, version_id: str) -> dict[str, Any]:
        """The stored version (of that pipeline, when one is named); 404 when there is none."""
        row = self._store.get_version(version_id)
        if row is None or (pipeline_id and row["pipeline_id"] != pipeline_id):
            raise not_found(f"Pipeline version {version_id} not found in pipeline {pipeline_id}")
        return row

    def stored_version(self, version_id: str) -> dict[str, Any] | None:
        """The stored version with this id, or None."""
        return self._store.get_version(version_id)

    def latest_version(self, pipeline_id: str) -> dict[str, Any] | None:
        """The newest version of a pipeline, or None."""
        return self._store.latest_version(pipeline_id)

    # -- new rows ----------------------------------------------------------------------

    def _new_pipeline_row(self, body: dict[str, Any]) -> dict[str, Any]:
        display_name = v.text(body, "display_name", "pipeline")
        name = v.text(body, "name", "pipeline") or display_name
        v.name(name, "Pipeline")
        tags = v.tags(body, "pipeline")
        return {
            "id": self._sources.new_id(),
            "name": name,
            "display_name": display_name or name,
            "description": v.text(body, "description", "pipeline"),
            "namespace": v.text(body, "namespace", "pipeline"),
            "created_at": self._sources.clock(),
            "tags": tags,
        }

    def _new_version_row(
        self, pipeline: dict[str, Any], body: dict[str, Any], spec: dict[str, Any] | None
    ) -> dict[str, Any]:
        display_name = v.text(body, "display_name", "pipeline_version")
        name = v.text(body, "name", "pipeline_version") or display_name
        v.name(name, "Pipeline version")
        package_url = ""
        raw_url = body.get("package_url")
        if isinstance(raw_url, dict):
            package_url = v.text(raw_url, "pipeline_url", "pipeline_version.package_url")
        if spec is None:
            raw_spec = body.get("pipeline_spec")
            if raw_spec is not None:
                spec = normalize_spec(raw_spec, "pipeline_version.pipeline_spec")
            elif package_url:
                spec = fetch_package(package_url)
            else:
                raise bad_request(
                    "Pipeline version needs a pipeline_spec or a package_url.pipeline_url"
                )
        tags = v.tags(body, "pipeline_version")
        return {
            "id": self._sources.new_id(),
            "pipeline_id": pipeline["id"],
            "name": name,
            "display_name": display_name or name,
            "description": v.text(body, "description", "pipeline_version"),
            "created_at": self._sources.clock(),
            "pipeline_spec": dumps(spec),
            "package_url": package_url,
            "code_source_url": v.text(body, "code_source_url", "pipeline_version"),
            "tags": tags,
        }
