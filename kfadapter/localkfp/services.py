"""The embedded server's services, one a KFP resource, built over one store."""

from __future__ import annotations

from dataclasses import dataclass

from kfadapter.localkfp.experiments import ExperimentService
from kfadapter.localkfp.pipelines import PipelineService
from kfadapter.localkfp.recurring import RecurringRunService
from kfadapter.localkfp.runs import RunService
from kfadapter.localkfp.sources import SYSTEM, Sources
from kfadapter.localkfp.storage import Store


@dataclass(frozen=True)
class KfpServices:
    """What the HTTP app and the scheduler call: KFP's v2beta1 operations."""

    pipelines: PipelineService
    experiments: ExperimentService
    runs: RunService
    recurring_runs: RecurringRunService

    @classmethod
    def over(
        cls, store: Store, sources: Sources = SYSTEM, *, local_extras: bool = False
    ) -> KfpServices:
        """The services on `store`, with the `Default` experiment in place (as KFP has it);
        `local_extras` turns on the deliberate differences from KFP (docs/local-kfp.md)."""
        pipelines = PipelineService(store.pipelines, sources)
        experiments = ExperimentService(store.experiments, sources)
        runs = RunService(store.runs, pipelines, experiments, sources, local_extras=local_extras)
        recurring_runs = RecurringRunService(store.recurring_runs, runs, experiments, sources)
        experiments.default_experiment()
        return cls(pipelines, experiments, runs, recurring_runs)
