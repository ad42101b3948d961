"""Tracker: what the app calls to track runs, and the leader's watcher and notifier threads.

Every gunicorn worker of every replica has one (they all write runs to the same store);
only the one holding the leader lock (the data dir's flock with SQLite, an advisory lock
with PostgreSQL) runs the watcher and notifier, so each outcome is sent by one process.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kfadapter.errors import BadRequest, TrackingUnavailable
from kfadapter.tracking import backends, model
from kfadapter.tracking.leader import LeaderElection
from kfadapter.tracking.model import TrackingStore
from kfadapter.tracking.notifier import Notifier, RetryPolicy
from kfadapter.tracking.paging import decode_page_token, encode_page_token
from kfadapter.tracking.watcher import RunStateSource, Watcher

if TYPE_CHECKING:
    from kfadapter.settings import Settings

log = logging.getLogger(__name__)

# The leader prunes finished runs past the retention this often (and once when it starts).
PRUNE_INTERVAL = 3600.0


class Tracker:
    """Durable run tracking plus, in the leader only, the background watcher and notifier."""

    def __init__(
        self,
        settings: Settings,
        kfconnect: RunStateSource,
        *,
        store: TrackingStore | None = None,
        leader: LeaderElection | None = None,
        retry_policy: RetryPolicy | None = None,
        not_found_confirmations: int = 3,
        leader_retry_interval: float | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._settings = settings
        self._data_dir = Path(settings.data_dir)
        self._store: TrackingStore = store or backends.open_store(settings)
        self._clock = clock
        self._deadline = settings.notify_deadline
        self._retention = settings.tracking_retention_days * 86400.0
        self._pruned_at: float | None = None
        self._poll_interval = settings.poll_interval
        self._leader_retry = leader_retry_interval or backends.leader_retry_interval(settings)
        policy = retry_policy or RetryPolicy(
            base=settings.notify_backoff_base,
            cap=settings.notify_backoff_cap,
        )
        self.watcher = Watcher(
            self._store, kfconnect, not_found_confirmations=not_found_confirmations, clock=clock
        )
        self.notifier = Notifier(
            self._store,
            settings.notify_url,
            timeout=settings.notify_timeout,
            deadline=settings.notify_deadline,
            policy=policy,
            clock=clock,
            rng=rng,
        )
        self._lock = leader or backends.open_leader_lock(settings)
        self._stopping = threading.Event()
        self._wake_notifier = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- what request handlers call ----------------------------------------------------------

    def track(self, trainingjob_id: str, run_id: str, **info: Any) -> dict[str, Any]:
        """Start watching a run of a training job; committed to disk before it returns."""
        if not isinstance(trainingjob_id, str) or not trainingjob_id:
            raise BadRequest("trainingjob_id must be a non-empty string")
        if not isinstance(run_id, str) or not run_id:
            raise BadRequest("run_id must be a non-empty string")
        run = self._store.add(trainingjob_id, run_id, info, self._clock())
        return run.to_dict(self._deadline)

    @contextmanager
    def untracking(self, run_id: str) -> Iterator[None]:
        """Untrack a run for the block that terminates it; watch it again if the block fails.

        Untracking first means the watcher cannot see the run end (FAILED, as KFP on Argo
        reports a terminated run) and notify it in the moment between KFP terminating it
        and the adapter untracking it.
        """
        untracked = self._store.untrack(run_id, self._clock())
        try:
            yield
        except BaseException:
            if untracked:
                self._store.retrack(run_id, self._clock())
            raise
        if untracked:
            log.info("run %s terminated through the adapter: no longer tracked", run_id)

    def get(self, trainingjob_id: str) -> dict[str, Any] | None:
        """The latest tracked run of a training job, with its notification's progress."""
        run = self._store.latest_for_job(trainingjob_id)
        return run.to_dict(self._deadline) if run else None

    def list(self, notification_status: str | None = None) -> list[dict[str, Any]]:
        """Every tracked run, newest first, optionally only those with one notification status."""
        self._check_status(notification_status)
        return [run.to_dict(self._deadline) for run in self._store.list(notification_status)]

    def list_page(
        self, notification_status: str | None, page_size: int, page_token: str | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        """One page of list(): its runs and the token of the next page ("" after the last)."""
        self._check_status(notification_status)
        after = decode_page_token(page_token) if page_token else None
        runs, end = self._store.page(notification_status, page_size, after)
        token = encode_page_token(end) if end is not None else ""
        return [run.to_dict(self._deadline) for run in runs], token

    def prune(self) -> int:
        """Delete runs whose notification is finished (delivered, expired, untracked) and
        that have not changed for the retention; 0 when the retention is 0 (keep forever)."""
        if self._retention <= 0:
            return 0
        pruned = self._store.prune(self._clock() - self._retention)
        if pruned:
            log.info(
                "pruned %d finished tracked runs older than %g days",
                pruned,
                self._settings.tracking_retention_days,
            )
        return pruned

    @staticmethod
    def _check_status(notification_status: str | None) -> None:
        """BadRequest unless the status is None or a known notification status."""
        known = model.NOTIFICATION_STATUSES
        if notification_status is not None and notification_status not in known:
            raise BadRequest(
                f"notification_status must be one of {', '.join(known)}, "
                f"got {notification_status!r}",
                allowed=list(known),
            )

    def stats(self) -> dict[str, Any]:
        """Figures for metrics: open runs, notifications by status, whether this is the leader."""
        counts = self._store.counts()
        return {
            "open_runs": counts[model.WAITING],
            "pending_notifications": counts[model.PENDING],
            "delivered_notifications": counts[model.DELIVERED],
            "expired_notifications": counts[model.EXPIRED],
            "untracked_runs": counts[model.UNTRACKED],
            "leader": self.is_leader,
        }

    def ping(self) -> str:
        """The tracking store's description, once it answered (readiness); raises if not."""
        self._store.ping()
        return f"the tracking store ({self._where()})"

    @property
    def is_leader(self) -> bool:
        """Whether this tracker runs the data dir's watcher and notifier."""
        return self._lock.held

    # -- background work ---------------------------------------------------------------------

    def start(self) -> None:
        """Start competing for leadership; the leader watches and notifies until stop()."""
        if self._threads:
            return
        self._stopping.clear()
        thread = threading.Thread(target=self._lead, name="kfadapter-tracking", daemon=True)
        self._threads.append(thread)
        thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the threads, give up leadership and close the store."""
        self._stopping.set()
        self._wake_notifier.set()
        for thread in self._threads:  # the leader thread; it joins the notifier's
            thread.join(timeout)
        self._threads.clear()
        self._lock.release()
        self.notifier.close()
        self._store.close()

    def _lead(self) -> None:
        """Wait to become leader, then watch here and notify in a thread until stop(); after
        leadership is lost (its database session ended), compete again."""
        while not self._stopping.is_set():
            if not self._lock.try_acquire():
                self._stopping.wait(self._leader_retry)
                continue
            log.info("tracking leader (watching and notifying): %s", self._where())
            self._lead_while_held()
            if not self._stopping.is_set():
                log.warning("no longer the tracking leader; competing again")

    def _where(self) -> str:
        """The shared store this tracker leads, for log lines."""
        if self._settings.database_url:
            return f"database {self._settings.database_display}"
        return f"data dir {self._data_dir}"

    def _lead_while_held(self) -> None:
        """The watcher here and the notifier in a thread, until stop() or the lock is lost."""
        ended = threading.Event()
        notifier = threading.Thread(
            target=self._notify_loop, args=(ended,), name="kfadapter-notifier", daemon=True
        )
        notifier.start()
        try:
            self._watch_loop()
        finally:
            ended.set()
            self._wake_notifier.set()
            notifier.join(self._settings.notify_timeout + 5.0)

    def _watch_loop(self) -> None:
        while not self._stopping.is_set() and self._lock.check():
            self._prune_when_due()
            try:
                result = self.watcher.poll_once()
            except TrackingUnavailable as error:  # the database is down: next poll
                log.warning("tracking poll skipped: %s", error.message)
            except Exception:
                log.exception("tracking poll failed")
            else:
                if result.finished:
                    self._wake_notifier.set()
            self._stopping.wait(self._poll_interval)

    def _prune_when_due(self) -> None:
        """Prune at the leader's start and then at most once per PRUNE_INTERVAL."""
        now = self._clock()
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_INTERVAL:
            return
        self._pruned_at = now
        try:
            self.prune()
        except TrackingUnavailable as error:
            log.warning("pruning skipped: %s", error.message)
        except Exception:
            log.exception("pruning tracked runs failed")

    def _notify_loop(self, ended: threading.Event) -> None:
        def should_stop() -> bool:
            return self._stopping.is_set() or ended.is_set()

        while not should_stop():
            self._wake_notifier.clear()
            try:
                self.notifier.deliver_due(should_stop)
                next_at = self._store.next_attempt_at()
            except TrackingUnavailable as error:  # the database is down: nothing is lost
                log.warning("notification pass skipped: %s", error.message)
                next_at = None
            except Exception:
                log.exception("notification pass failed")
                next_at = None
            wait = self._poll_interval
            if next_at is not None:
                wait = min(wait, max(0.0, next_at - self._clock()))
            self._wake_notifier.wait(max(wait, 0.01))
