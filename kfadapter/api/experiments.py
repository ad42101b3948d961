"""Experiments: {name: id} for all, one by name, create."""

from __future__ import annotations

from flask import Blueprint, jsonify

from kfadapter.api.common import checked_description, checked_name, json_object, kfp, text_field
from kfadapter.errors import Conflict, NotFound

bp = Blueprint("experiments", __name__)


@bp.get("/experiments")
def list_experiments():
    """A JSON object whose keys are experiment names and values their ids (every experiment)."""
    return jsonify({e["name"]: e["experiment_id"] for e in kfp().all_experiments()})


@bp.get("/experiments/<name>")
def get_experiment(name: str):
    """{"name", "id", ...} of the experiment with this name."""
    checked_name(name, "experiment name")
    experiment = kfp().find_experiment(name)
    if experiment is None:
        raise NotFound(f"experiment {name!r} not found")
    return jsonify(experiment)


@bp.post("/experiments")
def create_experiment():
    """Create an experiment from {"name", "description"}; 409 when the name is taken."""
    body = json_object()
    name = checked_name(text_field(body, "name"), "name")
    description = checked_description(text_field(body, "description", required=False, default=""))
    if kfp().find_experiment(name) is not None:
        raise Conflict(f"experiment {name!r} already exists")
    return jsonify(kfp().create_experiment(name, description)), 201
