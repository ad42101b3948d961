"""The watcher, the leader lock and the Tracker, with a fake run-state source and a real
HTTP receiver standing in for the TM (end-to-end tests with KFP are in test_tracking_e2e)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from kfadapter.errors import BadRequest, KfpUnavailable
from kfadapter.settings import Settings
from kfadapter.tracking import RetryPolicy, Tracker
from kfadapter.tracking.leader import LeaderLock
from kfadapter.tracking.model import PENDING, WAITING
from kfadapter.tracking.notifier import notification_id
from kfadapter.tracking.store import SqliteTrackingStore
from kfadapter.tracking.watcher import Watcher
from tests.support import PYTHON, Process, adapter_env, wait_until
from tests.tracking_support import FakeRunStates, TmReceiver

# -- watcher -------------------------------------------------------------------------------


def test_one_poll_asks_for_every_open_run_in_one_call(store: SqliteTrackingStore):
    source = FakeRunStates()
    for n in range(100):
        store.add(f"job-{n}", f"run-{n}", {}, now=0.0)
        source.states[f"run-{n}"] = "RUNNING"
    store.untrack("run-0", now=0.0)
    Watcher(store, source).poll_once()
    assert len(source.calls) == 1
    assert sorted(source.calls[0]) == sorted(f"run-{n}" for n in range(1, 100))


@pytest.mark.parametrize("state", ["SUCCEEDED", "FAILED", "SKIPPED", "CANCELED"])
def test_final_states_make_a_pending_notification(store: SqliteTrackingStore, state: str):
    source = FakeRunStates()
    store.add("job", "run", {}, now=0.0)
    source.states["run"] = state
    result = Watcher(store, source, clock=lambda: 5.0).poll_once()
    assert result.finished == {"run": state}
    run = store.get("run")
    assert (run.notification_status, run.final_state, run.final_seen_at) == (PENDING, state, 5.0)
    assert run.notification_id == notification_id("run", state)


@pytest.mark.parametrize("state", ["PENDING", "RUNNING", "CANCELING", "PAUSED"])
def test_other_states_keep_the_run_open(store: SqliteTrackingStore, state: str):
    source = FakeRunStates()
    store.add("job", "run", {}, now=0.0)
    source.states["run"] = state
    Watcher(store, source).poll_once()
    run = store.get("run")
    assert (run.notification_status, run.run_state) == (WAITING, state)


def test_a_run_kfp_does_not_know_is_not_found_after_three_confirmations(
    store: SqliteTrackingStore,
):
    source = FakeRunStates()
    store.add("job", "run", {}, now=0.0)
    watcher = Watcher(store, source)
    watcher.poll_once()
    watcher.poll_once()
    source.states["run"] = "RUNNING"  # it shows up again: the count starts over
    watcher.poll_once()
    del source.states["run"]
    watcher.poll_once()
    watcher.poll_once()
    assert store.get("run").notification_status == WAITING
    assert watcher.poll_once().finished == {"run": "NOT_FOUND"}
    assert store.get("run").final_state == "NOT_FOUND"


def test_kfp_down_changes_nothing(store: SqliteTrackingStore):
    source = FakeRunStates()
    source.error = KfpUnavailable("KFP cannot be reached")
    store.add("job", "run", {}, now=0.0)
    result = Watcher(store, source).poll_once()
    assert result.error == "KfpUnavailable: KFP cannot be reached"
    run = store.get("run")
    assert (run.notification_status, run.not_found_count) == (WAITING, 0)


def test_no_open_runs_no_kfp_call(store: SqliteTrackingStore):
    source = FakeRunStates()
    Watcher(store, source).poll_once()
    assert source.calls == []


# -- leader lock ---------------------------------------------------------------------------


def test_only_one_holder_at_a_time(tmp_path: Path):
    first, second = LeaderLock.in_dir(tmp_path), LeaderLock.in_dir(tmp_path)
    assert first.try_acquire() and not second.try_acquire()
    assert first.holder_pid() == os.getpid()
    first.release()
    assert second.try_acquire() and not first.try_acquire()
    second.release()


@pytest.mark.e2e
def test_the_lock_is_freed_when_its_holder_is_killed(tmp_path: Path):
    holder = Process(
        [
            PYTHON,
            "-c",
            "import sys, time; from kfadapter.tracking.leader import LeaderLock;"
            "assert LeaderLock.in_dir(sys.argv[1]).try_acquire(); print('held', flush=True);"
            "time.sleep(60)",
            str(tmp_path),
        ],
        env=adapter_env(),
    )
    try:
        holder.wait_for_line("held")
        lock = LeaderLock.in_dir(tmp_path)
        assert not lock.try_acquire()
        assert lock.holder_pid() == holder.popen.pid
        holder.popen.send_signal(signal.SIGKILL)
        holder.popen.wait(10)
        assert lock.try_acquire()
        lock.release()
    finally:
        holder.kill()


# -- Tracker -------------------------------------------------------------------------------


def _settings(data_dir: Path, port: int, **overrides) -> Settings:
    values = dict(
        data_dir=data_dir,
        poll_interval=0.05,
        trainingmgr_host="127.0.0.1",
        trainingmgr_port=port,
        notify_timeout=2.0,
        notify_deadline=60.0,
    )
    values.update(overrides)
    return Settings(**values)


def _tracker(settings: Settings, source: FakeRunStates, **kwargs) -> Tracker:
    kwargs.setdefault("retry_policy", RetryPolicy(base=0.05, cap=0.2))
    kwargs.setdefault("leader_retry_interval", 0.05)
    return Tracker(settings, source, **kwargs)


@pytest.fixture
def source() -> FakeRunStates:
    return FakeRunStates()


@pytest.fixture
def started(tmp_path: Path, receiver: TmReceiver, source: FakeRunStates):
    tracker = _tracker(_settings(tmp_path, receiver.port), source)
    tracker.start()
    yield tracker
    tracker.stop()


@pytest.mark.e2e
def test_a_final_run_is_notified_once_with_the_contract_payload(
    started: Tracker, receiver: TmReceiver, source: FakeRunStates
):
    view = started.track("job-1", "run-1", run_name="r1", pipeline_name="qoe")
    assert view["notification"]["status"] == WAITING and view["run_name"] == "r1"
    source.states["run-1"] = "RUNNING"
    wait_until(lambda: started.get("job-1")["run_state"] == "RUNNING")
    source.states["run-1"] = "SUCCEEDED"
    wait_until(lambda: started.get("job-1")["notification"]["status"] == "delivered")
    time.sleep(0.3)  # a few more polls and notifier passes: nothing more is sent
    assert receiver.bodies() == [
        {
            "trainingjob_id": "job-1",
            "run_id": "run-1",
            "run_status": "SUCCEEDED",
            "notification_id": notification_id("run-1", "SUCCEEDED"),
        }
    ]
    job = started.get("job-1")
    assert job["notification"]["attempts"] == 1 and job["notification"]["last_code"] == 200
    assert started.stats() == {
        "open_runs": 0,
        "pending_notifications": 0,
        "delivered_notifications": 1,
        "expired_notifications": 0,
        "untracked_runs": 0,
        "leader": True,
    }


@pytest.mark.e2e
def test_answer_500_is_delivered_and_not_retried(
    started: Tracker, receiver: TmReceiver, source: FakeRunStates
):
    receiver.status = 500
    started.track("job-1", "run-1")
    source.states["run-1"] = "FAILED"
    wait_until(lambda: started.get("job-1")["notification"]["status"] == "delivered")
    time.sleep(0.5)  # longer than several back-off periods of the test policy
    assert [body["run_status"] for body in receiver.bodies()] == ["FAILED"]
    notification = started.get("job-1")["notification"]
    assert (notification["attempts"], notification["last_code"]) == (1, 500)
    assert notification["last_error"].startswith("HTTP 500")


@pytest.mark.e2e
def test_receiver_down_then_up_gets_the_notification(tmp_path: Path, source: FakeRunStates):
    down = TmReceiver()  # its port is chosen, nobody listens yet
    tracker = _tracker(_settings(tmp_path, down.port), source)
    tracker.start()
    try:
        tracker.track("job-1", "run-1")
        source.states["run-1"] = "CANCELED"
        wait_until(lambda: tracker.get("job-1")["notification"]["attempts"] >= 3)
        notification = tracker.get("job-1")["notification"]
        assert notification["status"] == PENDING
        assert "cannot connect" in notification["last_error"]
        down.start()
        try:
            wait_until(lambda: tracker.get("job-1")["notification"]["status"] == "delivered")
            assert [body["run_status"] for body in down.bodies()] == ["CANCELED"]
        finally:
            down.stop()
    finally:
        tracker.stop()


@pytest.mark.e2e
def test_503_until_the_deadline_expires_with_the_last_error(
    tmp_path: Path, receiver: TmReceiver, source: FakeRunStates
):
    receiver.status = 503
    tracker = _tracker(_settings(tmp_path, receiver.port, notify_deadline=0.5), source)
    tracker.start()
    try:
        tracker.track("job-1", "run-1")
        source.states["run-1"] = "SUCCEEDED"
        wait_until(lambda: tracker.get("job-1")["notification"]["status"] == "expired")
        notification = tracker.get("job-1")["notification"]
        assert notification["attempts"] == len(receiver.bodies()) >= 2
        assert (notification["last_code"], notification["last_error"][:8]) == (503, "HTTP 503")
        assert tracker.list("expired")[0]["run_id"] == "run-1"
    finally:
        tracker.stop()


@pytest.mark.e2e
def test_an_untracked_run_is_never_notified(
    started: Tracker, receiver: TmReceiver, source: FakeRunStates
):
    started.track("job-1", "run-1")
    started.track("job-2", "run-2")
    for run_id in ("run-1", "never-tracked"):
        with started.untracking(run_id):
            pass  # KFP terminated the run
    source.states.update({"run-1": "CANCELED", "run-2": "CANCELED"})
    wait_until(lambda: started.get("job-2")["notification"]["status"] == "delivered")
    time.sleep(0.2)
    assert [body["run_id"] for body in receiver.bodies()] == ["run-2"]
    assert started.get("job-1")["notification"]["status"] == "untracked"
    assert [job["run_id"] for job in started.list("untracked")] == ["run-1"]


def test_list_filters_by_status_and_rejects_unknown_ones(started: Tracker):
    started.track("job-1", "run-1")
    started.track("job-1", "run-2")
    assert [job["run_id"] for job in started.list()] == ["run-2", "run-1"]
    assert started.get("job-1")["run_id"] == "run-2"
    assert started.get("nope") is None
    assert started.list("delivered") == []
    with pytest.raises(BadRequest, match="notification_status must be one of"):
        started.list("bogus")
    with pytest.raises(BadRequest):
        started.track("", "run-3")


@pytest.mark.e2e
def test_one_leader_per_data_dir_and_a_successor_when_it_stops(
    tmp_path: Path, receiver: TmReceiver
):
    sources = [FakeRunStates() for _ in range(3)]
    trackers = [_tracker(_settings(tmp_path, receiver.port), s) for s in sources]
    for tracker in trackers:
        tracker.start()
    try:
        wait_until(lambda: sum(t.is_leader for t in trackers) == 1)
        leader = next(t for t in trackers if t.is_leader)
        for n in range(5):
            trackers[n % 3].track(f"job-{n}", f"run-{n}")  # any worker may track
        for source in sources:
            source.states.update({f"run-{n}": "SUCCEEDED" for n in range(5)})
        wait_until(lambda: len(receiver.bodies()) == 5)
        leader.stop()
        trackers.remove(leader)
        wait_until(lambda: sum(t.is_leader for t in trackers) == 1)
        trackers[0].track("job-5", "run-5")
        for source in sources:
            source.states["run-5"] = "FAILED"
        wait_until(lambda: len(receiver.bodies()) == 6)
        time.sleep(0.3)
        assert sorted(body["run_id"] for body in receiver.bodies()) == [
            f"run-{n}" for n in range(6)
        ]
        polled = [s for s in sources if s.calls]
        assert len(polled) == 2  # the first leader, then its successor; never two at once
    finally:
        for tracker in trackers:
            tracker.stop()


@pytest.mark.e2e
def test_a_run_finished_while_stopped_is_notified_after_restart(
    tmp_path: Path, receiver: TmReceiver, source: FakeRunStates
):
    first = _tracker(_settings(tmp_path, receiver.port), source)
    first.start()
    first.track("job-1", "run-1")
    wait_until(lambda: source.calls)
    first.stop()
    source.states["run-1"] = "SUCCEEDED"  # finishes while nobody watches
    time.sleep(0.2)
    assert receiver.bodies() == []
    second = _tracker(_settings(tmp_path, receiver.port), source)
    second.start()
    try:
        wait_until(lambda: receiver.bodies())
        assert receiver.bodies()[0]["run_status"] == "SUCCEEDED"
    finally:
        second.stop()


def test_untracking_block_restores_the_run_when_termination_fails(tmp_path: Path):
    tracker = _tracker(_settings(tmp_path, 9), FakeRunStates())  # not started
    try:
        tracker.track("job-1", "run-1")
        with tracker.untracking("run-1"):
            assert tracker.get("job-1")["notification"]["status"] == "untracked"
        assert tracker.get("job-1")["notification"]["status"] == "untracked"

        tracker.track("job-2", "run-2")
        with pytest.raises(KfpUnavailable), tracker.untracking("run-2"):
            raise KfpUnavailable("KFP cannot be reached")  # terminate_run failed
        assert tracker.get("job-2")["notification"]["status"] == WAITING
        with tracker.untracking("unknown-run"):
            pass
    finally:
        tracker.stop()
