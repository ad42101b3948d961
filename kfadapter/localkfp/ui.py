"""The embedded server's web UI and the routes of its own that the UI reads.

- `/` (and `/pipeline/`, where `kfp.Client(host=.../pipeline)` points its links): the UI's
  page, whose hash routes are KFP's UI's (`#/runs/details/<id>`...); `assets/<file>`
  beside it: the bundle built from ui/ and shipped in the package (kfadapter/localkfp/ui/,
  no CDN). Pages and assets are answered with `Cache-Control: no-cache` and an ETag (the
  bundle's names carry no hash, so a browser revalidates and an upgrade shows at once).
- `/apis/local/v1/runs/{id}/tasks`, `.../artifacts`, `.../artifacts/{task}/{name}`: what
  the run's tasks wrote (run_outputs.py), where KFP's API has no route. Same auth as the API;
  errors as KFP's JSON.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from flask import Blueprint, Response, jsonify, request, send_file
from werkzeug.security import safe_join

from kfadapter.localkfp import run_outputs
from kfadapter.localkfp.apierrors import ApiError, bad_request
from kfadapter.localkfp.services import KfpServices

UI_PACKAGE = "kfadapter.localkfp"
UI_DIRECTORY = "ui"

_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def bundle_dir() -> Path:
    """Where the installed package keeps the UI bundle (index.html, assets/)."""
    return Path(str(resources.files(UI_PACKAGE).joinpath(UI_DIRECTORY)))


def _no_cache(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-cache"
    response.headers.update(_SECURITY_HEADERS)
    return response


def ui_blueprint(services: KfpServices, data_dir: Path, name: str) -> Blueprint:
    """The UI's page and assets and the local extension routes (once per URL prefix)."""
    bp = Blueprint(name, __name__)
    runs = services.runs

    @bp.get("/", strict_slashes=True)  # /pipeline -> 308 /pipeline/: relative URLs resolve
    def page() -> Response:
        index = bundle_dir() / "index.html"
        if not index.is_file():
            raise ApiError(404, "the web UI is not installed (kfadapter/localkfp/ui/index.html)")
        return _no_cache(send_file(index, mimetype="text/html", max_age=0))

    @bp.get("/assets/<path:filename>")
    def asset(filename: str) -> Response:
        path = safe_join(str(bundle_dir() / "assets"), filename)  # None for ../ and the like
        if path is None or not Path(path).is_file():
            raise ApiError(404, f"no UI asset named {filename!r}")
        return _no_cache(send_file(path, max_age=0))

    def run_directory(run_id: str) -> Path:
        directory = run_outputs.run_directory(data_dir, run_id)
        runs.get_run(run_id)  # 404 for a run the server does not know
        return directory

    @bp.get(f"{run_outputs.EXTENSION}/runs/<run_id>/tasks")
    def run_tasks(run_id: str) -> Response:
        return jsonify({"tasks": run_outputs.run_tasks(run_directory(run_id), run_id)})

    @bp.get(f"{run_outputs.EXTENSION}/runs/<run_id>/artifacts")
    def run_artifacts(run_id: str) -> Response:
        return jsonify({"artifacts": run_outputs.run_artifacts(run_directory(run_id), run_id)})

    @bp.get(f"{run_outputs.EXTENSION}/runs/<run_id>/artifacts/<task_path>/<artifact_name>")
    def artifact_file(run_id: str, task_path: str, artifact_name: str) -> Response:
        raw_index = request.args.get("index", "0")
        if not (raw_index.isascii() and raw_index.isdigit()):
            raise bad_request(f"query parameter index must be a whole number, got {raw_index!r}")
        directory = run_directory(run_id)
        path = run_outputs.artifact_file(directory, task_path, artifact_name, int(raw_index))
        if path.is_dir():
            return send_file(
                run_outputs.zipped(path),
                mimetype="application/zip",
                as_attachment=True,
                download_name=f"{artifact_name}.zip",
            )
        return send_file(
            path,
            mimetype="application/octet-stream",
            as_attachment=True,
            download_name=path.name,
            max_age=0,
        )

    return bp
