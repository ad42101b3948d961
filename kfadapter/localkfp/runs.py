"""Runs: KFP's RunService over the store, with execution handed to an `Executor`.

The run lock orders every change of a run's state (by requests and by the executor's
updates), so that a final state is never reopened and a terminated run ends CANCELED.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kfadapter.localkfp import query as q
from kfadapter.localkfp import validation as v
from kfadapter.localkfp import views
from kfadapter.localkfp.apierrors import FAILED_PRECONDITION, ApiError, bad_request, not_found
from kfadapter.localkfp.execution import Executor, RunUpdate
from kfadapter.localkfp.experiments import ExperimentService
from kfadapter.localkfp.fields import RUNS
from kfadapter.localkfp.packages import ir_of, normalize_spec
from kfadapter.localkfp.pipelines import PipelineService
from kfadapter.localkfp.sources import SYSTEM, Sources
from kfadapter.localkfp.states import ACTIVE_STATES, FINAL_STATES
from kfadapter.localkfp.storage import RunChange, RunStore, dumps, loads
from kfadapter.localkfp.timefmt import from_datetime

log = logging.getLogger(__name__)

RESTART_ERROR = (
    "the local KFP server stopped while this run was active; runs do not survive a server restart"
)


@dataclass(frozen=True)
class RunSource:
    """What a run (or recurring run) executes: a stored version, or an inline spec."""

    pipeline_id: str
    pipeline_version_id: str
    pipeline_spec: str | None  # the inline spec as stored (JSON text), None for a version
    ir: dict[str, Any]  # the IR to execute


class RunService:
    """Runs: created PENDING and submitted, followed through the executor's updates."""

    def __init__(
        self,
        store: RunStore,
        pipelines: PipelineService,
        experiments: ExperimentService,
        sources: Sources = SYSTEM,
    ) -> None:
        self._store = store
        self._pipelines = pipelines
        self._experiments = experiments
        self._sources = sources
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
        """POST /runs: store the run PENDING and hand it to the executor."""
        body = v.json_object(body, "run")
        name = v.name(v.text(body, "display_name", "run"), "Run")
        experiment = self._experiments.for_new_run(
            v.text(body, "experiment_id", "run") or experiment_id
        )
        source = self.resolve_source(body, "run")
        runtime_config = v.runtime_config(body, "run")
        now = self._sources.clock()
        row = {
            "id": self._sources.new_id(),
            "experiment_id": experiment["id"],
            "namespace": experiment["namespace"],
            "display_name": name,
            "description": v.text(body, "description", "run"),
            "storage_state": "AVAILABLE",
            "pipeline_id": source.pipeline_id,
            "pipeline_version_id": source.pipeline_version_id,
            "pipeline_spec": source.pipeline_spec,
            "runtime_config": dumps(runtime_config) if runtime_config else None,
            "service_account": v.text(body, "service_account", "run"),
            "created_at": now,
            "scheduled_at": scheduled_us or now,
            "finished_at": 0,
            "state": "PENDING",
            "error": None,
            "task_details": None,
            "state_history": dumps([{"update_time": now, "state": "PENDING"}]),
            "recurring_run_id": recurring_run_id,
        }
        self._store.insert(row)
        self._submit(row["id"], source.ir, runtime_config.get("parameters", {}))
        return views.run_json(self._store.get(row["id"]) or row)

    def get_run(self, run_id: str) -> dict[str, Any]:
        """GET /runs/{id}."""
        return views.run_json(self._store.existing(run_id))

    def list_runs(self, args: dict[str, Any]) -> dict[str, Any]:
        """GET /runs?experiment_id=&namespace=."""
        query = q.from_args(RUNS, args, q.scope(args, "experiment_id", "namespace"))
        return views.page("runs", views.run_json, self._store.list(query))

    def terminate_run(self, run_id: str) -> dict[str, Any]:
        """POST /runs/{id}:terminate: CANCELING now, CANCELED when its processes are gone."""
        with self._run_lock:
            row = self._store.existing(run_id)
            if row["state"] in FINAL_STATES:
                raise ApiError(
                    400,
                    f"Failed to terminate run {run_id}: it is already {row['state']}",
                    FAILED_PRECONDITION,
                )
            if row["state"] != "CANCELING":
                self._enter_state(run_id, "CANCELING")
        active = bool(self._executor is not None and self._executor.terminate(run_id))
        if not active:
            with self._run_lock:
                current = self._store.get(run_id)
                if current is not None and current["state"] not in FINAL_STATES:
                    self._finish(run_id, "CANCELED", None)
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
        """POST /runs/{id}:retry: a FAILED run (or CANCELED one) executes again, same id."""
        with self._run_lock:
            row = self._store.existing(run_id)
            if row["state"] not in ("FAILED", "CANCELED"):
                raise ApiError(
                    400,
                    f"Failed to retry run {run_id}: only a FAILED or CANCELED run can be "
                    f"retried, this one is {row['state']}",
                    FAILED_PRECONDITION,
                )
            if row["pipeline_version_id"]:
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
            self._enter_state(run_id, "PENDING", error=None, finished_at=0, task_details=None)
        parameters = (loads(row["runtime_config"]) or {}).get("parameters", {})
        self._submit(run_id, ir, parameters)
        return {}

    def apply_run_update(self, update: RunUpdate) -> None:
        """Persist a RunUpdate from the executor (state, task details, error, times)."""
        with self._run_lock:
            self._store.change(update.run_id, _progress(update, self._sources.clock()))

    def task_log(self, run_id: str, node_id: str) -> Path:
        """The file of a task's log: /apis/v1alpha1/runs/{run_id}/nodes/{node_id}/log."""
        self._store.existing(run_id)
        path = self._executor.log_path(run_id, node_id) if self._executor is not None else None
        if path is None or not Path(path).is_file():
            raise not_found(f"No log for node {node_id!r} of run {run_id}")
        return Path(path)

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
            if version_id:
                version = self._pipelines.version_row(pipeline_id, version_id)
            elif pipeline_id:
                self._pipelines.pipeline_row(pipeline_id)
                version = self._pipelines.latest_version(pipeline_id)
                if version is None:
                    raise bad_request(f"Pipeline {pipeline_id} has no versions to run")
            else:
                raise bad_request(
                    "pipeline_version_reference needs a pipeline_version_id (or a pipeline_id)"
                )
            ir = ir_of(loads(version["pipeline_spec"]))
            return RunSource(version["pipeline_id"], version["id"], None, ir)
        if inline:
            stored = normalize_spec(inline, f"{what}.pipeline_spec")
            return RunSource("", "", dumps(stored), ir_of(stored))
        raise bad_request(f"{what} needs a pipeline_version_reference or a pipeline_spec")

    def _submit(self, run_id: str, ir: dict[str, Any], parameters: dict[str, Any]) -> None:
        if self._executor is None:
            self._finish(run_id, "FAILED", "no run executor is attached to this server")
            return
        try:
            self._executor.submit(run_id, ir, parameters)
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
            if message:
                entry["error"] = {"message": message}
            history = [*(loads(row["state_history"]) or []), entry]
            return {"state": state, **columns, "state_history": dumps(history)}

        self._store.change(run_id, enter)


def _progress(update: RunUpdate, now: int) -> RunChange:
    """The change a RunUpdate makes: a final run stays as it is, a CANCELING one stays
    CANCELING until final, a new state is appended to the history."""

    def change(row: dict[str, Any]) -> dict[str, Any] | None:
        if row["state"] in FINAL_STATES:
            return None  # already final: a late update does not reopen the run
        state = update.state
        if row["state"] == "CANCELING" and state not in FINAL_STATES:
            state = "CANCELING"
        history = loads(row["state_history"]) or []
        error = {"message": update.error} if update.error else None
        if not history or history[-1]["state"] != state:
            entry: dict[str, Any] = {"update_time": now, "state": state}
            if error and state == "FAILED":
                entry["error"] = error
            history.append(entry)
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
        history.append({"update_time": now, "state": "FAILED", "error": {"message": RESTART_ERROR}})
        tasks = loads(row["task_details"]) or []
        for task in tasks:
            if task.get("state") in ACTIVE_STATES:
                task["state"] = "FAILED"
                task["error"] = {"code": 10, "message": RESTART_ERROR, "details": []}
        return {
            "state": "FAILED",
            "error": dumps({"message": RESTART_ERROR}),
            "finished_at": now,
            "state_history": dumps(history),
            "task_details": dumps(tasks),
        }

    return change
