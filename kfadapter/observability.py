"""Logs, request ids and Prometheus metrics for the adapter.

`configure_logging` sets up stdout logging (text or one JSON object a line), `install`
adds request ids, access logs, request metrics and `GET /metrics` to a Flask app,
`kfp_call` counts and times every call to KFP, and `current_request_id` gives the id of
the request being served (sent on to KFP as `X-Request-ID`).

Metrics live in a registry per app (several apps in one process never collide). When
`PROMETHEUS_MULTIPROC_DIR` is set (as `kfadapter serve` does for gunicorn), metric values
are written to files there and `/metrics` aggregates every worker's values.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from flask import Flask, Response, current_app, g, has_app_context, has_request_context, request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from kfadapter.settings import Settings

REQUEST_ID_HEADER = "X-Request-ID"
METRICS_EXTENSION = "kfadapter.metrics"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED_ENDPOINT = "<unmatched>"

# A caller's request id is kept when it is a short token of safe characters.
_REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:/+=@-]{1,128}$")
_HANDLER_MARK = "_kfadapter_handler"
# Methods counted under their own name; any other is counted as "other", so that clients
# sending made-up methods cannot create an unbounded number of metric series.
_METHOD_LABELS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
OTHER_METHOD = "other"
_REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

_request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "kfadapter_request_id", default=None
)
_metrics_var: contextvars.ContextVar[Metrics | None] = contextvars.ContextVar(
    "kfadapter_metrics", default=None
)

# The metrics of the app installed last in this process: where KFP calls made outside any
# app context (e.g. the run tracker's own thread) are counted. One app per process in
# production (each gunicorn worker, `kfadapter dev`); `bind_metrics` picks another.
_process_metrics: list[weakref.ReferenceType[Metrics]] = []

log = logging.getLogger(__name__)
access_log = logging.getLogger("kfadapter.access")


# ---------------------------------------------------------------- request ids


def new_request_id() -> str:
    """A fresh random request id (32 hex digits)."""
    return uuid.uuid4().hex


def current_request_id() -> str | None:
    """The id of the request being served, or of the enclosing `request_id_scope`."""
    if has_request_context():
        request_id = g.get("request_id")
        if request_id:
            return request_id
    return _request_id_var.get()


@contextmanager
def request_id_scope(request_id: str | None = None) -> Iterator[str]:
    """Run a block (e.g. a background job) under a request id, generated when not given."""
    token = _request_id_var.set(request_id or new_request_id())
    try:
        yield _request_id_var.get() or ""
    finally:
        _request_id_var.reset(token)


def _accepted_request_id(raw: str | None) -> str:
    """The caller's X-Request-ID when it is a sane token, else a new id."""
    if raw and _REQUEST_ID_PATTERN.match(raw.strip()):
        return raw.strip()
    return new_request_id()


# ---------------------------------------------------------------- logging


class RequestIdFilter(logging.Filter):
    """Adds `request_id` (or "-") to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = current_request_id() or "-"
        return True


# LogRecord attributes that are not "extra" fields given by the caller.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
) | {"message", "asctime", "request_id", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, request_id and any extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or "-",
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def make_formatter(log_format: str) -> logging.Formatter:
    """The formatter for KFADAPTER_LOG_FORMAT ("json" or "text")."""
    if log_format == "json":
        return JsonFormatter()
    return logging.Formatter(TEXT_FORMAT)


def log_level_number(name: str) -> int:
    """The logging level called `name` (DEBUG, INFO, WARNING, ERROR, CRITICAL); INFO if unknown."""
    return logging.getLevelNamesMapping().get(name.strip().upper(), logging.INFO)


def configure_logging(settings: Settings) -> None:
    """Log to stdout at settings.log_level, as JSON lines or text, with request ids.

    Calling it again replaces the handler it installed before (no duplicate lines).
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stdout)
    setattr(handler, _HANDLER_MARK, True)
    handler.setFormatter(make_formatter(settings.log_format))
    handler.addFilter(RequestIdFilter())
    root.addHandler(handler)
    root.setLevel(log_level_number(settings.log_level))
    # Werkzeug's own request lines duplicate the access log.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)


# ---------------------------------------------------------------- metrics


@dataclass
class Metrics:
    """The adapter's metrics in one registry (one per app)."""

    registry: CollectorRegistry
    requests: Counter
    request_seconds: Histogram
    kfp_calls: Counter
    kfp_call_seconds: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> Metrics:
        """Build the metrics in `registry` (a new one when None)."""
        registry = registry or CollectorRegistry(auto_describe=True)
        return cls(
            registry=registry,
            requests=Counter(
                "kfadapter_http_requests",
                "HTTP requests answered, by endpoint (URL rule), method and status.",
                ["endpoint", "method", "status"],
                registry=registry,
            ),
            request_seconds=Histogram(
                "kfadapter_http_request_duration_seconds",
                "Time to answer HTTP requests, by endpoint (URL rule) and method.",
                ["endpoint", "method"],
                buckets=_REQUEST_BUCKETS,
                registry=registry,
            ),
            kfp_calls=Counter(
                "kfadapter_kfp_calls",
                "Calls to KFP, by operation and outcome (ok or the error class).",
                ["operation", "outcome"],
                registry=registry,
            ),
            kfp_call_seconds=Histogram(
                "kfadapter_kfp_call_duration_seconds",
                "Time taken by calls to KFP, by operation and outcome.",
                ["operation", "outcome"],
                buckets=_REQUEST_BUCKETS,
                registry=registry,
            ),
        )


# Notification status -> the tracker.stats() key that counts the runs in it.
_TRACKED_RUNS_BY_STATUS = (
    ("waiting", "open_runs"),
    ("pending", "pending_notifications"),
    ("delivered", "delivered_notifications"),
    ("expired", "expired_notifications"),
    ("untracked", "untracked_runs"),
)


class TrackerCollector:
    """Gauges read from tracker.stats() at scrape time (the same in every worker)."""

    def __init__(self, stats: Callable[[], dict[str, Any]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            stats = self._stats()
        except Exception:  # a scrape must still answer with the other metrics
            log.warning("tracker stats unavailable", exc_info=True)
            stats = {}
        up = GaugeMetricFamily(
            "kfadapter_tracker_stats_up", "1 when the tracker's statistics could be read."
        )
        up.add_metric([], 1.0 if stats else 0.0)
        yield up
        gauges = {
            "open_runs": ("kfadapter_tracked_runs_open", "Tracked runs not finished yet."),
            "pending_notifications": (
                "kfadapter_notifications_pending",
                "Run outcomes not yet delivered to the training manager.",
            ),
            "leader": (
                "kfadapter_tracker_leader",
                "1 when this process holds the watcher lock for the data dir.",
            ),
        }
        for key, (name, documentation) in gauges.items():
            if key in stats and stats[key] is not None:
                gauge = GaugeMetricFamily(name, documentation)
                gauge.add_metric([], float(stats[key]))
                yield gauge
        by_status = [
            (status, stats[key])
            for status, key in _TRACKED_RUNS_BY_STATUS
            if stats.get(key) is not None
        ]
        if by_status:
            gauge = GaugeMetricFamily(
                "kfadapter_tracked_runs",
                "Tracked runs by notification status (expired: the training manager never "
                "received the outcome before the deadline).",
                labels=["notification_status"],
            )
            for status, count in by_status:
                gauge.add_metric([status], float(count))
            yield gauge

    def describe(self) -> list[GaugeMetricFamily]:
        return []


def app_metrics(app: Flask) -> Metrics | None:
    """The metrics `install` attached to `app`, if any."""
    return app.extensions.get(METRICS_EXTENSION)


def _active_metrics() -> Metrics | None:
    """The current app's metrics, else those bound with `bind_metrics`, else the process's."""
    if has_app_context():
        metrics = app_metrics(current_app)
        if metrics is not None:
            return metrics
    bound = _metrics_var.get()
    if bound is not None:
        return bound
    return _process_metrics[0]() if _process_metrics else None


@contextmanager
def bind_metrics(app: Flask) -> Iterator[None]:
    """Count `kfp_call`s made outside a request (e.g. a tracker thread) in `app`'s metrics."""
    token = _metrics_var.set(app_metrics(app))
    try:
        yield
    finally:
        _metrics_var.reset(token)


@contextmanager
def kfp_call(operation: str) -> Iterator[None]:
    """Count and time one KFP call by operation and outcome ("ok" or the error's class name).

    The call is counted in the current app's metrics; outside a request or app context, in
    those bound with `bind_metrics`, else in those of the app installed last in this process.
    Exceptions pass through unchanged.
    """
    started = time.perf_counter()
    outcome = "ok"
    try:
        yield
    except BaseException as error:
        outcome = type(error).__name__
        raise
    finally:
        elapsed = time.perf_counter() - started
        metrics = _active_metrics()
        if metrics is not None:
            metrics.kfp_calls.labels(operation, outcome).inc()
            metrics.kfp_call_seconds.labels(operation, outcome).observe(elapsed)
        log.debug(
            "kfp call %s: %s in %.1f ms",
            operation,
            outcome,
            elapsed * 1000,
            extra={"kfp_operation": operation, "outcome": outcome},
        )


class TrackerStats(Protocol):
    """What metrics read of run tracking."""

    def stats(self) -> dict[str, Any]:
        """Runs by notification status, and whether this process is the tracking leader."""
        ...


def _scrape_registry(metrics: Metrics, tracker: TrackerStats | None) -> CollectorRegistry:
    """The registry to expose: this process's, or every worker's in multiprocess mode."""
    if not os.environ.get(MULTIPROC_ENV):
        return metrics.registry
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    if tracker is not None:
        registry.register(TrackerCollector(tracker.stats))
    return registry


# ---------------------------------------------------------------- install


def _path_with_query() -> str:
    """The request's path and raw query string, for the access log."""
    query = request.query_string.decode("latin-1")
    return f"{request.path}?{query}" if query else request.path


def install(app: Flask, tracker: TrackerStats | None = None) -> None:
    """Add request ids, access logs, request metrics and GET /metrics to `app`."""
    metrics = Metrics.create()
    app.extensions[METRICS_EXTENSION] = metrics
    _process_metrics[:] = [weakref.ref(metrics)]
    if tracker is not None:
        metrics.registry.register(TrackerCollector(tracker.stats))

    @app.before_request
    def _start_request() -> None:
        g.request_id = _accepted_request_id(request.headers.get(REQUEST_ID_HEADER))
        g.request_started = time.perf_counter()

    @app.after_request
    def _finish_request(response: Response) -> Response:
        request_id = g.get("request_id") or new_request_id()
        response.headers[REQUEST_ID_HEADER] = request_id
        started = g.get("request_started")
        elapsed = time.perf_counter() - started if started is not None else 0.0
        endpoint = request.url_rule.rule if request.url_rule is not None else UNMATCHED_ENDPOINT
        method = request.method if request.method in _METHOD_LABELS else OTHER_METHOD
        metrics.requests.labels(endpoint, method, str(response.status_code)).inc()
        metrics.request_seconds.labels(endpoint, method).observe(elapsed)
        access_log.info(
            '%s %s %s %.1fms "%s"',
            request.method,
            _path_with_query(),
            response.status_code,
            elapsed * 1000,
            request.headers.get("User-Agent", "-"),
            extra={
                "method": request.method,
                "path": request.path,
                "endpoint": endpoint,
                "status": response.status_code,
                "duration_ms": round(elapsed * 1000, 3),
                "remote_addr": request.remote_addr,
                "request_id": request_id,
            },
        )
        return response

    def _metrics_view() -> Response:
        body = generate_latest(_scrape_registry(metrics, tracker))
        return Response(body, status=200, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.add_url_rule("/metrics", "metrics", _metrics_view, methods=["GET"])
