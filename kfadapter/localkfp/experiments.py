"""Experiments: KFP's ExperimentService, and the experiment a new run goes to."""

from __future__ import annotations

from typing import Any

from kfadapter.localkfp import query as q
from kfadapter.localkfp import validation as v
from kfadapter.localkfp import views
from kfadapter.localkfp.apierrors import ABORTED, ApiError
from kfadapter.localkfp.fields import EXPERIMENTS
from kfadapter.localkfp.sources import SYSTEM, Sources
from kfadapter.localkfp.storage import ExperimentStore

DEFAULT_EXPERIMENT = "Default"
DEFAULT_DESCRIPTION = "All runs created without specifying an experiment are grouped here."


class ExperimentService:
    """Experiments: names unique (in the one namespace ""), a `Default` one always there."""

    def __init__(self, store: ExperimentStore, sources: Sources = SYSTEM) -> None:
        self._store = store
        self._sources = sources

    def create_experiment(self, body: Any) -> dict[str, Any]:
        """POST /experiments: names are unique (409); a namespace given is dropped, as a
        single-user KFP does."""
        body = v.json_object(body, "experiment")
        name = v.experiment_name(body)
        namespace = v.single_user_namespace(v.text(body, "namespace", "experiment"))
        row = self._new_row(name, v.text(body, "description", "experiment"), namespace)
        self._store.insert(row)
        return views.experiment_json(row)

    def get_experiment(self, experiment_id: str) -> dict[str, Any]:
        """GET /experiments/{id}."""
        return views.experiment_json(self.experiment_row(experiment_id))

    def list_experiments(self, args: dict[str, Any]) -> dict[str, Any]:
        """GET /experiments (a namespace given limits nothing on a single-user KFP)."""
        query = q.from_args(EXPERIMENTS, args, {"namespace": v.single_user_namespace("")})
        return views.page("experiments", views.experiment_json, self._store.list(query))

    def delete_experiment(self, experiment_id: str) -> dict[str, Any]:
        """DELETE /experiments/{id}: its runs and recurring runs remain (KFP's
        DeleteExperiment); the `Default` experiment cannot be deleted (409, ABORTED)."""
        default = self._store.find_by_name("", DEFAULT_EXPERIMENT)
        if default is not None and default["id"] == experiment_id:
            raise ApiError(
                409,
                f"Failed to delete experiment {experiment_id}. The default experiment cannot "
                "be deleted",
                ABORTED,
            )
        self.experiment_row(experiment_id)
        self._store.delete(experiment_id)
        return {}

    def archive_experiment(self, experiment_id: str) -> dict[str, Any]:
        """POST /experiments/{id}:archive: archives its runs, disables its recurring runs."""
        self.experiment_row(experiment_id)
        self._store.archive(experiment_id, self._sources.clock())
        return {}

    def unarchive_experiment(self, experiment_id: str) -> dict[str, Any]:
        """POST /experiments/{id}:unarchive (its runs stay archived, as in KFP)."""
        self.experiment_row(experiment_id)
        self._store.update(experiment_id, storage_state="AVAILABLE")
        return {}

    def experiment_row(self, experiment_id: str) -> dict[str, Any]:
        """The stored experiment; 404 when there is none."""
        return self._store.existing(experiment_id)

    def is_archived(self, experiment_id: str) -> bool:
        """Whether the experiment exists and is archived."""
        row = self._store.get(experiment_id)
        return row is not None and row["storage_state"] == "ARCHIVED"

    def default_experiment(self, namespace: str = "") -> dict[str, Any]:
        """The `Default` experiment of the namespace, created when missing (as KFP does)."""
        existing = self._store.find_by_name(namespace, DEFAULT_EXPERIMENT)
        if existing:
            return existing
        row = self._new_row(DEFAULT_EXPERIMENT, DEFAULT_DESCRIPTION, namespace)
        return self._store.insert_unless_named(row)

    def for_new_run(self, experiment_id: str) -> dict[str, Any]:
        """The experiment a new run goes to: the given one (404 when unknown; an archived
        one too, as KFP's GetValidExperimentNamespacePair allows), else `Default`."""
        if not experiment_id:
            return self.default_experiment("")
        return self.experiment_row(experiment_id)

    def _new_row(self, name: str, description: str, namespace: str) -> dict[str, Any]:
        return {
            "id": self._sources.new_id(),
            "display_name": name,
            "description": description,
            "namespace": namespace,
            "created_at": self._sources.clock(),
            "storage_state": "AVAILABLE",
            "last_run_created_at": 0,
        }
