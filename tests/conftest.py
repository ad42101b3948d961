"""Fixtures shared by every test: real servers on free loopback ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pipelines import compile_pipeline


@pytest.fixture(scope="session")
def compiled(tmp_path_factory) -> dict[str, Path]:
    """Every test pipeline, compiled once: name -> YAML path."""
    from tests.pipelines import PIPELINES

    directory = tmp_path_factory.mktemp("pipelines")
    return {name: compile_pipeline(name, directory) for name in PIPELINES}


@pytest.fixture(scope="session")
def local_kfp(tmp_path_factory) -> Iterator[object]:
    """One embedded KFP server for the session, on a free port."""
    from kfadapter.localkfp.server import LocalKfpServer

    server = LocalKfpServer(
        data_dir=tmp_path_factory.mktemp("local-kfp"),
        host="127.0.0.1",
        port=0,
        max_concurrent_runs=2,
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def kfp_client(local_kfp):
    """The unmodified kfp.Client pointed at the embedded server."""
    import kfp

    return kfp.Client(host=local_kfp.url)
