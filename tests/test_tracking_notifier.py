"""The retry policy and the notifier's HTTP outcomes, against a real receiver on a port."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import requests as requests_lib

from kfadapter.tracking.model import DELIVERED, EXPIRED, PENDING, StateUpdate, TrackedRun
from kfadapter.tracking.notifier import (
    Notifier,
    RetryPolicy,
    SendOutcome,
    notification_id,
    notification_payload,
)
from kfadapter.tracking.store import SqliteTrackingStore
from tests.support import free_port
from tests.tracking_support import NOTIFY_PATH, TmReceiver


def test_back_off_doubles_from_the_base_up_to_the_cap():
    policy = RetryPolicy(base=1.0, cap=30.0)
    assert [policy.ceiling(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert policy.ceiling(10_000) == 30.0  # no overflow after a long outage


def test_jitter_spreads_delays_within_half_to_full_ceiling():
    policy = RetryPolicy(base=0.5, cap=60.0)
    rng = random.Random(7)
    for failures in (1, 3, 12):
        delays = [policy.delay(failures, rng) for _ in range(200)]
        ceiling = policy.ceiling(failures)
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len({round(delay, 6) for delay in delays}) > 150  # really jittered


@pytest.mark.parametrize("base, cap", [(0, 10), (-1, 10), (5, 1)])
def test_nonsense_policies_are_refused(base: float, cap: float):
    with pytest.raises(ValueError):
        RetryPolicy(base=base, cap=cap)


def test_notification_id_is_stable_per_run_and_final_state():
    assert notification_id("run-1", "FAILED") == notification_id("run-1", "FAILED")
    assert notification_id("run-1", "FAILED") != notification_id("run-1", "SUCCEEDED")
    assert notification_id("run-1", "FAILED") != notification_id("run-2", "FAILED")


def _final_run(final_state: str = "SUCCEEDED", attempts: int = 0, seen: float = 0.0):
    return TrackedRun(
        run_id="run-1",
        trainingjob_id="job-1",
        info={},
        run_state=final_state,
        final_state=final_state,
        notification_status=PENDING,
        notification_id=notification_id("run-1", final_state),
        attempts=attempts,
        final_seen_at=seen,
    )


def _notifier(url: str, store=None, *, timeout: float = 2.0, deadline: float = 100.0):
    return Notifier(
        store,
        url,
        timeout=timeout,
        deadline=deadline,
        policy=RetryPolicy(base=1.0, cap=8.0),
        rng=random.Random(1),
    )


@pytest.mark.e2e
def test_post_carries_the_contract_payload_as_json(receiver: TmReceiver):
    notifier = _notifier(f"http://127.0.0.1:{receiver.port}{NOTIFY_PATH}")
    outcome = notifier.send(_final_run("CANCELED"))
    assert outcome == SendOutcome(True, 200, None)
    [got] = receiver.received
    assert (got.method, got.path, got.content_type) == ("POST", NOTIFY_PATH, "application/json")
    assert got.body == {
        "trainingjob_id": "job-1",
        "run_id": "run-1",
        "run_status": "CANCELED",
        "notification_id": notification_id("run-1", "CANCELED"),
    }
    assert got.body == notification_payload(_final_run("CANCELED"))


@pytest.mark.parametrize(
    "status, received",
    [
        (200, True),
        (204, True),
        (404, True),
        (500, True),
        (429, False),
        (502, False),
        (503, False),
        (504, False),
    ],
)
@pytest.mark.e2e
def test_answers_that_mean_received_or_not(receiver: TmReceiver, status: int, received: bool):
    receiver.status = status
    outcome = _notifier(f"http://127.0.0.1:{receiver.port}{NOTIFY_PATH}").send(_final_run())
    assert (outcome.received, outcome.code) == (received, status)
    assert (outcome.error is None) == (200 <= status < 300)


@pytest.mark.e2e
def test_connection_refused_and_time_out_are_not_received():
    refused = _notifier(f"http://127.0.0.1:{free_port()}{NOTIFY_PATH}").send(_final_run())
    assert not refused.received and refused.code is None and "cannot connect" in refused.error
    slow = TmReceiver(delay=1.0).start()
    try:
        notifier = _notifier(f"http://127.0.0.1:{slow.port}{NOTIFY_PATH}", timeout=0.2)
        outcome = notifier.send(_final_run())
    finally:
        slow.stop()
    assert not outcome.received and "no answer within 0.2 s" in outcome.error


def test_failures_back_off_until_the_deadline_then_expire():
    notifier = _notifier("http://unused", deadline=10.0)
    failure = SendOutcome(False, 503, "HTTP 503: busy")
    first = notifier.outcome_to_result(_final_run(seen=0.0), failure, now=0.0)
    assert first.notification_status == PENDING and first.attempts == 1
    assert 0.5 <= first.next_attempt_at <= 1.0
    later = notifier.outcome_to_result(_final_run(attempts=5, seen=0.0), failure, now=7.0)
    assert later.next_attempt_at == 10.0  # back-off 4..8 s, capped by the deadline
    last = notifier.outcome_to_result(_final_run(attempts=6, seen=0.0), failure, now=10.0)
    assert (last.notification_status, last.last_code, last.last_error) == (
        EXPIRED,
        503,
        "HTTP 503: busy",
    )
    ok = notifier.outcome_to_result(_final_run(attempts=6), SendOutcome(True, 500, "x"), 10.0)
    assert (ok.notification_status, ok.attempts, ok.last_code) == (DELIVERED, 7, 500)


def test_retry_after_is_honoured_up_to_the_cap():
    notifier = _notifier("http://unused", deadline=1000.0)
    outcome = SendOutcome(False, 429, "HTTP 429", retry_after=6.0)
    assert notifier.outcome_to_result(_final_run(), outcome, now=0.0).next_attempt_at == 6.0
    outcome = SendOutcome(False, 429, "HTTP 429", retry_after=600.0)
    assert notifier.outcome_to_result(_final_run(), outcome, now=0.0).next_attempt_at == 8.0


@pytest.mark.e2e
def test_deliver_due_records_each_attempt(tmp_path: Path, receiver: TmReceiver):
    store = SqliteTrackingStore.in_dir(tmp_path)
    for n in range(3):
        store.add(f"job-{n}", f"run-{n}", {}, now=0.0)
    store.record_poll(
        [StateUpdate(f"run-{n}", "FAILED", final=True, notification_id=f"n{n}") for n in range(2)],
        now=0.0,
    )
    receiver.status = 500
    notifier = _notifier(f"http://127.0.0.1:{receiver.port}{NOTIFY_PATH}", store)
    assert notifier.deliver_due() == 2
    assert notifier.deliver_due() == 0  # delivered ones are not sent again
    assert sorted(body["run_id"] for body in receiver.bodies()) == ["run-0", "run-1"]
    run = store.get("run-0")
    assert (run.notification_status, run.attempts, run.last_code) == (DELIVERED, 1, 500)
    assert store.get("run-2").notification_status == "waiting"
    store.close()


# -- the same outcomes in process, the TM's answers scripted with requests-mock ----------

TM_URL = "http://tm.test:32002" + NOTIFY_PATH


@pytest.mark.parametrize(
    ("answer", "received", "code", "retry_after"),
    [
        ({"status_code": 200}, True, 200, None),
        ({"status_code": 500, "text": "job failed"}, True, 500, None),
        ({"status_code": 302, "headers": {"Location": "/login"}}, True, 302, None),
        ({"status_code": 429, "headers": {"Retry-After": "7"}}, False, 429, 7.0),
        ({"status_code": 503, "headers": {"Retry-After": "soon"}}, False, 503, None),
        ({"status_code": 504}, False, 504, None),
        ({"exc": requests_lib.ConnectTimeout}, False, None, None),
        ({"exc": requests_lib.ConnectionError}, False, None, None),
    ],
)
def test_what_each_answer_means_for_delivery(
    requests_mock, answer: dict, received: bool, code: int | None, retry_after: float | None
):
    requests_mock.post(TM_URL, **answer)
    outcome = _notifier(TM_URL).send(_final_run("FAILED"))
    assert (outcome.received, outcome.code, outcome.retry_after) == (received, code, retry_after)
    assert (outcome.error is None) == (code == 200)
    sent = requests_mock.last_request
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.json() == notification_payload(_final_run("FAILED"))
    assert requests_mock.call_count == 1  # a redirect is an answer, not followed


def test_retries_are_recorded_until_the_tm_takes_it(requests_mock, store: SqliteTrackingStore):
    store.add("job-1", "run-1", {}, now=0.0)
    store.record_poll(
        [StateUpdate("run-1", "SUCCEEDED", final=True, notification_id="n-1")], now=0.0
    )
    requests_mock.post(TM_URL, [{"status_code": 503}, {"status_code": 502}, {"status_code": 200}])
    clock = [0.0]
    notifier = Notifier(
        store,
        TM_URL,
        timeout=1.0,
        deadline=100.0,
        policy=RetryPolicy(base=1.0, cap=4.0),
        clock=lambda: clock[0],
        rng=random.Random(1),
    )
    for _ in range(3):
        assert notifier.deliver_due() == 1
        clock[0] = store.get("run-1").next_attempt_at or clock[0]
    run = store.get("run-1")
    assert (run.notification_status, run.attempts, run.last_code) == (DELIVERED, 3, 200)
    assert requests_mock.call_count == 3
    assert notifier.deliver_due() == 0  # delivered: never sent again
