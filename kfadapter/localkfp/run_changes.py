"""Run row changes: pure functions from a stored run row to the columns a change sets."""

from __future__ import annotations

from typing import Any

from kfadapter.localkfp.execution import RunUpdate
from kfadapter.localkfp.states import ACTIVE_STATES, FINAL_STATES, reported_state
from kfadapter.localkfp.storage import RunChange, dumps, loads
from kfadapter.localkfp.timefmt import from_datetime

RESTART_ERROR = (
    "the local KFP server stopped while this run was active; runs do not survive a server restart"
)


def entered(state: str, now: int, columns: dict[str, Any]) -> RunChange:
    """The change that sets the run's state (and the other columns given), appending it to
    state_history."""

    def change(row: dict[str, Any]) -> dict[str, Any]:
        history = _history_with(row, {"update_time": now, "state": state})
        return {"state": state, **columns, "state_history": dumps(history)}

    return change


def kept_by_retry(task_details: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The task details a retried run shows before its new attempt reports: the nodes that
    succeeded or were skipped, which Argo keeps (GenerateRetryExecution,
    `backend/src/common/util/workflow.go`); the others are run again."""
    kept = [task for task in task_details if task.get("state") in ("SUCCEEDED", "SKIPPED")]
    return kept or None


def progress(update: RunUpdate, now: int) -> RunChange:
    """The change a RunUpdate makes: a final run stays as it is, a CANCELING one stays
    CANCELING until final, CANCELED is reported FAILED (as Argo ends a terminated
    workflow), a new state other than CANCELING is appended to the history."""

    def change(row: dict[str, Any]) -> dict[str, Any] | None:
        if row["state"] in FINAL_STATES:
            return None  # already final: a late update does not reopen the run
        state = reported_state(update.state)
        if row["state"] == "CANCELING" and state not in FINAL_STATES:
            state = "CANCELING"
        history = loads(row["state_history"]) or []
        error = {"message": update.error} if update.error else None
        if state == "FAILED" and error is None and row["state"] == "CANCELING":
            error = {"message": "the run was terminated"}
        if state != "CANCELING" and (not history or history[-1]["state"] != state):
            history.append({"update_time": now, "state": state})
        finished = row["finished_at"]
        if state in FINAL_STATES:
            finished = from_datetime(update.finished_at) or now
        return {
            "state": state,
            # an update without task details keeps the ones already known
            "task_details": dumps(list(update.task_details))
            if update.task_details
            else row["task_details"],
            "error": dumps(error) if error else None,
            "finished_at": finished,
            "state_history": dumps(history),
        }

    return change


def interrupted(now: int) -> RunChange:
    """The change that fails a run a dead server left active, and its unfinished tasks."""

    def change(row: dict[str, Any]) -> dict[str, Any]:
        history = _history_with(row, {"update_time": now, "state": "FAILED"})
        tasks = loads(row["task_details"]) or []
        for task in tasks:
            if task.get("state") in ACTIVE_STATES:
                task["state"] = "FAILED"  # KFP's task details carry no per-task error
        return {
            "state": "FAILED",
            "error": dumps({"message": RESTART_ERROR}),
            "finished_at": now,
            "state_history": dumps(history),
            "task_details": dumps(tasks),
        }

    return change


def _history_with(row: dict[str, Any], entry: dict[str, Any]) -> list[dict[str, Any]]:
    """The row's state_history with one entry appended."""
    return [*(loads(row["state_history"]) or []), entry]
