"""Runs a pipeline spec's DAGs in the run's worker: every task whose upstream tasks are done
starts at once, as on a KFP cluster.

kfp.local 2.17 runs the tasks of a DAG one after another, so this module replaces its
orchestration and keeps KFP's own pieces for the rest: kfp.local's helpers resolve task
arguments, loop iterations, conditions, nested DAG arguments, placeholders, executor input and
output and importers, and the component code runs under KFP's executor
(``kfp.dsl.executor_main``) inside the command of the component, in the task's own environment
(`TaskEnvironments`).

Concurrency: a thread per started task. Container tasks of a run hold one of
``max_parallel_tasks`` slots while they execute; a ``ParallelFor`` with ``parallelism=N`` runs
at most N iterations at once. After a task fails, a DAG starts no new task but those that run
on completion of their upstream tasks (exit handlers, ``ignore_upstream_failure``), and the
running ones finish (Argo's fail-fast DAGs).

Every task, container or DAG (sub-pipeline, loop, loop iteration, condition), is reported to
`TaskReporter` with where it sits in the DAG (see `execution_protocol`), and its result is
recorded (`attempts`). A retried run starts from the previous attempt's results, as KFP
retries a workflow (`backend/src/common/util/workflow.go` GenerateRetryExecution): a
component task that SUCCEEDED and a condition branch that was SKIPPED are not executed
again but reported with their times and pod names, their outputs feeding the tasks
downstream; failed and never-started tasks and exit-handler tasks run again, under the pod
name they had; DAGs are evaluated again around them.

The package: `outcomes` (task states, `Outcome`, `TaskReporter`, `Scope`, `TaskCall`),
`component_tasks` (a component task's attempts, importer, container execution, task cache)
and `dags` (`PipelineRunner`: DAGs, loops, conditions, exit tasks).
"""

from kfadapter.localkfp.orchestration.component_tasks import ComponentTaskRunner, Environments
from kfadapter.localkfp.orchestration.dags import PipelineRunner
from kfadapter.localkfp.orchestration.outcomes import (
    FAILED,
    SKIPPED,
    SUCCEEDED,
    ComponentSpec,
    Emitter,
    ExecutorSpec,
    Outcome,
    Scope,
    TaskCall,
    TaskReporter,
    TaskSpec,
)

__all__ = [
    "FAILED",
    "SKIPPED",
    "SUCCEEDED",
    "ComponentSpec",
    "ComponentTaskRunner",
    "Emitter",
    "Environments",
    "ExecutorSpec",
    "Outcome",
    "PipelineRunner",
    "Scope",
    "TaskCall",
    "TaskReporter",
    "TaskSpec",
]
