"""SQL of recurring runs (as KFP's `storage/job_store.go`)."""

from __future__ import annotations

from typing import Any

from kfadapter.localkfp.storage.database import ResourceStore


class RecurringRunStore(ResourceStore):
    """Recurring runs in the database."""

    table = "recurring_runs"
    noun = "Recurring run"

    def enabled(self) -> list[dict[str, Any]]:
        """Every enabled recurring run."""
        with self._db.read() as conn:
            rows = conn.execute("SELECT * FROM recurring_runs WHERE status = 'ENABLED'").fetchall()
        return [dict(row) for row in rows]

    def insert(self, row: dict[str, Any]) -> None:
        """Add a recurring run."""
        with self._db.write() as conn:
            self._db.insert(conn, self.table, row)
