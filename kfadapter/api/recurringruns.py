"""Recurring runs: list and get."""

from __future__ import annotations

from flask import Blueprint, jsonify

from kfadapter.api.common import checked_name, kfp

bp = Blueprint("recurringruns", __name__)


@bp.get("/recurringruns")
def list_recurring_runs():
    """Every recurring run in the namespace."""
    recurring_runs = kfp().all_recurring_runs()
    return jsonify({"recurring_runs": recurring_runs, "total_size": len(recurring_runs)})


@bp.get("/recurringruns/<recurring_run_id>")
def get_recurring_run(recurring_run_id: str):
    """One recurring run with its trigger, status and parameters."""
    checked_name(recurring_run_id, "recurring run id")
    return jsonify(kfp().get_recurring_run(recurring_run_id))
