"""`kfadapter serve`: the adapter under gunicorn, configured from Settings.

gthread workers (settings.workers processes x settings.threads threads); each worker
builds its own app after the fork. SIGTERM makes gunicorn stop accepting connections and
lets requests in flight finish (up to settings.graceful_timeout seconds).

Metrics: prometheus_client's multiprocess mode. Each worker writes its metric values to
files in PROMETHEUS_MULTIPROC_DIR and `GET /metrics`, whichever worker answers it, adds up
every worker's values. The directory is the caller's when set, else a private temporary
one removed on exit.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from gunicorn import util as gunicorn_util
from gunicorn.app.base import BaseApplication

from kfadapter.serving import protocol_error_body
from kfadapter.settings import Settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_CREATED_DIR_ENV = "KFADAPTER_METRICS_DIR_CREATED"

log = logging.getLogger(__name__)


def prepare_multiprocess_metrics(settings: Settings, environ: MutableMapping[str, str]) -> Path:
    """Point PROMETHEUS_MULTIPROC_DIR at an empty directory before any worker starts.

    Must run before prometheus_client is imported in this process (it reads the variable
    at import). Stale value files of an earlier run in a given directory are removed.
    """
    given = environ.get(MULTIPROC_ENV) or environ.get(MULTIPROC_ENV.lower())
    if given:
        directory = Path(given)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink(missing_ok=True)
    else:
        directory = Path(tempfile.mkdtemp(prefix="kfadapter-metrics-", dir=memory_tmp_dir()))
        environ[_CREATED_DIR_ENV] = str(directory)
    environ[MULTIPROC_ENV] = str(directory)
    return directory


def memory_tmp_dir() -> str | None:
    """/dev/shm when it is a writable directory, else None (the system's temp dir).

    Gunicorn's worker heartbeat files and the metrics files go there: in a container /tmp
    may be on the overlay disk (heartbeats then block workers, see gunicorn's FAQ) or
    read-only (readOnlyRootFilesystem), while /dev/shm is a writable tmpfs.
    """
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None


def _child_exit(server: Any, worker: Any) -> None:
    """Gunicorn hook: drop a dead worker's live gauges from the metrics."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def _on_exit(server: Any) -> None:
    """Gunicorn hook: remove the metrics directory `prepare_multiprocess_metrics` created."""
    created = os.environ.get(_CREATED_DIR_ENV)
    if created and created == os.environ.get(MULTIPROC_ENV):
        shutil.rmtree(created, ignore_errors=True)


def _logconfig(settings: Settings) -> dict[str, Any]:
    """Gunicorn's own log lines on stdout in the adapter's format (text or JSON)."""
    formatter = (
        {"()": "kfadapter.observability.JsonFormatter"}
        if settings.log_format == "json"
        else {"format": "%(asctime)s %(levelname)s %(name)s [-] %(message)s"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"adapter": formatter},
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "formatter": "adapter",
                "stream": "ext://sys.stdout",
            }
        },
        # The root logger gets its handler from configure_logging in each worker.
        "root": {"level": settings.log_level, "handlers": []},
        "loggers": {
            "gunicorn.error": {
                "level": settings.log_level,
                "handlers": ["stdout"],
                "propagate": False,
            },
            "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
        },
    }


def gunicorn_options(settings: Settings) -> dict[str, Any]:
    """Gunicorn settings derived from the adapter's settings."""
    return {
        "bind": [settings.bind_address],
        "workers": settings.workers,
        "worker_class": "gthread",
        "threads": settings.threads,
        "timeout": settings.worker_timeout,
        "graceful_timeout": settings.graceful_timeout,
        "keepalive": 5,
        "worker_tmp_dir": memory_tmp_dir(),
        "accesslog": None,  # the adapter writes its own access log with request ids
        "logconfig_dict": _logconfig(settings),
        "loglevel": settings.log_level.lower(),
        "proc_name": "kfadapter",
        # gunicorn's control socket (~/.gunicorn/gunicorn.ctl) would be shared by every
        # server of a user and needs a writable home: not used.
        "control_socket_disable": True,
        "child_exit": _child_exit,
        "on_exit": _on_exit,
    }


def write_json_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's answer to a request it rejects itself (414, 431, bad request line...),
    in the adapter's JSON error shape instead of gunicorn's HTML page."""
    body = protocol_error_body(status_int, mesg or reason)
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    gunicorn_util.write_nonblock(sock, head.encode("latin-1") + body)


class AdapterApplication(BaseApplication):
    """Gunicorn application serving `create_app(settings)` in every worker."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        for key, value in gunicorn_options(self.settings).items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from kfadapter import observability
        from kfadapter.app import create_app

        observability.configure_logging(self.settings)
        # gunicorn writes its own protocol-level rejections through util.write_error; this
        # worker process answers them in JSON, like every other error.
        gunicorn_util.write_error = write_json_error
        return create_app(self.settings)
