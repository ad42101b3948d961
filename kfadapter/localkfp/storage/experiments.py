"""SQL of experiments (as KFP's `storage/experiment_store.go`)."""

from __future__ import annotations

from typing import Any

from kfadapter.localkfp.storage.database import ResourceStore


class ExperimentStore(ResourceStore):
    """Experiments in the database."""

    table = "experiments"
    noun = "Experiment"

    def find_by_name(self, namespace: str, display_name: str) -> dict[str, Any] | None:
        """The experiment with this name in the namespace, or None."""
        return self._db.find(self.table, namespace=namespace, display_name=display_name)

    def insert(self, row: dict[str, Any]) -> None:
        """Add an experiment; 409 when its name is taken in its namespace."""
        with self._db.write() as conn:
            self._db.insert_unique(
                conn,
                self.table,
                row,
                f"Failed to create a new experiment. The name {row['display_name']!r} "
                f"already exists in namespace {row['namespace']!r}. Please specify a new name",
            )

    def insert_unless_named(self, row: dict[str, Any]) -> dict[str, Any]:
        """The experiment with the row's name in its namespace, the row added when there is
        none (safe when two callers race); the stored experiment."""
        with self._db.write() as conn:
            self._db.insert(conn, self.table, row, or_ignore=True)
        return self.find_by_name(row["namespace"], row["display_name"]) or row

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
