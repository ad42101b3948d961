"""The embedded server's services, one a KFP resource, built over one store."""

from __future__ import annotations

from dataclasses import dataclass

from kfadapter.localkfp.experiments import ExperimentService
from kfadapter.localkfp.ids import IdSource, new_uuid
from kfadapter.localkfp.pipelines import PipelineService
from kfadapter.localkfp.recurring import RecurringRunService
from kfadapter.localkfp.runs import RunService
from kfadapter.localkfp.storage import Store
from kfadapter.localkfp.timefmt import Clock, now_us


@dataclass(frozen=True)
class KfpServices:
    """What the HTTP app and the scheduler call: KFP's v2beta1 operations."""

    pipelines: PipelineService
    experiments: ExperimentService
    runs: RunService
    recurring_runs: RecurringRunService

    @classmethod
    def over(
        cls, store: Store, *, clock: Clock = now_us, new_id: IdSource = new_uuid
    ) -> KfpServices:
        """The services on `store`, with the `Default` experiment in place (as KFP has it)."""
        pipelines = PipelineService(store.pipelines, clock=clock, new_id=new_id)
        experiments = ExperimentService(store.experiments, clock=clock, new_id=new_id)
        runs = RunService(store.runs, pipelines, experiments, clock=clock, new_id=new_id)
        recurring_runs = RecurringRunService(
            store.recurring_runs, runs, experiments, clock=clock, new_id=new_id
        )
        experiments.default_experiment()
        return cls(pipelines, experiments, runs, recurring_runs)
