"""What run tracking's parts share: notification statuses, the records and the store interface.

The tracker, watcher and notifier speak to a store only through `TrackingStore`: SQLite
(store.py) for one replica, PostgreSQL (pgstore.py) for several on one database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

# Notification statuses, in the order a run goes through them.
WAITING = "waiting"  # the run is not final yet: the watcher polls it
PENDING = "pending"  # final state seen: the notification is due or being retried
DELIVERED = "delivered"  # the TM answered (2xx, 4xx, 500...): recorded with its code
EXPIRED = "expired"  # the deadline passed without the TM receiving it
UNTRACKED = "untracked"  # terminated through DELETE /runs/<id>: the TM knows, never notified
NOTIFICATION_STATUSES = (WAITING, PENDING, DELIVERED, EXPIRED, UNTRACKED)
# Statuses nothing will change any more: rows in them may be pruned after the retention.
FINISHED_STATUSES = (DELIVERED, EXPIRED, UNTRACKED)

# Where a page of the newest-first list ended: (created_at, rowid) of its last row.
PagePosition = tuple[float, int]


@dataclass(frozen=True)
class TrackedRun:
    """One run started for a training job, and where its notification stands."""

    run_id: str
    trainingjob_id: str
    info: dict[str, Any]
    run_state: str | None
    notification_status: str
    final_state: str | None = None
    notification_id: str | None = None
    attempts: int = 0
    next_attempt_at: float | None = None
    last_error: str | None = None
    last_code: int | None = None
    not_found_count: int = 0
    created_at: float = 0.0
    updated_at: float = 0.0
    polled_at: float | None = None
    final_seen_at: float | None = None
    last_attempt_at: float | None = None
    notified_at: float | None = None

    def to_dict(self, notify_deadline: float | None = None) -> dict[str, Any]:
        """A JSON-ready view: run, last state seen, and the notification's progress."""
        deadline = (
            self.final_seen_at + notify_deadline
            if self.final_seen_at is not None and notify_deadline is not None
            else None
        )
        return {
            "trainingjob_id": self.trainingjob_id,
            "run_id": self.run_id,
            **{key: value for key, value in self.info.items() if key not in _RESERVED_KEYS},
            "run_state": self.run_state,
            "final_state": self.final_state,
            "tracked_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "last_polled_at": iso(self.polled_at),
            "final_state_seen_at": iso(self.final_seen_at),
            "notification": {
                "status": self.notification_status,
                "notification_id": self.notification_id,
                "attempts": self.attempts,
                "last_attempt_at": iso(self.last_attempt_at),
                "next_attempt_at": iso(self.next_attempt_at)
                if self.notification_status == PENDING
                else None,
                "deadline": iso(deadline),
                "last_code": self.last_code,
                "last_error": self.last_error,
                "notified_at": iso(self.notified_at),
            },
        }


_RESERVED_KEYS = frozenset(
    {
        "trainingjob_id",
        "run_id",
        "run_state",
        "final_state",
        "tracked_at",
        "updated_at",
        "last_polled_at",
        "final_state_seen_at",
        "notification",
    }
)


@dataclass(frozen=True)
class StateUpdate:
    """What one poll learned about one open run."""

    run_id: str
    run_state: str | None
    not_found_count: int = 0
    final: bool = False
    notification_id: str | None = None


@dataclass(frozen=True)
class AttemptResult:
    """The outcome of one notification attempt, as it is to be recorded."""

    run_id: str
    notification_status: str  # PENDING (retry later), DELIVERED or EXPIRED
    attempts: int
    next_attempt_at: float | None
    last_code: int | None
    last_error: str | None


class TrackingStore(Protocol):
    """What the tracker needs from a database (SQLite in store.py, PostgreSQL in pgstore.py)."""

    def add(self, trainingjob_id: str, run_id: str, info: dict[str, Any], now: float) -> TrackedRun:
        """Record a run to watch (committed on return); an already tracked run is kept as is."""

    def untrack(self, run_id: str, now: float) -> bool:
        """Stop watching a run and never notify it; False if it was not open."""

    def retrack(self, run_id: str, now: float) -> bool:
        """Undo untrack(): watch the run again, or, if its final state was already seen,
        make its notification due again; False if it was not untracked."""

    def get(self, run_id: str) -> TrackedRun | None:
        """The tracked run with that id."""

    def latest_for_job(self, trainingjob_id: str) -> TrackedRun | None:
        """The most recently tracked run of a training job."""

    def list(self, notification_status: str | None = None) -> list[TrackedRun]:
        """Tracked runs, newest first, optionally with one notification status."""

    def page(
        self, notification_status: str | None, limit: int, after: PagePosition | None = None
    ) -> tuple[list[TrackedRun], PagePosition | None]:
        """Up to `limit` tracked runs in list() order, starting after `after`; and the
        position to pass for the next page (None when this page is the last)."""

    def prune(self, older_than: float) -> int:
        """Delete runs whose notification is finished and whose last update is before
        `older_than`; open runs and pending notifications are kept. The number deleted."""

    def open_runs(self) -> list[TrackedRun]:
        """Runs not final yet (status WAITING)."""

    def record_poll(self, updates: Sequence[StateUpdate], now: float) -> int:
        """Apply one poll's findings to runs still WAITING, in one transaction."""

    def due_notifications(self, now: float, limit: int) -> list[TrackedRun]:
        """PENDING notifications whose next attempt time has come, oldest first."""

    def claim_due(self, now: float, lease: float) -> TrackedRun | None:
        """The oldest due PENDING notification, claimed for `lease` seconds so that no other
        sender takes it meanwhile (record_attempt ends the claim); None if none is due."""

    def next_attempt_at(self) -> float | None:
        """The earliest next attempt time among PENDING notifications."""

    def record_attempt(self, result: AttemptResult, now: float) -> bool:
        """Record a notification attempt on a run still PENDING."""

    def counts(self) -> dict[str, int]:
        """Number of tracked runs per notification status (every status present)."""

    def ping(self) -> None:
        """Raise unless the database answers now (readiness)."""

    def close(self) -> None:
        """Release the database."""


def iso(timestamp: float | None) -> str | None:
    """An epoch time as ISO-8601 UTC with a Z, like KFP's dates."""
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
