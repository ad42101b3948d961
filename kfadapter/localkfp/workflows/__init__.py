"""Local execution of KFP v1 pipelines: Argo Workflows, run as Argo would, with local processes.

kfp 1.8 (and Elyra's KFP processor) compile a pipeline to an Argo `Workflow`; a KFP 2.17
cluster runs it as a V1 run. The run's worker (`worker.py`) hands such a spec here:
`features` refuses, before anything runs, a workflow that uses what cannot run on one machine;
`engine` executes the rest (container and script templates as processes in task
environments, dag and steps templates, parameters, artifacts, loops, conditions, retries and
the exit handler), with `scheduling` (dag and steps), `calls` (a task's items and
arguments), `pods` (a pod's process), `retries` (Retry nodes, carried-forward pods) and
`results` (what a node produced and what its record keeps); `nodes` names and reports the
Argo nodes, from which the server builds KFP's task details; `expressions` is Argo's `{{...}}`
substitution and its `when`/`depends` expressions; `paths` maps the pods' container paths to
their directories.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kfadapter.argo_workflows import is_workflow
from kfadapter.localkfp.workflows.features import UnsupportedWorkflow, check_supported

__all__ = ["UnsupportedWorkflow", "check_supported", "is_workflow", "run_workflow"]


def run_workflow(
    workflow: Mapping[str, Any],
    parameters: Mapping[str, Any],
    run_directory: Path,
    status: Any,
    environments: Any,
    max_parallel_tasks: int,
    previous_attempt: Path | None = None,
) -> tuple[str, str | None]:
    """Check and run the workflow; ("SUCCEEDED" or "FAILED", the error).

    `parameters`: `{name: value}` over `spec.arguments.parameters`' values; `status`: where
    `node` events go. The run id is the run directory's name. Each ended node is recorded
    in RUN_DIR/task_results.jsonl; a retry (`previous_attempt`: the previous attempt's
    results) carries forward the pods that succeeded.
    """
    from kfadapter.localkfp import attempts
    from kfadapter.localkfp.workflows.engine import WorkflowError, WorkflowRunner

    try:
        check_supported(workflow)
        runner = WorkflowRunner(
            workflow,
            {name: str(value) for name, value in parameters.items()},
            run_directory.name,
            run_directory,
            status,
            environments,
            max_parallel_tasks,
            attempts.TaskResults(run_directory / attempts.TASK_RESULTS),
            attempts.load(previous_attempt),
        )
    except (UnsupportedWorkflow, WorkflowError) as exc:
        return "FAILED", str(exc)
    phase, error = runner.run()
    return ("SUCCEEDED", None) if phase == "Succeeded" else ("FAILED", error)
