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
    """200 when KFP answers its healthz and the tracking store answers (when tracking is
    on), else 503 with the reasons."""
    try:
        kfp().healthz()
    except AdapterError as error:
        kfp_ready, kfp_state = False, error.message
    else:
        endpoint = services().settings.kfp_endpoint
        kfp_ready, kfp_state = True, f"KFP at {endpoint} answers its healthz"
    store_ready, store_state = True, None
    tracker = services().tracker
    if tracker is not None:
        try:
            store_state = f"{tracker.ping()} answers"
        except Exception as error:  # whatever stops the store answering: not ready
            message = error.message if isinstance(error, AdapterError) else str(error)
            store_ready, store_state = False, f"the tracking store does not answer: {message}"
    ready = kfp_ready and store_ready
    # Ready: every state; not ready: only what is wrong.
    reasons = [
        state
        for state, fine in ((kfp_state, kfp_ready), (store_state, store_ready))
        if state and (ready or not fine)
    ]
    status = 200 if ready else 503
    body = {
        "status": status,
        "ready": ready,
        "message": "; ".join(reasons),
        "kfp": kfp_state,
        "database": store_state,
    }
    return jsonify(body), status
