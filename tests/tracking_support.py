"""Test helpers for run tracking: a real HTTP receiver standing in for the TM, a fake KFP.

The fixtures `tm` (a receiver per test module), `receiver` (the same, answering 200 with
nothing received yet) and `store` (a SqliteTrackingStore in tmp_path) are in conftest.py.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from kfadapter.serving import ServerThread
from kfadapter.tracking.model import (
    DELIVERED,
    PENDING,
    UNTRACKED,
    WAITING,
    AttemptResult,
    StateUpdate,
    TrackingStore,
)
from tests.support import free_port

NOTIFY_PATH = "/trainingjob/pipelineNotification"


@dataclass
class Received:
    """One notification as the TM would see it."""

    body: Any
    content_type: str | None
    method: str
    path: str


@dataclass
class TmReceiver:
    """A tiny WSGI app on a real port recording every POST; its answer can be changed.

    `status` is the HTTP code it answers; `delay` makes it slow (for time-outs). It can be
    started late (or stopped and started again) on the same port to simulate an outage.
    """

    status: int = 200
    delay: float = 0.0
    port: int = 0
    received: list[Received] = field(default_factory=list)
    _server: ServerThread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if not self.port:
            self.port = free_port()

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def start(self) -> TmReceiver:
        self._server = ServerThread(self, self.host, self.port).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __call__(self, environ: dict, start_response: Callable) -> list[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode(errors="replace")
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            self.received.append(
                Received(
                    body,
                    environ.get("CONTENT_TYPE"),
                    environ["REQUEST_METHOD"],
                    environ.get("PATH_INFO", ""),
                )
            )
            status = self.status
        answer = json.dumps({"status": status}).encode()
        start_response(f"{status} X", [("Content-Type", "application/json")])
        return [answer]

    def reset(self) -> None:
        """Up, answering 200 at once, nothing received."""
        with self._lock:
            self.status, self.delay = 200, 0.0
            self.received.clear()
        if self._server is None:
            self.start()

    def bodies(self) -> list[Any]:
        with self._lock:
            return [item.body for item in self.received]

    def for_run(self, run_id: str) -> list[Any]:
        return [
            body
            for body in self.bodies()
            if isinstance(body, dict) and body.get("run_id") == run_id
        ]


class FakeRunStates:
    """A RunStateSource for unit tests: a dict of states, counting calls, able to fail."""

    def __init__(self) -> None:
        self.states: dict[str, str] = {}
        self.calls: list[list[str]] = []
        self.error: Exception | None = None
        self._lock = threading.Lock()

    def run_states(self, run_ids: Collection[str]) -> dict[str, str]:
        with self._lock:
            self.calls.append(list(run_ids))
            if self.error is not None:
                raise self.error
            return {run_id: self.states[run_id] for run_id in run_ids if run_id in self.states}


def finish_run(store: TrackingStore, run_id: str, status: str, now: float) -> None:
    """Take a WAITING run to notification `status` at time `now` as the watcher and the
    notifier would (WAITING: left as it is)."""
    if status == WAITING:
        return
    if status == UNTRACKED:
        assert store.untrack(run_id, now)
        return
    store.record_poll([StateUpdate(run_id, "SUCCEEDED", final=True, notification_id="n")], now)
    if status != PENDING:
        code = 200 if status == DELIVERED else None
        assert store.record_attempt(AttemptResult(run_id, status, 1, None, code, None), now)
