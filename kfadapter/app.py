"""create_app: the adapter's Flask app with its blueprints, error handler, metrics and tracking."""

from __future__ import annotations

import logging

from flask import Flask, Response

from kfadapter.api import common
from kfadapter.api.common import RunTracker
from kfadapter.errors import register_error_handlers
from kfadapter.kfp import KfConnect, KfpClient
from kfadapter.settings import Settings

log = logging.getLogger(__name__)

JSON = "application/json"


def create_app(
    settings: Settings | None = None,
    *,
    kfconnect: KfpClient | None = None,
    tracker: RunTracker | None = None,
) -> Flask:
    """Build the adapter's app. Nothing contacts KFP here: the app starts while KFP is down.

    `settings` defaults to `Settings.from_env()` (so `gunicorn 'kfadapter.app:create_app()'`
    works). When `tracker` is None and tracking is enabled, a `kfadapter.tracking.Tracker`
    is built and started; it is reachable as `app.extensions["kfadapter"].tracker`.
    """
    settings = settings or Settings.from_env()
    kfconnect = kfconnect or KfConnect(settings)
    if tracker is None and settings.tracking_enabled:
        tracker = _start_tracker(settings, kfconnect)

    app = Flask("kfadapter", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes
    app.json.sort_keys = False
    app.url_map.merge_slashes = False  # no HTML redirect for "//": a JSON 404 instead
    app.extensions[common.SERVICES_EXTENSION] = common.Services(
        settings=settings, kfconnect=kfconnect, tracker=tracker
    )

    from kfadapter.api import (
        experiments,
        health,
        pipelines,
        recurringruns,
        runs,
        trainingjobs,
    )

    for blueprint in (
        health.bp,
        pipelines.bp,
        experiments.bp,
        runs.bp,
        recurringruns.bp,
        trainingjobs.bp,
    ):
        app.register_blueprint(blueprint)
    register_error_handlers(app)
    _install_operations(app, tracker)
    app.after_request(_exact_json_content_type)
    return app


def _start_tracker(settings: Settings, kfconnect: KfpClient) -> RunTracker:
    """Build and start run tracking."""
    from kfadapter.tracking import Tracker

    tracker = Tracker(settings, kfconnect)
    tracker.start()
    return tracker


def _install_operations(app: Flask, tracker: RunTracker | None) -> None:
    """Request ids, access logs, metrics (GET /metrics) and the API docs (/openapi.json, /docs)."""
    from kfadapter import observability
    from kfadapter.api import docs

    observability.install(app, tracker)
    app.register_blueprint(docs.bp)


def _exact_json_content_type(response: Response) -> Response:
    """Every JSON answer says exactly `Content-Type: application/json` (the TM compares it)."""
    if response.mimetype == JSON:
        response.headers["Content-Type"] = JSON
    return response
