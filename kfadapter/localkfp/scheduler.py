"""The recurring-run scheduler: a thread that starts runs when enabled triggers come due."""

from __future__ import annotations

import logging
import threading
from typing import Any

from kfadapter.localkfp.apierrors import ApiError
from kfadapter.localkfp.recurring import RecurringRunService

log = logging.getLogger(__name__)


class Scheduler:
    """Every `interval` seconds, start the runs that enabled recurring runs owe.

    A run is due at each trigger time after the previous one (or after creation).
    With catch-up, missed times are started one after the other; with no_catchup only
    the latest missed time is. No more than max_concurrency runs of one recurring run
    are active at once: a due time waits until a slot is free.
    """

    def __init__(self, recurring_runs: RecurringRunService, interval: float = 1.0) -> None:
        self.recurring_runs = recurring_runs
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="kfp-scheduler", daemon=True)

    def start(self) -> Scheduler:
        """Start ticking in a thread of its own."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop ticking; waits for a tick in progress."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tick()
            except Exception:  # one bad tick must not end scheduling
                log.exception("recurring-run scheduler tick failed")

    def tick(self, now: int | None = None) -> list[str]:
        """Start every run that is due now; the ids of the runs started."""
        now = now if now is not None else self.recurring_runs.sources.clock()
        started: list[str] = []
        for row in self.recurring_runs.enabled_recurring_runs():
            try:
                started.extend(self._fire_due(row, now))
            except ApiError as error:
                log.warning("recurring run %s: %s", row["id"], error.message)
            except Exception:  # one broken recurring run must not stop the others
                log.exception("recurring run %s could not be scheduled", row["id"])
        return started

    def _fire_due(self, row: dict[str, Any], now: int) -> list[str]:
        trigger = self.recurring_runs.trigger_of(row)
        started: list[str] = []
        free = row["max_concurrency"] - self.recurring_runs.active_runs_of(row["id"])
        last = row["last_fire_at"] or row["created_at"]
        while free > 0:
            if row["no_catchup"]:
                due = trigger.latest_due(last, now)
            else:
                due = trigger.next_after(last)
                if due is not None and due > now:
                    due = None
            if due is None:
                break
            run_id = self.recurring_runs.fire_recurring_run(row, due)
            row = {**row, "last_fire_at": due, "fire_count": row["fire_count"] + 1}
            last = due
            if run_id is not None:
                started.append(run_id)
            free -= 1
        return started
