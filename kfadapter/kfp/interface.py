"""KfpClient: what the adapter's API and run tracking ask of KFP.

`KfConnect` is the implementation that speaks to a real KFP; the fast tests use an
in-process fake with the same methods. Every method returns plain dicts as
`kfadapter.kfp.flatten` shapes them and raises the typed errors of `kfadapter.errors`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict, dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class PageRequest:
    """Which page of a KFP list to get, in KFP's own list arguments."""

    page_size: int | None = None
    page_token: str | None = None
    sort_by: str | None = None
    filter: str | None = None

    def params(self) -> dict[str, Any]:
        """The arguments of KFP's list call."""
        return asdict(self)


@dataclass(frozen=True)
class NewRun:
    """A run to start: a pipeline version with parameter values, in an experiment.

    A V1 pipeline (an Argo Workflow, `template_type` "V1") takes its values only through
    KFP's v1beta1 runs API (`body_v1`): KFP 2.17 applies no v2beta1
    `runtime_config.parameters` to it (`server/api_converter.go` toModelRun,
    `template/argo_template.go` RunWorkflow).
    """

    name: str
    experiment_id: str
    pipeline_id: str
    version_id: str
    parameters: dict[str, Any]
    description: str = ""
    template_type: str = "V2"

    def body(self) -> dict[str, Any]:
        """KFP's V2beta1Run JSON asking for this run (of a V2 pipeline)."""
        return {
            "display_name": self.name,
            "description": self.description,
            "experiment_id": self.experiment_id,
            "pipeline_version_reference": {
                "pipeline_id": self.pipeline_id,
                "pipeline_version_id": self.version_id,
            },
            "runtime_config": {"parameters": self.parameters},
        }

    def body_v1(self) -> dict[str, Any]:
        """KFP's v1beta1 ApiRun JSON asking for this run: the version and the experiment
        as resource references, the values as `pipeline_spec.parameters` (strings)."""
        return {
            "name": self.name,
            "description": self.description,
            "pipeline_spec": {
                "parameters": [
                    {"name": name, "value": str(value)} for name, value in self.parameters.items()
                ]
            },
            "resource_references": [
                {
                    "key": {"type": "EXPERIMENT", "id": self.experiment_id},
                    "relationship": "OWNER",
                },
                {
                    "key": {"type": "PIPELINE_VERSION", "id": self.version_id},
                    "relationship": "CREATOR",
                },
            ],
        }


class KfpClient(Protocol):
    """The KFP operations the adapter uses."""

    def healthz(self) -> dict[str, Any]:
        """KFP's healthz answer; raises when KFP is unreachable or failing."""
        ...

    def list_pipelines(self, page: PageRequest) -> dict[str, Any]:
        """One page of pipelines: {"pipelines", "next_page_token", "total_size"}."""
        ...

    def all_pipelines(self, *, filter: str | None = None) -> list[dict[str, Any]]:
        """Every pipeline, oldest first."""
        ...

    def find_pipeline(self, name: str) -> dict[str, Any] | None:
        """The pipeline with this display name, or None."""
        ...

    def resolve_pipeline(self, id_or_name: str) -> dict[str, Any]:
        """A pipeline by id, else by display name; NotFound when neither matches."""
        ...

    def delete_pipeline(self, pipeline_id: str) -> None:
        """Delete a pipeline with all its versions."""
        ...

    def upload_pipeline(
        self, name: str, package: bytes, *, description: str | None = None
    ) -> dict[str, Any]:
        """Create a pipeline from a compiled package; Conflict when the name is taken."""
        ...

    def versions_page(
        self, pipeline_id: str, *, page_size: int, sort_by: str | None = None
    ) -> dict[str, Any]:
        """One page of a pipeline's versions: {"pipeline_versions", ..., "total_size"}."""
        ...

    def list_versions(self, pipeline_id: str) -> list[dict[str, Any]]:
        """Every version of a pipeline, oldest first."""
        ...

    def find_version(self, pipeline_id: str, name: str | None) -> dict[str, Any] | None:
        """The newest version with this name or id (the newest of all for None), or None."""
        ...

    def upload_version(
        self, pipeline: dict[str, Any], name: str, package: bytes, *, description: str | None = None
    ) -> dict[str, Any]:
        """Add a version to a pipeline (as find_pipeline gives it) from a compiled package."""
        ...

    def delete_version(self, pipeline_id: str, version_id: str) -> None:
        """Delete one version of a pipeline."""
        ...

    def all_experiments(self) -> list[dict[str, Any]]:
        """Every experiment in the namespace, oldest first."""
        ...

    def find_experiment(self, name: str) -> dict[str, Any] | None:
        """The experiment with this name, or None."""
        ...

    def find_or_create_experiment(
        self, name: str, description: str | None = None
    ) -> dict[str, Any]:
        """The experiment with this name, created when missing (safe when raced)."""
        ...

    def create_experiment(self, name: str, description: str | None = None) -> dict[str, Any]:
        """Create an experiment; Conflict when the name is taken."""
        ...

    def all_runs(self) -> list[dict[str, Any]]:
        """Every run in the namespace, oldest first."""
        ...

    def runs_of_pipeline(
        self, pipeline_id: str, *, page_size: int | None = None, page_token: str | None = None
    ) -> dict[str, Any]:
        """One page of a pipeline's runs, newest first: {"runs", "next_page_token"}."""
        ...

    def get_run(self, run_id: str, *, v1_pods: bool = False) -> dict[str, Any]:
        """One run with its parameters, error, state history and tasks; with `v1_pods`, a
        V1 run's tasks name their pods too (one more call: the run's pipeline version)."""
        ...

    def create_run(self, run: NewRun) -> dict[str, Any]:
        """Start a run of a pipeline version with these parameter values."""
        ...

    def terminate_run(self, run_id: str) -> None:
        """Ask KFP to terminate a run."""
        ...

    def run_states(self, run_ids: Collection[str]) -> dict[str, str]:
        """run_id -> state for the runs KFP knows (absent: unknown to KFP)."""
        ...

    def task_log(self, run_id: str, node_id: str) -> str:
        """The log text of one pod of a run (a name from a task's `pods`)."""
        ...

    def all_recurring_runs(self) -> list[dict[str, Any]]:
        """Every recurring run in the namespace, oldest first."""
        ...

    def get_recurring_run(self, recurring_run_id: str) -> dict[str, Any]:
        """One recurring run by id."""
        ...
