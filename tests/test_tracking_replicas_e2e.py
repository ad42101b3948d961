"""Several `kfadapter serve` replicas on one PostgreSQL database, end to end.

Real parts only: the embedded KFP server runs the pipelines, a PostgreSQL server the test
starts holds the tracking store (tests/postgres_support.py), a real HTTP receiver stands in
for the TM, and each replica is `kfadapter serve` with two gunicorn workers. The leader is
SIGKILLed (its whole process group) halfway, and the database is stopped and started again
while runs finish; every job must still be notified, and a repeat must carry the same
notification_id. Also: `kfadapter migrate-store` moves a SQLite store holding pending
notifications, and wrong database settings stop the start with exit code 2.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from kfadapter.settings import Settings
from kfadapter.tracking import Tracker
from kfadapter.tracking.model import DELIVERED, PENDING, WAITING
from kfadapter.tracking.notifier import notification_id
from kfadapter.tracking.store import SqliteTrackingStore
from tests.adapter_support import tm_upload, unique
from tests.postgres_support import PostgresServer
from tests.support import KFADAPTER, Process, adapter_env, free_port, is_live, wait_until
from tests.tracking_support import FakeRunStates, TmReceiver, finish_run

pytestmark = pytest.mark.e2e

POLL = 0.25
DB_TIMEOUT = 2.0
RUN_TIMEOUT = 240.0  # 20 runs queue behind each other on a 2-core machine
LEADER_LINE = "tracking leader (watching and notifying)"
LOST_LINE = "no longer the tracking leader"


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this module's own: a test stops and restarts it."""
    server = PostgresServer().start()
    yield server
    server.destroy()


class Replica:
    """`kfadapter serve` with two workers on a free port, in its own process group."""

    def __init__(self, env: dict[str, str]) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.process = Process(
            [*KFADAPTER, "serve", "--bind", f"127.0.0.1:{port}", "--workers", "2"], env=env
        )
        wait_until(
            lambda: is_live(self.url),
            60,
            step=0.1,
            details=lambda: "".join(self.process.output),
        )

    def leads(self) -> bool:
        """Whether one of its workers holds the leadership now (from its log lines)."""
        text = "".join(self.process.output)
        return text.count(LEADER_LINE) > text.count(LOST_LINE)

    def execute(self, trainingjob_id: str, pipeline_name: str) -> requests.Response:
        """POST /trainingjobs/<id>/execution as the TM does."""
        body = {
            "pipeline_name": pipeline_name,
            "experiment_name": "Default",
            "arguments": {"trainingjob_id": trainingjob_id, "featuregroup_name": "fg"},
        }
        return requests.post(
            f"{self.url}/trainingjobs/{trainingjob_id}/execution", json=body, timeout=60
        )

    def post(self, path: str, **kwargs: object) -> requests.Response:
        return requests.post(self.url + path, timeout=60, **kwargs)

    def stop(self) -> None:
        self.process.kill()


def _replica_env(url: str, kfp_url: str, tm_port: int) -> dict[str, str]:
    return adapter_env(
        KFADAPTER_DATABASE_URL=url,
        KFADAPTER_DATABASE_TIMEOUT=str(DB_TIMEOUT),
        KFP_ENDPOINT=kfp_url + "/pipeline",
        KFP_TIMEOUT="30",
        KFADAPTER_POLL_INTERVAL=str(POLL),
        KFADAPTER_NOTIFY_TIMEOUT="2",
        KFADAPTER_NOTIFY_BACKOFF_BASE="0.1",
        KFADAPTER_NOTIFY_BACKOFF_CAP="0.5",
        TRAININGMGR_HOST="127.0.0.1",
        TRAININGMGR_PORT=str(tm_port),
        KFADAPTER_THREADS="4",
    )


def test_two_replicas_notify_every_job_through_a_leader_kill_and_a_database_restart(
    own_postgres: PostgresServer, local_kfp, compiled, receiver: TmReceiver
):
    env = _replica_env(own_postgres.url("replicas"), local_kfp.url, receiver.port)
    replicas = [Replica(env), Replica(env)]  # the first creates the database "replicas"
    try:
        pipeline = unique("always-fails")
        assert tm_upload(replicas[0], pipeline, compiled["always_fails"]).status_code == 200
        jobs: dict[str, str] = {}  # run_id -> trainingjob_id

        def start(n: int, replica: Replica) -> None:
            job = f"replica-job-{n}"
            answer = replica.execute(job, pipeline)
            assert answer.status_code == 200, answer.text
            assert answer.json()["tracked"] is True
            jobs[answer.json()["run_id"]] = job

        for n in range(10):
            start(n, replicas[n % 2])
        leader = wait_until(lambda: next((r for r in replicas if r.leads()), None), 30)
        wait_until(lambda: receiver.bodies(), RUN_TIMEOUT)  # the leader has been notifying
        leader.stop()  # SIGKILL to the leader's master and workers
        notified_by_the_first = {body["run_id"] for body in receiver.bodies()}
        print(f"notified when the leader was killed: {len(notified_by_the_first)} of 10")
        assert len(notified_by_the_first) < 10  # the others are left to another replica
        replicas.remove(leader)
        replicas.append(Replica(env))  # a replacement joins, as after a pod replacement
        wait_until(lambda: any(r.leads() for r in replicas), 30)
        for n in range(10, 15):
            start(n, replicas[n % 2])

        own_postgres.stop()  # the database goes away while runs finish in KFP
        print(f"notified when the database stopped: {len(receiver.bodies())} of 15")
        try:
            began = time.monotonic()
            refused = replicas[0].execute("replica-job-refused", pipeline)
            took = time.monotonic() - began
            ready = requests.get(f"{replicas[1].url}/readiness", timeout=30)
            job_view = requests.get(f"{replicas[1].url}/trainingjobs/replica-job-0", timeout=30)
        finally:
            time.sleep(2 * POLL)
            own_postgres.start()
        assert refused.status_code == 503, refused.text
        assert refused.json()["run_terminated"] is True  # no run goes on that nobody tracks
        assert took < 2 * DB_TIMEOUT + 5, took  # pool wait + one direct try, + the KFP calls
        assert ready.status_code == 503
        assert "tracking store does not answer" in ready.json()["database"]
        assert job_view.status_code == 503 and job_view.json()["status"] == 503

        for n in range(15, 20):
            start(n, replicas[n % 2])

        def notified() -> bool:
            return all(receiver.for_run(run_id) for run_id in jobs)

        wait_until(notified, RUN_TIMEOUT, step=0.2, details=lambda: str(receiver.bodies()))
        assert len(jobs) == 20
        print(f"notifications received: {len(receiver.bodies())} for 20 jobs")
        for run_id, job in jobs.items():
            expected = {
                "trainingjob_id": job,
                "run_id": run_id,
                "run_status": "FAILED",
                "notification_id": notification_id(run_id, "FAILED"),
            }
            received = receiver.for_run(run_id)
            assert received and all(body == expected for body in received), received
        for replica in replicas:  # every replica answers from the same store
            listed = requests.get(f"{replica.url}/trainingjobs?page_size=1000", timeout=30)
            by_run = {item["run_id"]: item for item in listed.json()["trainingjobs"]}
            assert set(jobs) <= set(by_run)
            assert {by_run[run_id]["notification"]["status"] for run_id in jobs} == {DELIVERED}
            assert requests.get(f"{replica.url}/readiness", timeout=30).status_code == 200
        assert sum(r.leads() for r in replicas) == 1
    finally:
        for replica in replicas:
            replica.stop()


def _pg_settings(url: str, data_dir: Path, tm_port: int) -> Settings:
    return Settings(
        database_url=url,
        data_dir=data_dir,
        poll_interval=POLL,
        notify_timeout=2.0,
        trainingmgr_host="127.0.0.1",
        trainingmgr_port=tm_port,
    )


def test_migrate_store_moves_pending_notifications_into_postgresql(
    postgres: PostgresServer, tmp_path: Path, receiver: TmReceiver
):
    data_dir = tmp_path / "sqlite-adapter"
    old = SqliteTrackingStore.in_dir(data_dir)
    statuses = [WAITING, PENDING, PENDING, DELIVERED, "expired", "untracked"]
    for n, status in enumerate(statuses):
        old.add(f"job-{n}", f"run-{n}", {"run_name": f"r{n}"}, now=100.0 + n)
        finish_run(old, f"run-{n}", status, now=200.0 + n)
    before = {run.run_id: run for run in old.list()}
    old.close()
    url = postgres.url(f"migrated_{unique('db').replace('-', '_')}")
    env = adapter_env(KFADAPTER_DATABASE_URL=url, KFADAPTER_DATA_DIR=str(data_dir))

    def migrate(*args: str) -> subprocess.CompletedProcess:
        command = [*KFADAPTER, "migrate-store", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)

    first = migrate()
    assert first.returncode == 0, first.stderr
    assert "copied 6 of 6 tracked runs (2 pending notifications)" in first.stdout
    again = migrate()
    assert again.returncode == 1 and "already holds 6 tracked runs" in again.stderr
    merged = migrate("--merge", "--from", str(data_dir / SqliteTrackingStore.FILE_NAME))
    assert merged.returncode == 0 and "copied 0 of 6" in merged.stdout

    tracker = Tracker(_pg_settings(url, tmp_path, receiver.port), FakeRunStates())
    try:
        moved = {run["run_id"]: run for run in tracker.list()}
        assert list(moved) == list(before)  # same runs, same newest-first order
        for run_id, run in before.items():
            assert moved[run_id] == run.to_dict(tracker._deadline)
        tracker.start()  # the PostgreSQL leader sends what the SQLite adapter had pending
        wait_until(lambda: len(receiver.bodies()) == 2, 20)
        assert sorted(body["run_id"] for body in receiver.bodies()) == ["run-1", "run-2"]
        assert {body["notification_id"] for body in receiver.bodies()} == {"n"}
    finally:
        tracker.stop()


def test_migrate_store_without_a_target_or_a_source_is_a_usage_error(tmp_path: Path):
    no_target = subprocess.run(
        [*KFADAPTER, "migrate-store"],
        env=adapter_env(KFADAPTER_DATA_DIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert no_target.returncode == 2 and "KFADAPTER_DATABASE_URL" in no_target.stderr
    no_source = subprocess.run(
        [*KFADAPTER, "migrate-store", "--from", str(tmp_path / "nothing")],
        env=adapter_env(KFADAPTER_DATABASE_URL="postgresql://u:p@127.0.0.1:1/x"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert no_source.returncode == 2 and "no SQLite tracking store at" in no_source.stderr


@pytest.mark.parametrize("source", ["url", "ps"])
def test_wrong_database_credentials_stop_serve_with_exit_2_naming_the_variable(
    postgres: PostgresServer, tmp_path: Path, source: str
):
    if source == "url":
        settings = {"KFADAPTER_DATABASE_URL": postgres.url("kfadapter", password="wrong")}
        named = "KFADAPTER_DATABASE_URL"
    else:
        settings = {
            "PS_USER": "kfadapter",
            "PS_PASSWORD": "wrong",
            "PS_IP": "127.0.0.1",
            "PS_PORT": str(postgres.port),
        }
        named = "PS_USER/PS_PASSWORD/PS_IP/PS_PORT/KFADAPTER_DATABASE_NAME"
    result = subprocess.run(
        [*KFADAPTER, "serve", "--bind", f"127.0.0.1:{free_port()}"],
        env=adapter_env(KFADAPTER_DATA_DIR=str(tmp_path), **settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"kfadapter: invalid setting: {named}:")
    assert "password authentication failed" in result.stderr
    assert "wrong" not in result.stderr and "Traceback" not in result.stderr


def test_a_malformed_database_url_stops_serve_with_exit_2(tmp_path: Path):
    result = subprocess.run(
        [*KFADAPTER, "serve"],
        env=adapter_env(KFADAPTER_DATABASE_URL="postgresql://kf:secret@db:port/x"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "invalid setting: KFADAPTER_DATABASE_URL is not a valid URL" in result.stderr
    assert "secret" not in result.stderr
