"""What the SQLite and PostgreSQL stores share apart from SQL dialect: columns, rows, parameters.

Both tables hold a tracked run in the same columns (`RUN_COLUMNS`); each store writes its
own SQL with its own placeholders, and these helpers turn rows into records and records
into the parameters of the statements, in the order both stores' statements take them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from kfadapter.tracking.model import (
    DELIVERED,
    NOTIFICATION_STATUSES,
    PENDING,
    WAITING,
    AttemptResult,
    PagePosition,
    StateUpdate,
    TrackedRun,
)

__all__ = [
    "RUN_COLUMNS",
    "apply_poll",
    "attempt_params",
    "page_of",
    "run_from_row",
    "status_counts",
]

RUN_COLUMNS = (
    "run_id, trainingjob_id, info, run_state, final_state, notification_status, "
    "notification_id, attempts, next_attempt_at, last_error, last_code, not_found_count, "
    "created_at, updated_at, polled_at, final_seen_at, last_attempt_at, notified_at"
)


class Executes(Protocol):
    """A connection (sqlite3 or psycopg) that runs a statement and returns its cursor."""

    def execute(self, query: Any, params: Any = ..., /) -> Any: ...


def run_from_row(row: Mapping[str, Any]) -> TrackedRun:
    """The tracked run a row of `RUN_COLUMNS` (and maybe `position`) holds."""
    values = dict(row)
    values.pop("position", None)
    values["info"] = json.loads(values["info"] or "{}")
    return TrackedRun(**values)


def page_of(
    rows: Sequence[Mapping[str, Any]], limit: int
) -> tuple[list[TrackedRun], PagePosition | None]:
    """A page from up to `limit` + 1 rows (with `position`): its runs, and where the next
    page starts (None when no row follows)."""
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if more else None
    runs = [run_from_row(row) for row in rows]
    return runs, ((last["created_at"], last["position"]) if last is not None else None)


def apply_poll(
    db: Executes, updates: Sequence[StateUpdate], now: float, *, final_sql: str, open_sql: str
) -> int:
    """Apply one poll's findings to runs still WAITING: `final_sql` for a run found final
    (now PENDING), `open_sql` for one still open. The number of rows changed."""
    changed = 0
    for update in updates:
        if update.final:
            cursor = db.execute(
                final_sql,
                (
                    update.run_state,
                    update.run_state,
                    update.not_found_count,
                    PENDING,
                    update.notification_id,
                    now,
                    now,
                    now,
                    now,
                    update.run_id,
                    WAITING,
                ),
            )
        else:
            cursor = db.execute(
                open_sql,
                (
                    update.run_state,
                    update.not_found_count,
                    now,
                    update.run_state,
                    update.not_found_count,
                    now,
                    update.run_id,
                    WAITING,
                ),
            )
        changed += cursor.rowcount
    return changed


def attempt_params(result: AttemptResult, now: float) -> tuple[Any, ...]:
    """The parameters of the statement that records a notification attempt."""
    return (
        result.notification_status,
        result.attempts,
        result.next_attempt_at if result.notification_status == PENDING else None,
        result.last_code,
        result.last_error,
        now,
        result.notification_status,
        DELIVERED,
        now,
        now,
        result.run_id,
        PENDING,
    )


def status_counts(rows: Iterable[Sequence[Any]]) -> dict[str, int]:
    """Rows of (notification_status, count) as a count for every status."""
    found = {status: count for status, count in rows}
    return {status: found.get(status, 0) for status in NOTIFICATION_STATUSES}
