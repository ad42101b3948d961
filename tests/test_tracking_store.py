"""The tracking store: durability, transactions, schema version, crash safety.

The store-generic tests run against both stores (the `store` fixture below): SQLite, and
PostgreSQL on a real server the tests start (tests/postgres_support.py; those cases are
marked e2e). PostgreSQL-only behaviour (claims, migrations, time-outs) is in
tests/test_tracking_pgstore.py.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from kfadapter.sqlitedb import StoreError
from kfadapter.tracking.model import (
    DELIVERED,
    EXPIRED,
    PENDING,
    UNTRACKED,
    WAITING,
    AttemptResult,
    StateUpdate,
    TrackingStore,
)
from kfadapter.tracking.store import MIGRATIONS, SCHEMA_VERSION, SqliteTrackingStore
from tests.support import adapter_env
from tests.tracking_support import finish_run

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.e2e)]


@pytest.fixture(params=BACKENDS)
def open_store(request, tmp_path: Path) -> Iterator[Callable[[], TrackingStore]]:
    """Opens a store on one database of the test's backend (each call a new connection,
    as another worker or replica); every store opened is closed afterwards."""
    opened: list[TrackingStore] = []
    if request.param == "sqlite":

        def new() -> TrackingStore:
            return SqliteTrackingStore.in_dir(tmp_path)
    else:
        from kfadapter.tracking.pgstore import PostgresTrackingStore

        url = request.getfixturevalue("pg_url")

        def new() -> TrackingStore:
            return PostgresTrackingStore(url, timeout=10.0)

    def opener() -> TrackingStore:
        opened.append(new())
        return opened[-1]

    yield opener
    for each in opened:
        each.close()


@pytest.fixture
def store(open_store: Callable[[], TrackingStore]) -> TrackingStore:
    """A store of the test's backend (SQLite in tmp_path, or a fresh PostgreSQL database)."""
    return open_store()


def test_without_postgresql_binaries_the_tests_fail_naming_the_install_script(monkeypatch):
    from tests import postgres_support

    monkeypatch.setattr(postgres_support.glob, "glob", lambda pattern: [])
    with pytest.raises(pytest.fail.Exception, match="scripts/system-packages.sh"):
        postgres_support.server_bin_dir()


def test_added_run_is_on_disk_when_add_returns(
    store: TrackingStore, open_store: Callable[[], TrackingStore]
):
    run = store.add("job-1", "run-1", {"run_name": "r1", "pipeline_name": "p"}, now=100.0)
    assert run.notification_status == WAITING
    seen = open_store().get("run-1")  # another connection, as another worker
    assert seen is not None
    assert (seen.trainingjob_id, seen.info["run_name"], seen.created_at) == ("job-1", "r1", 100.0)


def test_adding_a_tracked_run_again_keeps_the_first(store: TrackingStore):
    store.add("job-1", "run-1", {"run_name": "first"}, now=1.0)
    again = store.add("job-2", "run-1", {"run_name": "second"}, now=2.0)
    assert (again.trainingjob_id, again.info["run_name"]) == ("job-1", "first")
    assert len(store.list()) == 1


def test_latest_run_of_a_job_and_listing(store: TrackingStore):
    store.add("job-1", "old", {}, now=1.0)
    store.add("job-1", "new", {}, now=2.0)
    store.add("job-2", "other", {}, now=3.0)
    assert store.latest_for_job("job-1").run_id == "new"
    assert store.latest_for_job("nope") is None
    assert [run.run_id for run in store.list()] == ["other", "new", "old"]
    store.untrack("old", now=4.0)
    assert [run.run_id for run in store.list(UNTRACKED)] == ["old"]
    assert [run.run_id for run in store.open_runs()] == ["new", "other"]


def test_file_is_wal_with_current_schema_version(tmp_path: Path):
    store = SqliteTrackingStore.in_dir(tmp_path)
    assert store.schema_version() == SCHEMA_VERSION >= 1
    store.close()
    with sqlite3.connect(tmp_path / SqliteTrackingStore.FILE_NAME) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_migration_hook_upgrades_an_older_file_keeping_its_rows(tmp_path: Path):
    path = tmp_path / "t.sqlite3"
    old = SqliteTrackingStore(path)
    old.add("job-1", "run-1", {}, now=1.0)
    old.close()

    def add_priority(db: sqlite3.Connection) -> None:
        db.execute("ALTER TABLE tracked_runs ADD COLUMN priority INTEGER NOT NULL DEFAULT 5")

    newer = SqliteTrackingStore(path, migrations=[*MIGRATIONS, add_priority])
    assert newer.get("run-1").info == {}  # the row survived the migration
    newer.close()
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}"):
        # A release that knows fewer migrations refuses a newer file (no silent downgrade).
        SqliteTrackingStore(path)
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
        assert raw.execute("SELECT run_id, priority FROM tracked_runs").fetchall() == [("run-1", 5)]


def test_prune_deletes_only_finished_runs_not_updated_since(store: TrackingStore):
    for status in (WAITING, PENDING, DELIVERED, EXPIRED, UNTRACKED):
        store.add("job", f"old-{status}", {}, now=1.0)
        store.add("job", f"new-{status}", {}, now=1.0)
        finish_run(store, f"old-{status}", status, now=10.0)
        finish_run(store, f"new-{status}", status, now=20.0)
    assert store.prune(older_than=10.0) == 0  # strictly older only
    assert store.prune(older_than=15.0) == 3
    assert sorted(run.run_id for run in store.list()) == [
        "new-delivered",
        "new-expired",
        "new-pending",
        "new-untracked",
        "new-waiting",
        "old-pending",
        "old-waiting",
    ]
    assert store.prune(older_than=1e12) == 3
    assert sorted(run.notification_status for run in store.list()) == [
        PENDING,
        PENDING,
        WAITING,
        WAITING,
    ]


def test_pages_walk_the_list_order_with_ties_and_a_status_filter(store: TrackingStore):
    for n in range(40):
        store.add(f"job-{n}", f"run-{n}", {}, now=float(n // 6))  # many equal created_at
        if n % 3 == 0:
            finish_run(store, f"run-{n}", DELIVERED, now=100.0)
    for status in (None, DELIVERED, WAITING):
        walked, after = [], None
        while True:
            runs, after = store.page(status, 4, after)
            walked += [run.run_id for run in runs]
            if after is None:
                break
        assert walked == [run.run_id for run in store.list(status)]
    assert store.page(None, 40) == (store.list(), None)  # no next page when all fit
    assert store.page(EXPIRED, 5) == ([], None)


def _plan(path: Path, sql: str, params: tuple) -> str:
    with sqlite3.connect(path) as raw:
        return " | ".join(row[3] for row in raw.execute(f"EXPLAIN QUERY PLAN {sql}", params))


PAGE_SQL = (
    "SELECT * FROM tracked_runs WHERE notification_status = ? AND (created_at, rowid) < (?, ?) "
    "ORDER BY created_at DESC, rowid DESC LIMIT 10"
)
PRUNE_SQL = "DELETE FROM tracked_runs WHERE notification_status IN (?, ?, ?) AND updated_at < ?"


def test_a_store_at_the_previous_version_gains_the_paging_and_pruning_indexes(tmp_path: Path):
    path = tmp_path / "t.sqlite3"
    previous = SqliteTrackingStore(path, migrations=MIGRATIONS[: SCHEMA_VERSION - 1])
    previous.add("job-1", "run-1", {"run_name": "r"}, now=1.0)
    finish_run(previous, "run-1", DELIVERED, now=2.0)
    previous.add("job-2", "run-2", {}, now=3.0)
    assert previous.schema_version() == SCHEMA_VERSION - 1
    # Without the new indexes a filtered page sorts every row of the status.
    assert "TEMP B-TREE" in _plan(path, PAGE_SQL, (WAITING, 5.0, 9))
    previous.close()

    current = SqliteTrackingStore(path)
    try:
        assert current.schema_version() == SCHEMA_VERSION
        assert [run.run_id for run in current.list()] == ["run-2", "run-1"]
        assert current.get("run-1").info == {"run_name": "r"}
        page_plan = _plan(path, PAGE_SQL, (WAITING, 5.0, 9))
        assert "tracked_runs_status_created" in page_plan and "TEMP B-TREE" not in page_plan
        prune_plan = _plan(path, PRUNE_SQL, (DELIVERED, EXPIRED, UNTRACKED, 5.0))
        assert "SEARCH tracked_runs USING INDEX tracked_runs_status_updated" in prune_plan
        unfiltered = _plan(path, PAGE_SQL.replace("notification_status = ? AND ", ""), (5.0, 9))
        assert "tracked_runs_created" in unfiltered and "TEMP B-TREE" not in unfiltered
        assert current.prune(older_than=5.0) == 1
        assert current.integrity_check() == "ok"
    finally:
        current.close()


def test_a_failing_transaction_changes_nothing(store: TrackingStore):
    store.add("job-1", "run-1", {}, now=1.0)
    store.add("job-2", "run-2", {}, now=1.0)
    updates = [
        StateUpdate("run-1", "SUCCEEDED", final=True, notification_id="n1"),
        StateUpdate("run-2", object()),  # cannot be bound: fails after run-1 was updated
    ]
    with pytest.raises((sqlite3.Error, psycopg.Error)):
        store.record_poll(updates, now=2.0)
    assert {run.notification_status for run in store.list()} == {WAITING}
    assert store.get("run-1").run_state is None


def test_retrack_restores_a_final_run_to_a_due_notification_not_to_polling(
    store: TrackingStore,
):
    store.add("job-1", "run-1", {}, now=1.0)
    assert store.untrack("run-1", now=2.0) and store.retrack("run-1", now=3.0)
    assert store.get("run-1").notification_status == WAITING

    store.add("job-2", "run-2", {}, now=1.0)
    store.record_poll([StateUpdate("run-2", "FAILED", final=True, notification_id="n2")], 2.0)
    store.record_attempt(AttemptResult("run-2", PENDING, 1, 60.0, None, "refused"), now=3.0)
    assert store.untrack("run-2", now=4.0) and store.retrack("run-2", now=5.0)
    run = store.get("run-2")
    assert (run.notification_status, run.final_state, run.notification_id) == (
        PENDING,
        "FAILED",
        "n2",
    )
    assert (run.final_seen_at, run.attempts, run.next_attempt_at) == (2.0, 1, 5.0)
    assert [due.run_id for due in store.due_notifications(now=5.0, limit=10)] == ["run-2"]
    assert [open_run.run_id for open_run in store.open_runs()] == ["run-1"]


def test_poll_and_attempt_only_touch_runs_in_the_expected_status(store: TrackingStore):
    store.add("job-1", "run-1", {}, now=1.0)
    assert store.untrack("run-1", now=2.0)
    assert not store.untrack("run-1", now=2.0)
    assert store.record_poll([StateUpdate("run-1", "FAILED", final=True)], now=3.0) == 0
    assert store.get("run-1").notification_status == UNTRACKED

    store.add("job-2", "run-2", {}, now=1.0)
    store.record_poll([StateUpdate("run-2", "SUCCEEDED", final=True, notification_id="n")], 3.0)
    assert [run.run_id for run in store.due_notifications(now=3.0, limit=10)] == ["run-2"]
    assert store.next_attempt_at() == 3.0
    assert store.record_attempt(AttemptResult("run-2", DELIVERED, 1, None, 200, None), now=4.0)
    assert not store.record_attempt(AttemptResult("run-2", PENDING, 2, 9.0, 503, "x"), now=5.0)
    run = store.get("run-2")
    assert (run.notification_status, run.attempts, run.last_code, run.notified_at) == (
        DELIVERED,
        1,
        200,
        4.0,
    )
    assert store.counts() == {
        "waiting": 0,
        "pending": 0,
        "delivered": 1,
        "expired": 0,
        "untracked": 1,
    }


def test_to_dict_shows_the_notification_progress(store: TrackingStore):
    store.add("job-1", "run-1", {"run_name": "r", "run_id": "ignored"}, now=0.0)
    store.record_poll([StateUpdate("run-1", "FAILED", final=True, notification_id="n-1")], 10.0)
    store.record_attempt(AttemptResult("run-1", PENDING, 1, 12.5, 503, "HTTP 503: busy"), 11.0)
    view = store.get("run-1").to_dict(notify_deadline=60.0)
    assert view["run_name"] == "r" and view["run_id"] == "run-1"
    assert view["run_state"] == view["final_state"] == "FAILED"
    assert view["final_state_seen_at"] == "1970-01-01T00:00:10.000Z"
    assert view["notification"] == {
        "status": "pending",
        "notification_id": "n-1",
        "attempts": 1,
        "last_attempt_at": "1970-01-01T00:00:11.000Z",
        "next_attempt_at": "1970-01-01T00:00:12.500Z",
        "deadline": "1970-01-01T00:01:10.000Z",
        "last_code": 503,
        "last_error": "HTTP 503: busy",
        "notified_at": None,
    }


WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from kfadapter.tracking import SqliteTrackingStore
    from kfadapter.tracking.model import StateUpdate
    # Two writers as fast as they can go: SQLite's busy wait is not fair, so on a loaded
    # machine one may wait long for the other; a long busy time-out keeps both writing.
    path = Path(sys.argv[1]) / SqliteTrackingStore.FILE_NAME
    store = SqliteTrackingStore(path, busy_timeout=300)
    prefix = sys.argv[2]
    i = 0
    while True:
        run_id = f"{prefix}-{i}"
        store.add("job", run_id, {"blob": "x" * 2000, "i": i}, time.time())
        store.record_poll([StateUpdate(run_id, "SUCCEEDED", final=True, notification_id=run_id)],
                          time.time())
        print(run_id, flush=True)
        i += 1
    """
)


@pytest.mark.e2e
def test_sigkill_mid_write_leaves_a_consistent_store_with_every_committed_run(tmp_path: Path):
    """Writers in two processes are killed with SIGKILL while writing, three times over."""
    env = adapter_env()
    committed: set[str] = set()
    for round_ in range(3):
        writers = [
            subprocess.Popen(
                [sys.executable, "-c", WRITER, str(tmp_path), f"w{round_}{n}"],
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
            for n in range(2)
        ]
        for writer in writers:  # let each commit a good number of runs, then kill mid-stream
            for _ in range(30 + 7 * round_):
                line = writer.stdout.readline().strip()
                assert line, "a writer died before it was killed"
                committed.add(line)
        for writer in writers:
            writer.send_signal(signal.SIGKILL)
        for writer in writers:
            writer.wait(10)
            writer.stdout.close()
        store = SqliteTrackingStore.in_dir(tmp_path)
        try:
            assert store.integrity_check() == "ok"
            runs = {run.run_id: run for run in store.list()}
        finally:
            store.close()
        assert committed <= runs.keys()
        # Every row is whole: each transaction is all or nothing.
        for run in runs.values():
            assert run.info["blob"] == "x" * 2000
            assert run.notification_status in (WAITING, PENDING)
            if run.run_id in committed:
                assert run.notification_status == PENDING
