"""KFP calls and time per watcher poll with 1, 100 and 1,000 open runs (run by hand).

    .venv/bin/python -m benchmarks.bench_tracking_polls [--runs 1 100 1000] [--polls 5]

Starts the embedded KFP server (runs are created through its real HTTP API but held
PENDING instead of executed, so 1,000 of them cost no CPU), puts a counting proxy in front
of it, tracks N of the runs with a Tracker using the real KfConnect, and counts the HTTP
requests each `watcher.poll_once()` makes. The older adapter made one `get_run` per run.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kfadapter.kfp import KfConnect
from kfadapter.settings import Settings
from kfadapter.tracking import Tracker


class HeldRuns:
    """A stand-in for the run executor: accepts runs and leaves them PENDING."""

    def __init__(self, data_dir: Path, max_concurrent_runs: int, on_update: Callable) -> None:
        self.on_update = on_update

    def submit(
        self, run_id: str, pipeline_spec: dict, parameters: dict[str, Any], *, retry: bool = False
    ) -> None:
        pass

    def terminate(self, run_id: str) -> bool:
        return False

    def log_path(self, run_id: str, node_id: str) -> Path | None:
        return None

    def shutdown(self) -> None:
        pass


def create_runs(kfp_url: str, count: int, workdir: Path) -> list[str]:
    """Upload the sample pipeline and create `count` runs of it; their ids."""
    import kfp

    from tests.pipelines import compile_pipeline

    client = kfp.Client(host=kfp_url)
    package = compile_pipeline("add_subtract_multiply", workdir)
    pipeline = client.upload_pipeline(str(package), pipeline_name="bench-tracking")
    version = client.list_pipeline_versions(pipeline.pipeline_id).pipeline_versions[0]
    experiment = client.create_experiment("bench-tracking")
    started = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # kfp.Client prints a line per run
        run_ids = [
            client.run_pipeline(
                experiment_id=experiment.experiment_id,
                job_name=f"bench-{n}",
                pipeline_id=pipeline.pipeline_id,
                version_id=version.pipeline_version_id,
            ).run_id
            for n in range(count)
        ]
    elapsed = time.perf_counter() - started
    print(f"created {count} runs in {elapsed:.1f} s", file=sys.stderr)
    return run_ids


def measure(proxy: Any, run_ids: list[str], polls: int, data_dir: Path) -> tuple[int, float]:
    """KFP calls per poll and median seconds per poll with these runs tracked."""
    settings = Settings(kfp_endpoint=proxy.url + "/pipeline", data_dir=data_dir, kfp_timeout=60.0)
    tracker = Tracker(settings, KfConnect(settings))
    try:
        for run_id in run_ids:
            tracker.track(f"job-{run_id}", run_id)
        calls, times = set(), []
        for _ in range(polls):
            mark = proxy.mark()
            started = time.perf_counter()
            result = tracker.watcher.poll_once()
            times.append(time.perf_counter() - started)
            assert result.error is None and result.open_runs == len(run_ids), result
            calls.add(len(proxy.since(mark)))
        assert len(calls) == 1, calls
        return calls.pop(), statistics.median(times)
    finally:
        tracker.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[1, 100, 1000])
    parser.add_argument("--polls", type=int, default=5)
    args = parser.parse_args(argv)

    from kfadapter.localkfp.server import LocalKfpServer
    from tests.adapter_support import RecordingProxy

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        server = LocalKfpServer(workdir / "kfp", port=0, executor_factory=HeldRuns).start()
        proxy = RecordingProxy(server.url).start()
        try:
            run_ids = create_runs(server.url, max(args.runs), workdir)
            print("| open runs | KFP calls per poll | median poll time | older adapter |")
            print("|---:|---:|---:|---:|")
            for count in args.runs:
                calls, seconds = measure(
                    proxy, run_ids[:count], args.polls, workdir / f"adapter-{count}"
                )
                print(f"| {count} | {calls} | {seconds * 1000:.0f} ms | {count} get_run |")
        finally:
            proxy.stop()
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
