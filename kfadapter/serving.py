"""Serve a WSGI app from a background thread: for `kfadapter dev` and for tests."""

from __future__ import annotations

import json
import re
import threading
from http import HTTPStatus
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server


def protocol_error_body(status: int, message: str) -> bytes:
    """The JSON answer to a request rejected before it reaches the app (both error styles:
    the adapter's {"status", "message"} and KFP's {"code", "error"})."""
    body = {"status": status, "message": message, "code": status, "error": message}
    return json.dumps(body).encode("utf-8")


_SECRET_QUERY = re.compile(r"([?&](?:token|password)=)[^&\s]*", re.IGNORECASE)


class JsonErrorRequestHandler(WSGIRequestHandler):
    """Werkzeug's handler, answering malformed requests (414, 400, ...) in JSON, not HTML,
    and logging request lines without the secrets a query may carry (the web UI's
    `/?token=`)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path, line = getattr(self, "path", None), self.requestline
        if path is not None:
            self.path = _SECRET_QUERY.sub(r"\1***", path)
        self.requestline = _SECRET_QUERY.sub(r"\1***", line)
        try:
            super().log_request(code, size)
        finally:
            if path is not None:
                self.path = path
            self.requestline = line

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "Error"
        text = message or phrase
        self.log_error("code %d, message %s", code, text)
        self.send_response(code, phrase)
        self.send_header("Connection", "close")
        body = b""
        if code >= 200 and code not in (204, 304):
            body = protocol_error_body(code, text)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)


# How often the serving loop looks for a stop request: stop() waits up to this long.
POLL_INTERVAL = 0.05


class ServerThread:
    """A threaded Werkzeug server on host:port (port 0 picks a free one), in a daemon thread."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server: BaseWSGIServer = make_server(
            host, port, app, threaded=True, request_handler=JsonErrorRequestHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": POLL_INTERVAL},
            name=f"http-{self.port}",
            daemon=True,
        )

    @property
    def host(self) -> str:
        return self._server.server_address[0]

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ServerThread:
        """Serve in the background; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (within POLL_INTERVAL of the call)."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
