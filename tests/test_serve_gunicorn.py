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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.wrappers import Request, Response

from kfadapter.serving import ServerThread
from tests.process_support import KFADAPTER, Process

SLOW_PREFIX = "slow-"
SLOW_SECONDS = 3.0
HOP_HEADERS = {"host", "content-length", "connection", "transfer-encoding", "content-encoding"}


@dataclass
class SlowProxy:
    """Forwards to the real KFP server; requests with a slow- request id wait first."""

    target: str
    seen: list[tuple[str, str]] = field(default_factory=list)
    slow_started: threading.Event = field(default_factory=threading.Event)

    def __call__(self, environ, start_response):
        request = Request(environ)
        request_id = request.headers.get("X-Request-ID", "")
        self.seen.append((request.path, request_id))
        if request_id.startswith(SLOW_PREFIX):
            self.slow_started.set()
            time.sleep(SLOW_SECONDS)
        query = request.query_string.decode()
        upstream = requests.request(
            request.method,
            f"{self.target}{request.path}" + (f"?{query}" if query else ""),
            headers={k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS},
            data=request.get_data(),
            allow_redirects=False,
            timeout=60,
        )
        headers = [(k, v) for k, v in upstream.headers.items() if k.lower() not in HOP_HEADERS]
        return Response(upstream.content, upstream.status_code, headers)(environ, start_response)


def metric_value(text: str, name: str, **labels: str) -> float:
    """A sample's value in Prometheus text (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


def worker_pids(master_pid: int) -> set[int]:
    """The gunicorn master's child processes (its workers)."""
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    return {int(pid) for pid in children}


@pytest.fixture
def slow_proxy(local_kfp) -> Iterator[SlowProxy]:
    proxy = SlowProxy(local_kfp.url)
    server = ServerThread(proxy).start()
    proxy.url = server.url  # type: ignore[attr-defined]
    try:
        yield proxy
    finally:
        server.stop()


@pytest.fixture
def served(slow_proxy, tmp_path) -> Iterator[tuple[Process, str]]:
    """`kfadapter serve` with 3 workers x 2 threads on a free port, KFP behind the proxy."""
    prefixes = ("KFADAPTER_", "KFP_", "KUBEFLOW_", "KF_", "TRAININGMGR_", "PROMETHEUS_")
    env = {key: value for key, value in os.environ.items() if not key.startswith(prefixes)}
    env.update(
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
        deadline = time.monotonic() + 60
        while len(worker_pids(process.popen.pid)) < 3 or not _live(url):
            assert time.monotonic() < deadline, "".join(process.output)
            time.sleep(0.1)
        yield process, url
        if process.popen.poll() is None:
            assert process.terminate(timeout=30) == 0  # graceful: removes its metrics dir
    finally:
        process.kill()


def _live(url: str) -> bool:
    try:
        return requests.get(f"{url}/liveness", timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


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
    forwarded = {request_id for _, request_id in slow_proxy.seen}
    assert {f"tm-call-{index}" for index in range(12)} <= forwarded

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
    deadline = time.monotonic() + 10
    while not any('"request_id": "tm-call-11"' in line for line in process.output):
        assert time.monotonic() < deadline, "no access log line for tm-call-11"
        time.sleep(0.1)
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
