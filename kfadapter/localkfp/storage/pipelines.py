"""SQL of pipelines and their versions (as KFP's `storage/pipeline_store.go`)."""

from __future__ import annotations

from typing import Any

from kfadapter.localkfp import query as q
from kfadapter.localkfp.apierrors import FAILED_PRECONDITION, ApiError, conflict, not_found
from kfadapter.localkfp.storage.database import Database


class PipelineStore:
    """Pipelines and pipeline versions in the database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, pipeline_id: str) -> dict[str, Any] | None:
        """A pipeline by id, or None."""
        return self._db.get("pipelines", pipeline_id)

    def find_by_name(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The pipeline with this name in the namespace, or None."""
        return self._db.find("pipelines", namespace=namespace, name=name)

    def list(self, query: q.ListQuery) -> tuple[list[dict[str, Any]], int, str]:
        """One page of pipelines, the total, the next page token."""
        return self._db.list(query)

    def insert(self, pipeline: dict[str, Any], version: dict[str, Any] | None = None) -> None:
        """Add a pipeline (and its first version) at once; 409 when its name is taken."""
        with self._db.write() as conn:
            clash = conn.execute(
                "SELECT 1 FROM pipelines WHERE namespace = ? AND name = ?",
                (pipeline["namespace"], pipeline["name"]),
            ).fetchone()
            if clash:
                raise conflict(
                    f"Failed to create a new pipeline. The name {pipeline['name']!r} already "
                    f"exists in namespace {pipeline['namespace']!r}. Please specify a new name"
                )
            self._db.insert(conn, "pipelines", pipeline)
            if version is not None:
                self._db.insert(conn, "pipeline_versions", version)

    def update(self, pipeline_id: str, **fields: Any) -> bool:
        """Change columns of a pipeline; False when it does not exist."""
        return self._db.update("pipelines", pipeline_id, **fields)

    def delete(self, pipeline_id: str, cascade: bool) -> None:
        """Delete a pipeline; refused (400) while it has versions unless `cascade`."""
        with self._db.write() as conn:
            if not conn.execute("SELECT 1 FROM pipelines WHERE id = ?", (pipeline_id,)).fetchone():
                raise not_found(f"Pipeline {pipeline_id} not found")
            versions = conn.execute(
                "SELECT COUNT(*) FROM pipeline_versions WHERE pipeline_id = ?", (pipeline_id,)
            ).fetchone()[0]
            if versions and not cascade:
                raise ApiError(
                    400,
                    f"Failed to delete pipeline {pipeline_id}: it has {versions} pipeline "
                    "version(s); delete them first or set cascade=true",
                    FAILED_PRECONDITION,
                )
            conn.execute("DELETE FROM pipeline_versions WHERE pipeline_id = ?", (pipeline_id,))
            conn.execute("DELETE FROM pipelines WHERE id = ?", (pipeline_id,))

    # -- versions -------------------------------------------------------------------------

    def get_version(self, version_id: str) -> dict[str, Any] | None:
        """A pipeline version by id, or None."""
        return self._db.get("pipeline_versions", version_id)

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
            clash = conn.execute(
                "SELECT 1 FROM pipeline_versions WHERE pipeline_id = ? AND name = ?",
                (version["pipeline_id"], version["name"]),
            ).fetchone()
            if clash:
                raise conflict(
                    f"Failed to create a new pipeline version. The name {version['name']!r} "
                    f"already exists in pipeline {version['pipeline_id']}. "
                    "Please specify a new name"
                )
            self._db.insert(conn, "pipeline_versions", version)

    def update_version(self, version_id: str, **fields: Any) -> bool:
        """Change columns of a version; False when it does not exist."""
        return self._db.update("pipeline_versions", version_id, **fields)

    def delete_version(self, version_id: str) -> None:
        """Delete one version."""
        self._db.delete("pipeline_versions", version_id)
