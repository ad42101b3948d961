"""KFP calls on pipelines and their versions (a part of KfConnect)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kfadapter.errors import BadRequest, NotFound
from kfadapter.kfp import filters
from kfadapter.kfp.flatten import flatten_page, flatten_pipeline, flatten_version
from kfadapter.kfp.interface import PageRequest
from kfadapter.kfp.transport import Transport
from kfadapter.kfp.uploads import package_file


class PipelineCalls:
    """KfConnect's methods for pipelines and pipeline versions."""

    _kfp: Transport

    def list_pipelines(self, page: PageRequest) -> dict[str, Any]:
        """One page of pipelines as KFP gives it: {"pipelines", "next_page_token", "total_size"}."""
        answer = self._kfp.read(
            "list_pipelines",
            self._kfp.apis.pipelines.pipeline_service_list_pipelines,
            **page.params(),
        )
        return flatten_page(answer, "pipelines", flatten_pipeline)

    def all_pipelines(self, *, filter: str | None = None) -> list[dict[str, Any]]:
        """Every pipeline (walking KFP's pages), oldest first."""
        pipelines = self._kfp.walk(
            "list_pipelines",
            self._kfp.apis.pipelines.pipeline_service_list_pipelines,
            "pipelines",
            sort_by="created_at",
            filter=filter,
        )
        return [flatten_pipeline(raw) for raw in pipelines]

    def find_pipeline(self, name: str) -> dict[str, Any] | None:
        """The pipeline whose display name is `name`, or None."""
        matches = self.all_pipelines(filter=filters.equals("display_name", name))
        return next((p for p in matches if p["display_name"] == name), None)

    def get_pipeline(self, pipeline_id: str) -> dict[str, Any]:
        """One pipeline by id."""
        answer = self._kfp.read(
            "get_pipeline",
            self._kfp.apis.pipelines.pipeline_service_get_pipeline,
            pipeline_id,
            subject=f"pipeline {pipeline_id!r}",
        )
        return flatten_pipeline(answer)

    def resolve_pipeline(self, id_or_name: str) -> dict[str, Any]:
        """A pipeline by id, else by display name; NotFound naming it when neither matches."""
        if _looks_like_id(id_or_name):
            try:
                return self.get_pipeline(id_or_name)
            except (NotFound, BadRequest):
                pass
        pipeline = self.find_pipeline(id_or_name)
        if pipeline is None:
            raise NotFound(f"pipeline {id_or_name!r} not found (no pipeline has this id or name)")
        return pipeline

    def delete_pipeline(self, pipeline_id: str) -> None:
        """Delete a pipeline together with all its versions."""
        self._kfp.write(
            "delete_pipeline",
            self._kfp.apis.pipelines.pipeline_service_delete_pipeline,
            pipeline_id,
            cascade=True,
            subject=f"pipeline {pipeline_id!r}",
        )

    def upload_pipeline(
        self, name: str, package: bytes, *, description: str | None = None
    ) -> dict[str, Any]:
        """Create a pipeline named `name` from a compiled package (its first version)."""
        answer = self._upload(
            "upload_pipeline",
            self._kfp.apis.upload.upload_pipeline,
            package,
            name=name,
            description=description or None,
            subject=f"pipeline {name!r}",
        )
        return flatten_pipeline(answer)

    # ------------------------------------------------------------------ versions

    def versions_page(
        self, pipeline_id: str, *, page_size: int, sort_by: str | None = None
    ) -> dict[str, Any]:
        """One page of a pipeline's versions: {"pipeline_versions", "next_page_token",
        "total_size"}; `sort_by="created_at desc"` puts the newest first."""
        answer = self._kfp.read(
            "list_pipeline_versions",
            self._kfp.apis.pipelines.pipeline_service_list_pipeline_versions,
            pipeline_id,
            page_size=page_size,
            sort_by=sort_by,
            subject=f"pipeline {pipeline_id!r}",
        )
        return flatten_page(answer, "pipeline_versions", flatten_version)

    def list_versions(self, pipeline_id: str) -> list[dict[str, Any]]:
        """Every version of a pipeline, oldest first, with parameters and tasks."""
        versions = self._kfp.walk(
            "list_pipeline_versions",
            self._kfp.apis.pipelines.pipeline_service_list_pipeline_versions,
            "pipeline_versions",
            pipeline_id,
            sort_by="created_at",
            subject=f"pipeline {pipeline_id!r}",
        )
        return [flatten_version(raw) for raw in versions]

    def find_version(self, pipeline_id: str, name: str | None) -> dict[str, Any] | None:
        """The newest version of a pipeline with this display name (or name, or id), the
        newest version of all when `name` is None; None when none fits."""
        versions = self.list_versions(pipeline_id)
        if name is None:
            return versions[-1] if versions else None
        for version in reversed(versions):
            if name in (version["display_name"], version["name"], version["pipeline_version_id"]):
                return version
        return None

    def upload_version(
        self, pipeline: dict[str, Any], name: str, package: bytes, *, description: str | None = None
    ) -> dict[str, Any]:
        """Add a version named `name` to a pipeline (as find_pipeline gives it) from a
        compiled package."""
        answer = self._upload(
            "upload_pipeline_version",
            self._kfp.apis.upload.upload_pipeline_version,
            package,
            name=name,
            pipelineid=pipeline["pipeline_id"],
            description=description or None,
            subject=f"pipeline {pipeline['display_name']!r}",
        )
        return flatten_version(answer)

    def _upload(
        self, operation: str, method: Callable[..., Any], package: bytes, **params: Any
    ) -> dict[str, Any]:
        """An upload call with the package in a file, as the SDK sends it."""
        with package_file(package) as path:
            return self._kfp.write(operation, method, str(path), **params)

    def delete_version(self, pipeline_id: str, version_id: str) -> None:
        """Delete one pipeline version."""
        self._kfp.write(
            "delete_pipeline_version",
            self._kfp.apis.pipelines.pipeline_service_delete_pipeline_version,
            pipeline_id,
            version_id,
            subject=f"version {version_id!r} of pipeline {pipeline_id!r}",
        )


def _looks_like_id(text: str) -> bool:
    """Whether a path segment could be a KFP id (a UUID) rather than a display name."""
    stripped = text.replace("-", "")
    return (
        len(text) == 36 and len(stripped) == 32 and all(c in "0123456789abcdef" for c in stripped)
    )
