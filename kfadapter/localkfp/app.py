"""The embedded KFP server's HTTP app: KFP v2beta1 REST routes under /apis and /pipeline/apis."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request, send_file
from werkzeug.exceptions import HTTPException

from kfadapter.localkfp.apierrors import ApiError, bad_request
from kfadapter.localkfp.auth import AuthConfig, install_auth
from kfadapter.localkfp.packages import MAX_PACKAGE_BYTES
from kfadapter.localkfp.services import KfpServices
from kfadapter.localkfp.validation import parse_json_body
from kfadapter.localkfp.views import healthz as healthz_json

log = logging.getLogger(__name__)

V2 = "/apis/v2beta1"
LIST_ARGS = ("page_size", "page_token", "sort_by", "filter", "namespace", "experiment_id")


def _json(value: Any, status: int = 200) -> Response:
    response = jsonify(value)
    response.status_code = status
    return response


def _body() -> Any:
    return parse_json_body(request.get_data(cache=True))


def _list_args() -> dict[str, Any]:
    return {key: request.args.get(key, "") for key in LIST_ARGS}


def _bool_arg(name: str) -> bool:
    raw = request.args.get(name, "").strip().lower()
    if raw in ("", "false", "0"):
        return False
    if raw in ("true", "1"):
        return True
    raise bad_request(f"query parameter {name} must be true or false, got {raw!r}")


def _upload() -> tuple[bytes, str]:
    """The bytes and file name of the multipart field `uploadfile`."""
    upload = request.files.get("uploadfile")
    if upload is None:
        present = ", ".join(sorted(request.files)) or "none"
        raise bad_request(
            "Failed to read the pipeline package: the multipart/form-data field 'uploadfile' "
            f"is missing (fields present: {present})"
        )
    return upload.read(), upload.filename or ""


def api_blueprint(services: KfpServices, name: str) -> Blueprint:
    """Every KFP route, bound to the services (registered once per URL prefix)."""
    bp = Blueprint(name, __name__)
    pipelines, experiments = services.pipelines, services.experiments
    runs, recurring_runs = services.runs, services.recurring_runs

    @bp.get(f"{V2}/healthz")
    def healthz() -> Response:
        return _json(healthz_json())

    # pipelines
    @bp.get(f"{V2}/pipelines")
    def list_pipelines() -> Response:
        return _json(pipelines.list_pipelines(_list_args()))

    @bp.post(f"{V2}/pipelines")
    def create_pipeline() -> Response:
        return _json(pipelines.create_pipeline(_body()))

    @bp.post(f"{V2}/pipelines/create")
    def create_pipeline_and_version() -> Response:
        return _json(pipelines.create_pipeline_and_version(_body()))

    @bp.post(f"{V2}/pipelines/upload")
    def upload_pipeline() -> Response:
        data, filename = _upload()
        return _json(
            pipelines.upload_pipeline(
                data,
                filename,
                name=request.args.get("name", ""),
                display_name=request.args.get("display_name", ""),
                description=request.args.get("description", ""),
                namespace=request.args.get("namespace", ""),
            )
        )

    @bp.post(f"{V2}/pipelines/upload_version")
    def upload_pipeline_version() -> Response:
        data, filename = _upload()
        return _json(
            pipelines.upload_version(
                data,
                filename,
                pipeline_id=request.args.get("pipelineid", ""),
                name=request.args.get("name", ""),
                display_name=request.args.get("display_name", ""),
                description=request.args.get("description", ""),
            )
        )

    @bp.get(f"{V2}/pipelines/names/<path:name>")
    def get_pipeline_by_name(name: str) -> Response:
        return _json(pipelines.get_pipeline_by_name(name, request.args.get("namespace", "")))

    @bp.get(f"{V2}/pipelines/<pipeline_id>")
    def get_pipeline(pipeline_id: str) -> Response:
        return _json(pipelines.get_pipeline(pipeline_id))

    @bp.delete(f"{V2}/pipelines/<pipeline_id>")
    def delete_pipeline(pipeline_id: str) -> Response:
        return _json(pipelines.delete_pipeline(pipeline_id, _bool_arg("cascade")))

    @bp.patch(f"{V2}/pipelines/<pipeline_id>")
    def update_pipeline(pipeline_id: str) -> Response:
        return _json(pipelines.update_pipeline(pipeline_id, _body()))

    @bp.patch(f"{V2}/pipelines/<pipeline_id>/versions/<version_id>")
    def update_version(pipeline_id: str, version_id: str) -> Response:
        return _json(pipelines.update_version(pipeline_id, version_id, _body()))

    @bp.get(f"{V2}/auth")
    def authorize() -> Response:
        return _json({})  # single-user: every authenticated caller may do everything

    @bp.get(f"{V2}/pipelines/<pipeline_id>/versions")
    def list_versions(pipeline_id: str) -> Response:
        return _json(pipelines.list_versions(pipeline_id, _list_args()))

    @bp.post(f"{V2}/pipelines/<pipeline_id>/versions")
    def create_version(pipeline_id: str) -> Response:
        return _json(pipelines.create_version(pipeline_id, _body()))

    @bp.get(f"{V2}/pipelines/<pipeline_id>/versions/<version_id>")
    def get_version(pipeline_id: str, version_id: str) -> Response:
        return _json(pipelines.get_version(pipeline_id, version_id))

    @bp.delete(f"{V2}/pipelines/<pipeline_id>/versions/<version_id>")
    def delete_version(pipeline_id: str, version_id: str) -> Response:
        return _json(pipelines.delete_version(pipeline_id, version_id))

    # experiments
    @bp.get(f"{V2}/experiments")
    def list_experiments() -> Response:
        return _json(experiments.list_experiments(_list_args()))

    @bp.post(f"{V2}/experiments")
    def create_experiment() -> Response:
        return _json(experiments.create_experiment(_body()))

    @bp.get(f"{V2}/experiments/<experiment_id>")
    def get_experiment(experiment_id: str) -> Response:
        return _json(experiments.get_experiment(experiment_id))

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
        return _json(runs.list_runs(_list_args()))

    @bp.post(f"{V2}/runs")
    def create_run() -> Response:
        return _json(runs.create_run(_body(), request.args.get("experiment_id", "")))

    @bp.get(f"{V2}/runs/<run_id>")
    def get_run(run_id: str) -> Response:
        return _json(runs.get_run(run_id))

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
        return _json(recurring_runs.list_recurring_runs(_list_args()))

    @bp.post(f"{V2}/recurringruns")
    def create_recurring_run() -> Response:
        return _json(recurring_runs.create_recurring_run(_body()))

    @bp.get(f"{V2}/recurringruns/<recurring_run_id>")
    def get_recurring_run(recurring_run_id: str) -> Response:
        return _json(recurring_runs.get_recurring_run(recurring_run_id))

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
    @bp.get("/apis/v1alpha1/runs/<run_id>/nodes/<node_id>/log")
    def task_log(run_id: str, node_id: str) -> Response:
        path = runs.task_log(run_id, node_id)
        return send_file(path, mimetype="text/plain", max_age=0, conditional=False)

    return bp


def create_app(services: KfpServices, auth: AuthConfig | None = None) -> Flask:
    """The Flask app of the embedded KFP server."""
    app = Flask("kfadapter.localkfp")
    app.config["MAX_CONTENT_LENGTH"] = MAX_PACKAGE_BYTES + 1024 * 1024
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.url_map.strict_slashes = False
    install_auth(app, auth or AuthConfig())
    app.register_blueprint(api_blueprint(services, "kfp"))
    app.register_blueprint(api_blueprint(services, "kfp_ui_proxy"), url_prefix="/pipeline")

    @app.errorhandler(ApiError)
    def _api_error(error: ApiError) -> Response:
        return _json(error.body(), error.status)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        if status == 404:
            message = f"Not Found: no KFP API route {request.method} {request.path}"
        elif status == 405:
            message = f"Method Not Allowed: {request.method} {request.path}"
        elif status == 413:
            message = f"request body is larger than the limit of {MAX_PACKAGE_BYTES} bytes"
        else:
            message = error.description or error.name
        response = _json(ApiError(status, message).body(), status)
        if status == 405 and getattr(error, "valid_methods", None):
            response.headers["Allow"] = ", ".join(error.valid_methods)  # type: ignore[attr-defined]
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        log.exception("unhandled error in the local KFP server")
        return _json(
            ApiError(500, "internal error of the local KFP server; see its log").body(), 500
        )

    return app
