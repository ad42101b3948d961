"""Run sources: what a run or recurring run executes, read from its body and the store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kfadapter import argo_workflows
from kfadapter.localkfp import validation as v
from kfadapter.localkfp.apierrors import INTERNAL, ApiError, bad_request
from kfadapter.localkfp.packages import ir_of, normalize_spec
from kfadapter.localkfp.pipelines import PipelineService
from kfadapter.localkfp.storage import dumps, loads


@dataclass(frozen=True)
class RunSource:
    """What a run (or recurring run) executes: a stored version, or an inline spec."""

    pipeline_id: str
    pipeline_version_id: str
    pipeline_spec: str | None  # the inline spec as stored (JSON text), None for a version
    ir: dict[str, Any]  # the IR to execute, or a V1 template's Argo Workflow

    @property
    def is_v1(self) -> bool:
        """Whether the pipeline is a V1 template (an Argo Workflow)."""
        return argo_workflows.is_workflow(self.ir)


@dataclass(frozen=True)
class RunRequest:
    """A run body read (from the v2beta1 or the v1beta1 API), before it is stored."""

    name: str
    description: str
    service_account: str
    source: RunSource
    runtime_config: dict[str, Any]  # as stored and shown
    v1_parameters: dict[str, str] | None = None  # v1beta1 pipeline_spec.parameters

    @classmethod
    def from_body(
        cls,
        body: dict[str, Any],
        name: str,
        source: RunSource,
        runtime_config: dict[str, Any],
        v1_parameters: dict[str, str] | None = None,
    ) -> RunRequest:
        """The request, with the body's description and service account."""
        return cls(
            name=name,
            description=v.text(body, "description", "run"),
            service_account=v.text(body, "service_account", "run"),
            source=source,
            runtime_config=runtime_config,
            v1_parameters=v1_parameters,
        )


def resolve_source(pipelines: PipelineService, body: dict[str, Any], what: str) -> RunSource:
    """What a run or recurring run body asks to execute: a version (by id, or the newest
    of a pipeline) or an inline spec."""
    reference = body.get("pipeline_version_reference")
    inline = body.get("pipeline_spec")
    if reference and inline:
        raise bad_request(f"{what} needs either pipeline_version_reference or pipeline_spec")
    if reference:
        reference = v.json_object(reference, f"{what}.pipeline_version_reference")
        pipeline_id = v.text(reference, "pipeline_id", "pipeline_version_reference")
        version_id = v.text(reference, "pipeline_version_id", "pipeline_version_reference")
        if not (version_id or pipeline_id):
            raise bad_request(
                "pipeline_version_reference needs a pipeline_version_id (or a pipeline_id)"
            )
        return version_source(pipelines, pipeline_id, version_id, what)
    if inline:
        if argo_workflows.is_workflow(inline):
            # KFP makes the template when it creates the run and wraps a refusal as an
            # internal error (`resource/resource_manager.go` CreateRun)
            try:
                argo_workflows.check_upload(inline)
            except argo_workflows.WorkflowError as error:
                raise fetch_failed(what, error.message) from None
            return RunSource("", "", dumps(inline), inline)
        stored = normalize_spec(inline, f"{what}.pipeline_spec")
        return RunSource("", "", dumps(stored), ir_of(stored))
    raise bad_request(f"{what} needs a pipeline_version_reference or a pipeline_spec")


def version_source(
    pipelines: PipelineService, pipeline_id: str, version_id: str, what: str
) -> RunSource:
    """The stored version a reference names (a pipeline's newest when only its id is given).

    A pipeline or version that does not exist is a 500 (INTERNAL), as KFP answers:
    `resource/resource_manager.go` CreateRun wraps the failed template fetch in
    util.NewInternalServerError.
    """
    version: dict[str, Any] | None
    try:
        if version_id:
            version = pipelines.version_row(pipeline_id, version_id)
        else:
            pipelines.pipeline_row(pipeline_id)
            version = pipelines.latest_version(pipeline_id)
    except ApiError as error:
        if error.status != 404:
            raise
        raise fetch_failed(what, error.message) from None
    if version is None:
        raise fetch_failed(what, f"pipeline {pipeline_id} has no versions")
    return RunSource(version["pipeline_id"], version["id"], None, version_ir(version))


def version_ir(version: dict[str, Any]) -> dict[str, Any]:
    """The IR (or V1 Argo Workflow) a stored pipeline version executes."""
    return ir_of(loads(version["pipeline_spec"]))


def fetch_failed(what: str, reason: str) -> ApiError:
    """KFP's 500 for a run or recurring run whose pipeline cannot be fetched."""
    return ApiError(
        500,
        f"Failed to create a {what.replace('_', ' ')} due to error fetching manifest: {reason}",
        INTERNAL,
    )
