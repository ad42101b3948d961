"""GET /liveness and GET /readiness."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from kfadapter.api.common import kfp

bp = Blueprint("health", __name__)


@bp.get("/liveness")
def liveness() -> Response:
    """200 `Okay` while the process serves requests."""
    return Response("Okay", status=200, mimetype="text/plain")


@bp.get("/readiness")
def readiness() -> tuple[Response, int]:
    """200 when KFP answers its healthz, else 503 with the reason."""
    ready, reason = kfp().readiness()
    status = 200 if ready else 503
    return jsonify({"status": status, "ready": ready, "message": reason}), status
