"""GET /liveness and GET /readiness."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from kfadapter.api.common import kfp, services
from kfadapter.errors import AdapterError

bp = Blueprint("health", __name__)


@bp.get("/liveness")
def liveness() -> Response:
    """200 `Okay` while the process serves requests."""
    return Response("Okay", status=200, mimetype="text/plain")


@bp.get("/readiness")
def readiness() -> tuple[Response, int]:
    """200 when KFP answers its healthz, else 503 with the reason."""
    try:
        kfp().healthz()
    except AdapterError as error:
        ready, reason = False, error.message
    else:
        ready, reason = True, f"KFP at {services().settings.kfp_endpoint} answers its healthz"
    status = 200 if ready else 503
    return jsonify({"status": status, "ready": ready, "message": reason}), status
