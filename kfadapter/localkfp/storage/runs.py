"""SQL of runs (as KFP's `storage/run_store.go`). What a change of state means is the run
service's: the store applies a change inside one transaction."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kfadapter.localkfp.states import ACTIVE_STATES
from kfadapter.localkfp.storage.database import ResourceStore, update_row

# A change of a run: the columns to set, given the run's row (None: leave it as it is).
RunChange = Callable[[dict[str, Any]], dict[str, Any] | None]


class RunStore(ResourceStore):
    """Runs in the database."""

    table = "runs"
    noun = "Run"

    def insert(self, row: dict[str, Any]) -> None:
        """Add a run and note its creation time on its experiment."""
        with self._db.write() as conn:
            self._db.insert(conn, "runs", row)
            conn.execute(
                "UPDATE experiments SET last_run_created_at = ? WHERE id = ?",
                (row["created_at"], row["experiment_id"]),
            )

    def change(self, run_id: str, change: RunChange) -> bool:
        """Apply a change to the run in one write transaction; False when the run is gone."""
        with self._db.write() as conn:
            row = conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                return False
            fields = change(dict(row))
            if fields:
                update_row(conn, "runs", run_id, fields)
        return True

    def change_active(self, change: RunChange) -> int:
        """Apply a change to every run in an active state, in one transaction; how many."""
        marks = ", ".join("?" for _ in ACTIVE_STATES)
        with self._db.write() as conn:
            rows = conn.execute(
                f"SELECT * FROM runs WHERE state IN ({marks})", ACTIVE_STATES
            ).fetchall()
            for row in rows:
                fields = change(dict(row))
                if fields:
                    update_row(conn, "runs", row["id"], fields)
        return len(rows)

    def active_runs_of(self, recurring_run_id: str) -> int:
        """How many runs a recurring run has that have not reached a final state."""
        marks = ", ".join("?" for _ in ACTIVE_STATES)
        with self._db.read() as conn:
            return conn.execute(
                f"SELECT COUNT(*) FROM runs WHERE recurring_run_id = ? AND state IN ({marks})",
                (recurring_run_id, *ACTIVE_STATES),
            ).fetchone()[0]
