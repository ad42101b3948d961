"""Tiny wheels built in the test, and a package index on a free loopback port that serves them.

Wheels are built with ``uv build`` and uv's own build backend (``uv_build``), which uv runs
directly, with no network. The index is a PEP 503 "simple" index: ``http.server``'s directory
listing of ``ROOT/simple/<name>/`` is exactly the page of links an installer reads.
"""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kfadapter.localkfp.environments.installers import find_uv


def uv_executable() -> str:
    """The uv the project pins (``uv`` package in the venv)."""
    found = find_uv()
    assert found is not None, "uv is in requirements.txt; install it into the venv"
    return found[0]


def build_wheel(
    output: Path,
    name: str,
    version: str = "0.1.0",
    body: str = "",
    dependencies: tuple[str, ...] = (),
) -> Path:
    """Build ``name-version-py3-none-any.whl`` into ``output``; its module holds ``body``
    (default: ``VERSION = "<version>"``)."""
    module = name.replace("-", "_")
    source = output / f".src-{name}-{version}"
    shutil.rmtree(source, ignore_errors=True)
    (source / "src" / module).mkdir(parents=True)
    (source / "src" / module / "__init__.py").write_text(body or f'VERSION = "{version}"\n')
    listed = ", ".join(f'"{dependency}"' for dependency in dependencies)
    (source / "pyproject.toml").write_text(
        "[project]\n"
        f'name = "{name}"\nversion = "{version}"\nrequires-python = ">=3.8"\n'
        f"dependencies = [{listed}]\n"
        '[build-system]\nrequires = ["uv_build>=0.13.9,<0.14"]\nbuild-backend = "uv_build"\n'
    )
    subprocess.run(
        [
            uv_executable(),
            "build",
            "--offline",
            "--quiet",
            "--wheel",
            str(source),
            "-o",
            str(output),
        ],
        check=True,
        capture_output=True,
    )
    shutil.rmtree(source)
    return output / f"{module}-{version}-py3-none-any.whl"


def add_to_index(root: Path, wheel: Path) -> None:
    """Put a wheel under ``root/simple/<normalized name>/``."""
    name = re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower()
    directory = root / "simple" / name
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy2(wheel, directory / wheel.name)


class PackageIndex:
    """A simple index served from ``root`` over HTTP, recording the paths it was asked for.

    ``stall(pattern)`` makes matching requests wait until ``release()``.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[str] = []
        self._stalled: re.Pattern[str] | None = None
        self._release = threading.Event()
        self._server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/simple"

    def stall(self, pattern: str) -> None:
        self._stalled = re.compile(pattern)
        self._release.clear()

    def release(self) -> None:
        self._release.set()

    def count(self, path: str) -> int:
        """How many requests were for exactly ``path``."""
        return self.requests.count(path)

    def requested(self, fragment: str) -> int:
        """How many requests had ``fragment`` in their path."""
        return sum(fragment in path for path in self.requests)

    def start(self) -> PackageIndex:
        index = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                index.requests.append(self.path)
                if index._stalled is not None and index._stalled.search(self.path):
                    index._release.wait(60)
                super().do_GET()

            def log_message(self, *args: object) -> None:
                pass

        handler = functools.partial(Handler, directory=str(self.root))
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@contextmanager
def package_index(root: Path) -> Iterator[PackageIndex]:
    """A started PackageIndex for ``root`` (stopped on exit)."""
    index = PackageIndex(root).start()
    try:
        yield index
    finally:
        index.stop()


def closed_port_url() -> str:
    """An index URL on a loopback port nothing listens on (connections are refused)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/simple"
