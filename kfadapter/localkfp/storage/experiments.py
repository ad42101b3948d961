"""SQL of experiments (as KFP's `storage/experiment_store.go`)."""

from __future__ import annotations

from typing import Any

from kfadapter.localkfp import query as q
from kfadapter.localkfp.apierrors import conflict
from kfadapter.localkfp.storage.database import Database


class ExperimentStore:
    """Experiments in the database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, experiment_id: str) -> dict[str, Any] | None:
        """An experiment by id, or None."""
        return self._db.get("experiments", experiment_id)

    def find_by_name(self, namespace: str, display_name: str) -> dict[str, Any] | None:
        """The experiment with this name in the namespace, or None."""
        return self._db.find("experiments", namespace=namespace, display_name=display_name)

    def list(self, query: q.ListQuery) -> tuple[list[dict[str, Any]], int, str]:
        """One page of experiments, the total, the next page token."""
        return self._db.list(query)

    def insert(self, row: dict[str, Any]) -> None:
        """Add an experiment; 409 when its name is taken in its namespace."""
        with self._db.write() as conn:
            if conn.execute(
                "SELECT 1 FROM experiments WHERE namespace = ? AND display_name = ?",
                (row["namespace"], row["display_name"]),
            ).fetchone():
                raise conflict(
                    f"Failed to create a new experiment. The name {row['display_name']!r} "
                    f"already exists in namespace {row['namespace']!r}. Please specify a new name"
                )
            self._db.insert(conn, "experiments", row)

    def insert_unless_named(self, row: dict[str, Any]) -> dict[str, Any]:
        """The experiment with the row's name in its namespace, the row added when there is
        none (safe when two callers race); the stored experiment."""
        with self._db.write() as conn:
            self._db.insert(conn, "experiments", row, or_ignore=True)
        return self.find_by_name(row["namespace"], row["display_name"]) or row

    def update(self, experiment_id: str, **fields: Any) -> bool:
        """Change columns of an experiment; False when it does not exist."""
        return self._db.update("experiments", experiment_id, **fields)

    def delete(self, experiment_id: str) -> None:
        """Delete an experiment and its recurring runs (its runs remain)."""
        with self._db.write() as conn:
            conn.execute("DELETE FROM recurring_runs WHERE experiment_id = ?", (experiment_id,))
            conn.execute("DELETE FROM experiments WHERE id = ?", (experiment_id,))

    def archive(self, experiment_id: str, now: int) -> None:
        """Archive an experiment and its runs; disable its recurring runs."""
        with self._db.write() as conn:
            conn.execute(
                "UPDATE experiments SET storage_state = 'ARCHIVED' WHERE id = ?", (experiment_id,)
            )
            conn.execute(
                "UPDATE runs SET storage_state = 'ARCHIVED' WHERE experiment_id = ?",
                (experiment_id,),
            )
            conn.execute(
                "UPDATE recurring_runs SET status = 'DISABLED', updated_at = ? "
                "WHERE experiment_id = ?",
                (now, experiment_id),
            )
