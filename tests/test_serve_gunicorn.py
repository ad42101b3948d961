"""`kfadapter serve` as a real process: gunicorn with several workers against the embedded KFP.

KFP is reached through a small proxy in the test that holds back any request whose
X-Request-ID starts with "slow-": the adapter passes the caller's request id on to KFP,
so a request to the adapter with such an id stays in flight while the test sends SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from kfadapter.gunicorn_conf import memory_tmp_dir
from tests.adapter_support import RecordingProxy
from tests.support import (
    KFADAPTER,
    Process,
    adapter_env,
    free_port,
    is_live,
    metric_value,
    wait_until,
)

pytestmark = pytest.mark.e2e  # real servers and processes on free ports

SLOW_PREFIX = "slow-"
SLOW_SECONDS = 3.0


class SlowProxy(RecordingProxy):
    """The recording proxy to the real KFP server; requests with a slow- request id wait."""

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.slow_started = threading.Event()

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("HTTP_X_REQUEST_ID", "").startswith(SLOW_PREFIX):
            self.slow_started.set()
            time.sleep(SLOW_SECONDS)
        return super()._app(environ, start_response)

    def request_ids(self) -> set[str]:
        """The X-Request-ID of every request that came through."""
        return {
            value
            for call in self.since(0)
            for name, value in call.headers.items()
            if name.lower() == "x-request-id"
        }


def worker_pids(master_pid: int) -> set[int]:
    """The gunicorn master's child processes (its workers)."""
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    return {int(pid) for pid in children}


@pytest.fixture
def slow_proxy(local_kfp) -> Iterator[SlowProxy]:
    proxy = SlowProxy(local_kfp.url).start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def served(slow_proxy, tmp_path) -> Iterator[tuple[Process, str]]:
    """`kfadapter serve` with 3 workers x 2 threads on a free port, KFP behind the proxy."""
    env = adapter_env(
        KFP_ENDPOINT=f"{slow_proxy.url}/pipeline",
        KFP_TIMEOUT="30",
        KFADAPTER_DATA_DIR=str(tmp_path / "adapter"),
        KFADAPTER_BIND="127.0.0.1:0",
        KFADAPTER_WORKERS="3",
        KFADAPTER_THREADS="2",
        KFADAPTER_GRACEFUL_TIMEOUT="20",
        KFADAPTER_LOG_FORMAT="json",
        KFADAPTER_POLL_INTERVAL="0.5",
        TRAININGMGR_PORT="9",
    )
    process = Process([*KFADAPTER, "serve"], env=env)
    try:
        line = process.wait_for_line("Listening at: http://", timeout=60)
        message = json.loads(line)["message"]
        url = message.split("Listening at: ", 1)[1].split()[0]
        wait_until(
            lambda: len(worker_pids(process.popen.pid)) >= 3 and is_live(url),
            60,
            step=0.1,
            details=lambda: "".join(process.output),
        )
        yield process, url
        if process.popen.poll() is None:
            assert process.terminate(timeout=30) == 0  # graceful: removes its metrics dir
    finally:
        process.kill()


def test_serve_under_gunicorn_with_several_workers(served, slow_proxy, compiled):
    process, url = served
    assert len(worker_pids(process.popen.pid)) == 3

    upload = requests.post(
        f"{url}/pipelineIds/gunicorn-sample",
        files={"file": ("file", compiled["add_subtract_multiply"].read_bytes())},
        data={"description": "uploaded through gunicorn"},
        timeout=60,
    )
    assert upload.status_code == 200, upload.text
    pipeline_id = upload.json()["id"]

    # Many requests over fresh connections: the workers share them, answers stay right.
    for index in range(12):
        response = requests.get(
            f"{url}/pipelineIds/gunicorn-sample",
            headers={"X-Request-ID": f"tm-call-{index}"},
            timeout=30,
        )
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/json"
        assert response.headers["X-Request-ID"] == f"tm-call-{index}"
        assert response.json()["id"] == pipeline_id
    # The caller's request id reached KFP.
    assert {f"tm-call-{index}" for index in range(12)} <= slow_proxy.request_ids()

    missing = requests.get(f"{url}/pipelineIds/no-such-pipeline", timeout=30)
    assert missing.status_code == 404 and "no-such-pipeline" in missing.json()["message"]

    # /metrics adds up every worker's counts (prometheus multiprocess mode).
    metrics = requests.get(f"{url}/metrics", timeout=30).text
    ok = metric_value(
        metrics,
        "kfadapter_http_requests_total",
        endpoint="/pipelineIds/<name>",
        method="GET",
        status="200",
    )
    assert ok == 12
    assert (
        metric_value(
            metrics,
            "kfadapter_http_requests_total",
            endpoint="/pipelineIds/<name>",
            method="GET",
            status="404",
        )
        == 1
    )
    assert (
        sum(
            sample.value
            for family in text_string_to_metric_families(metrics)
            for sample in family.samples
            if sample.name == "kfadapter_kfp_calls_total"
        )
        >= 13
    )

    # JSON access log lines with the request id.
    wait_until(lambda: any('"request_id": "tm-call-11"' in line for line in process.output), 10)
    access = next(
        json.loads(line) for line in process.output if '"request_id": "tm-call-11"' in line
    )
    assert access["logger"] == "kfadapter.access" and access["status"] == 200


def test_sigterm_lets_the_request_in_flight_finish(served, slow_proxy):
    process, url = served
    result: dict[str, object] = {}

    def slow_call() -> None:
        try:
            response = requests.get(
                f"{url}/pipelines", headers={"X-Request-ID": f"{SLOW_PREFIX}1"}, timeout=60
            )
            result["status"] = response.status_code
            result["body"] = response.json()
            result["request_id"] = response.headers.get("X-Request-ID")
        except requests.RequestException as error:
            result["error"] = error

    caller = threading.Thread(target=slow_call)
    caller.start()
    assert slow_proxy.slow_started.wait(30), "the slow request never reached KFP"
    sent = time.monotonic()
    process.popen.send_signal(signal.SIGTERM)
    caller.join(60)
    assert result.get("status") == 200, result
    assert "pipelines" in result["body"]  # type: ignore[operator]
    assert result["request_id"] == f"{SLOW_PREFIX}1"
    assert process.terminate(timeout=30) == 0
    # The answer needed the proxy's delay after SIGTERM: it was really in flight.
    assert time.monotonic() - sent >= SLOW_SECONDS / 2
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/liveness", timeout=5)


def _open_files(pid: int) -> list[str]:
    """What a process's file descriptors point to (deleted files end in ' (deleted)')."""
    targets = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            targets.append(os.readlink(fd))
        except OSError:  # closed meanwhile
            continue
    return targets


@pytest.mark.skipif(memory_tmp_dir() is None, reason="no writable /dev/shm")
def test_workers_keep_heartbeat_and_metrics_files_in_memory(served):
    """Not on /tmp: a container's /tmp may be disk-backed (heartbeats block) or read-only."""
    process, url = served
    assert requests.get(f"{url}/liveness", timeout=30).status_code == 200  # counted: a file
    workers = worker_pids(process.popen.pid)
    for pid in workers:
        files = _open_files(pid)
        assert any(f.startswith("/dev/shm/wgunicorn-") for f in files), files
    maps = [Path(f"/proc/{pid}/maps").read_text() for pid in workers]
    assert any("/dev/shm/kfadapter-metrics-" in worker_maps for worker_maps in maps)


def test_requests_gunicorn_rejects_itself_get_json_not_html(served):
    """A URL over gunicorn's request-line limit is answered 414 in the JSON error shape."""
    _, url = served
    response = requests.get(f"{url}/pipelines?filter={'x' * 10_000}", timeout=30)
    assert response.status_code == 414
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["status"] == 414


def test_serve_with_the_helm_charts_variables(local_kfp, tmp_path):
    """CONTRACT's deployment settings alone: the adapter listens on KF_ADAPTER_PORT and
    reaches KFP at http://KUBEFLOW_HOST:KUBEFLOW_PORT/pipeline (the UI proxy path)."""
    kfp = urlsplit(local_kfp.url)
    port = free_port()
    env = adapter_env(
        KUBEFLOW_HOST=kfp.hostname,
        KUBEFLOW_PORT=str(kfp.port),
        KF_ADAPTER_PORT=str(port),
        TRAININGMGR_HOST="127.0.0.1",
        TRAININGMGR_PORT="9",
        KFADAPTER_DATA_DIR=str(tmp_path / "adapter"),
        KFADAPTER_WORKERS="1",
    )
    process = Process([*KFADAPTER, "serve"], env=env)
    try:
        process.wait_for_line(f"Listening at: http://0.0.0.0:{port}", timeout=60)
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: is_live(url), 60, step=0.1, details=lambda: "".join(process.output))
        ready = requests.get(f"{url}/readiness", timeout=30)
        assert ready.status_code == 200, ready.text
        experiments = requests.get(f"{url}/experiments", timeout=30)
        assert experiments.headers["Content-Type"] == "application/json"
        assert "Default" in experiments.json()
        assert process.terminate(timeout=30) == 0
    finally:
        process.kill()
