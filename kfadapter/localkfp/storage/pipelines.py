"""SQL of pipelines and their versions (as KFP's `storage/pipeline_store.go`)."""

from __future__ import annotations

from typing import Any

from kfadapter.localkfp.apierrors import bad_request, not_found
from kfadapter.localkfp.storage.database import ResourceStore

VERSIONS = "pipeline_versions"


class PipelineStore(ResourceStore):
    """Pipelines and pipeline versions in the database."""

    table = "pipelines"
    noun = "Pipeline"

    def find_by_name(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The pipeline with this name in the namespace, or None."""
        return self._db.find(self.table, namespace=namespace, name=name)

    def insert(self, pipeline: dict[str, Any], version: dict[str, Any] | None = None) -> None:
        """Add a pipeline (and its first version) at once; 409 when its name is taken."""
        with self._db.write() as conn:
            self._db.insert_unique(
                conn,
                self.table,
                pipeline,
                f"Failed to create a new pipeline. The name {pipeline['name']!r} already "
                f"exists in namespace {pipeline['namespace']!r}. Please specify a new name",
            )
            if version is not None:
                self._db.insert(conn, VERSIONS, version)

    def delete_cascading(self, pipeline_id: str, cascade: bool) -> None:
        """Delete a pipeline; refused (400) while it has versions unless `cascade`."""
        with self._db.write() as conn:
            if not conn.execute("SELECT 1 FROM pipelines WHERE id = ?", (pipeline_id,)).fetchone():
                raise not_found(f"Pipeline {pipeline_id} not found")
            versions = conn.execute(
                "SELECT COUNT(*) FROM pipeline_versions WHERE pipeline_id = ?", (pipeline_id,)
            ).fetchone()[0]
            if versions and not cascade:
                # KFP's util.NewInvalidInputError: 400 with gRPC code 3, not 9
                # (`resource/resource_manager.go`, DeletePipeline)
                raise bad_request(
                    f"Failed to delete pipeline with id {pipeline_id} as it has existing "
                    f"pipeline versions ({versions}). Set cascade=true to delete all versions"
                )
            conn.execute("DELETE FROM pipeline_versions WHERE pipeline_id = ?", (pipeline_id,))
            conn.execute("DELETE FROM pipelines WHERE id = ?", (pipeline_id,))

    # -- versions -------------------------------------------------------------------------

    def get_version(self, version_id: str) -> dict[str, Any] | None:
        """A pipeline version by id, or None."""
        return self._db.get(VERSIONS, version_id)

    def latest_version(self, pipeline_id: str) -> dict[str, Any] | None:
        """The newest version of a pipeline, or None."""
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT * FROM pipeline_versions WHERE pipeline_id = ? "
                "ORDER BY created_at DESC, id DESC LIMIT 1",
                (pipeline_id,),
            ).fetchone()
        return dict(row) if row else None

    def insert_version(self, version: dict[str, Any]) -> None:
        """Add a version to its pipeline; 404 without the pipeline, 409 when the name is taken."""
        with self._db.write() as conn:
            if not conn.execute(
                "SELECT 1 FROM pipelines WHERE id = ?", (version["pipeline_id"],)
            ).fetchone():
                raise not_found(f"Pipeline {version['pipeline_id']} not found")
            self._db.insert_unique(
                conn,
                VERSIONS,
                version,
                f"Failed to create a new pipeline version. The name {version['name']!r} "
                f"already exists in pipeline {version['pipeline_id']}. Please specify a new name",
            )

    def update_version(self, version_id: str, **fields: Any) -> bool:
        """Change columns of a version; False when it does not exist."""
        return self._db.update(VERSIONS, version_id, **fields)

    def delete_version(self, version_id: str) -> None:
        """Delete one version."""
        self._db.delete(VERSIONS, version_id)
