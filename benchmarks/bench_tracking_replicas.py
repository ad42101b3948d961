"""Failover time and notification throughput of run tracking, SQLite and PostgreSQL side by
side (run by hand, never in CI).

    .venv/bin/python -m benchmarks.bench_tracking_replicas [--repeat 5] [--notifications 1000]
        [--poll 1 10]

Failover: two `kfadapter serve` processes (2 workers each) share one store: PostgreSQL
(advisory lock), or SQLite in one data dir (flock, one host). Once one of them leads, the
leader's whole process group is SIGKILLed (at a random moment of the followers' retry
period: half the poll interval, at most 5 s), a notification is made due in the store at
once, and the time until the TM receiver (a real HTTP server) gets it from the other
replica is measured: SIGKILL -> first notification sent by the survivor.

Throughput: one Tracker (one replica) with N due notifications in its store, against a TM
receiver in another process that answers 200 at once: N / the time to deliver them all.

PostgreSQL is a server this benchmark starts (tests/postgres_support.py) with fsync on,
SQLite uses synchronous=FULL: both make every commit durable. Medians of --repeat runs,
the backends alternating within one run, so both see the same machine load.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kfadapter.settings import Settings
from kfadapter.tracking import Tracker
from kfadapter.tracking.model import DELIVERED, StateUpdate, TrackingStore
from kfadapter.tracking.pgstore import PostgresTrackingStore
from kfadapter.tracking.store import SqliteTrackingStore
from tests.postgres_support import PostgresServer
from tests.support import KFADAPTER, Process, adapter_env, free_port, is_live, wait_until
from tests.tracking_support import FakeRunStates, TmReceiver

LEADER_LINE = "tracking leader (watching and notifying)"
RECEIVER_SCRIPT = """
import logging, signal, sys
from tests.tracking_support import TmReceiver
logging.getLogger("werkzeug").setLevel(logging.ERROR)
TmReceiver(port=int(sys.argv[1])).start()
print("ready", flush=True)
signal.pause()
"""


def make_due(store: TrackingStore, run_ids: list[str], now: float) -> None:
    """Track the runs and record them final: their notifications are due at `now`."""
    for run_id in run_ids:
        store.add("bench-job", run_id, {}, now)
    updates = [StateUpdate(r, "SUCCEEDED", final=True, notification_id=r) for r in run_ids]
    store.record_poll(updates, now)


class Backend:
    """Where one measurement keeps its tracking store: a fresh database or data dir."""

    def __init__(self, kind: str, postgres: PostgresServer, workdir: Path, n: int) -> None:
        self.kind = kind
        self.data_dir = workdir / f"{kind}-{n}"
        self.url = postgres.create_database("bench") if kind == "postgresql" else None

    def env(self) -> dict[str, str]:
        return {"KFADAPTER_DATABASE_URL": self.url} if self.url else {}

    def store(self) -> TrackingStore:
        if self.url:
            return PostgresTrackingStore(self.url)
        return SqliteTrackingStore.in_dir(self.data_dir)

    def settings(self, **more: object) -> Settings:
        return Settings(database_url=self.url, data_dir=self.data_dir, **more)


def failover_once(backend: Backend, poll: float, receiver: TmReceiver) -> float:
    """Seconds from SIGKILL of the leader to the survivor's first notification."""
    env = adapter_env(
        KFP_ENDPOINT=f"http://127.0.0.1:{free_port()}/pipeline",  # no open runs: KFP idle
        KFADAPTER_DATA_DIR=str(backend.data_dir),
        KFADAPTER_POLL_INTERVAL=str(poll),
        TRAININGMGR_HOST="127.0.0.1",
        TRAININGMGR_PORT=str(receiver.port),
        KFADAPTER_LOG_LEVEL="INFO",
        **backend.env(),
    )
    replicas = []
    store = backend.store()
    try:
        for _ in range(2):
            port = free_port()
            command = [*KFADAPTER, "serve", "--bind", f"127.0.0.1:{port}", "--workers", "2"]
            replicas.append((Process(command, env=env), f"http://127.0.0.1:{port}"))
        for process, url in replicas:
            output = lambda p=process: "".join(p.output)  # noqa: E731
            wait_until(lambda url=url: is_live(url), 60, details=output)

        def leader() -> Process | None:
            leading = [p for p, _ in replicas if LEADER_LINE in "".join(p.output)]
            return leading[0] if len(leading) == 1 else None

        old = wait_until(leader, 30)
        # The followers are retrying by now; a random moment in their retry period, so
        # the figures sample every phase of it.
        time.sleep(poll + random.uniform(0, poll))
        receiver.reset()
        run_id = f"failover-{time.monotonic_ns()}"
        killed = time.perf_counter()
        os.killpg(old.popen.pid, signal.SIGKILL)
        make_due(store, [run_id], time.time())
        wait_until(lambda: receiver.for_run(run_id), 60, step=0.001)
        took = time.perf_counter() - killed
        old.popen.wait(10)
        return took
    finally:
        store.close()
        for process, _ in replicas:
            process.kill()


def throughput_once(backend: Backend, count: int, tm_port: int) -> float:
    """Notifications per second one Tracker delivers to a TM that answers at once."""
    store = backend.store()
    make_due(store, [f"bench-{n}" for n in range(count)], time.time())
    settings = backend.settings(
        poll_interval=1.0, trainingmgr_host="127.0.0.1", trainingmgr_port=tm_port
    )
    tracker = Tracker(settings, FakeRunStates(), store=store)
    watch = backend.store()
    started = time.perf_counter()
    tracker.start()
    try:
        wait_until(lambda: watch.counts()[DELIVERED] == count, 600, step=0.01)
        return count / (time.perf_counter() - started)
    finally:
        tracker.stop()
        watch.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--notifications", type=int, default=1000, help="0: no throughput")
    parser.add_argument("--poll", type=float, nargs="*", default=[1.0, 10.0])
    args = parser.parse_args(argv)
    kinds = ("sqlite", "postgresql")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the in-process receiver's lines
    print(f"load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
    postgres = PostgresServer(durable=True).start()
    tm = subprocess.Popen(
        [sys.executable, "-c", RECEIVER_SCRIPT, str(tm_port := free_port())],
        stdout=subprocess.PIPE,
        text=True,
        env=adapter_env(),
    )
    receiver = TmReceiver().start()
    try:
        assert tm.stdout.readline().strip() == "ready"
        with tempfile.TemporaryDirectory(prefix="bench-replicas-") as tmp:
            workdir = Path(tmp)
            n = 0
            rates: dict[str, list[float]] = {kind: [] for kind in kinds}
            for _ in range(args.repeat if args.notifications else 0):
                for kind in kinds:
                    n += 1
                    backend = Backend(kind, postgres, workdir, n)
                    rates[kind].append(throughput_once(backend, args.notifications, tm_port))
            print(f"\nnotifications per second, one replica, {args.notifications} due:")
            for kind in kinds if args.notifications else ():
                figures = ", ".join(f"{r:.0f}" for r in rates[kind])
                print(f"  {kind:10} median {statistics.median(rates[kind]):6.0f}  ({figures})")
            for poll in args.poll:
                times: dict[str, list[float]] = {kind: [] for kind in kinds}
                for _ in range(args.repeat):
                    for kind in kinds:
                        n += 1
                        backend = Backend(kind, postgres, workdir, n)
                        times[kind].append(failover_once(backend, poll, receiver))
                print(f"\nfailover, poll interval {poll:g} s: SIGKILL -> survivor's first send")
                for kind in kinds:
                    figures = ", ".join(f"{t:.2f}" for t in times[kind])
                    median = statistics.median(times[kind])
                    print(f"  {kind:10} median {median:6.2f} s  ({figures})")
    finally:
        receiver.stop()
        tm.terminate()
        tm.wait(10)
        postgres.destroy()
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
