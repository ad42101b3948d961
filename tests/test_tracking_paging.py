"""GET /trainingjobs a page at a time, and the leader pruning finished runs past the
retention, over real HTTP against an app whose Tracker has an injectable clock."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from kfadapter.app import create_app
from kfadapter.serving import ServerThread
from kfadapter.settings import Settings
from kfadapter.tracking import PRUNE_INTERVAL, RetryPolicy, Tracker
from kfadapter.tracking.model import DELIVERED, EXPIRED, NOTIFICATION_STATUSES, UNTRACKED
from kfadapter.tracking.store import SqliteTrackingStore
from tests.support import free_port, wait_until
from tests.tracking_support import FakeRunStates, finish_run

DAY = 86400.0
T0 = 1_700_000_000.0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Served:
    """An adapter app over HTTP with its tracker, store, clock and fake KFP run states."""

    url: str
    tracker: Tracker
    store: SqliteTrackingStore
    clock: Clock
    source: FakeRunStates

    def get(self, path: str, **params: object) -> requests.Response:
        return requests.get(self.url + path, params=params, timeout=30)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    settings = Settings(
        kfp_endpoint=f"http://127.0.0.1:{free_port()}/pipeline",  # never called here
        data_dir=tmp_path,
        poll_interval=0.05,
        trainingmgr_host="127.0.0.1",
        trainingmgr_port=free_port(),  # nobody listens: pending notifications stay pending
        notify_timeout=0.5,
        notify_deadline=30 * DAY,
        tracking_retention_days=1.0,
    )
    clock, source = Clock(T0), FakeRunStates()
    store = SqliteTrackingStore.in_dir(tmp_path)
    tracker = Tracker(
        settings,
        source,
        store=store,
        clock=clock,
        retry_policy=RetryPolicy(base=60.0, cap=600.0),
        leader_retry_interval=0.05,
    )
    server = ServerThread(create_app(settings, tracker=tracker)).start()
    yield Served(server.url, tracker, store, clock, source)
    server.stop()
    tracker.stop()


def walk(served: Served, **params: object) -> tuple[list[str], int]:
    """Every run id GET /trainingjobs gives, following next_page_token; and the page count."""
    run_ids: list[str] = []
    token, pages = "", 0
    while True:
        answer = served.get("/trainingjobs", **params, page_token=token)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        run_ids += [job["run_id"] for job in body["trainingjobs"]]
        pages += 1
        token = body["next_page_token"]
        if not token:
            return run_ids, pages
        assert len(body["trainingjobs"]) == params.get("page_size", 100)


@pytest.mark.e2e
def test_pages_walk_every_run_once_newest_first_with_and_without_a_status(served: Served):
    statuses = {}
    for n in range(230):
        run_id = f"run-{n:03d}"
        status = NOTIFICATION_STATUSES[n % len(NOTIFICATION_STATUSES)]
        served.store.add(f"job-{n % 17}", run_id, {}, now=T0 + n // 4)  # ties in created_at
        finish_run(served.store, run_id, status, now=T0 + 1000)
        statuses[run_id] = status
    newest_first = [run.run_id for run in served.store.list()]
    assert len(newest_first) == 230

    run_ids, pages = walk(served, page_size=7)
    assert run_ids == newest_first and pages == 33
    first = served.get("/trainingjobs").json()  # the default page size is 100
    assert len(first["trainingjobs"]) == 100 and first["next_page_token"]
    assert walk(served)[0] == newest_first
    everything = served.get("/trainingjobs", page_size=1000).json()
    assert [job["run_id"] for job in everything["trainingjobs"]] == newest_first
    assert everything["next_page_token"] == ""

    for status in NOTIFICATION_STATUSES:
        run_ids, pages = walk(served, page_size=5, notification_status=status)
        assert run_ids == [run_id for run_id in newest_first if statuses[run_id] == status]
        assert pages == 10  # 46 runs each


@pytest.mark.e2e
def test_runs_tracked_between_pages_neither_repeat_nor_hide_older_ones(served: Served):
    for n in range(10):
        served.store.add("job", f"run-{n}", {}, now=T0 + n)
    first = served.get("/trainingjobs", page_size=4).json()
    assert [job["run_id"] for job in first["trainingjobs"]] == [
        "run-9",
        "run-8",
        "run-7",
        "run-6",
    ]
    served.store.add("job", "run-new", {}, now=T0 + 100)  # lands on page one, already read
    served.store.prune(older_than=T0 + 1e6)  # nothing finished: nothing goes
    rest = served.get("/trainingjobs", page_size=4, page_token=first["next_page_token"]).json()
    second = served.get("/trainingjobs", page_size=4, page_token=rest["next_page_token"]).json()
    assert [job["run_id"] for job in rest["trainingjobs"] + second["trainingjobs"]] == [
        f"run-{n}" for n in range(5, -1, -1)
    ]
    assert second["next_page_token"] == ""


def _token(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


BAD_PAGING = [
    ({"page_size": "0"}, "page_size must be between 1 and 1000, got 0"),
    ({"page_size": "1001"}, "page_size must be between 1 and 1000, got 1001"),
    ({"page_size": "ten"}, "page_size must be a whole number, got 'ten'"),
    ({"page_size": ""}, "page_size must be a whole number, got ''"),
    ({"page_token": "not a token!"}, "page_token 'not a token!' is not a token"),
    ({"page_token": _token("v1:nan:3")}, "is not a token this server issued"),
    ({"page_token": _token("v1:1.5:-3")}, "is not a token this server issued"),
    ({"page_token": _token("v1:1.5:99999999999999999999")}, "is not a token this server"),
    ({"page_token": _token("v2:1.5:3")}, "is not a token this server issued"),
    ({"page_token": "gICA"}, "is not a token this server issued"),  # not UTF-8
    ({"page_token": _token("v1:1.5:" + "9" * 5000)}, "is not a token this server issued"),
    ({"notification_status": "lost", "page_size": "5"}, "notification_status must be"),
]


@pytest.mark.e2e
def test_malformed_paging_parameters_are_400_saying_what_is_wrong(served: Served):
    for params, fragment in BAD_PAGING:
        answer = served.get("/trainingjobs", **params)
        assert answer.status_code == 400, (params, answer.text)
        assert answer.headers["Content-Type"] == "application/json"
        assert fragment in answer.json()["message"], (params, answer.text)


@pytest.mark.e2e
def test_the_leader_prunes_old_finished_runs_at_start_and_then_hourly(served: Served):
    now = T0 + 10 * DAY
    served.clock.now = now
    old, recent = now - 2 * DAY, now - DAY / 2
    for status in NOTIFICATION_STATUSES:
        served.store.add(f"old-{status}", f"old-{status}", {}, now=old - 1)
        finish_run(served.store, f"old-{status}", status, now=old)
        served.store.add(f"recent-{status}", f"recent-{status}", {}, now=recent - 1)
        finish_run(served.store, f"recent-{status}", status, now=recent)
    # A job whose old run was delivered long ago but which has a newer, open run.
    served.store.add("rerun", "rerun-1", {}, now=old - 2)
    finish_run(served.store, "rerun-1", DELIVERED, now=old)
    served.store.add("rerun", "rerun-2", {}, now=old - 1)
    served.source.states.update({"old-waiting": "RUNNING", "recent-waiting": "RUNNING"})
    served.source.states["rerun-2"] = "RUNNING"

    served.tracker.start()
    pruned = [f"old-{status}" for status in (DELIVERED, EXPIRED, UNTRACKED)]
    wait_until(lambda: all(served.get(f"/trainingjobs/{job}").status_code == 404 for job in pruned))
    kept = [f"recent-{status}" for status in NOTIFICATION_STATUSES] + ["old-waiting", "old-pending"]
    for job in kept:
        assert served.get(f"/trainingjobs/{job}").status_code == 200, job
    rerun = served.get("/trainingjobs/rerun")
    assert rerun.status_code == 200 and rerun.json()["run_id"] == "rerun-2"
    assert served.store.get("rerun-1") is None

    # An old finished run arriving after that prune stays until the hour is over,
    # however many polls go by.
    served.store.add("late", "late-1", {}, now=old - 1)
    finish_run(served.store, "late-1", EXPIRED, now=old)
    served.clock.now = now + PRUNE_INTERVAL / 2
    polls = len(served.source.calls)
    wait_until(lambda: len(served.source.calls) >= polls + 5)
    assert served.get("/trainingjobs/late").status_code == 200
    served.clock.now = now + DAY  # an hour passed; the recent ones are now 1.5 days old
    wait_until(lambda: served.get("/trainingjobs/late").status_code == 404)
    assert served.get("/trainingjobs/recent-delivered").status_code == 404
    listed = {job["run_id"] for job in served.get("/trainingjobs").json()["trainingjobs"]}
    assert listed == {
        "old-waiting",
        "old-pending",
        "recent-waiting",
        "recent-pending",
        "rerun-2",
    }


def test_retention_zero_keeps_every_run(tmp_path: Path):
    settings = Settings(data_dir=tmp_path, tracking_retention_days=0)
    store = SqliteTrackingStore.in_dir(tmp_path)
    tracker = Tracker(settings, FakeRunStates(), store=store, clock=Clock(T0 + 1000 * DAY))
    try:
        store.add("job", "run-1", {}, now=T0)
        finish_run(store, "run-1", DELIVERED, now=T0)
        assert tracker.prune() == 0
        assert store.get("run-1") is not None
    finally:
        tracker.stop()
