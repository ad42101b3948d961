"""Helpers of the adapter's end-to-end tests: real servers on free loopback ports.

- `ScriptedKfp`: a raw-socket HTTP server whose answers a test scripts (status codes,
  slow answers, dropped connections) to show the adapter's fault handling.
- `RecordingProxy`: forwards every request to the embedded KFP server and records it, so
  tests can count the adapter's KFP calls and see the headers it sends.
- `Adapter`, `serve_adapter`: the adapter served over HTTP (the fixtures `adapter` and
  `tracked_adapter` in conftest.py use them); `tm_upload` uploads the TM's way.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from werkzeug.wrappers import Request, Response

from kfadapter import errors
from kfadapter.app import create_app
from kfadapter.serving import ServerThread
from kfadapter.settings import Settings
from kfadapter.tracking.watcher import FINAL_STATES

# What each HTTP status of a KFP error answer becomes: (KFP status, typed error, status
# the adapter answers with). The mapping's one table, for its unit and end-to-end tests.
KFP_ERROR_STATUSES = [
    (400, errors.BadRequest, 400),
    (404, errors.NotFound, 404),
    (409, errors.Conflict, 409),
    (401, errors.KfpError, 502),
    (403, errors.KfpError, 502),
    (500, errors.KfpError, 502),
    (503, errors.KfpError, 502),
]


def unique(prefix: str) -> str:
    """A name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------------- scripted KFP


@dataclass
class Answer:
    """What ScriptedKfp does with one request."""

    status: int = 200
    body: Any = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False


@dataclass
class Seen:
    """One request ScriptedKfp received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""


class ScriptedKfp:
    """An HTTP server on a free port answering each request as `script(seen)` says."""

    def __init__(self, script: Callable[[Seen], Answer]) -> None:
        self.script = script
        self.requests: list[Seen] = []
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.2)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def start(self) -> ScriptedKfp:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        self._listener.close()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(connection,), daemon=True).start()

    def _handle(self, connection: socket.socket) -> None:
        with connection:
            connection.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = connection.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
            length = int(headers.get("Content-Length", "0") or 0)
            while len(rest) < length:
                chunk = connection.recv(65536)
                if not chunk:
                    break
                rest += chunk
            seen = Seen(method, path, headers, rest)
            self.requests.append(seen)
            answer = self.script(seen)
            if answer.delay:
                time.sleep(answer.delay)
            if answer.drop:
                return
            body = answer.body if isinstance(answer.body, bytes) else json.dumps(answer.body)
            body = body.encode() if isinstance(body, str) else body
            reason = "OK" if answer.status < 400 else "Error"
            header_lines = {"Content-Type": "application/json", **answer.headers}
            response = f"HTTP/1.1 {answer.status} {reason}\r\n"
            for key, value in header_lines.items():
                response += f"{key}: {value}\r\n"
            response += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            with contextlib.suppress(OSError):  # the client may have given up
                connection.sendall(response.encode("latin-1") + body)


# ---------------------------------------------------------------------- recording proxy


class RecordingProxy:
    """Forwards every request to `target` and records (method, path, headers)."""

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.calls: list[Seen] = []
        self._lock = threading.Lock()
        self._session = requests.Session()
        self._server = ServerThread(self._app)

    @property
    def url(self) -> str:
        return self._server.url

    def start(self) -> RecordingProxy:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def count(self, method: str, path_part: str, since: int = 0) -> int:
        """How many calls since mark `since` had this method and path fragment."""
        with self._lock:
            calls = self.calls[since:]
        return sum(1 for c in calls if c.method == method and path_part in c.path)

    def mark(self) -> int:
        """A position in the call record, for `count(..., since=mark)`."""
        with self._lock:
            return len(self.calls)

    def since(self, mark: int) -> list[Seen]:
        with self._lock:
            return list(self.calls[mark:])

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        with self._lock:
            self.calls.append(Seen(request.method, request.full_path, dict(request.headers)))
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host",)}
        upstream = self._session.request(
            request.method,
            self.target + request.full_path.rstrip("?"),
            headers=headers,
            data=request.get_data(),
            allow_redirects=False,
            timeout=60,
        )
        excluded = {"content-encoding", "transfer-encoding", "connection", "content-length"}
        response = Response(
            upstream.content,
            status=upstream.status_code,
            headers=[(k, v) for k, v in upstream.headers.items() if k.lower() not in excluded],
        )
        return response(environ, start_response)


# ---------------------------------------------------------------------- the adapter


@dataclass
class Adapter:
    """The adapter served over HTTP."""

    url: str
    app: Any
    settings: Settings
    proxy: RecordingProxy

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.url + path, timeout=60, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.post(self.url + path, timeout=60, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.delete(self.url + path, timeout=60, **kwargs)

    @property
    def tracker(self) -> Any:
        return self.app.extensions["kfadapter"].tracker

    def kfp_calls(self, method: str, path: str, status: int = 200, **kwargs: Any) -> list[str]:
        """Serve one request (it must answer `status`) and list the KFP calls it made, sorted, as
        "METHOD /path" with the query string and the `/pipeline/apis/v2beta1` prefix cut."""
        request_id = unique("count")
        mark = self.proxy.mark()
        answer = self.app.test_client().open(
            path, method=method, headers={"X-Request-ID": request_id}, **kwargs
        )
        assert answer.status_code == status, answer.json
        return sorted(
            f"{c.method} {c.path.split('?')[0].removeprefix('/pipeline/apis/v2beta1')}"
            for c in self.proxy.since(mark)
            if c.headers.get("X-Request-Id") == request_id
        )


@contextlib.contextmanager
def serve_adapter(settings: Settings, proxy: RecordingProxy) -> Iterator[Adapter]:
    """The adapter built from `settings`, served over HTTP on a free port while the block
    runs; then stopped, with its run tracker if it has one."""
    app = create_app(settings)
    server = ServerThread(app).start()
    adapter = Adapter(server.url, app, settings, proxy)
    try:
        yield adapter
    finally:
        server.stop()
        if adapter.tracker is not None:
            adapter.tracker.stop()


def tm_upload(adapter: Adapter, name: str, path: Path, description: str = "") -> requests.Response:
    """Upload exactly as the TM does: multipart part `file` with the filename `file`."""
    with open(path, "rb") as handle:
        return adapter.post(
            f"/pipelineIds/{name}",
            files={"file": ("file", handle)},
            data={"description": description},
        )


def wait_for_state(
    adapter: Adapter, run_id: str, states: AbstractSet[str] = FINAL_STATES, timeout: float = 120
) -> dict[str, Any]:
    """Poll GET /runs/<id> until the run is in one of `states`; the run's JSON."""
    deadline = time.monotonic() + timeout
    while True:
        run = adapter.get(f"/runs/{run_id}").json()
        if run.get("state") in states:
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} still {run.get('state')} after {timeout} s")
        time.sleep(0.2)
