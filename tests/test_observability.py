"""Request ids, access logs, JSON/text logging, request and KFP-call metrics, GET /metrics."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
import requests
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from kfadapter import observability
from kfadapter.errors import KfpUnavailable, NotFound, register_error_handlers
from kfadapter.serving import ServerThread
from kfadapter.settings import Settings


class FakeTracker:
    """Stands in for kfadapter.tracking.Tracker: only stats() is used here."""

    def __init__(self, stats: dict | None = None, fail: bool = False) -> None:
        self._stats = stats or {}
        self._fail = fail

    def stats(self) -> dict:
        if self._fail:
            raise RuntimeError("store unavailable")
        return self._stats


def make_app(tracker: FakeTracker | None = None) -> Flask:
    """A small app with the adapter's error handlers, observability and a KFP call."""
    app = Flask("observability-test")
    register_error_handlers(app)
    observability.install(app, tracker)

    @app.get("/things/<name>")
    def thing(name: str):
        with observability.kfp_call("get_thing"):
            pass
        return {"name": name, "request_id": observability.current_request_id()}

    @app.get("/broken")
    def broken():
        with observability.kfp_call("list_things"):
            raise KfpUnavailable("KFP is down")

    @app.get("/missing/<name>")
    def missing(name: str):
        raise NotFound(f"no thing named {name!r}")

    return app


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Parse Prometheus text: (sample name, sorted labels) -> value."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, tuple(sorted(labels.items()))))


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Undo configure_logging's changes to the root logger after a test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_request_id_from_caller_is_used_and_returned():
    client = make_app().test_client()
    response = client.get("/things/a", headers={"X-Request-ID": "tm-1234.abc"})
    assert response.headers["X-Request-ID"] == "tm-1234.abc"
    assert response.json["request_id"] == "tm-1234.abc"


def test_request_id_generated_when_missing_or_unsafe():
    client = make_app().test_client()
    first = client.get("/things/a")
    second = client.get("/things/a", headers={"X-Request-ID": "bad id\twith spaces" + "x" * 200})
    ids = {first.headers["X-Request-ID"], second.headers["X-Request-ID"]}
    assert len(ids) == 2
    for request_id in ids:
        assert len(request_id) == 32 and int(request_id, 16) >= 0
    assert first.json["request_id"] == first.headers["X-Request-ID"]


def test_request_id_on_error_answers_too():
    client = make_app().test_client()
    response = client.get("/missing/x", headers={"X-Request-ID": "err-1"})
    assert response.status_code == 404
    assert response.headers["X-Request-ID"] == "err-1"
    unknown = client.get("/no/such/path", headers={"X-Request-ID": "err-2"})
    assert unknown.status_code == 404 and unknown.headers["X-Request-ID"] == "err-2"


def test_current_request_id_outside_requests():
    assert observability.current_request_id() is None
    with observability.request_id_scope("job-7") as request_id:
        assert request_id == "job-7"
        assert observability.current_request_id() == "job-7"
    with observability.request_id_scope() as generated:
        assert observability.current_request_id() == generated and len(generated) == 32
    assert observability.current_request_id() is None


def test_request_metrics_by_url_rule_method_and_status():
    client = make_app().test_client()
    for name in ("a", "b", "c"):
        assert client.get(f"/things/{name}").status_code == 200
    assert client.get("/missing/x").status_code == 404
    assert client.get("/no/such/path").status_code == 404
    assert client.post("/things/a").status_code == 405
    text = client.get("/metrics").get_data(as_text=True)
    requests_total = "kfadapter_http_requests_total"
    assert value(text, requests_total, endpoint="/things/<name>", method="GET", status="200") == 3
    assert value(text, requests_total, endpoint="/missing/<name>", method="GET", status="404") == 1
    assert value(text, requests_total, endpoint="<unmatched>", method="GET", status="404") == 1
    # A method the URL does not allow matched no rule either.
    assert value(text, requests_total, endpoint="<unmatched>", method="POST", status="405") == 1
    latency = "kfadapter_http_request_duration_seconds_count"
    assert value(text, latency, endpoint="/things/<name>", method="GET") == 3
    bucket = value(
        text,
        "kfadapter_http_request_duration_seconds_bucket",
        endpoint="/things/<name>",
        method="GET",
        le="+Inf",
    )
    assert bucket == 3


def test_metrics_endpoint_content_type():
    response = make_app().test_client().get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")


def test_kfp_call_counts_ok_and_error_class_and_reraises():
    app = make_app()
    client = app.test_client()
    client.get("/things/a")
    client.get("/things/b")
    broken = client.get("/broken")
    assert broken.status_code == 503
    assert broken.json["message"] == "KFP is down"
    text = client.get("/metrics").get_data(as_text=True)
    assert value(text, "kfadapter_kfp_calls_total", operation="get_thing", outcome="ok") == 2
    assert (
        value(text, "kfadapter_kfp_calls_total", operation="list_things", outcome="KfpUnavailable")
        == 1
    )
    assert (
        value(
            text,
            "kfadapter_kfp_call_duration_seconds_count",
            operation="get_thing",
            outcome="ok",
        )
        == 2
    )


def test_kfp_call_outside_a_request_uses_bound_app_or_the_last_installed():
    app = make_app()
    last = make_app()
    with observability.kfp_call("unbound"):
        pass  # e.g. the tracker's thread: counted in the app installed last
    with pytest.raises(ValueError), observability.bind_metrics(app), observability.kfp_call("poll"):
        raise ValueError("bad answer")
    with app.app_context(), observability.kfp_call("in_app_context"):
        pass
    text = app.test_client().get("/metrics").get_data(as_text=True)
    assert value(text, "kfadapter_kfp_calls_total", operation="poll", outcome="ValueError") == 1
    assert value(text, "kfadapter_kfp_calls_total", operation="in_app_context", outcome="ok") == 1
    assert value(text, "kfadapter_kfp_calls_total", operation="unbound", outcome="ok") is None
    text = last.test_client().get("/metrics").get_data(as_text=True)
    assert value(text, "kfadapter_kfp_calls_total", operation="unbound", outcome="ok") == 1
    assert value(text, "kfadapter_kfp_calls_total", operation="poll", outcome="ValueError") is None


def test_two_apps_in_one_process_keep_separate_metrics():
    first, second = make_app().test_client(), make_app().test_client()
    first.get("/things/a")
    first.get("/things/a")
    second.get("/things/a")
    name = "kfadapter_http_requests_total"
    labels = {"endpoint": "/things/<name>", "method": "GET", "status": "200"}
    assert value(first.get("/metrics").get_data(as_text=True), name, **labels) == 2
    assert value(second.get("/metrics").get_data(as_text=True), name, **labels) == 1


def test_tracker_gauges_read_at_scrape_time():
    stats = {"open_runs": 3, "pending_notifications": 1, "leader": True}
    tracker = FakeTracker(stats)
    client = make_app(tracker).test_client()
    text = client.get("/metrics").get_data(as_text=True)
    assert value(text, "kfadapter_tracked_runs_open") == 3
    assert value(text, "kfadapter_notifications_pending") == 1
    assert value(text, "kfadapter_tracker_leader") == 1
    assert value(text, "kfadapter_tracker_stats_up") == 1
    stats["open_runs"] = 0
    text = client.get("/metrics").get_data(as_text=True)
    assert value(text, "kfadapter_tracked_runs_open") == 0


def test_tracker_failure_does_not_break_metrics():
    client = make_app(FakeTracker(fail=True)).test_client()
    client.get("/things/a")
    response = client.get("/metrics")
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert value(text, "kfadapter_tracker_stats_up") == 0
    assert value(text, "kfadapter_tracked_runs_open") is None
    assert (
        value(
            text,
            "kfadapter_http_requests_total",
            endpoint="/things/<name>",
            method="GET",
            status="200",
        )
        == 1
    )


def test_json_logs_one_object_a_line_with_request_id(capsys, restore_logging):
    observability.configure_logging(Settings(log_format="json", log_level="DEBUG"))
    observability.configure_logging(Settings(log_format="json", log_level="DEBUG"))  # idempotent
    app = make_app()

    @app.get("/logs")
    def logs():
        logging.getLogger("kfadapter.test").info("handling %s", "it", extra={"pipeline": "p1"})
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("kfadapter.test").exception("failed")
        return {}

    app.test_client().get("/logs?x=1", headers={"X-Request-ID": "rid-42"})
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    mine = [entry for entry in entries if entry["request_id"] == "rid-42"]
    handling = next(entry for entry in mine if entry["message"] == "handling it")
    assert handling["level"] == "INFO" and handling["logger"] == "kfadapter.test"
    assert handling["pipeline"] == "p1" and handling["time"].endswith("+00:00")
    failed = next(entry for entry in mine if entry["message"] == "failed")
    assert "ValueError: boom" in failed["exc_info"] and "\n" not in lines[entries.index(failed)]
    access = next(entry for entry in mine if entry["logger"] == "kfadapter.access")
    assert access["method"] == "GET" and access["path"] == "/logs" and access["status"] == 200
    assert access["endpoint"] == "/logs" and access["duration_ms"] >= 0
    assert "GET /logs?x=1 200" in access["message"]
    kfp_debug = [entry for entry in mine if entry.get("kfp_operation")]
    assert kfp_debug == []  # /logs makes no KFP call


def test_text_logs_carry_request_id(capsys, restore_logging):
    observability.configure_logging(Settings(log_format="text", log_level="INFO"))
    make_app().test_client().get("/things/a", headers={"X-Request-ID": "rid-text"})
    out = capsys.readouterr().out
    access_line = next(line for line in out.splitlines() if "kfadapter.access" in line)
    assert "[rid-text]" in access_line and "GET /things/a 200" in access_line
    assert not access_line.lstrip().startswith("{")


def test_log_level_filters(capsys, restore_logging):
    observability.configure_logging(Settings(log_format="text", log_level="WARNING"))
    logging.getLogger("kfadapter.test").info("quiet")
    logging.getLogger("kfadapter.test").warning("loud")
    out = capsys.readouterr().out
    assert "loud" in out and "quiet" not in out
    assert "[-]" in out  # no request: placeholder id


@pytest.mark.e2e
def test_concurrent_requests_keep_their_own_ids():
    """Over real HTTP with a threaded server, each answer carries its own request's id."""
    app = make_app()
    server = ServerThread(app).start()
    try:
        results: dict[str, str] = {}

        def call(index: int) -> None:
            request_id = f"parallel-{index}"
            response = requests.get(
                f"{server.url}/things/{index}", headers={"X-Request-ID": request_id}, timeout=10
            )
            results[request_id] = response.json()["request_id"]

        threads = [threading.Thread(target=call, args=(i,)) for i in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results == {f"parallel-{i}": f"parallel-{i}" for i in range(16)}
        metrics = requests.get(f"{server.url}/metrics", timeout=10).text
        assert (
            value(
                metrics,
                "kfadapter_http_requests_total",
                endpoint="/things/<name>",
                method="GET",
                status="200",
            )
            == 16
        )
    finally:
        server.stop()


@pytest.mark.e2e
def test_made_up_methods_share_one_metric_label():
    """Over real HTTP: any number of invented methods adds one series, not one each."""
    server = ServerThread(make_app()).start()
    try:
        for method in ("FOO", "BARX", "PROPFIND", "BREW"):
            answer = requests.request(method, f"{server.url}/things/a", timeout=10)
            assert answer.status_code == 405
        assert requests.delete(f"{server.url}/things/a", timeout=10).status_code == 405
        metrics = requests.get(f"{server.url}/metrics", timeout=10).text
    finally:
        server.stop()
    methods = {
        sample.labels["method"]
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "kfadapter_http_requests_total"
    }
    assert methods == {"other", "DELETE"}
    total = "kfadapter_http_requests_total"
    assert value(metrics, total, endpoint="<unmatched>", method="other", status="405") == 4


_WORKER_SCRIPT = """
import sys
from flask import Flask
from kfadapter import observability

app = Flask("worker")
observability.install(app)

@app.get("/work")
def work():
    with observability.kfp_call("list_runs"):
        pass
    return {}

client = app.test_client()
for _ in range(int(sys.argv[1])):
    client.get("/work")
if len(sys.argv) > 2:
    sys.stdout.write(client.get("/metrics").get_data(as_text=True))
"""


@pytest.mark.e2e
def test_multiprocess_mode_adds_up_every_worker(tmp_path):
    """With PROMETHEUS_MULTIPROC_DIR (as under `kfadapter serve`), any process's /metrics
    shows the sum over all processes, like gunicorn workers sharing one scrape target."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for count in (3, 4):
        subprocess.run([sys.executable, "-c", _WORKER_SCRIPT, str(count)], env=env, check=True)
    scrape = subprocess.run(
        [sys.executable, "-c", _WORKER_SCRIPT, "5", "scrape"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    labels = {"endpoint": "/work", "method": "GET", "status": "200"}
    assert value(scrape, "kfadapter_http_requests_total", **labels) == 12
    assert value(scrape, "kfadapter_kfp_calls_total", operation="list_runs", outcome="ok") == 12
    latency = "kfadapter_http_request_duration_seconds_count"
    assert value(scrape, latency, endpoint="/work", method="GET") == 12
