"""Runs: every run keyed by name, one run, terminate, task logs."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

from flask import Blueprint, jsonify, request

from kfadapter.api.common import checked_name, kfp, services
from kfadapter.errors import AdapterError, BadRequest, KfpError, NotFound

bp = Blueprint("runs", __name__)


@bp.get("/runs")
def list_runs():
    """Every run, keyed by display name; a later run sharing a name is keyed "name (run_id)".

    The oldest run with a name keeps the plain name, so a key never changes meaning as
    new runs arrive. KFP is asked for whole pages of runs and one list of pipelines
    (for `pipeline_name`), never once per run.
    """
    runs = kfp().all_runs()
    names = {p["pipeline_id"]: p["display_name"] for p in kfp().all_pipelines()}
    keyed: dict[str, dict[str, Any]] = {}
    for run in runs:  # oldest first
        key = run["display_name"]
        if key in keyed:
            key = f"{key} ({run['run_id']})"
        keyed[key] = {
            "run_id": run["run_id"],
            "run_name": run["display_name"],
            "run_description": run["description"],
            "run_status": run["state"],
            "experiment_id": run["experiment_id"],
            "pipeline_id": run["pipeline_id"],
            "pipeline_name": names.get(run["pipeline_id"]) or run["pipeline_spec_name"],
            "pipeline_version_id": run["pipeline_version_id"],
            "created_at": run["created_at"],
            "finished_at": run["finished_at"],
        }
    return jsonify(keyed)


@bp.get("/runs/<run_id>")
def get_run(run_id: str):
    """One run: the older keys plus times, parameters, error, state history and task states."""
    checked_name(run_id, "run id")
    run = kfp().get_run(run_id)
    return jsonify(
        {"run_id": run["run_id"], "run_name": run["display_name"], "run_status": run["state"]} | run
    )


@bp.delete("/runs/<run_id>")
def terminate_run(run_id: str):
    """Terminate a run; a run started for a training job is then no longer notified.

    KFP terminates only a PENDING, RUNNING or PAUSED run; for any other (one finished, or
    already being terminated) it answers 400, which is passed on with the run's state.
    """
    checked_name(run_id, "run id")
    tracker = services().tracker
    try:
        with tracker.untracking(run_id) if tracker is not None else nullcontext():
            kfp().terminate_run(run_id)
    except BadRequest as error:
        raise _not_terminable(run_id, error) from None
    return jsonify({"run_id": run_id, "status": "Terminated"})


def _not_terminable(run_id: str, error: BadRequest) -> BadRequest:
    """KFP's refusal to terminate a run, saying the run's state (when KFP tells it)."""
    try:
        state = kfp().get_run(run_id)["state"]
    except AdapterError:
        return error
    return BadRequest(
        f"run {run_id!r} cannot be terminated: it is {state}; KFP terminates only a PENDING, "
        "RUNNING or PAUSED run",
        run_state=state,
        **error.details,
    )


@bp.get("/runs/<run_id>/logs")
def run_logs(run_id: str):
    """The logs of a run's tasks (all, or `?task=<name or id>`) as KFP's back end serves them."""
    checked_name(run_id, "run id")
    task = request.args.get("task") or None
    return jsonify({"run_id": run_id, "tasks": task_logs(run_id, task)})


def task_logs(run_id: str, task: str | None) -> list[dict[str, Any]]:
    """The log of each task of a run (or of the task with this name or id).

    KFP serves logs by pod name; a task's `pods` are the pods that ran its component
    (kfadapter/kfp/flatten.py `run_tasks`; a V1 run's take its workflow, one more KFP
    call): one KFP call per pod until one answers. A task
    whose log KFP does not serve (no pod yet, a sub-pipeline, a pod gone without an
    archived log: KFP then answers 500) gets `"log": null` and the reason in `error`; a
    task taken from KFP's cache ran no pod (its executor node is Skipped), which the error
    then mentions.
    """
    tasks = kfp().get_run(run_id, v1_pods=True)["tasks"]
    if task is not None:
        tasks = [t for t in tasks if task in (t["name"], t["task_id"])]
        if not tasks:
            raise NotFound(f"run {run_id!r} has no task {task!r}")
    logs = []
    for entry in tasks:
        text, error = None, "KFP has no log for this task"
        for pod in entry["pods"]:
            try:
                text, error = kfp().task_log(run_id, pod), None
                break
            except (NotFound, BadRequest) as failure:
                error = failure.details.get("kfp_message") or failure.message
            except KfpError as failure:
                if failure.details.get("kfp_status") != 500:
                    raise
                error = failure.message
        if text is None and entry["pods"] and entry["state"] == "SUCCEEDED":
            error = f"{error} (a task KFP took from its cache runs no pod, so it has no log)"
        logs.append(
            {
                "task_id": entry["task_id"],
                "name": entry["name"],
                "state": entry["state"],
                "log": text,
                "error": error,
            }
        )
    return logs
