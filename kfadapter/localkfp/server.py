"""The embedded KFP server: store, executor, scheduler and HTTP app, started and stopped as one."""

from __future__ import annotations

import argparse
import fcntl
import logging
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO
from urllib.parse import quote

from kfadapter.localkfp.app import create_app
from kfadapter.localkfp.auth import AuthConfig
from kfadapter.localkfp.execution import Executor, ExecutorFactory, RunUpdate, TaskOptions
from kfadapter.localkfp.scheduler import Scheduler
from kfadapter.localkfp.services import KfpServices
from kfadapter.localkfp.sources import SYSTEM, Sources
from kfadapter.localkfp.storage import Store
from kfadapter.localkfp.task_options import add_arguments, from_arguments
from kfadapter.serving import ServerThread
from kfadapter.sqlitedb import StoreError

log = logging.getLogger(__name__)

DEFAULT_DATA_DIR = "./kfadapter-data/local-kfp"


def _executor_with(task_options: TaskOptions) -> ExecutorFactory:
    """Builds the run executor (a child process per run) with these task options."""

    def make_executor(
        data_dir: Path, max_concurrent_runs: int, on_update: Callable[[RunUpdate], None]
    ) -> Executor:
        from kfadapter.localkfp.executor import RunExecutor

        return RunExecutor(data_dir, max_concurrent_runs, on_update, task_options)

    return make_executor


class DataDirInUse(OSError):
    """Another local KFP server already serves this data dir."""


def _lock_data_dir(data_dir: Path) -> IO[bytes]:
    """An exclusive lock on DATA_DIR/.lock, held while the server runs."""
    handle = open(data_dir / ".lock", "wb")  # noqa: SIM115 (held open until stop)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise DataDirInUse(
            f"the data dir {data_dir} is in use by another local KFP server"
        ) from None
    return handle


class LocalKfpServer:
    """A KFP 2.17-compatible API server on host:port, backed by SQLite under data_dir.

    executor_factory(data_dir, max_concurrent_runs, on_update) replaces the real
    RunExecutor (tests use it to hold runs in a given state without executing them);
    `task_options` says how the real one runs tasks (environments, tasks at once);
    `sources` replaces the system clock and the random ids of new resources.
    `local_extras` turns on the deliberate differences from KFP 2.17 that help on a laptop
    (a failed run's `error` says why; docs/local-kfp.md "Deliberate differences"); keep it
    off wherever the server stands in for a cluster.
    """

    def __init__(
        self,
        data_dir: Path | str,
        host: str = "127.0.0.1",
        port: int = 8888,
        max_concurrent_runs: int = 2,
        auth_token: str | None = None,
        dex_user: str | None = None,
        dex_password: str | None = None,
        scheduler_interval: float = 1.0,
        dex_session_ttl: float | None = None,
        *,
        executor_factory: ExecutorFactory | None = None,
        sources: Sources = SYSTEM,
        task_options: TaskOptions | None = None,
        local_extras: bool = False,
    ) -> None:
        if max_concurrent_runs < 1:
            raise ValueError("max_concurrent_runs must be at least 1")
        if (dex_user is None) != (dex_password is None):
            raise ValueError("dex_user and dex_password go together")
        if dex_session_ttl is not None and dex_user is None:
            raise ValueError("dex_session_ttl needs dex_user and dex_password")
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port
        self.max_concurrent_runs = max_concurrent_runs
        self.auth = AuthConfig(
            token=auth_token,
            dex_user=dex_user,
            dex_password=dex_password,
            session_ttl=dex_session_ttl,
        )
        self.scheduler_interval = scheduler_interval
        self.task_options = task_options or TaskOptions()
        self._executor_factory = executor_factory or _executor_with(self.task_options)
        self._sources = sources
        self.local_extras = local_extras
        self.store: Store | None = None
        self.services: KfpServices | None = None
        self._executor: Executor | None = None
        self._scheduler: Scheduler | None = None
        self._http: ServerThread | None = None
        self._lock_file: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """http://host:port, with the real port when started on port 0."""
        if self._http is None:
            return f"http://{self.host}:{self.port}"
        return self._http.url

    @property
    def ui_url(self) -> str:
        """Where a browser opens the web UI (the token in it under --auth-token: it logs in
        and is dropped from the address, see auth.py)."""
        return f"{self.url}/" + (
            f"?token={quote(self.auth.token, safe='')}" if self.auth.token else ""
        )

    def start(self) -> LocalKfpServer:
        """Lock the data dir, bind the port, then start the executor, scheduler and HTTP server.

        Raises DataDirInUse when another server uses the data dir, StoreError when its store
        is of a newer release, and OSError when the port cannot be bound; nothing is changed
        in the store in any of these cases.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_file = _lock_data_dir(self.data_dir)
        try:
            self.store = Store(self.data_dir / "kfp.sqlite3")
            self.services = KfpServices.over(
                self.store, self._sources, local_extras=self.local_extras
            )
            try:
                app = create_app(self.services, self.auth, self.data_dir)
                http = ServerThread(app, self.host, self.port)
            except SystemExit:  # werkzeug exits when it cannot bind
                raise OSError(f"cannot listen on {self.host}:{self.port}") from None
        except BaseException:
            self._release()
            raise
        runs = self.services.runs
        failed = runs.fail_interrupted_runs()
        if failed:
            log.warning("%d run(s) left active by a previous server were marked FAILED", failed)
        self._executor = self._executor_factory(
            self.data_dir, self.max_concurrent_runs, runs.apply_run_update
        )
        runs.attach_executor(self._executor)
        self._scheduler = Scheduler(
            self.services.recurring_runs, interval=self.scheduler_interval
        ).start()
        self._http = http.start()
        log.info("local KFP server listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving, stop the scheduler, kill active runs, close the store."""
        if self._http is not None:
            self._http.stop()
        if self._scheduler is not None:
            self._scheduler.stop()
        if self._executor is not None:
            self._executor.shutdown()
        self._http = None
        self._scheduler = None
        self._executor = None
        self._release()

    def _release(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None
        if self._lock_file is not None:
            self._lock_file.close()  # closing drops the flock
            self._lock_file = None

    def __enter__(self) -> LocalKfpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def build_parser() -> argparse.ArgumentParser:
    """The `kfadapter local-kfp` command line."""
    parser = argparse.ArgumentParser(
        prog="kfadapter local-kfp",
        description=(
            "Serve the Kubeflow Pipelines v2beta1 REST API locally; runs really execute, "
            "each task in an environment of its own."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8888, help="port (0 picks a free one)")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="where state and logs go")
    parser.add_argument("--max-concurrent-runs", type=int, default=2, help="runs at once")
    parser.add_argument("--auth-token", default=None, help="require Authorization: Bearer TOKEN")
    parser.add_argument("--dex-user", default=None, help="emulate a Dex login with this user")
    parser.add_argument("--dex-password", default=None, help="the Dex user's password")
    parser.add_argument(
        "--dex-session-ttl",
        type=float,
        default=None,
        metavar="SECONDS",
        help="Dex sessions expire after this many seconds (default: never)",
    )
    add_arguments(parser)
    parser.add_argument(
        "--local-extras",
        action="store_true",
        help="deliberate differences from KFP 2.17 that help on a laptop, e.g. a failed "
        "run's error says why (see docs/local-kfp.md); off by default, as on a cluster",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the server until SIGINT/SIGTERM; print its URL first."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:  # the server checks its options; a wrong one is a usage error (exit 2)
        server = LocalKfpServer(
            data_dir=args.data_dir,
            host=args.host,
            port=args.port,
            max_concurrent_runs=args.max_concurrent_runs,
            auth_token=args.auth_token,
            dex_user=args.dex_user,
            dex_password=args.dex_password,
            dex_session_ttl=args.dex_session_ttl,
            task_options=from_arguments(args),
            local_extras=args.local_extras,
        )
    except ValueError as error:
        parser.error(str(error))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    stopping = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            server.start()
        except (DataDirInUse, StoreError) as error:
            print(f"cannot start: {error}", file=sys.stderr)
            return 1
        except OSError as error:
            print(f"cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
            return 1
        try:
            print(f"local KFP server: {server.url}", flush=True)
            print(f"  KFP API: {server.url}/apis/v2beta1/healthz", flush=True)
            print(f"  web UI: {server.ui_url}", flush=True)
            print(f"  data dir: {Path(args.data_dir).resolve()}", flush=True)
            while not stopping.wait(0.5):
                pass
        finally:
            server.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
