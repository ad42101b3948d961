"""Fixtures shared by the tests.

End-to-end (marked `e2e`): real servers on free loopback ports. The embedded KFP server
(`local_kfp`) with a recording proxy in front (`kfp_proxy`), the adapter over HTTP
(`adapter`, `tracked_adapter`), the test pipelines compiled and uploaded (`compiled`,
`uploaded`), a receiver standing in for the TM (`tm`, `receiver`) and a tracking store
in a temporary directory (`store`); a real PostgreSQL server for the session (`postgres`,
tests/postgres_support.py) and a fresh database on it (`pg_url`).

Fast tier: the adapter's app in process (`fake_kfp`, `fast_app`, `fast_client`), with an
in-process KFP fake (tests/fake_kfp.py) behind the `KfpClient` protocol.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from kfadapter.app import create_app
from kfadapter.settings import Settings
from kfadapter.tracking.store import SqliteTrackingStore
from tests.adapter_support import Adapter, RecordingProxy, serve_adapter, tm_upload, unique
from tests.fake_kfp import FakeKfp
from tests.pipelines import compile_pipeline
from tests.postgres_support import PostgresServer
from tests.support import free_port
from tests.tracking_support import TmReceiver

# ---------------------------------------------------------------------- end to end


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


@pytest.fixture(scope="session")
def kfp_proxy(local_kfp) -> Iterator[RecordingProxy]:
    """A RecordingProxy in front of the session's embedded KFP server."""
    proxy = RecordingProxy(local_kfp.url).start()
    yield proxy
    proxy.stop()


def _adapter_settings(proxy: RecordingProxy, data_dir: Path, **settings: object) -> Settings:
    """Settings of an adapter talking to the embedded KFP server through the proxy."""
    return Settings(
        kfp_endpoint=proxy.url + "/pipeline", data_dir=data_dir, kfp_timeout=30.0, **settings
    )


@pytest.fixture(scope="session")
def adapter(kfp_proxy, tmp_path_factory) -> Iterator[Adapter]:
    """The adapter (tracking off) over real HTTP, talking to the embedded KFP via the proxy."""
    data_dir = tmp_path_factory.mktemp("adapter")
    settings = _adapter_settings(
        kfp_proxy, data_dir, tracking_enabled=False, max_upload_bytes=256 * 1024
    )
    with serve_adapter(settings, kfp_proxy) as served:
        yield served


@pytest.fixture(scope="session")
def tracked_adapter(kfp_proxy, tmp_path_factory) -> Iterator[Adapter]:
    """The adapter with run tracking on (notifications go to a port nobody listens on)."""
    tracking = {"poll_interval": 0.2, "notify_timeout": 0.5, "trainingmgr_host": "127.0.0.1"}
    settings = _adapter_settings(
        kfp_proxy,
        tmp_path_factory.mktemp("tracked-adapter"),
        tracking_enabled=True,
        trainingmgr_port=free_port(),
        **tracking,
    )
    with serve_adapter(settings, kfp_proxy) as served:
        yield served


@pytest.fixture(scope="session")
def uploaded(adapter, compiled) -> dict[str, str]:
    """Every test pipeline uploaded through the adapter under a unique name: key -> name."""
    names = {}
    for key, path in compiled.items():
        name = unique(key.replace("_", "-"))
        answer = tm_upload(adapter, name, path, description=f"{key} for tests")
        assert answer.status_code == 200, answer.text
        names[key] = name
    return names


@pytest.fixture(scope="module")
def tm() -> Iterator[TmReceiver]:
    """A TM receiver on a free port for the test module."""
    receiver = TmReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def receiver(tm: TmReceiver) -> Iterator[TmReceiver]:
    """The module's receiver, up and answering 200 with nothing received, during the test
    and again after it (a test may stop it or change its answer)."""
    tm.reset()
    yield tm
    tm.reset()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteTrackingStore]:
    """A tracking store in the test's tmp_path, closed afterwards."""
    tracking_store = SqliteTrackingStore.in_dir(tmp_path)
    yield tracking_store
    tracking_store.close()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the session (initdb + pg_ctl in a temporary directory)."""
    server = PostgresServer().start()
    yield server
    server.destroy()


@pytest.fixture
def pg_url(postgres: PostgresServer) -> str:
    """The URL of a new, empty database on the session's PostgreSQL server."""
    return postgres.create_database()


# ---------------------------------------------------------------------- fast tier


@pytest.fixture
def fake_kfp() -> FakeKfp:
    """An in-process KFP: pipelines, experiments and runs in dicts, calls recorded."""
    return FakeKfp()


@pytest.fixture
def fast_settings(tmp_path: Path) -> Settings:
    """Settings of an in-process adapter (tracking off, a small upload limit)."""
    return Settings(
        kfp_endpoint="http://kfp.invalid/pipeline",
        data_dir=tmp_path,
        tracking_enabled=False,
        max_upload_bytes=64 * 1024,
    )


@pytest.fixture
def fast_app(fast_settings: Settings, fake_kfp: FakeKfp) -> Flask:
    """The adapter's app over the KFP fake, as create_app builds it."""
    return create_app(fast_settings, kfconnect=fake_kfp)


@pytest.fixture
def fast_client(fast_app: Flask) -> FlaskClient:
    """A client of the in-process app: requests go through the whole WSGI stack."""
    return fast_app.test_client()
