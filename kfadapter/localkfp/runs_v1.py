"""KFP v1 runs: a v1beta1 run body read, and the Argo Workflow a V1 run executes."""

from __future__ import annotations

from typing import Any

from kfadapter import argo_workflows
from kfadapter.localkfp import validation as v
from kfadapter.localkfp.apierrors import INTERNAL, ApiError, bad_request
from kfadapter.localkfp.experiments import ExperimentService
from kfadapter.localkfp.packages import parse_documents
from kfadapter.localkfp.pipelines import PipelineService
from kfadapter.localkfp.run_sources import (
    RunRequest,
    RunSource,
    fetch_failed,
    resolve_source,
    version_source,
)
from kfadapter.localkfp.timefmt import to_datetime


def read_run_v1(
    body: Any, pipelines: PipelineService, experiments: ExperimentService
) -> tuple[RunRequest, dict[str, Any]]:
    """A v1beta1 run body (`server/run_server.go` CreateRunV1) as a request, and the
    experiment it goes to. The pipeline is a PIPELINE_VERSION resource reference, else
    `pipeline_spec.pipeline_id` (its newest version), else an inline
    `pipeline_spec.workflow_manifest`; the experiment an EXPERIMENT reference (else the
    default one). A V1 pipeline's run takes `pipeline_spec.parameters` ({name, value}
    strings); a V2 one its `pipeline_spec.runtime_config`."""
    body = v.json_object(body, "run")
    name = v.name(v.text(body, "name", "run"), "Run")
    references = _references(body)
    experiment = experiments.for_new_run(references.get("EXPERIMENT", ""))
    spec = v.json_object(body.get("pipeline_spec"), "run.pipeline_spec")
    parameters = _parameters(spec)
    source = _source(pipelines, references.get("PIPELINE_VERSION", ""), spec)
    runtime_config: dict[str, Any] = {}
    if source.is_v1:
        if parameters:  # KFP shows a v1 run's parameters as its runtime_config's
            runtime_config = {"parameters": dict(parameters)}
    else:  # a V2 pipeline takes its values from the runtime config (v2_template.go)
        runtime_config = v.runtime_config(spec, "run.pipeline_spec")
        v.pipeline_parameters(source.ir, runtime_config.get("parameters", {}))
    v1_parameters = parameters if source.is_v1 else None
    return RunRequest.from_body(body, name, source, runtime_config, v1_parameters), experiment


def v1_workflow(
    workflow: dict[str, Any], values: dict[str, str], run_id: str, scheduled_us: int, now_us: int
) -> dict[str, Any]:
    """The workflow a V1 run executes, as KFP's RunWorkflow makes it: an unknown parameter
    is a 400 (VerifyParameters), the values override the workflow's own, macros are
    replaced; then a workflow that cannot run (no entrypoint, a parameter without a value)
    is a 500 (CreateRun: `executionSpec.Validate(false, false)`, an internal error)."""
    unknown = argo_workflows.unrecognized(workflow, values)
    if unknown:
        raise bad_request(
            "Failed to create a run: Failed to generate the ExecutionSpec: Failed to verify "
            f"parameters: Unrecognized input parameter: {unknown[0]}"
        )
    resolved = argo_workflows.with_values(
        workflow,
        values,
        run_id=run_id,
        scheduled_at=to_datetime(scheduled_us),
        now=to_datetime(now_us),
    )
    try:
        argo_workflows.check_runnable(resolved)
    except argo_workflows.WorkflowError as error:
        name = (resolved.get("metadata") or {}).get("name") or ""
        raise ApiError(
            500,
            f"Failed to create a run: Failed to validate workflow for ({name}): {error.message}",
            INTERNAL,
        ) from None
    return resolved


def _source(pipelines: PipelineService, version_id: str, spec: dict[str, Any]) -> RunSource:
    """What a v1beta1 run executes: a version, a pipeline's newest, or a workflow."""
    pipeline_id = "" if version_id else v.text(spec, "pipeline_id", "run.pipeline_spec")
    if version_id or pipeline_id:
        return version_source(pipelines, pipeline_id, version_id, "run")
    manifest = v.text(spec, "workflow_manifest", "run.pipeline_spec")
    if not manifest:
        raise bad_request(
            "run needs a pipeline: a PIPELINE_VERSION resource reference, "
            "pipeline_spec.pipeline_id or pipeline_spec.workflow_manifest"
        )
    try:
        document = parse_documents(manifest)
    except ApiError as error:  # KFP: the template is made in CreateRun, an internal error
        raise fetch_failed("run", error.message) from None
    return resolve_source(pipelines, {"pipeline_spec": document}, "run")


def _references(body: dict[str, Any]) -> dict[str, str]:
    """{type: id} of a v1beta1 body's resource_references (EXPERIMENT, PIPELINE_VERSION)."""
    references = body.get("resource_references") or []
    if not isinstance(references, list):
        raise bad_request("run.resource_references must be a list")
    found: dict[str, str] = {}
    for reference in references:
        key = v.json_object(v.json_object(reference, "resource_reference").get("key"), "key")
        kind = v.text(key, "type", "resource_reference.key")
        found.setdefault(kind, v.text(key, "id", "resource_reference.key"))
    return found


def _parameters(spec: dict[str, Any]) -> dict[str, str]:
    """A v1beta1 pipeline_spec's parameters [{name, value}] as {name: value} (an absent
    value is "", as KFP's modelToParametersMap reads it)."""
    listed = spec.get("parameters") or []
    if not isinstance(listed, list):
        raise bad_request("run.pipeline_spec.parameters must be a list of {name, value}")
    values: dict[str, str] = {}
    for item in listed:
        item = v.json_object(item, "run.pipeline_spec.parameters[]")
        values[v.text(item, "name", "parameter")] = v.text(item, "value", "parameter")
    return values
