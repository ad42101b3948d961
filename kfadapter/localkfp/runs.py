"""Runs: KFP's RunService over the store, with execution handed to an `Executor`.

The run lock orders every change of a run's state (by requests and by the executor's
updates), so that a final state is never reopened. States are mapped here to what KFP on
Argo reports: a terminated run is CANCELING, then FAILED (never CANCELED).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kfadapter import argo_workflows
from kfadapter.localkfp import node_files, views
from kfadapter.localkfp import query as q
from kfadapter.localkfp import validation as v
from kfadapter.localkfp.apierrors import (
    ABORTED,
    FAILED_PRECONDITION,
    INTERNAL,
    ApiError,
    bad_request,
)
from kfadapter.localkfp.execution import Executor, RunUpdate
from kfadapter.localkfp.experiments import ExperimentService
from kfadapter.localkfp.fields import RUNS
from kfadapter.localkfp.packages import ir_of, normalize_spec, parse_documents
from kfadapter.localkfp.pipelines import PipelineService
from kfadapter.localkfp.sources import SYSTEM, Sources
from kfadapter.localkfp.states import (
    ACTIVE_STATES,
    FINAL_STATES,
    RETRYABLE_STATES,
    TERMINABLE_STATES,
    reported_state,
)
from kfadapter.localkfp.storage import RunChange, RunStore, dumps, loads
from kfadapter.localkfp.timefmt import from_datetime, to_datetime

log = logging.getLogger(__name__)

# The service account KFP gives a run or recurring run created without one
# (`template/template.go` setDefaultServiceAccount, `common.DefaultPipelineRunnerServiceAccount`).
DEFAULT_SERVICE_ACCOUNT = "pipeline-runner"
RESTART_ERROR = (
    "the local KFP server stopped while this run was active; runs do not survive a server restart"
)


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


class RunService:
    """Runs: created PENDING and submitted, followed through the executor's updates.

    With `local_extras` (a deliberate difference from KFP, off wherever the server stands
    in for a cluster) a failed run's `error` carries the reason it failed.
    """

    def __init__(
        self,
        store: RunStore,
        pipelines: PipelineService,
        experiments: ExperimentService,
        sources: Sources = SYSTEM,
        *,
        local_extras: bool = False,
    ) -> None:
        self._store = store
        self._pipelines = pipelines
        self._experiments = experiments
        self._sources = sources
        self.local_extras = local_extras
        self._executor: Executor | None = None
        self._run_lock = threading.RLock()

    def attach_executor(self, executor: Executor) -> None:
        """Use this executor for runs submitted from now on."""
        self._executor = executor

    def create_run(
        self,
        body: Any,
        experiment_id: str = "",
        recurring_run_id: str = "",
        scheduled_us: int | None = None,
    ) -> dict[str, Any]:
        """POST /runs: store the run PENDING and hand it to the executor; parameters that
        do not fit the pipeline are a 400 and nothing is stored (as in KFP). A V1
        pipeline's run takes no runtime_config.parameters: they are stored and shown but
        not applied (`server/api_converter.go` toModelRun leaves the v1 parameters empty,
        and `template/argo_template.go` RunWorkflow reads only those)."""
        body = v.json_object(body, "run")
        name = v.name(v.text(body, "display_name", "run"), "Run")
        experiment = self._experiments.for_new_run(
            v.text(body, "experiment_id", "run") or experiment_id
        )
        source = self.resolve_source(body, "run")
        runtime_config = v.runtime_config(body, "run")
        if not source.is_v1:
            v.pipeline_parameters(source.ir, runtime_config.get("parameters", {}))
        run = RunRequest(
            name=name,
            description=v.text(body, "description", "run"),
            service_account=v.text(body, "service_account", "run"),
            source=source,
            runtime_config=runtime_config,
        )
        return self._view(self._start(run, experiment, recurring_run_id, scheduled_us))

    def create_run_v1(self, body: Any) -> dict[str, Any]:
        """POST /apis/v1beta1/runs (`server/run_server.go` CreateRunV1): the KFP v1 way,
        whose `pipeline_spec.parameters` ({name, value} strings) a V1 pipeline's run does
        take. The pipeline is a PIPELINE_VERSION resource reference, else
        `pipeline_spec.pipeline_id` (its newest version), else an inline
        `pipeline_spec.workflow_manifest`; the experiment an EXPERIMENT reference (else the
        default one). Answers KFP's v1 ApiRunDetail: {"run", "pipeline_runtime"}."""
        body = v.json_object(body, "run")
        name = v.name(v.text(body, "name", "run"), "Run")
        references = _v1_references(body)
        experiment = self._experiments.for_new_run(references.get("EXPERIMENT", ""))
        spec = v.json_object(body.get("pipeline_spec"), "run.pipeline_spec")
        parameters = _v1_parameters(spec)
        source = self._v1_source(references.get("PIPELINE_VERSION", ""), spec)
        runtime_config: dict[str, Any] = {}
        if source.is_v1:
            if parameters:  # KFP shows a v1 run's parameters as its runtime_config's
                runtime_config = {"parameters": dict(parameters)}
        else:  # a V2 pipeline takes its values from the runtime config (v2_template.go)
            runtime_config = v.runtime_config(spec, "run.pipeline_spec")
            v.pipeline_parameters(source.ir, runtime_config.get("parameters", {}))
        run = RunRequest(
            name=name,
            description=v.text(body, "description", "run"),
            service_account=v.text(body, "service_account", "run"),
            source=source,
            runtime_config=runtime_config,
            v1_parameters=parameters if source.is_v1 else None,
        )
        row = self._start(run, experiment, "", None)
        return views.run_detail_v1(row, parameters if source.is_v1 else {})

    def _v1_source(self, version_id: str, spec: dict[str, Any]) -> RunSource:
        """What a v1beta1 run executes: a version, a pipeline's newest, or a workflow."""
        pipeline_id = "" if version_id else v.text(spec, "pipeline_id", "run.pipeline_spec")
        if version_id or pipeline_id:
            version = self._referenced_version(pipeline_id, version_id, "run")
            stored = ir_of(loads(version["pipeline_spec"]))
            return RunSource(version["pipeline_id"], version["id"], None, stored)
        manifest = v.text(spec, "workflow_manifest", "run.pipeline_spec")
        if not manifest:
            raise bad_request(
                "run needs a pipeline: a PIPELINE_VERSION resource reference, "
                "pipeline_spec.pipeline_id or pipeline_spec.workflow_manifest"
            )
        try:
            document = parse_documents(manifest)
        except ApiError as error:  # KFP: the template is made in CreateRun, an internal error
            raise _fetch_failed("run", error.message) from None
        return self.resolve_source({"pipeline_spec": document}, "run")

    def _start(
        self,
        run: RunRequest,
        experiment: dict[str, Any],
        recurring_run_id: str,
        scheduled_us: int | None,
    ) -> dict[str, Any]:
        """Store the run PENDING and hand it to the executor; its stored row."""
        run_id = self._sources.new_id()
        now = self._sources.clock()
        scheduled = scheduled_us or now
        source = run.source
        pipeline_spec, executed = source.pipeline_spec, source.ir
        parameters = run.runtime_config.get("parameters", {})
        if source.is_v1:
            executed = _v1_workflow(source.ir, run.v1_parameters or {}, run_id, scheduled, now)
            pipeline_spec = dumps(executed)  # what the run executes; a reference hides it
            parameters = argo_workflows.values_of(executed)
        row = {
            "id": run_id,
            "experiment_id": experiment["id"],
            "namespace": experiment["namespace"],
            "display_name": run.name,
            "description": run.description,
            "storage_state": "AVAILABLE",
            "pipeline_id": source.pipeline_id,
            "pipeline_version_id": source.pipeline_version_id,
            "pipeline_spec": pipeline_spec,
            "runtime_config": dumps(run.runtime_config) if run.runtime_config else None,
            "service_account": run.service_account or DEFAULT_SERVICE_ACCOUNT,
            "created_at": now,
            "scheduled_at": scheduled,
            "finished_at": 0,
            "state": "PENDING",
            "error": None,
            "task_details": None,
            "state_history": dumps([{"update_time": now, "state": "PENDING"}]),
            "recurring_run_id": recurring_run_id,
        }
        self._store.insert(row)
        self._submit(row["id"], executed, parameters)
        return self._store.get(row["id"]) or row

    def get_run(self, run_id: str) -> dict[str, Any]:
        """GET /runs/{id}."""
        return self._view(self._store.existing(run_id))

    def list_runs(self, args: dict[str, Any]) -> dict[str, Any]:
        """GET /runs?experiment_id=: an unknown experiment is a 404; a namespace given
        limits nothing on a single-user KFP (`server/run_server.go`, listRuns)."""
        experiment_id = args.get("experiment_id", "")
        if experiment_id:
            self._experiments.experiment_row(experiment_id)
        scope = {"experiment_id": experiment_id, "namespace": v.single_user_namespace("")}
        query = q.from_args(RUNS, args, scope)
        return views.page("runs", self._view, self._store.list(query))

    def terminate_run(self, run_id: str) -> dict[str, Any]:
        """POST /runs/{id}:terminate: a PENDING, RUNNING or PAUSED run becomes CANCELING
        and ends FAILED when its processes are gone (as Argo ends a workflow whose deadline
        KFP sets to 0); any other run, CANCELING included, is a 400."""
        with self._run_lock:
            row = self._store.existing(run_id)
            if row["state"] not in TERMINABLE_STATES:
                raise bad_request(
                    f"Failed to terminate run {run_id}: only a PENDING, RUNNING or PAUSED "
                    f"run can be terminated, this one is {row['state']}"
                )
            # KFP sets CANCELING without adding it to state_history (`storage/run_store.go`)
            self._store.update(run_id, state="CANCELING")
        active = bool(self._executor is not None and self._executor.terminate(run_id))
        if not active:
            with self._run_lock:
                current = self._store.get(run_id)
                if current is not None and current["state"] not in FINAL_STATES:
                    self._finish(run_id, "FAILED", "the run was terminated")
        return {}

    def delete_run(self, run_id: str) -> dict[str, Any]:
        """DELETE /runs/{id}: an active run is killed first."""
        row = self._store.existing(run_id)
        if row["state"] not in FINAL_STATES and self._executor is not None:
            self._executor.terminate(run_id)
        self._store.delete(run_id)
        return {}

    def archive_run(self, run_id: str) -> dict[str, Any]:
        """POST /runs/{id}:archive."""
        self._store.existing(run_id)
        self._store.update(run_id, storage_state="ARCHIVED")
        return {}

    def unarchive_run(self, run_id: str) -> dict[str, Any]:
        """POST /runs/{id}:unarchive: refused while its experiment is archived."""
        row = self._store.existing(run_id)
        if self._experiments.is_archived(row["experiment_id"]):
            raise ApiError(
                400,
                f"Failed to unarchive run {run_id}: its experiment {row['experiment_id']} "
                "is archived",
                FAILED_PRECONDITION,
            )
        self._store.update(run_id, storage_state="AVAILABLE")
        return {}

    def retry_run(self, run_id: str) -> dict[str, Any]:
        """POST /runs/{id}:retry: a FAILED run (a terminated one too) executes again under
        the same id; any other run is a 409 (ABORTED), as KFP refuses a workflow that is
        not Failed or Error (`common/util/workflow.go`, GenerateRetryExecution)."""
        with self._run_lock:
            row = self._store.existing(run_id)
            if row["state"] not in RETRYABLE_STATES:
                raise ApiError(
                    409,
                    f"Failed to retry run {run_id}: Workflow must be Failed/Error to retry, "
                    f"this run is {row['state']}",
                    ABORTED,
                )
            stored = loads(row["pipeline_spec"]) if row["pipeline_spec"] else None
            if argo_workflows.is_workflow(stored):
                ir = stored  # a V1 run retries the workflow it ran, as KFP retries it
            elif row["pipeline_version_id"]:
                version = self._pipelines.stored_version(row["pipeline_version_id"])
                if version is None:
                    raise ApiError(
                        400,
                        f"Failed to retry run {run_id}: its pipeline version "
                        f"{row['pipeline_version_id']} was deleted",
                        FAILED_PRECONDITION,
                    )
                ir = ir_of(loads(version["pipeline_spec"]))
            else:
                ir = ir_of(loads(row["pipeline_spec"]))
            kept = dumps(_kept_by_retry(loads(row["task_details"]) or [])) or None
            self._enter_state(run_id, "PENDING", error=None, finished_at=0, task_details=kept)
        if argo_workflows.is_workflow(ir):
            parameters = argo_workflows.values_of(ir)
        else:
            parameters = (loads(row["runtime_config"]) or {}).get("parameters", {})
        self._submit(run_id, ir, parameters, retry=True)
        return {}

    def apply_run_update(self, update: RunUpdate) -> None:
        """Persist a RunUpdate from the executor (state, task details, error, times), its
        state mapped to what KFP reports (CANCELED becomes FAILED)."""
        with self._run_lock:
            self._store.change(update.run_id, _progress(update, self._sources.clock()))

    def task_log(self, run_id: str, node_id: str) -> Path:
        """The file of a task's log: /apis/v1alpha1/runs/{run_id}/nodes/{node_id}/log
        (node_id: an executor pod's name; see node_files.py)."""
        row = self._store.get(run_id)
        details = (loads(row["task_details"]) or []) if row is not None else None
        return node_files.log_file(self._executor, run_id, node_id, details)

    def read_artifact(self, run_id: str, node_id: str, artifact_name: str) -> dict[str, Any]:
        """GET /runs/{run_id}/nodes/{node_id}/artifacts/{artifact_name}:read."""
        row = self._store.existing(run_id)
        details = loads(row["task_details"]) or []
        return node_files.read_artifact(self._executor, run_id, node_id, artifact_name, details)

    def fail_interrupted_runs(self) -> int:
        """Mark runs left active by a server that died as FAILED; returns how many."""
        return self._store.change_active(_interrupted(self._sources.clock()))

    def active_runs_of(self, recurring_run_id: str) -> int:
        """How many runs a recurring run has that have not reached a final state."""
        return self._store.active_runs_of(recurring_run_id)

    def resolve_source(self, body: dict[str, Any], what: str) -> RunSource:
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
            version = self._referenced_version(pipeline_id, version_id, what)
            ir = ir_of(loads(version["pipeline_spec"]))
            return RunSource(version["pipeline_id"], version["id"], None, ir)
        if inline:
            if argo_workflows.is_workflow(inline):
                # KFP makes the template when it creates the run and wraps a refusal as an
                # internal error (`resource/resource_manager.go` CreateRun)
                try:
                    argo_workflows.check_upload(inline)
                except argo_workflows.WorkflowError as error:
                    raise _fetch_failed(what, error.message) from None
                return RunSource("", "", dumps(inline), inline)
            stored = normalize_spec(inline, f"{what}.pipeline_spec")
            return RunSource("", "", dumps(stored), ir_of(stored))
        raise bad_request(f"{what} needs a pipeline_version_reference or a pipeline_spec")

    def _referenced_version(self, pipeline_id: str, version_id: str, what: str) -> dict[str, Any]:
        """The version a reference names (a pipeline's newest when only its id is given).

        A pipeline or version that does not exist is a 500 (INTERNAL), as KFP answers:
        `resource/resource_manager.go` CreateRun wraps the failed template fetch in
        util.NewInternalServerError.
        """
        try:
            if version_id:
                return self._pipelines.version_row(pipeline_id, version_id)
            self._pipelines.pipeline_row(pipeline_id)
            version = self._pipelines.latest_version(pipeline_id)
        except ApiError as error:
            if error.status != 404:
                raise
            raise _fetch_failed(what, error.message) from None
        if version is None:
            raise _fetch_failed(what, f"pipeline {pipeline_id} has no versions")
        return version

    def _view(self, row: dict[str, Any]) -> dict[str, Any]:
        """The run's KFP JSON: like KFP's toApiRun no `error` for a failed run and history
        entries of time and state only, unless local_extras shows the stored error."""
        if self.local_extras:
            return views.run_json(row)
        shown = {**row, "error": None}
        if '"error"' in (row["state_history"] or ""):  # written by an earlier release
            history = [
                {"update_time": entry["update_time"], "state": entry["state"]}
                for entry in loads(row["state_history"])
            ]
            shown["state_history"] = dumps(history)
        return views.run_json(shown)

    def _submit(
        self, run_id: str, ir: dict[str, Any], parameters: dict[str, Any], *, retry: bool = False
    ) -> None:
        if self._executor is None:
            self._finish(run_id, "FAILED", "no run executor is attached to this server")
            return
        try:
            self._executor.submit(run_id, ir, parameters, retry=retry)
        except Exception as error:  # the executor refused: the run fails, the call does not
            log.exception("executor refused run %s", run_id)
            self._finish(run_id, "FAILED", f"the run could not be started: {error}")

    def _finish(self, run_id: str, state: str, message: str | None) -> None:
        """End the run in a final state, with the error message if any."""
        with self._run_lock:
            self._enter_state(run_id, state, message, final=True)

    def _enter_state(
        self,
        run_id: str,
        state: str,
        message: str | None = None,
        *,
        final: bool = False,
        **columns: Any,
    ) -> None:
        """Set the run's state (and the other columns given), appending it to state_history;
        a final state also sets error and finished_at. Nothing when the run is gone."""
        now = self._sources.clock()
        if final:
            columns.update(error=dumps({"message": message}) if message else None, finished_at=now)

        def enter(row: dict[str, Any]) -> dict[str, Any]:
            entry: dict[str, Any] = {"update_time": now, "state": state}
            history = [*(loads(row["state_history"]) or []), entry]
            return {"state": state, **columns, "state_history": dumps(history)}

        self._store.change(run_id, enter)


def _kept_by_retry(task_details: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The task details a retried run shows before its new attempt reports: the nodes that
    succeeded or were skipped, which Argo keeps (GenerateRetryExecution,
    `backend/src/common/util/workflow.go`); the others are run again."""
    kept = [task for task in task_details if task.get("state") in ("SUCCEEDED", "SKIPPED")]
    return kept or None


def _fetch_failed(what: str, reason: str) -> ApiError:
    """KFP's 500 for a run or recurring run whose pipeline cannot be fetched."""
    return ApiError(
        500,
        f"Failed to create a {what.replace('_', ' ')} due to error fetching manifest: {reason}",
        INTERNAL,
    )


def _v1_workflow(
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


def _v1_references(body: dict[str, Any]) -> dict[str, str]:
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


def _v1_parameters(spec: dict[str, Any]) -> dict[str, str]:
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


def _progress(update: RunUpdate, now: int) -> RunChange:
    """The change a RunUpdate makes: a final run stays as it is, a CANCELING one stays
    CANCELING until final, CANCELED is reported FAILED (as Argo ends a terminated
    workflow), a new state other than CANCELING is appended to the history."""

    def change(row: dict[str, Any]) -> dict[str, Any] | None:
        if row["state"] in FINAL_STATES:
            return None  # already final: a late update does not reopen the run
        state = reported_state(update.state)
        if row["state"] == "CANCELING" and state not in FINAL_STATES:
            state = "CANCELING"
        history = loads(row["state_history"]) or []
        error = {"message": update.error} if update.error else None
        if state == "FAILED" and error is None and row["state"] == "CANCELING":
            error = {"message": "the run was terminated"}
        if state != "CANCELING" and (not history or history[-1]["state"] != state):
            history.append({"update_time": now, "state": state})
        finished = row["finished_at"]
        if state in FINAL_STATES:
            finished = from_datetime(update.finished_at) or now
        return {
            "state": state,
            # an update without task details keeps the ones already known
            "task_details": dumps(list(update.task_details))
            if update.task_details
            else row["task_details"],
            "error": dumps(error) if error else None,
            "finished_at": finished,
            "state_history": dumps(history),
        }

    return change


def _interrupted(now: int) -> RunChange:
    """The change that fails a run a dead server left active, and its unfinished tasks."""

    def change(row: dict[str, Any]) -> dict[str, Any]:
        history = loads(row["state_history"]) or []
        history.append({"update_time": now, "state": "FAILED"})
        tasks = loads(row["task_details"]) or []
        for task in tasks:
            if task.get("state") in ACTIVE_STATES:
                task["state"] = "FAILED"  # KFP's task details carry no per-task error
        return {
            "state": "FAILED",
            "error": dumps({"message": RESTART_ERROR}),
            "finished_at": now,
            "state_history": dumps(history),
            "task_details": dumps(tasks),
        }

    return change
