"""The embedded server's storage: one SQLite file, one store a resource, all SQL here.

As KFP's `backend/src/apiserver/storage/` keeps it: services ask stores for rows and
changes, and never write SQL themselves.
"""

from __future__ import annotations

from pathlib import Path

from kfadapter.localkfp.storage.database import Database, dumps, loads
from kfadapter.localkfp.storage.experiments import ExperimentStore
from kfadapter.localkfp.storage.pipelines import PipelineStore
from kfadapter.localkfp.storage.recurring import RecurringRunStore
from kfadapter.localkfp.storage.runs import RunChange, RunStore

__all__ = [
    "Database",
    "ExperimentStore",
    "PipelineStore",
    "RecurringRunStore",
    "RunChange",
    "RunStore",
    "Store",
    "dumps",
    "loads",
]


class Store:
    """The database and the store of each resource on it."""

    def __init__(self, path: Path | str) -> None:
        self.db = Database(path)
        self.pipelines = PipelineStore(self.db)
        self.experiments = ExperimentStore(self.db)
        self.runs = RunStore(self.db)
        self.recurring_runs = RecurringRunStore(self.db)

    def close(self) -> None:
        """Close the database's connections."""
        self.db.close()
