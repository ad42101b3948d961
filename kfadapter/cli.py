"""The `kfadapter` command: `dev`, `serve`, `migrate-store` and `local-kfp`.

Nothing heavy is imported at module level, so `kfadapter --help` answers at once.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

SAMPLE_PIPELINE_NAME = "add_subtract_multiply"
SAMPLE_PIPELINE_DESCRIPTION = "Sample: adds, subtracts and multiplies numbers (kfadapter dev)"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand except `local-kfp` (delegated whole)."""
    parser = argparse.ArgumentParser(
        prog="kfadapter",
        description="REST adapter between the O-RAN training manager and Kubeflow Pipelines.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    dev = commands.add_parser(
        "dev",
        help="run the embedded KFP server and the adapter together on localhost",
        description=(
            "Start the embedded KFP server and the adapter on localhost, register the "
            "sample pipeline, print URLs and curl lines to try, run until Ctrl-C."
        ),
    )
    dev.add_argument("--host", default="127.0.0.1", help="address both servers bind")
    dev.add_argument("--port", type=int, default=5000, help="adapter port (default 5000)")
    dev.add_argument(
        "--kfp-port", type=int, default=8888, help="embedded KFP server port (default 8888)"
    )
    dev.add_argument(
        "--data-dir",
        type=Path,
        default=Path("kfadapter-data"),
        help="where runs, pipelines and tracking state are kept (default ./kfadapter-data)",
    )
    dev.add_argument(
        "--max-concurrent-runs", type=int, default=2, help="runs executed at once (default 2)"
    )
    dev.add_argument("--no-sample", action="store_true", help="do not register the sample pipeline")
    from kfadapter.localkfp.task_options import add_arguments

    add_arguments(dev)

    serve = commands.add_parser(
        "serve",
        help="run the adapter under gunicorn (production); settings from the environment",
        description=(
            "Run the adapter under gunicorn with settings from the environment "
            "(KFADAPTER_BIND, KFADAPTER_WORKERS, KFADAPTER_THREADS, KFADAPTER_WORKER_TIMEOUT, "
            "KFADAPTER_GRACEFUL_TIMEOUT, ...). Options given here win over the environment. "
            "SIGTERM stops it gracefully: requests in flight finish."
        ),
    )
    serve.add_argument("--bind", help="host:port to listen on (default 0.0.0.0:KF_ADAPTER_PORT)")
    serve.add_argument("--workers", type=int, help="worker processes")
    serve.add_argument("--threads", type=int, help="threads per worker")
    serve.add_argument("--check", action="store_true", help="validate the settings and exit")

    migrate = commands.add_parser(
        "migrate-store",
        help="copy a SQLite tracking store into the PostgreSQL database the settings name",
        description=(
            "Copy every tracked run of a SQLite tracking store (pending notifications "
            "included) into the PostgreSQL database named by KFADAPTER_DATABASE_URL, or "
            "PS_USER, PS_PASSWORD, PS_IP, PS_PORT and KFADAPTER_DATABASE_NAME. Stop the "
            "adapter that uses the SQLite store first. A target that already holds tracked "
            "runs is refused unless --merge is given."
        ),
    )
    migrate.add_argument(
        "--from",
        dest="source",
        type=Path,
        help="the SQLite store: a data dir or its tracking.sqlite3 (default KFADAPTER_DATA_DIR)",
    )
    migrate.add_argument(
        "--merge",
        action="store_true",
        help="copy into a non-empty target, keeping the runs it already has (safe to repeat)",
    )

    commands.add_parser(
        "local-kfp",
        help="run only the embedded KFP server (see `kfadapter local-kfp --help`)",
        add_help=False,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `kfadapter` command; the return value is the process exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] == "local-kfp":
        from kfadapter.localkfp.server import main as local_kfp_main

        return local_kfp_main(args_list[1:])
    parser = build_parser()
    args = parser.parse_args(args_list)
    if args.version:
        from kfadapter import __version__

        print(f"kfadapter {__version__}")
        return EXIT_OK
    if args.command == "dev":
        return run_dev(args)
    if args.command == "serve":
        return run_serve(args)
    if args.command == "migrate-store":
        return run_migrate_store(args)
    parser.print_help()
    return EXIT_USAGE


def _load_settings() -> Any:
    """Settings from the environment, or None after printing what is wrong."""
    from kfadapter.settings import Settings, SettingsError

    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"kfadapter: invalid setting: {error}", file=sys.stderr)
        return None
    return settings


def _wait_for_stop_signal() -> None:
    """Block until SIGINT or SIGTERM."""
    stop = threading.Event()

    def _stop(signum: int, frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# ---------------------------------------------------------------- dev


def run_dev(args: argparse.Namespace) -> int:
    """`kfadapter dev`: embedded KFP server + adapter on localhost until Ctrl-C/SIGTERM."""
    settings = _load_settings()
    if settings is None:
        return EXIT_USAGE
    from kfadapter import observability
    from kfadapter.app import create_app
    from kfadapter.localkfp.server import LocalKfpServer
    from kfadapter.localkfp.task_options import from_arguments
    from kfadapter.serving import ServerThread
    from kfadapter.sqlitedb import StoreError

    data_dir: Path = args.data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = replace(
        settings,
        kfp_token=None,
        kfp_token_file=None,
        kfp_cookie=None,
        kfp_username=None,
        kfp_password=None,
        adapter_port=args.port,
        data_dir=data_dir / "adapter",
        database_url=None,  # dev keeps its tracking store in SQLite under --data-dir
        database_source="",
    )
    observability.configure_logging(settings)
    kfp_server = LocalKfpServer(
        data_dir=data_dir / "local-kfp",
        host=args.host,
        port=args.kfp_port,
        max_concurrent_runs=args.max_concurrent_runs,
        task_options=from_arguments(args),
        local_extras=True,  # a laptop: failed runs show why (docs/local-kfp.md)
    )
    try:
        kfp_server.start()
    except StoreError as error:
        print(f"kfadapter dev: cannot start the KFP server: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as error:
        print(
            f"kfadapter dev: cannot start the KFP server on port {args.kfp_port}: {error}",
            file=sys.stderr,
        )
        kfp_server.stop()
        return EXIT_FAILURE
    app = adapter = None
    try:
        settings = replace(settings, kfp_endpoint=f"{kfp_server.url}/pipeline")
        try:
            app = create_app(settings)
        except StoreError as error:
            print(f"kfadapter dev: cannot start run tracking: {error}", file=sys.stderr)
            return EXIT_FAILURE
        try:
            adapter = ServerThread(app, host=args.host, port=args.port).start()
        except OSError as error:
            print(f"kfadapter dev: cannot listen on port {args.port}: {error}", file=sys.stderr)
            return EXIT_FAILURE
        sample = None if args.no_sample else register_sample(adapter.url)
        print(dev_banner(adapter.url, kfp_server.url, sample, kfp_server.ui_url), flush=True)
        _wait_for_stop_signal()
        print("kfadapter dev: stopping", flush=True)
    finally:
        if adapter is not None:
            adapter.stop()
        _stop_tracker(app)
        kfp_server.stop()
    return EXIT_OK


def _stop_tracker(app: Any) -> None:
    """Stop the run tracker create_app started, if any."""
    tracker = app.extensions["kfadapter"].tracker if app is not None else None
    if tracker is not None:
        tracker.stop()


def sample_pipeline_path() -> Path:
    """The compiled add/subtract/multiply sample shipped with the package."""
    from importlib import resources

    return Path(str(resources.files("kfadapter").joinpath("samples", "add_subtract_multiply.yaml")))


def register_sample(adapter_url: str) -> str | None:
    """Upload the sample pipeline through the adapter unless it is already there."""
    import requests

    response = requests.get(f"{adapter_url}/pipelineIds/{SAMPLE_PIPELINE_NAME}", timeout=30)
    if response.status_code == 200:
        return SAMPLE_PIPELINE_NAME
    try:
        path = sample_pipeline_path()
        content = path.read_bytes()
    except FileNotFoundError:
        print("kfadapter dev: sample pipeline not found in the package", file=sys.stderr)
        return None
    response = requests.post(
        f"{adapter_url}/pipelineIds/{SAMPLE_PIPELINE_NAME}",
        files={"file": ("file", content, "application/x-yaml")},
        data={"description": SAMPLE_PIPELINE_DESCRIPTION},
        timeout=60,
    )
    if response.status_code != 200:
        print(
            f"kfadapter dev: could not register the sample pipeline: "
            f"{response.status_code} {response.text[:300]}",
            file=sys.stderr,
        )
        return None
    return SAMPLE_PIPELINE_NAME


def dev_banner(
    adapter_url: str, kfp_url: str, sample: str | None, ui_url: str | None = None
) -> str:
    """What `kfadapter dev` prints once both servers answer."""
    lines = [
        f"kfadapter adapter:   {adapter_url}",
        f"embedded KFP server: {kfp_url}   (kfp.Client(host={kfp_url!r}))",
        f"KFP web UI:          {ui_url or kfp_url + '/'}   (pipelines, runs, logs, metrics)",
        f"API docs:            {adapter_url}/docs",
        f"metrics:             {adapter_url}/metrics",
        "",
        "Try:",
        f"  curl {adapter_url}/pipelines",
        f"  curl {adapter_url}/experiments",
    ]
    if sample:
        lines += [
            f"  curl {adapter_url}/pipelines/{sample}/versions",
            f"  curl -X POST {adapter_url}/trainingjobs/job1/execution \\",
            "       -H 'Content-Type: application/json' \\",
            f'       -d \'{{"pipeline_name": "{sample}", "experiment_name": "Default", '
            '"arguments": {"a": "7", "b": "2", "expected": "45"}}\'',
            f"  curl {adapter_url}/runs",
            f"  curl {adapter_url}/trainingjobs/job1",
        ]
    lines += ["", "Ctrl-C stops both servers."]
    return "\n".join(lines)


# ---------------------------------------------------------------- serve


def run_serve(args: argparse.Namespace) -> int:
    """`kfadapter serve`: the adapter under gunicorn until SIGTERM (graceful) or SIGINT."""
    settings = _load_settings()
    if settings is None:
        return EXIT_USAGE
    overrides = {
        key: value
        for key, value in (
            ("bind", args.bind),
            ("workers", args.workers),
            ("threads", args.threads),
        )
        if value is not None
    }
    from kfadapter.settings import MAX_THREADS, MAX_WORKERS

    for key, most in (("workers", MAX_WORKERS), ("threads", MAX_THREADS)):
        if key in overrides and overrides[key] < 1:
            print(f"kfadapter: --{key} must be >= 1", file=sys.stderr)
            return EXIT_USAGE
        if key in overrides and overrides[key] > most:
            print(
                f"kfadapter: --{key} must be <= {most} (as KFADAPTER_{key.upper()})",
                file=sys.stderr,
            )
            return EXIT_USAGE
    settings = replace(settings, **overrides)
    refused = prepare_database(settings)
    if refused is not None:
        return refused
    if args.check:
        print(f"kfadapter: settings are valid; would bind {settings.bind_address}")
        return EXIT_OK
    from kfadapter.gunicorn_conf import AdapterApplication, prepare_multiprocess_metrics

    prepare_multiprocess_metrics(settings, os.environ)
    AdapterApplication(settings).run()
    return EXIT_OK


def prepare_database(settings: Any) -> int | None:
    """With a PostgreSQL tracking store: check the credentials, create the database if
    missing, migrate its schema, once before any worker starts. An exit code when it
    refuses (2: a setting is wrong, naming it; 1: schema newer than this release), None to
    go on. A server that cannot be reached now is only warned about: the adapter starts,
    /readiness answers 503 and tracking retries until it answers."""
    if not settings.database_url or not settings.tracking_enabled:
        return None
    from kfadapter.errors import TrackingUnavailable
    from kfadapter.sqlitedb import StoreError
    from kfadapter.tracking.pgschema import DatabaseRefused
    from kfadapter.tracking.pgschema import prepare_database as prepare

    what = f"the tracking database {settings.database_display}"
    try:
        prepare(settings.database_url, timeout=settings.database_timeout, what=what)
    except DatabaseRefused as error:
        print(f"kfadapter: invalid setting: {settings.database_source}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except StoreError as error:
        print(f"kfadapter: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except TrackingUnavailable as error:
        print(
            f"kfadapter: warning: {error.message}; starting anyway (/readiness answers 503 "
            "until it answers)",
            file=sys.stderr,
        )
    return None


# ---------------------------------------------------------------- migrate-store


def run_migrate_store(args: argparse.Namespace) -> int:
    """`kfadapter migrate-store`: copy a SQLite tracking store into PostgreSQL."""
    settings = _load_settings()
    if settings is None:
        return EXIT_USAGE
    if not settings.database_url:
        print(
            "kfadapter: invalid setting: KFADAPTER_DATABASE_URL (or PS_USER, PS_PASSWORD, "
            "PS_IP) must name the PostgreSQL database to copy into",
            file=sys.stderr,
        )
        return EXIT_USAGE
    from kfadapter.tracking.store import SqliteTrackingStore

    source = (args.source or settings.data_dir).expanduser()
    source_file = source / SqliteTrackingStore.FILE_NAME if source.is_dir() else source
    if not source_file.is_file():
        print(f"kfadapter: no SQLite tracking store at {source_file}", file=sys.stderr)
        return EXIT_USAGE
    settings = replace(settings, tracking_enabled=True)
    refused = prepare_database(settings)
    if refused is not None:
        return refused
    from kfadapter.errors import TrackingUnavailable
    from kfadapter.sqlitedb import StoreError
    from kfadapter.tracking.pgstore import PostgresTrackingStore

    target = old = None
    try:
        old = SqliteTrackingStore(source_file)
        target = PostgresTrackingStore(
            settings.database_url,
            timeout=max(settings.database_timeout, 60.0),  # one long transaction
            max_connections=1,
            display=f"the tracking database {settings.database_display}",
        )
        present = target.row_count()
        if present and not args.merge:
            print(
                f"kfadapter: {settings.database_display} already holds {present} tracked runs: "
                "nothing copied (give --merge to add the missing ones and keep those)",
                file=sys.stderr,
            )
            return EXIT_FAILURE
        runs = list(reversed(old.list()))  # oldest first, as they were added
        copied = target.import_runs(runs)
        counts = target.counts()
    except (StoreError, TrackingUnavailable) as error:
        print(f"kfadapter: migrate-store failed, nothing copied: {error}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        for store in (old, target):
            if store is not None:
                store.close()
    pending = sum(1 for run in runs if run.notification_status == "pending")
    print(
        f"kfadapter: copied {copied} of {len(runs)} tracked runs ({pending} pending "
        f"notifications) from {source_file} to {settings.database_display}; the database "
        f"now holds {', '.join(f'{n} {status}' for status, n in counts.items())}"
    )
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
