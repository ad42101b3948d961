"""Run tracking end to end: the adapter over HTTP, runs really executed by the embedded KFP
server, and a real HTTP receiver standing in for the training manager.

The module starts its own embedded KFP server so that long runs of other test modules
never hold up its runs (a small pipeline takes a few seconds with kfp.local).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from kfadapter.app import create_app
from kfadapter.kfp import RUN_IDS_PER_CALL, KfConnect
from kfadapter.serving import ServerThread
from kfadapter.settings import Settings
from kfadapter.tracking import RetryPolicy, Tracker
from kfadapter.tracking.notifier import notification_id
from tests.adapter_support import RecordingProxy, tm_upload, unique
from tests.support import (
    KFADAPTER,
    PYTHON,
    Process,
    adapter_env,
    free_port,
    metric_value,
    wait_live,
    wait_until,
)

pytestmark = pytest.mark.e2e  # real servers and processes on free ports

POLL = 0.2
RUN_TIMEOUT = 180.0  # runs queue behind each other on a 2-core CI machine


@pytest.fixture(scope="module")
def kfp_server(tmp_path_factory) -> Iterator[Any]:
    from kfadapter.localkfp.server import LocalKfpServer

    server = LocalKfpServer(
        data_dir=tmp_path_factory.mktemp("tracking-kfp"), port=0, max_concurrent_runs=4
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def proxy(kfp_server) -> Iterator[RecordingProxy]:
    """Counts the adapter's KFP calls."""
    proxy = RecordingProxy(kfp_server.url).start()
    yield proxy
    proxy.stop()


class Served:
    """The adapter app served over HTTP, and its tracker."""

    def __init__(self, url: str, tracker: Tracker, settings: Settings) -> None:
        self.url, self.tracker, self.settings = url, tracker, settings

    def execute(self, trainingjob_id: str, pipeline_name: str, **arguments: str) -> dict:
        """POST /trainingjobs/<id>/execution exactly as the TM does."""
        return execute(self.url, trainingjob_id, pipeline_name, **arguments)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        """POST to the adapter (what tm_upload needs)."""
        return requests.post(self.url + path, timeout=60, **kwargs)

    def job(self, trainingjob_id: str) -> dict:
        answer = requests.get(f"{self.url}/trainingjobs/{trainingjob_id}", timeout=30)
        assert answer.status_code == 200, answer.text
        return answer.json()


def execute(url: str, trainingjob_id: str, pipeline_name: str, **arguments: str) -> dict:
    body = {
        "pipeline_name": pipeline_name,
        "pipeline_version": None,
        "experiment_name": "Default",
        "arguments": {
            "trainingjob_id": trainingjob_id,
            "featuregroup_name": "fg",
            "modelName": "m",
            "modelVersion": "1",
            "modellocation": "",
            **arguments,
        },
    }
    answer = requests.post(f"{url}/trainingjobs/{trainingjob_id}/execution", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["run_status"] == "scheduled"
    return answer.json()


def _settings(kfp_url: str, data_dir: Path, tm_port: int) -> Settings:
    return Settings(
        kfp_endpoint=kfp_url + "/pipeline",
        data_dir=data_dir,
        tracking_enabled=True,
        poll_interval=POLL,
        trainingmgr_host="127.0.0.1",
        trainingmgr_port=tm_port,
        notify_timeout=2.0,
        kfp_timeout=30.0,
    )


@pytest.fixture(scope="module")
def adapter(proxy, tm, tmp_path_factory) -> Iterator[Served]:
    settings = _settings(proxy.url, tmp_path_factory.mktemp("tracking-adapter"), tm.port)
    kfconnect = KfConnect(settings)
    tracker = Tracker(settings, kfconnect, retry_policy=RetryPolicy(base=0.1, cap=0.5))
    app = create_app(settings, kfconnect=kfconnect, tracker=tracker)
    tracker.start()
    server = ServerThread(app).start()
    yield Served(server.url, tracker, settings)
    server.stop()
    tracker.stop()


@pytest.fixture(scope="module")
def pipelines(adapter: Served, compiled) -> dict[str, str]:
    """The test pipelines uploaded the TM's way: key -> pipeline name."""
    names = {}
    for key in ("add_subtract_multiply", "always_fails", "sleeps"):
        name = unique(key.replace("_", "-"))
        answer = tm_upload(adapter, name, compiled[key])
        assert answer.status_code == 200, answer.text
        names[key] = name
    return names


@pytest.fixture(scope="module")
def kfp_client(kfp_server):
    import kfp

    return kfp.Client(host=kfp_server.url)


def _expected(trainingjob_id: str, run_id: str, state: str) -> dict[str, str]:
    return {
        "trainingjob_id": trainingjob_id,
        "run_id": run_id,
        "run_status": state,
        "notification_id": notification_id(run_id, state),
    }


def _wait_kfp_state(kfp_client, run_id: str, states: set[str]) -> str:
    def state() -> str | None:
        current = str(kfp_client.get_run(run_id).state)
        return current if current in states else None

    return wait_until(state, timeout=RUN_TIMEOUT, step=0.2)


def test_outcomes_are_notified_with_the_contract_payload(adapter: Served, pipelines, receiver):
    succeeded = adapter.execute(unique("job-ok"), pipelines["add_subtract_multiply"])
    failed = adapter.execute(unique("job-fail"), pipelines["always_fails"])
    for answer in (succeeded, failed):
        assert adapter.job(answer["trainingjob_id"])["run_id"] == answer["run_id"]
    wait_until(lambda: receiver.for_run(succeeded["run_id"]), timeout=RUN_TIMEOUT)
    wait_until(lambda: receiver.for_run(failed["run_id"]), timeout=RUN_TIMEOUT)
    assert receiver.for_run(succeeded["run_id"]) == [
        _expected(succeeded["trainingjob_id"], succeeded["run_id"], "SUCCEEDED")
    ]
    assert receiver.for_run(failed["run_id"]) == [
        _expected(failed["trainingjob_id"], failed["run_id"], "FAILED")
    ]
    received = [item for item in receiver.received if item.body["run_id"] == failed["run_id"]]
    assert received[0].content_type == "application/json"
    wait_until(lambda: adapter.job(failed["trainingjob_id"])["notification"]["last_code"])
    job = adapter.job(failed["trainingjob_id"])
    assert (job["run_state"], job["final_state"]) == ("FAILED", "FAILED")
    assert job["notification"]["status"] == "delivered"
    assert (job["notification"]["attempts"], job["notification"]["last_code"]) == (1, 200)
    listed = requests.get(
        f"{adapter.url}/trainingjobs", params={"notification_status": "delivered"}, timeout=30
    )
    assert listed.status_code == 200
    assert {succeeded["run_id"], failed["run_id"]} <= {
        job["run_id"] for job in listed.json()["trainingjobs"]
    }


def test_answer_500_is_recorded_delivered_and_not_retried(adapter: Served, pipelines, receiver):
    receiver.status = 500
    job = adapter.execute(unique("job-500"), pipelines["always_fails"])
    wait_until(
        lambda: adapter.job(job["trainingjob_id"])["notification"]["status"] == "delivered",
        timeout=RUN_TIMEOUT,
    )
    time.sleep(2.0)  # four times the back-off cap: a retry would have happened by now
    assert len(receiver.for_run(job["run_id"])) == 1
    notification = adapter.job(job["trainingjob_id"])["notification"]
    assert (notification["attempts"], notification["last_code"]) == (1, 500)


def test_receiver_down_for_a_while_then_up_gets_it(adapter: Served, pipelines, receiver):
    receiver.stop()
    job = adapter.execute(unique("job-down"), pipelines["always_fails"])
    wait_until(
        lambda: adapter.job(job["trainingjob_id"])["notification"]["attempts"] >= 3,
        timeout=RUN_TIMEOUT,
    )
    notification = adapter.job(job["trainingjob_id"])["notification"]
    assert notification["status"] == "pending" and "cannot connect" in notification["last_error"]
    receiver.start()
    wait_until(lambda: receiver.for_run(job["run_id"]), timeout=30)
    assert receiver.for_run(job["run_id"]) == [
        _expected(job["trainingjob_id"], job["run_id"], "FAILED")
    ]
    wait_until(lambda: adapter.job(job["trainingjob_id"])["notification"]["status"] == "delivered")


def test_terminated_run_is_not_notified_but_a_run_terminated_in_kfp_is(
    adapter: Served, pipelines, receiver, kfp_client
):
    """A run terminated in KFP itself ends FAILED (KFP on Argo: its workflow's deadline is
    set to 0 and Argo fails it), and the TM hears FAILED; one terminated through the
    adapter is not notified."""
    through_adapter = adapter.execute(unique("job-del"), pipelines["sleeps"], seconds="120")
    in_kfp = adapter.execute(unique("job-cancel"), pipelines["sleeps"], seconds="120")
    for job in (through_adapter, in_kfp):
        _wait_kfp_state(kfp_client, job["run_id"], {"RUNNING"})
    answer = requests.delete(f"{adapter.url}/runs/{through_adapter['run_id']}", timeout=30)
    assert answer.status_code == 200, answer.text
    kfp_client.terminate_run(in_kfp["run_id"])
    for job in (through_adapter, in_kfp):
        _wait_kfp_state(kfp_client, job["run_id"], {"FAILED"})
    wait_until(lambda: receiver.for_run(in_kfp["run_id"]), timeout=30)
    assert receiver.for_run(in_kfp["run_id"]) == [
        _expected(in_kfp["trainingjob_id"], in_kfp["run_id"], "FAILED")
    ]
    time.sleep(5 * POLL)  # several polls after KFP shows FAILED
    assert receiver.for_run(through_adapter["run_id"]) == []
    job = adapter.job(through_adapter["trainingjob_id"])
    assert job["notification"]["status"] == "untracked"
    assert job["notification"]["attempts"] == 0


def test_a_run_deleted_in_kfp_is_notified_not_found_and_no_longer_polled(
    adapter: Served, pipelines, receiver, kfp_client, proxy
):
    job = adapter.execute(unique("job-gone"), pipelines["sleeps"], seconds="120")
    _wait_kfp_state(kfp_client, job["run_id"], {"RUNNING"})
    kfp_client.delete_run(job["run_id"])
    wait_until(lambda: receiver.for_run(job["run_id"]), timeout=30)
    assert receiver.for_run(job["run_id"]) == [
        _expected(job["trainingjob_id"], job["run_id"], "NOT_FOUND")
    ]
    tracked = adapter.job(job["trainingjob_id"])
    assert tracked["final_state"] == "NOT_FOUND"
    wait_until(lambda: adapter.job(job["trainingjob_id"])["notification"]["status"] != "pending")
    mark = proxy.mark()
    time.sleep(5 * POLL)  # several polls: the run is no longer asked for
    assert all(job["run_id"] not in call.path for call in proxy.since(mark))


def test_refused_delete_of_a_finished_run_keeps_its_notification_due(
    adapter: Served, pipelines, receiver
):
    """KFP refuses to terminate a finished run: its pending notification is kept as it was."""
    receiver.stop()
    job = adapter.execute(unique("job-del-done"), pipelines["always_fails"])
    wait_until(
        lambda: adapter.job(job["trainingjob_id"])["notification"]["attempts"] >= 1,
        timeout=RUN_TIMEOUT,
    )
    before = adapter.job(job["trainingjob_id"])
    answer = requests.delete(f"{adapter.url}/runs/{job['run_id']}", timeout=30)
    assert answer.status_code == 400, answer.text  # KFP: the run is already FAILED
    after = adapter.job(job["trainingjob_id"])
    assert after["notification"]["status"] == "pending"
    assert after["final_state"] == "FAILED"
    assert after["final_state_seen_at"] == before["final_state_seen_at"]
    assert after["notification"]["deadline"] == before["notification"]["deadline"]
    receiver.start()
    wait_until(lambda: receiver.for_run(job["run_id"]), timeout=30)
    assert receiver.for_run(job["run_id"]) == [
        _expected(job["trainingjob_id"], job["run_id"], "FAILED")
    ]


def test_metrics_count_tracked_runs_by_notification_status(adapter: Served, pipelines, receiver):
    receiver.stop()  # one notification stays pending
    job = adapter.execute(unique("job-metrics"), pipelines["always_fails"])
    wait_until(
        lambda: adapter.job(job["trainingjob_id"])["notification"]["attempts"] >= 1,
        timeout=RUN_TIMEOUT,
    )
    listed = requests.get(f"{adapter.url}/trainingjobs", timeout=30).json()["trainingjobs"]
    metrics = requests.get(f"{adapter.url}/metrics", timeout=30).text
    gauges = {
        sample.labels["notification_status"]: sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "kfadapter_tracked_runs"
    }
    counted = Counter(tracked["notification"]["status"] for tracked in listed)
    statuses = ("waiting", "pending", "delivered", "expired", "untracked")
    assert gauges == {status: float(counted[status]) for status in statuses}
    assert gauges["pending"] >= 1
    assert gauges["pending"] == metric_value(metrics, "kfadapter_notifications_pending")


def test_kfp_calls_per_poll_grow_with_pages_not_runs(proxy, tmp_path):
    """Every poll costs ceil(open runs / RUN_IDS_PER_CALL) list calls, whatever the runs."""
    settings = _settings(proxy.url, tmp_path, free_port())
    tracker = Tracker(settings, KfConnect(settings))  # not started: polls by hand
    try:
        counted = {}
        for open_runs in (1, 100, 250):
            while len(tracker.list("waiting")) < open_runs:
                tracker.track("job", unique("run"))  # ids KFP does not know cost the same
            mark = proxy.mark()
            result = tracker.watcher.poll_once()
            assert result.open_runs == open_runs and result.error is None
            calls = proxy.since(mark)
            assert all("/apis/v2beta1/runs?" in call.path for call in calls)
            counted[open_runs] = len(calls)
        assert counted == {n: math.ceil(n / RUN_IDS_PER_CALL) for n in counted}
    finally:
        tracker.stop()


ADAPTER_SCRIPT = """
import signal, sys
from kfadapter.app import create_app
from kfadapter.serving import ServerThread
from kfadapter.settings import Settings
settings = Settings.from_env()
server = ServerThread(create_app(settings), "127.0.0.1", int(sys.argv[1])).start()
print("listening", server.url, flush=True)
signal.pause()
"""


def _adapter_env(kfp_url: str, data_dir: Path, tm_port: int) -> dict[str, str]:
    return adapter_env(
        KFP_ENDPOINT=kfp_url + "/pipeline",
        KFADAPTER_DATA_DIR=str(data_dir),
        KFADAPTER_POLL_INTERVAL=str(POLL),
        TRAININGMGR_HOST="127.0.0.1",
        TRAININGMGR_PORT=str(tm_port),
        KFADAPTER_NOTIFY_TIMEOUT="2",
        KFP_TIMEOUT="30",
    )


def test_sigkill_while_runs_are_in_progress_then_restart_notifies_every_run(
    kfp_server, pipelines, receiver, kfp_client, tmp_path
):
    env = _adapter_env(kfp_server.url, tmp_path / "data", receiver.port)
    port = free_port()
    first = Process([PYTHON, "-c", ADAPTER_SCRIPT, str(port)], env=env)
    try:
        first.wait_for_line("listening")
        url = f"http://127.0.0.1:{port}"
        jobs = [
            execute(url, unique("kill-a"), pipelines["always_fails"]),
            execute(url, unique("kill-b"), pipelines["add_subtract_multiply"]),
            execute(url, unique("kill-c"), pipelines["sleeps"], seconds="3"),
        ]
    finally:
        first.kill()  # SIGKILL to the adapter process
    assert first.popen.returncode == -9
    states = {job["run_id"]: str(kfp_client.get_run(job["run_id"]).state) for job in jobs}
    assert states[jobs[2]["run_id"]] != "SUCCEEDED"  # it was in progress when killed
    expected_states = ["FAILED", "SUCCEEDED", "SUCCEEDED"]
    for job, state in zip(jobs, expected_states, strict=True):
        # Every run finishes while the adapter is down.
        _wait_kfp_state(kfp_client, job["run_id"], {state})
    assert all(not receiver.for_run(job["run_id"]) for job in jobs)
    second = Process([PYTHON, "-c", ADAPTER_SCRIPT, str(free_port())], env=env)
    try:
        second.wait_for_line("listening")
        for job in jobs:
            wait_until(lambda job=job: receiver.for_run(job["run_id"]), timeout=60)
        time.sleep(3 * POLL)
        for job, state in zip(jobs, expected_states, strict=True):
            assert receiver.for_run(job["run_id"]) == [
                _expected(job["trainingjob_id"], job["run_id"], state)
            ]
    finally:
        second.kill()


def test_gunicorn_with_three_workers_notifies_each_job_once(
    kfp_server, pipelines, receiver, tmp_path
):
    receiver.delay = 1.0  # a slow TM: a second notifier would send while the first waits
    env = _adapter_env(kfp_server.url, tmp_path / "data", receiver.port)
    port = free_port()
    serve = Process([*KFADAPTER, "serve", "--bind", f"127.0.0.1:{port}", "--workers", "3"], env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_live(url)
        jobs = [execute(url, unique(f"gunicorn-{n}"), pipelines["always_fails"]) for n in range(3)]
        for job in jobs:
            wait_until(lambda job=job: receiver.for_run(job["run_id"]), timeout=RUN_TIMEOUT)
        time.sleep(1.5)  # every worker had time to poll and notify, were it leader too
        for job in jobs:
            assert receiver.for_run(job["run_id"]) == [
                _expected(job["trainingjob_id"], job["run_id"], "FAILED")
            ]
        # Whichever worker answers, it reads the same store.
        for _ in range(6):
            listed = requests.get(f"{url}/trainingjobs", timeout=30).json()["trainingjobs"]
            assert {job["run_id"] for job in listed} == {job["run_id"] for job in jobs}
            assert {job["notification"]["status"] for job in listed} == {"delivered"}
        assert serve.terminate() == 0
    finally:
        serve.kill()
