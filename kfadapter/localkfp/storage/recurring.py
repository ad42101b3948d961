"""SQL of recurring runs (as KFP's `storage/job_store.go`)."""

from __future__ import annotations

from typing import Any

from kfadapter.localkfp import query as q
from kfadapter.localkfp.storage.database import Database


class RecurringRunStore:
    """Recurring runs in the database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, recurring_run_id: str) -> dict[str, Any] | None:
        """A recurring run by id, or None."""
        return self._db.get("recurring_runs", recurring_run_id)

    def list(self, query: q.ListQuery) -> tuple[list[dict[str, Any]], int, str]:
        """One page of recurring runs, the total, the next page token."""
        return self._db.list(query)

    def enabled(self) -> list[dict[str, Any]]:
        """Every enabled recurring run."""
        with self._db.read() as conn:
            rows = conn.execute("SELECT * FROM recurring_runs WHERE status = 'ENABLED'").fetchall()
        return [dict(row) for row in rows]

    def insert(self, row: dict[str, Any]) -> None:
        """Add a recurring run."""
        with self._db.write() as conn:
            self._db.insert(conn, "recurring_runs", row)

    def update(self, recurring_run_id: str, **fields: Any) -> bool:
        """Change columns of a recurring run; False when it does not exist."""
        return self._db.update("recurring_runs", recurring_run_id, **fields)

    def delete(self, recurring_run_id: str) -> None:
        """Delete a recurring run (the runs it started remain)."""
        self._db.delete("recurring_runs", recurring_run_id)
