"""Fixtures of the embedded KFP server's tests: servers on free ports, a fake executor."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kfadapter.localkfp.server import LocalKfpServer

# The smallest pipeline spec the server accepts: one with no tasks.
SPEC = {
    "pipelineInfo": {"name": "tiny"},
    "root": {"dag": {"tasks": {}}},
    "schemaVersion": "2.1.0",
    "sdkVersion": "kfp-2.17.0",
}


class HeldExecutor:
    """A RunExecutor stand-in: records submissions, keeps runs where tests put them."""

    def __init__(self, data_dir: Path, max_concurrent_runs: int, on_update: Callable) -> None:
        self.data_dir = data_dir
        self.on_update = on_update
        self.submitted: list[tuple[str, dict, dict[str, Any]]] = []
        self.retried: list[str] = []  # runs submitted again by a retry
        self.active: set[str] = set()
        self.lock = threading.Lock()

    def submit(
        self, run_id: str, pipeline_spec: dict, parameters: dict[str, Any], *, retry: bool = False
    ) -> None:
        with self.lock:
            self.submitted.append((run_id, pipeline_spec, parameters))
            self.retried += [run_id] if retry else []
            self.active.add(run_id)

    def finish(self, run_id: str, state: str, error: str | None = None) -> None:
        """Report a final state for a run, as the real executor would."""
        from datetime import UTC, datetime

        from kfadapter.localkfp.execution import RunUpdate

        with self.lock:
            self.active.discard(run_id)
        now = datetime.now(UTC)
        self.on_update(
            RunUpdate(
                run_id=run_id,
                state=state,
                task_details=[],
                error=error,
                finished_at=now,
                started_at=now,
            )
        )

    def terminate(self, run_id: str) -> bool:
        with self.lock:
            if run_id not in self.active:
                return False
        self.finish(run_id, "CANCELED")
        return True

    def log_path(self, run_id: str, node_id: str) -> Path | None:
        return None

    def shutdown(self) -> None:
        pass


@pytest.fixture(autouse=True)
def _quiet_kfp_client_warning() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module="kfp")
        yield


@pytest.fixture
def make_server(tmp_path_factory) -> Iterator[Callable[..., LocalKfpServer]]:
    """Start LocalKfpServers on free ports (stopped at the end of the test)."""
    started: list[LocalKfpServer] = []

    def make(data_dir: Path | None = None, **options: Any) -> LocalKfpServer:
        directory = data_dir or tmp_path_factory.mktemp("local-kfp")
        server = LocalKfpServer(directory, host="127.0.0.1", port=0, **options)
        server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def held_server(tmp_path_factory) -> Iterator[LocalKfpServer]:
    """A module's server whose runs never execute (HeldExecutor)."""
    server = LocalKfpServer(
        tmp_path_factory.mktemp("local-kfp-held"),
        port=0,
        executor_factory=HeldExecutor,
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def real_server(tmp_path_factory) -> Iterator[LocalKfpServer]:
    """A module's server whose runs really execute with kfp.local."""
    server = LocalKfpServer(
        tmp_path_factory.mktemp("local-kfp-real"), port=0, max_concurrent_runs=2
    )
    server.start()
    yield server
    server.stop()


def upload_spec(
    server: LocalKfpServer,
    name: str,
    spec: dict[str, Any] | None = None,
    *,
    pipeline_id: str | None = None,
    **params: str,
) -> dict[str, Any]:
    """Upload a spec as KFP takes one, a file named pipeline.yaml: a new pipeline `name`, or
    with `pipeline_id` a version `name` of that pipeline; the JSON answer (asserted 200)."""
    import requests
    import yaml

    path = "upload_version" if pipeline_id else "upload"
    query = {"name": name, **({"pipelineid": pipeline_id} if pipeline_id else {}), **params}
    response = requests.post(
        f"{server.url}/apis/v2beta1/pipelines/{path}",
        params=query,
        files={"uploadfile": ("pipeline.yaml", yaml.safe_dump(spec or SPEC))},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json()


def client_for(server: LocalKfpServer, prefix: str = "", **kwargs: Any):
    """An unmodified kfp.Client for the server (prefix "" or "/pipeline")."""
    import kfp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return kfp.Client(host=server.url + prefix, **kwargs)
