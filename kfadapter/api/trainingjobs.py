"""Training jobs: start a run for the training manager, and what run tracking knows of jobs."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, jsonify, request

from kfadapter.api.common import (
    Services,
    checked_name,
    json_object,
    query_page_size,
    services,
    text_field,
    tracker_or_503,
)
from kfadapter.arguments import map_arguments
from kfadapter.errors import AdapterError, BadRequest, NotFound
from kfadapter.kfp import NewRun

log = logging.getLogger(__name__)

bp = Blueprint("trainingjobs", __name__)

DEFAULT_EXPERIMENT = "Default"
DEFAULT_PAGE_SIZE = 100


class TrackingFailed(AdapterError):
    """KFP accepted the run but run tracking could not record it."""

    status = 503


@bp.post("/trainingjobs/<trainingjob_id>/execution")
def execute(trainingjob_id: str):
    """Run a pipeline version for a training job; 200 with run_status "scheduled"."""
    checked_name(trainingjob_id, "trainingjob_id")
    request_body = ExecutionRequest.parse(json_object())
    return jsonify(start_training_run(services(), trainingjob_id, request_body))


@bp.get("/trainingjobs")
def list_trainingjobs():
    """Tracked training-job runs, newest first, a page at a time (`page_size`, `page_token`;
    `notification_status` to filter)."""
    tracker = tracker_or_503()
    status = request.args.get("notification_status") or None
    jobs, next_token = tracker.list_page(
        status, query_page_size() or DEFAULT_PAGE_SIZE, request.args.get("page_token") or None
    )
    return jsonify({"trainingjobs": jobs, "next_page_token": next_token})


@bp.get("/trainingjobs/<trainingjob_id>")
def get_trainingjob(trainingjob_id: str):
    """The latest tracked run of a training job and its notification's progress."""
    checked_name(trainingjob_id, "trainingjob_id")
    job = tracker_or_503().get(trainingjob_id)
    if job is None:
        raise NotFound(f"training job {trainingjob_id!r} is not tracked")
    return jsonify(job)


class ExecutionRequest:
    """The TM's JSON: pipeline_name, pipeline_version, experiment_name, arguments."""

    def __init__(
        self,
        pipeline_name: str,
        pipeline_version: str | None,
        experiment_name: str,
        arguments: dict[str, Any],
    ) -> None:
        self.pipeline_name = pipeline_name
        self.pipeline_version = pipeline_version
        self.experiment_name = experiment_name
        self.arguments = arguments

    @classmethod
    def parse(cls, body: dict[str, Any]) -> ExecutionRequest:
        """Validate the body; BadRequest naming every missing or wrongly typed key."""
        missing = [key for key in ("pipeline_name", "arguments") if body.get(key) is None]
        if missing:
            raise BadRequest(
                "the JSON body lacks " + ", ".join(repr(k) for k in missing), missing=missing
            )
        pipeline_name = checked_name(text_field(body, "pipeline_name"), "pipeline_name")
        version = text_field(body, "pipeline_version", required=False) or None
        if version is not None:
            checked_name(version, "pipeline_version")
        experiment = text_field(body, "experiment_name", required=False) or DEFAULT_EXPERIMENT
        checked_name(experiment, "experiment_name")
        arguments = body["arguments"]
        if not isinstance(arguments, dict):
            raise BadRequest(f"'arguments' must be a JSON object, got {type(arguments).__name__}")
        return cls(pipeline_name, version, experiment, arguments)


def start_training_run(
    services: Services, trainingjob_id: str, job: ExecutionRequest
) -> dict[str, Any]:
    """Resolve experiment, pipeline and version, map arguments, create the run, track it.

    The experiment "Default" is created when missing (KFP in multi-user mode has none per
    namespace); any other missing experiment, pipeline or version is a 404 naming it.
    When tracking cannot record the run, the run is terminated (so that no run goes on
    that the TM will never hear of) and a 503 says so.
    """
    kfp = services.kfconnect
    if job.experiment_name == DEFAULT_EXPERIMENT:
        experiment = kfp.find_or_create_experiment(DEFAULT_EXPERIMENT, "created by kfadapter")
    else:
        experiment = kfp.find_experiment(job.experiment_name)
        if experiment is None:
            raise NotFound(f"experiment {job.experiment_name!r} not found")
    pipeline = kfp.find_pipeline(job.pipeline_name)
    if pipeline is None:
        raise NotFound(f"pipeline {job.pipeline_name!r} not found")
    version = kfp.find_version(pipeline["pipeline_id"], job.pipeline_version)
    if version is None:
        raise NotFound(
            f"version {job.pipeline_version!r} of pipeline {job.pipeline_name!r} not found"
            if job.pipeline_version
            else f"pipeline {job.pipeline_name!r} has no version"
        )
    mapped = map_arguments(version["parameters"], job.arguments, trainingjob_id=trainingjob_id)
    run = kfp.create_run(
        NewRun(
            name=trainingjob_id,
            description=f"training job {trainingjob_id}",
            experiment_id=experiment["experiment_id"],
            pipeline_id=pipeline["pipeline_id"],
            version_id=version["pipeline_version_id"],
            parameters=mapped.parameters,
            template_type=version["template_type"],
        )
    )
    answer = {
        "trainingjob_id": trainingjob_id,
        "run_id": run["run_id"],
        "run_name": run["display_name"],
        "run_status": "scheduled",
        "run_state": run["state"],
        "experiment_id": experiment["experiment_id"],
        "experiment_name": experiment["name"],
        "pipeline_id": pipeline["pipeline_id"],
        "pipeline_name": pipeline["display_name"],
        "pipeline_version_id": version["pipeline_version_id"],
        "pipeline_version_name": version["display_name"],
        "parameters": mapped.parameters,
        "ignored_arguments": mapped.ignored,
        "tracked": False,
    }
    if services.tracker is not None:
        _track(services, answer)
        answer["tracked"] = True
    return answer


def _track(services: Services, answer: dict[str, Any]) -> None:
    """Hand the run to tracking; if that fails, terminate the run and raise TrackingFailed."""
    info = {
        key: answer[key]
        for key in (
            "run_name",
            "run_state",
            "experiment_name",
            "pipeline_name",
            "pipeline_version_name",
        )
    }
    try:
        services.tracker.track(answer["trainingjob_id"], answer["run_id"], **info)
    except Exception as error:  # any failure to persist: the run must not go on unseen
        log.exception("could not track run %s", answer["run_id"])
        terminated = _terminate_quietly(services, answer["run_id"])
        raise TrackingFailed(
            f"KFP started run {answer['run_id']} but run tracking could not record it "
            f"({error}); the run was {'terminated' if terminated else 'NOT terminated'}",
            run_id=answer["run_id"],
            run_terminated=terminated,
        ) from None


def _terminate_quietly(services: Services, run_id: str) -> bool:
    """Terminate a run; True when KFP accepted."""
    try:
        services.kfconnect.terminate_run(run_id)
    except AdapterError as error:
        log.error("could not terminate untracked run %s: %s", run_id, error.message)
        return False
    return True
