"""Notifying the training manager of a run's final state, at least once, until a deadline.

The TM receives `POST <notify_url>` with JSON {"trainingjob_id", "run_id", "run_status",
"notification_id"}. Connection errors, time-outs, 429, 502, 503 and 504 mean "not received"
and are retried with capped exponential back-off and jitter; any other answer (2xx, 4xx, 500)
means "received" and is recorded with its code.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from kfadapter.tracking.model import (
    DELIVERED,
    EXPIRED,
    PENDING,
    AttemptResult,
    TrackedRun,
    TrackingStore,
)

log = logging.getLogger(__name__)

RETRYABLE_STATUS_CODES = frozenset({429, 502, 503, 504})
_NOTIFICATION_NAMESPACE = uuid.UUID("5d6f3c1e-8a4b-4f0e-9c1a-6b2d7e9f0a11")
_MAX_ERROR_TEXT = 300
# Seconds a claim outlives the POST's time-out (time to record the attempt).
CLAIM_MARGIN = 5.0


def notification_id(run_id: str, final_state: str) -> str:
    """The id of a run's notification: the same for every retry, and across restarts."""
    return str(uuid.uuid5(_NOTIFICATION_NAMESPACE, f"{run_id}/{final_state}"))


def notification_payload(run: TrackedRun) -> dict[str, str]:
    """The JSON body the TM receives for a final run."""
    return {
        "trainingjob_id": run.trainingjob_id,
        "run_id": run.run_id,
        "run_status": run.final_state or "",
        "notification_id": run.notification_id
        or notification_id(run.run_id, run.final_state or ""),
    }


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential back-off with jitter: the wait before the next attempt."""

    base: float = 2.0
    cap: float = 300.0

    def __post_init__(self) -> None:
        if self.base <= 0 or self.cap < self.base:
            raise ValueError(f"need 0 < base <= cap, got base={self.base}, cap={self.cap}")

    def ceiling(self, failures: int) -> float:
        """The longest wait after `failures` failed attempts: base * 2^(failures-1), capped."""
        exponent = min(max(failures, 1) - 1, 60)
        return min(self.cap, self.base * 2.0**exponent)

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        """A wait drawn in [ceiling/2, ceiling] ("equal jitter"), so workers do not align."""
        ceiling = self.ceiling(failures)
        return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)


@dataclass(frozen=True)
class SendOutcome:
    """What happened to one POST: received by the TM or not, its code, what went wrong."""

    received: bool
    code: int | None = None
    error: str | None = None
    retry_after: float | None = None


class Notifier:
    """Sends due notifications from the store and records each attempt's outcome."""

    def __init__(
        self,
        store: TrackingStore,
        url: str,
        *,
        timeout: float,
        deadline: float,
        policy: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self._store = store
        self.url = url
        self._timeout = timeout
        self._deadline = deadline
        self.policy = policy or RetryPolicy()
        self._clock = clock
        self._rng = rng or random.Random()
        self._session = session or requests.Session()

    def close(self) -> None:
        """Close the HTTP connections."""
        self._session.close()

    def send(self, run: TrackedRun) -> SendOutcome:
        """POST one notification; never raises for network trouble."""
        payload = notification_payload(run)
        try:
            with self._session.post(
                self.url, json=payload, timeout=self._timeout, allow_redirects=False
            ) as response:
                code = response.status_code
                body = response.text[:_MAX_ERROR_TEXT]
                retry_after = _retry_after(response.headers.get("Retry-After"))
        except requests.Timeout as error:
            return SendOutcome(False, error=f"no answer within {self._timeout:g} s: {error}")
        except requests.ConnectionError as error:
            return SendOutcome(False, error=f"cannot connect to {self.url}: {error}")
        except requests.RequestException as error:
            return SendOutcome(False, error=f"request failed: {error}")
        if code in RETRYABLE_STATUS_CODES:
            return SendOutcome(False, code, f"HTTP {code}: {body}", retry_after)
        return SendOutcome(True, code, None if 200 <= code < 300 else f"HTTP {code}: {body}")

    def outcome_to_result(self, run: TrackedRun, outcome: SendOutcome, now: float) -> AttemptResult:
        """Delivered, retried later (with back-off), or expired past the deadline."""
        attempts = run.attempts + 1
        if outcome.received:
            return AttemptResult(run.run_id, DELIVERED, attempts, None, outcome.code, outcome.error)
        seen = run.final_seen_at if run.final_seen_at is not None else now
        deadline = seen + self._deadline
        if now >= deadline:
            return AttemptResult(run.run_id, EXPIRED, attempts, None, outcome.code, outcome.error)
        wait = self.policy.delay(attempts, self._rng)
        if outcome.retry_after is not None:
            wait = max(wait, min(outcome.retry_after, self.policy.cap))
        next_at = min(now + wait, deadline)
        return AttemptResult(run.run_id, PENDING, attempts, next_at, outcome.code, outcome.error)

    def deliver_due(self, should_stop: Callable[[], bool] = lambda: False) -> int:
        """Send every notification whose time has come, one claimed at a time; the number
        of attempts made.

        Each is claimed in the store before it is sent, for the time-out plus a margin
        (`claim_lease`): another replica's notifier skips it meanwhile, and if this process
        dies before recording the attempt the claim lapses and it is sent again (same
        notification_id: at least once).
        """
        sent = 0
        while not should_stop():
            run = self._store.claim_due(self._clock(), self.claim_lease)
            if run is None:
                break
            outcome = self.send(run)
            now = self._clock()
            result = self.outcome_to_result(run, outcome, now)
            self._store.record_attempt(result, now)
            sent += 1
            _log_attempt(run, result)
        return sent

    @property
    def claim_lease(self) -> float:
        """How long a claimed notification is kept from other senders: one POST's time-out
        and a margin for recording its outcome."""
        return self._timeout + CLAIM_MARGIN


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the HTTP-date form is ignored)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _log_attempt(run: TrackedRun, result: AttemptResult) -> None:
    details: dict[str, Any] = {
        "trainingjob_id": run.trainingjob_id,
        "run_id": run.run_id,
        "run_status": run.final_state,
        "attempts": result.attempts,
        "code": result.last_code,
    }
    if result.notification_status == DELIVERED:
        log.info("notification delivered %s", details)
    elif result.notification_status == EXPIRED:
        log.error(
            "notification expired, deadline passed: %s, last error %s", details, result.last_error
        )
    else:
        log.warning(
            "notification not received, will retry: %s, error %s", details, result.last_error
        )
