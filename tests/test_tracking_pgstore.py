"""The PostgreSQL tracking store and leader lock on a real server (tests/postgres_support.py):
claims, schema migrations, bounded time-outs when the database is down or slow, and one
leader among trackers that share a database. The store-generic contract runs against it
in tests/test_tracking_store.py."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from kfadapter.errors import TrackingUnavailable
from kfadapter.settings import Settings
from kfadapter.sqlitedb import StoreError
from kfadapter.tracking import Tracker
from kfadapter.tracking.backends import open_leader_lock, open_store
from kfadapter.tracking.leader import PostgresLeaderLock
from kfadapter.tracking.model import DELIVERED, PENDING, AttemptResult, StateUpdate
from kfadapter.tracking.pgstore import (
    LEADER_LOCK_KEY,
    MIGRATIONS,
    SCHEMA_VERSION,
    DatabaseRefused,
    PostgresTrackingStore,
    prepare_database,
)
from tests.postgres_support import PostgresServer
from tests.support import adapter_env, free_port, wait_until
from tests.tracking_support import FakeRunStates, TmReceiver

pytestmark = pytest.mark.e2e


def _pending(store: PostgresTrackingStore, count: int, now: float = 10.0) -> list[str]:
    """`count` runs whose notification is due at `now`."""
    ids = [f"run-{n}" for n in range(count)]
    for run_id in ids:
        store.add("job", run_id, {}, now=1.0)
    store.record_poll(
        [StateUpdate(run_id, "SUCCEEDED", final=True, notification_id=run_id) for run_id in ids],
        now,
    )
    return ids


def test_a_claimed_notification_is_skipped_by_others_until_its_lease_lapses(pg_url: str):
    one, other = PostgresTrackingStore(pg_url), PostgresTrackingStore(pg_url)
    try:
        _pending(one, 1)
        claimed = one.claim_due(now=10.0, lease=5.0)
        assert claimed is not None and claimed.run_id == "run-0"
        assert other.claim_due(now=11.0, lease=5.0) is None  # held by `one`
        assert other.next_attempt_at() == 15.0  # the notifier sleeps until the lease ends
        lapsed = other.claim_due(now=15.0, lease=5.0)  # `one` never recorded: sent again
        assert lapsed is not None and lapsed.notification_id == claimed.notification_id
        result = AttemptResult("run-0", DELIVERED, 1, None, 200, None)
        assert other.record_attempt(result, now=16.0)
        assert one.claim_due(now=100.0, lease=5.0) is None
        assert one.get("run-0").notification_status == DELIVERED
    finally:
        one.close()
        other.close()


def test_concurrent_claimers_take_each_due_notification_once(pg_url: str):
    """Four stores (as four replicas) claim from one queue of 60 at the same moment."""
    stores = [PostgresTrackingStore(pg_url) for _ in range(4)]
    try:
        ids = _pending(stores[0], 60)
        taken: list[list[str]] = [[] for _ in stores]
        start = threading.Barrier(len(stores))

        def claim_all(index: int) -> None:
            start.wait()
            while (run := stores[index].claim_due(now=10.0, lease=60.0)) is not None:
                taken[index].append(run.run_id)

        threads = [threading.Thread(target=claim_all, args=(n,)) for n in range(len(stores))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        every = [run_id for each in taken for run_id in each]
        assert sorted(every) == sorted(ids)  # each exactly once
    finally:
        for store in stores:
            store.close()


def test_the_schema_is_versioned_and_a_newer_database_is_refused(pg_url: str):
    old = PostgresTrackingStore(pg_url)
    old.add("job-1", "run-1", {"a": 1}, now=1.0)
    assert old.schema_version() == SCHEMA_VERSION
    old.close()

    def add_priority(db: psycopg.Connection) -> None:
        db.execute("ALTER TABLE tracked_runs ADD COLUMN priority INTEGER NOT NULL DEFAULT 5")

    newer = PostgresTrackingStore(pg_url, migrations=[*MIGRATIONS, add_priority])
    assert newer.schema_version() == SCHEMA_VERSION + 1
    assert newer.get("run-1").info == {"a": 1}
    newer.close()
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}"):
        PostgresTrackingStore(pg_url)
    with psycopg.connect(pg_url) as raw:
        assert raw.execute("SELECT run_id, priority FROM tracked_runs").fetchall() == [("run-1", 5)]


def test_replicas_starting_together_migrate_once(pg_url: str):
    stores: list[PostgresTrackingStore] = []
    start = threading.Barrier(4)

    def open_one() -> None:
        start.wait()
        stores.append(PostgresTrackingStore(pg_url))

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert len(stores) == 4 and {s.schema_version() for s in stores} == {SCHEMA_VERSION}
        with psycopg.connect(pg_url) as raw:
            assert raw.execute("SELECT COUNT(*) FROM tracking_schema").fetchone()[0] == 1
    finally:
        for store in stores:
            store.close()


def test_a_nul_in_the_tms_answer_is_recorded_without_it(pg_url: str):
    store = PostgresTrackingStore(pg_url)
    try:
        _pending(store, 1)
        result = AttemptResult("run-0", PENDING, 1, 20.0, 502, "HTTP 502: bad\x00gateway")
        assert store.record_attempt(result, now=11.0)
        assert store.get("run-0").last_error == "HTTP 502: badgateway"
    finally:
        store.close()


def test_a_database_nobody_answers_gives_503_within_the_time_out():
    url = f"postgresql://u:p@127.0.0.1:{free_port()}/kfadapter"
    started = time.monotonic()
    store = PostgresTrackingStore(url, timeout=1.0)  # starts while the database is down
    try:
        with pytest.raises(TrackingUnavailable, match="unavailable: connection failed"):
            store.add("job", "run", {}, now=1.0)
        with pytest.raises(TrackingUnavailable):
            store.ping()
    finally:
        store.close()
    assert time.monotonic() - started < 6.0


def test_a_slow_database_gives_503_within_the_time_out_and_writes_nothing(pg_url: str):
    """A row held locked by another session stands in for a database too slow to answer:
    the server cancels the statement after the time-out, the transaction is rolled back."""
    store = PostgresTrackingStore(pg_url, timeout=1.0)
    try:
        _pending(store, 1)
        with psycopg.connect(pg_url) as blocker:
            blocker.execute("SELECT * FROM tracked_runs WHERE run_id = 'run-0' FOR UPDATE")
            started = time.monotonic()
            with pytest.raises(TrackingUnavailable):
                store.record_attempt(AttemptResult("run-0", DELIVERED, 1, None, 200, None), 11.0)
            assert time.monotonic() - started < 3.0
        assert store.get("run-0").notification_status == PENDING
    finally:
        store.close()


def test_a_request_that_finds_no_pooled_connection_connects_on_its_own(pg_url: str):
    """Every pooled connection taken (as while the pool is still in its reconnection
    back-off after an outage): the store answers through a connection of its own instead
    of a 503, so a database that is back is used at once."""
    store = PostgresTrackingStore(pg_url, timeout=1.0, max_connections=1)
    try:
        _pending(store, 1)
        with store._pool.connection():  # the pool's only connection is busy
            started = time.monotonic()
            assert store.get("run-0").notification_status == PENDING
            assert time.monotonic() - started < 3.0
    finally:
        store.close()


def test_prepare_database_creates_a_missing_database_and_refuses_bad_credentials(
    postgres: PostgresServer,
):
    url = postgres.url("made_by_prepare")
    prepare_database(url, timeout=5.0, what="db")
    store = PostgresTrackingStore(url)
    assert store.schema_version() == SCHEMA_VERSION
    store.close()
    with pytest.raises(DatabaseRefused, match="password authentication failed"):
        prepare_database(postgres.url(password="wrong"), timeout=5.0, what="db")
    with pytest.raises(TrackingUnavailable):
        prepare_database(f"postgresql://u:p@127.0.0.1:{free_port()}/x", timeout=1.0, what="db")


def _settings(pg_url: str, tmp_path: Path, **more: object) -> Settings:
    return Settings(
        database_url=pg_url,
        data_dir=tmp_path,
        poll_interval=0.2,
        notify_timeout=2.0,
        trainingmgr_host="127.0.0.1",
        **more,
    )


def test_one_advisory_lock_holder_and_the_lock_is_freed_when_its_session_ends(
    pg_url: str, tmp_path: Path
):
    settings = _settings(pg_url, tmp_path)
    first, second = open_leader_lock(settings), open_leader_lock(settings)
    assert isinstance(first, PostgresLeaderLock)
    try:
        assert first.try_acquire() and first.check()
        assert not second.try_acquire()
        with psycopg.connect(pg_url, autocommit=True) as admin:  # the session dies
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks "
                "WHERE locktype = 'advisory' AND granted AND "
                "(classid::bigint << 32) + objid::bigint = %s",
                (LEADER_LOCK_KEY & 0xFFFF_FFFF_FFFF_FFFF,),
            )
        assert not first.check() and not first.held  # the holder notices and steps down
        assert second.try_acquire()
    finally:
        first.release()
        second.release()


LOCK_HOLDER = """
import sys, time
from kfadapter.tracking.leader import PostgresLeaderLock
lock = PostgresLeaderLock(sys.argv[1], timeout=5, keepalive_idle=1)
assert lock.try_acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_a_sigkilled_holders_lock_is_taken_at_once(pg_url: str):
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, pg_url],
        stdout=subprocess.PIPE,
        text=True,
        env=adapter_env(),
    )
    successor = PostgresLeaderLock(pg_url, timeout=5, keepalive_idle=1)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert not successor.try_acquire()
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        killed = time.monotonic()
        wait_until(successor.try_acquire, timeout=5, step=0.02)
        assert time.monotonic() - killed < 1.0
    finally:
        holder.kill()
        holder.stdout.close()
        successor.release()


def test_trackers_on_one_database_have_one_leader_and_a_successor(
    pg_url: str, tmp_path: Path, receiver: TmReceiver
):
    """Three trackers, as workers of two replicas: one polls and notifies; when it stops
    the next takes over and notifies what finished meanwhile."""
    settings = _settings(pg_url, tmp_path, trainingmgr_port=receiver.port)
    source = FakeRunStates()
    trackers = [Tracker(settings, source) for _ in range(3)]
    try:
        for tracker in trackers:
            tracker.start()
        wait_until(lambda: sum(t.is_leader for t in trackers) == 1)
        trackers[1].track("job-1", "run-1")
        source.states["run-1"] = "SUCCEEDED"
        wait_until(lambda: receiver.for_run("run-1"), timeout=10)
        leader = next(t for t in trackers if t.is_leader)
        leader.stop()
        trackers.remove(leader)
        trackers[0].track("job-2", "run-2")
        source.states["run-2"] = "FAILED"
        wait_until(lambda: receiver.for_run("run-2"), timeout=10)
        assert sum(t.is_leader for t in trackers) == 1
        assert [body["run_status"] for body in receiver.for_run("run-2")] == ["FAILED"]
        assert trackers[0].ping().startswith("the tracking store (database postgresql://")
    finally:
        for tracker in trackers:
            tracker.stop()


def test_the_settings_choose_the_store(pg_url: str, tmp_path: Path):
    store = open_store(_settings(pg_url, tmp_path))
    try:
        assert isinstance(store, PostgresTrackingStore)
    finally:
        store.close()


def test_a_leader_whose_session_ends_steps_down_and_one_leader_remains(
    pg_url: str, tmp_path: Path, receiver: TmReceiver, caplog: pytest.LogCaptureFixture
):
    """The database ends the leader's lock session (as a restart or a broken connection
    would): the leader steps down at its next check, one tracker leads again, and outcomes
    are still notified, once."""
    caplog.set_level(logging.INFO, logger="kfadapter.tracking")
    settings = _settings(pg_url, tmp_path, trainingmgr_port=receiver.port)
    source = FakeRunStates()
    trackers = [Tracker(settings, source) for _ in range(2)]
    try:
        for tracker in trackers:
            tracker.start()
        wait_until(lambda: sum(t.is_leader for t in trackers) == 1)
        with psycopg.connect(pg_url, autocommit=True) as admin:
            ended = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'kfadapter-leader' AND datname = current_database() "
                "AND pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted)"
            ).fetchall()
        assert ended == [(True,)]
        wait_until(lambda: "no longer the tracking leader" in caplog.text, 10)
        wait_until(lambda: sum(t.is_leader for t in trackers) == 1, 10)
        trackers[0].track("job-1", "run-after")
        source.states["run-after"] = "SUCCEEDED"
        wait_until(lambda: receiver.for_run("run-after"), 10)
        time.sleep(3 * settings.poll_interval)
        assert [body["run_status"] for body in receiver.for_run("run-after")] == ["SUCCEEDED"]
    finally:
        for tracker in trackers:
            tracker.stop()


def test_the_latest_run_of_a_job_is_the_last_recorded_whatever_the_replicas_clocks(
    pg_url: str,
):
    """Two replicas record runs of one job with clocks apart: the job's latest run is the
    one recorded last in the database, not the one with the later wall-clock stamp."""
    store = PostgresTrackingStore(pg_url, timeout=2.0)
    try:
        store.add("job", "run-first", {}, now=2_000.0)  # a replica whose clock is ahead
        store.add("job", "run-second", {}, now=1_000.0)  # recorded after it, clock behind
        assert store.latest_for_job("job").run_id == "run-second"
    finally:
        store.close()
