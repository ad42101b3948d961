"""The embedded KFP server's HTTP app: KFP v2beta1 REST routes under /apis and /pipeline/apis."""

from __future__ import annotations

import logging
from http import HTTPStatus
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request, send_file
from werkzeug.exceptions import HTTPException

from kfadapter.localkfp import protojson
from kfadapter.localkfp.apierrors import ApiError, UploadError, bad_request
from kfadapter.localkfp.auth import AuthConfig, install_auth
from kfadapter.localkfp.packages import MAX_PACKAGE_BYTES
from kfadapter.localkfp.services import KfpServices
from kfadapter.localkfp.ui import ui_blueprint
from kfadapter.localkfp.validation import parse_json_body
from kfadapter.localkfp.views import healthz as healthz_json

log = logging.getLogger(__name__)

V2 = "/apis/v2beta1"
ANY_METHOD = ["GET", "POST", "PUT", "PATCH", "DELETE"]
ANY_METHOD_ROUTES = {
    "healthz",
    "healthz_v1",
    "upload_pipeline",
    "upload_pipeline_version",
    "task_log",
}
API_PATHS = ("/apis/", "/pipeline/apis/")
# The KFP messages (kfp_server_api model names) of request and answer bodies
PIPELINE, VERSION = "V2beta1Pipeline", "V2beta1PipelineVersion"
EXPERIMENT, RUN, RECURRING_RUN = "V2beta1Experiment", "V2beta1Run", "V2beta1RecurringRun"
LIST_ARGS = ("page_size", "page_token", "sort_by", "filter", "namespace", "experiment_id")
# The enum query parameters of kfp_api_v2beta1.swagger.json, by route: their enum types
ENUM_ARGS = {
    "authorize": {"verb": "AuthorizeRequestVerb", "resources": "AuthorizeRequestResources"},
    "delete_recurring_run": {"propagation_policy": "V2beta1DeletePropagationPolicy"},
}


def _json(value: Any, status: int = 200, model: str | None = None) -> Response:
    """A JSON answer; given the KFP message it is, encoded as KFP's gateway encodes it."""
    response = jsonify(protojson.encode(value, model) if model else value)
    response.status_code = status
    return response


def _message(value: Any, model: str) -> Response:
    return _json(value, model=model)


def _body(model: str) -> Any:
    """The request body read as the KFP message `model` (unknown fields: 400)."""
    return protojson.decode(parse_json_body(request.get_data(cache=True)), model)


def _list_args() -> dict[str, Any]:
    return {key: request.args.get(key, "") for key in LIST_ARGS}


# What grpc-gateway reads as a bool query parameter (Go's strconv.ParseBool)
_TRUE, _FALSE = ("1", "t", "T", "TRUE", "true", "True"), ("0", "f", "F", "FALSE", "false", "False")


def _bool_arg(name: str) -> bool:
    raw = request.args.get(name, "")
    if raw == "" or raw in _FALSE:
        return False
    if raw in _TRUE:
        return True
    raise bad_request(f"query parameter {name} must be true or false, got {raw!r}")


def _check_enum_args() -> None:
    """400 for an enum query parameter that is neither a name nor a number of its enum, as
    grpc-gateway refuses it before KFP's server runs (`runtime/query.go`,
    PopulateQueryParameters)."""
    endpoint = (request.endpoint or "").rsplit(".", 1)[-1]
    for name, enum in ENUM_ARGS.get(endpoint, {}).items():
        for raw in request.args.getlist(name):
            if protojson.enum_name(raw, enum) is None:
                raise bad_request(
                    f"query parameter {name}: {raw!r} is not a valid value of {enum} "
                    f"({', '.join(protojson.ENUM_NUMBERS[enum].values())} or their numbers)"
                )


def _upload() -> tuple[bytes, str]:
    """The bytes and file name of the multipart field `uploadfile`."""
    upload = request.files.get("uploadfile")
    if upload is None:
        present = ", ".join(sorted(request.files)) or "none"
        raise UploadError(  # the upload endpoints' own error body, as KFP answers them
            400,
            "Failed to read pipeline from file: the multipart/form-data field 'uploadfile' "
            f"is missing (fields present: {present})",
        )
    return upload.read(), upload.filename or ""


def api_blueprint(services: KfpServices, name: str) -> Blueprint:
    """Every KFP route, bound to the services (registered once per URL prefix)."""
    bp = Blueprint(name, __name__)
    pipelines, experiments = services.pipelines, services.experiments
    runs, recurring_runs = services.runs, services.recurring_runs
    bp.before_request(_check_enum_args)

    # KFP serves healthz by hand-written JSON for every method (`apiserver/main.go`)
    @bp.route(f"{V2}/healthz", methods=ANY_METHOD)
    def healthz() -> Response:
        return _json(healthz_json())

    @bp.route("/apis/v1beta1/healthz", methods=ANY_METHOD)
    def healthz_v1() -> Response:
        return _json(healthz_json(v1=True))

    # pipelines
    @bp.get(f"{V2}/pipelines")
    def list_pipelines() -> Response:
        return _message(pipelines.list_pipelines(_list_args()), "V2beta1ListPipelinesResponse")

    @bp.post(f"{V2}/pipelines")
    def create_pipeline() -> Response:
        return _message(pipelines.create_pipeline(_body(PIPELINE)), PIPELINE)

    @bp.post(f"{V2}/pipelines/create")
    def create_pipeline_and_version() -> Response:
        return _message(
            pipelines.create_pipeline_and_version(_body("V2beta1CreatePipelineAndVersionRequest")),
            PIPELINE,
        )

    # KFP registers the uploads and the log route by hand, for every method (`main.go`)
    @bp.route(f"{V2}/pipelines/upload", methods=ANY_METHOD)
    def upload_pipeline() -> Response:
        data, filename = _upload()
        return _message(
            pipelines.upload_pipeline(
                data,
                filename,
                name=request.args.get("name", ""),
                display_name=request.args.get("display_name", ""),
                description=request.args.get("description", ""),
                namespace=request.args.get("namespace", ""),
                tags=request.args.get("tags", ""),
                code_source_url=request.args.get("code_source_url", ""),
            ),
            PIPELINE,  # protojson with proto names (`server/pipeline_upload_server.go`)
        )

    @bp.route(f"{V2}/pipelines/upload_version", methods=ANY_METHOD)
    def upload_pipeline_version() -> Response:
        data, filename = _upload()
        return _message(
            pipelines.upload_version(
                data,
                filename,
                pipeline_id=request.args.get("pipelineid", ""),
                name=request.args.get("name", ""),
                display_name=request.args.get("display_name", ""),
                description=request.args.get("description", ""),
                tags=request.args.get("tags", ""),
                code_source_url=request.args.get("code_source_url", ""),
            ),
            VERSION,
        )

    @bp.get(f"{V2}/pipelines/names/<path:name>")
    def get_pipeline_by_name(name: str) -> Response:
        return _message(
            pipelines.get_pipeline_by_name(name, request.args.get("namespace", "")), PIPELINE
        )

    @bp.get(f"{V2}/pipelines/<pipeline_id>")
    def get_pipeline(pipeline_id: str) -> Response:
        return _message(pipelines.get_pipeline(pipeline_id), PIPELINE)

    @bp.delete(f"{V2}/pipelines/<pipeline_id>")
    def delete_pipeline(pipeline_id: str) -> Response:
        return _json(pipelines.delete_pipeline(pipeline_id, _bool_arg("cascade")))

    @bp.patch(f"{V2}/pipelines/<pipeline_id>")
    def update_pipeline(pipeline_id: str) -> Response:
        return _message(pipelines.update_pipeline(pipeline_id, _body(PIPELINE)), PIPELINE)

    @bp.patch(f"{V2}/pipelines/<pipeline_id>/versions/<version_id>")
    def update_version(pipeline_id: str, version_id: str) -> Response:
        return _message(pipelines.update_version(pipeline_id, version_id, _body(VERSION)), VERSION)

    @bp.get(f"{V2}/auth")
    def authorize() -> Response:
        return _json({})  # single-user: every authenticated caller may do everything

    @bp.get(f"{V2}/pipelines/<pipeline_id>/versions")
    def list_versions(pipeline_id: str) -> Response:
        return _message(
            pipelines.list_versions(pipeline_id, _list_args()),
            "V2beta1ListPipelineVersionsResponse",
        )

    @bp.post(f"{V2}/pipelines/<pipeline_id>/versions")
    def create_version(pipeline_id: str) -> Response:
        return _message(pipelines.create_version(pipeline_id, _body(VERSION)), VERSION)

    @bp.get(f"{V2}/pipelines/<pipeline_id>/versions/<version_id>")
    def get_version(pipeline_id: str, version_id: str) -> Response:
        return _message(pipelines.get_version(pipeline_id, version_id), VERSION)

    @bp.delete(f"{V2}/pipelines/<pipeline_id>/versions/<version_id>")
    def delete_version(pipeline_id: str, version_id: str) -> Response:
        return _json(pipelines.delete_version(pipeline_id, version_id))

    # experiments
    @bp.get(f"{V2}/experiments")
    def list_experiments() -> Response:
        return _message(
            experiments.list_experiments(_list_args()), "V2beta1ListExperimentsResponse"
        )

    @bp.post(f"{V2}/experiments")
    def create_experiment() -> Response:
        return _message(experiments.create_experiment(_body(EXPERIMENT)), EXPERIMENT)

    @bp.get(f"{V2}/experiments/<experiment_id>")
    def get_experiment(experiment_id: str) -> Response:
        return _message(experiments.get_experiment(experiment_id), EXPERIMENT)

    @bp.delete(f"{V2}/experiments/<experiment_id>")
    def delete_experiment(experiment_id: str) -> Response:
        return _json(experiments.delete_experiment(experiment_id))

    @bp.post(f"{V2}/experiments/<experiment_id>:archive")
    def archive_experiment(experiment_id: str) -> Response:
        return _json(experiments.archive_experiment(experiment_id))

    @bp.post(f"{V2}/experiments/<experiment_id>:unarchive")
    def unarchive_experiment(experiment_id: str) -> Response:
        return _json(experiments.unarchive_experiment(experiment_id))

    # runs
    @bp.get(f"{V2}/runs")
    def list_runs() -> Response:
        return _message(runs.list_runs(_list_args()), "V2beta1ListRunsResponse")

    @bp.post(f"{V2}/runs")
    def create_run() -> Response:
        return _message(runs.create_run(_body(RUN), request.args.get("experiment_id", "")), RUN)

    # KFP v1's way to give a V1 (Argo) pipeline's run its parameter values
    @bp.post("/apis/v1beta1/runs")
    def create_run_v1() -> Response:
        return _json(runs.create_run_v1(parse_json_body(request.get_data())))

    @bp.get(f"{V2}/runs/<run_id>")
    def get_run(run_id: str) -> Response:
        return _message(runs.get_run(run_id), RUN)

    @bp.delete(f"{V2}/runs/<run_id>")
    def delete_run(run_id: str) -> Response:
        return _json(runs.delete_run(run_id))

    @bp.post(f"{V2}/runs/<run_id>:terminate")
    def terminate_run(run_id: str) -> Response:
        return _json(runs.terminate_run(run_id))

    @bp.post(f"{V2}/runs/<run_id>:archive")
    def archive_run(run_id: str) -> Response:
        return _json(runs.archive_run(run_id))

    @bp.post(f"{V2}/runs/<run_id>:unarchive")
    def unarchive_run(run_id: str) -> Response:
        return _json(runs.unarchive_run(run_id))

    @bp.post(f"{V2}/runs/<run_id>:retry")
    def retry_run(run_id: str) -> Response:
        return _json(runs.retry_run(run_id))

    # recurring runs
    @bp.get(f"{V2}/recurringruns")
    def list_recurring_runs() -> Response:
        return _message(
            recurring_runs.list_recurring_runs(_list_args()), "V2beta1ListRecurringRunsResponse"
        )

    @bp.post(f"{V2}/recurringruns")
    def create_recurring_run() -> Response:
        return _message(recurring_runs.create_recurring_run(_body(RECURRING_RUN)), RECURRING_RUN)

    @bp.get(f"{V2}/recurringruns/<recurring_run_id>")
    def get_recurring_run(recurring_run_id: str) -> Response:
        return _message(recurring_runs.get_recurring_run(recurring_run_id), RECURRING_RUN)

    @bp.delete(f"{V2}/recurringruns/<recurring_run_id>")
    def delete_recurring_run(recurring_run_id: str) -> Response:
        return _json(recurring_runs.delete_recurring_run(recurring_run_id))

    @bp.post(f"{V2}/recurringruns/<recurring_run_id>:enable")
    def enable_recurring_run(recurring_run_id: str) -> Response:
        return _json(recurring_runs.set_recurring_enabled(recurring_run_id, True))

    @bp.post(f"{V2}/recurringruns/<recurring_run_id>:disable")
    def disable_recurring_run(recurring_run_id: str) -> Response:
        return _json(recurring_runs.set_recurring_enabled(recurring_run_id, False))

    # task logs (KFP's v1alpha1 path)
    @bp.route("/apis/v1alpha1/runs/<run_id>/nodes/<node_id>/log", methods=ANY_METHOD)
    def task_log(run_id: str, node_id: str) -> Response:
        path = runs.task_log(run_id, node_id)
        return send_file(path, mimetype="text/plain", max_age=0, conditional=False)

    @bp.get(f"{V2}/runs/<run_id>/nodes/<node_id>/artifacts/<artifact_name>:read")
    def read_artifact(run_id: str, node_id: str, artifact_name: str) -> Response:
        return _json(runs.read_artifact(run_id, node_id, artifact_name))

    return bp


def create_app(
    services: KfpServices, auth: AuthConfig | None = None, data_dir: Path | None = None
) -> Flask:
    """The Flask app of the embedded KFP server; with its data dir, the web UI and the local
    extension routes too (ui.py)."""
    app = Flask("kfadapter.localkfp")
    app.config["MAX_CONTENT_LENGTH"] = MAX_PACKAGE_BYTES + 1024 * 1024
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.url_map.strict_slashes = False
    app.url_map.merge_slashes = False  # no HTML redirect for "//": a JSON 404 instead
    install_auth(app, auth or AuthConfig())
    app.register_blueprint(api_blueprint(services, "kfp"))
    app.register_blueprint(api_blueprint(services, "kfp_ui_proxy"), url_prefix="/pipeline")
    if data_dir is not None:
        app.register_blueprint(ui_blueprint(services, data_dir, "ui"))
        app.register_blueprint(ui_blueprint(services, data_dir, "ui_proxy"), url_prefix="/pipeline")

    @app.before_request
    def _gateway_methods() -> Response | None:
        """HEAD and OPTIONS of a gateway route: 501, as grpc-gateway has no handler for them
        (Flask would answer them itself); the hand-registered routes take every method."""
        endpoint = (request.endpoint or "").rsplit(".", 1)[-1]
        if (
            request.method in ("HEAD", "OPTIONS")
            and request.url_rule is not None
            and request.path.startswith(API_PATHS)
            and endpoint not in ANY_METHOD_ROUTES
        ):
            message = f"Method Not Allowed: {request.method} {request.path}"
            return _json(ApiError(HTTPStatus.NOT_IMPLEMENTED, message).body(), 501)
        return None

    @app.errorhandler(ApiError)
    def _api_error(error: ApiError) -> Response:
        return _json(error.body(), error.status)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        if status == 404:
            message = f"Not Found: no KFP API route {request.method} {request.path}"
        elif status == 405:
            # grpc-gateway answers a known path with another method as Unimplemented (501)
            status = HTTPStatus.NOT_IMPLEMENTED
            message = f"Method Not Allowed: {request.method} {request.path}"
        elif status == 413:
            message = f"request body is larger than the limit of {MAX_PACKAGE_BYTES} bytes"
        else:
            message = error.description or error.name
        return _json(ApiError(status, message).body(), status)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        log.exception("unhandled error in the local KFP server")
        return _json(
            ApiError(500, "internal error of the local KFP server; see its log").body(), 500
        )

    return app
