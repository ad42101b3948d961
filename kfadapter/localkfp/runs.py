"""Runs: KFP's RunService over the store, with execution handed to an `Executor`.

The run lock orders every change of a run's state (by requests and by the executor's
updates), so that a final state is never reopened. States are mapped here to what KFP on
Argo reports: a terminated run is CANCELING, then FAILED (never CANCELED).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from kfadapter import argo_workflows
from kfadapter.localkfp import node_files, run_changes, views
from kfadapter.localkfp import query as q
from kfadapter.localkfp import validation as v
from kfadapter.localkfp.apierrors import ABORTED, FAILED_PRECONDITION, ApiError, bad_request
from kfadapter.localkfp.execution import Executor, RunUpdate
from kfadapter.localkfp.experiments import ExperimentService
from kfadapter.localkfp.fields import RUNS
from kfadapter.localkfp.packages import ir_of
from kfadapter.localkfp.pipelines import PipelineService
from kfadapter.localkfp.run_changes import RESTART_ERROR
from kfadapter.localkfp.run_sources import RunRequest, RunSource, resolve_source, version_ir
from kfadapter.localkfp.runs_v1 import read_run_v1, v1_workflow
from kfadapter.localkfp.sources import SYSTEM, Sources
from kfadapter.localkfp.states import FINAL_STATES, RETRYABLE_STATES, TERMINABLE_STATES
from kfadapter.localkfp.storage import RunStore, dumps, loads

__all__ = ["DEFAULT_SERVICE_ACCOUNT", "RESTART_ERROR", "RunRequest", "RunService", "RunSource"]

log = logging.getLogger(__name__)

# The service account KFP gives a run or recurring run created without one
# (`template/template.go` setDefaultServiceAccount, `common.DefaultPipelineRunnerServiceAccount`).
DEFAULT_SERVICE_ACCOUNT = "pipeline-runner"


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
        run = RunRequest.from_body(body, name, source, runtime_config)
        return self._view(self._start(run, experiment, recurring_run_id, scheduled_us))

    def create_run_v1(self, body: Any) -> dict[str, Any]:
        """POST /apis/v1beta1/runs (`server/run_server.go` CreateRunV1): the KFP v1 way,
        whose `pipeline_spec.parameters` a V1 pipeline's run does take (see runs_v1.py).
        Answers KFP's v1 ApiRunDetail: {"run", "pipeline_runtime"}."""
        run, experiment = read_run_v1(body, self._pipelines, self._experiments)
        row = self._start(run, experiment, "", None)
        return views.run_detail_v1(row, run.v1_parameters or {})

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
            executed = v1_workflow(source.ir, run.v1_parameters or {}, run_id, scheduled, now)
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
                ir = version_ir(version)
            else:
                ir = ir_of(loads(row["pipeline_spec"]))
            kept = dumps(run_changes.kept_by_retry(loads(row["task_details"]) or [])) or None
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
            self._store.change(update.run_id, run_changes.progress(update, self._sources.clock()))

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
        return self._store.change_active(run_changes.interrupted(self._sources.clock()))

    def active_runs_of(self, recurring_run_id: str) -> int:
        """How many runs a recurring run has that have not reached a final state."""
        return self._store.active_runs_of(recurring_run_id)

    def resolve_source(self, body: dict[str, Any], what: str) -> RunSource:
        """What a run or recurring run body asks to execute (see run_sources.py)."""
        return resolve_source(self._pipelines, body, what)

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
        self._store.change(run_id, run_changes.entered(state, now, columns))
