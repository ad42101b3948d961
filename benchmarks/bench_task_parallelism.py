"""Run time of real runs: the embedded server (task environments, DAG scheduler) against
kfp.local, from submit to SUCCEEDED.

1. The 4-task sample (kfadapter/samples/add_subtract_multiply.yaml), submitted over HTTP
   with kfp.Client to the embedded server with a warm environment cache, against kfp.local
   on the same spec with ``SubprocessRunner(use_venv=False)`` (the shared environment) and
   ``use_venv=True`` (a fresh venv per task).
2. A ParallelFor over 8 items of a task that sleeps 1 s: the embedded server with
   ``--max-parallel-tasks`` 8, 4 (the default) and 1, against kfp.local's orchestrator.

Each variant runs once to warm up, then the variants take turns (round-robin, so that all
see the same moments of a shared machine) for ``--repeat`` rounds; medians are printed.
kfp.local variants run in child processes that import kfp once and time only the pipeline
call; the server variants time from `create_run_from_pipeline_package` until `get_run`
(polled every 50 ms) says SUCCEEDED.

    .venv/bin/python benchmarks/bench_task_parallelism.py [--repeat 5] [--skip-use-venv]
"""

# (No `from __future__ import annotations`: kfp reads the component's annotations as types.)

import argparse
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "kfadapter" / "samples" / "add_subtract_multiply.yaml"
SAMPLE_ARGUMENTS = {"a": 7.0, "b": 2.0, "expected": 45.0}

# A child that runs a spec with kfp.local for each line on stdin, answering seconds taken.
KFP_LOCAL = """
import json, sys, tempfile, time, warnings
warnings.simplefilter("ignore")
from kfp import components, local
use_venv = sys.argv[1] == "venv"
root = tempfile.mkdtemp(prefix="bench-kfp-local-")
local.init(runner=local.SubprocessRunner(use_venv=use_venv), pipeline_root=root)
for line in sys.stdin:
    spec, arguments = json.loads(line)
    pipeline = components.load_component_from_file(spec)
    started = time.perf_counter()
    pipeline(**arguments)
    print("SECONDS", time.perf_counter() - started, flush=True)
"""


def loop_pipeline(directory: Path) -> Path:
    """A ParallelFor over 8 items of a task that sleeps 1 second, compiled."""
    from kfp import compiler, dsl

    @dsl.component(base_image="python:3.11")
    def sleep_one_second(item: int) -> int:
        import time

        time.sleep(1)
        return item

    @dsl.pipeline(name="parallel-for-8")
    def parallel_for_8():
        with dsl.ParallelFor(list(range(8))):
            sleep_one_second(item=1)

    path = directory / "parallel_for_8.yaml"
    compiler.Compiler().compile(parallel_for_8, str(path))
    return path


class KfpLocal:
    """kfp.local in a child process of its own."""

    def __init__(self, use_venv: bool) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-c", KFP_LOCAL, "venv" if use_venv else "shared"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    def __call__(self, spec: Path, arguments: dict) -> float:
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(json.dumps([str(spec), arguments]) + "\n")
        self._process.stdin.flush()
        for line in self._process.stdout:  # kfp.local's own output comes first (indented)
            if line.strip().startswith("SECONDS "):
                return float(line.split()[1])
        raise RuntimeError("the kfp.local child failed")

    def close(self) -> None:
        self._process.kill()
        self._process.wait()


class EmbeddedServer:
    """The embedded KFP server on a free port, driven over HTTP with kfp.Client."""

    def __init__(self, directory: Path, env_cache: Path, max_parallel_tasks: int) -> None:
        import kfp

        from kfadapter.localkfp.execution import TaskOptions
        from kfadapter.localkfp.server import LocalKfpServer

        options = TaskOptions(env_cache=env_cache, max_parallel_tasks=max_parallel_tasks)
        self._server = LocalKfpServer(directory, port=0, task_options=options).start()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._client = kfp.Client(host=self._server.url)

    def __call__(self, spec: Path, arguments: dict) -> float:
        started = time.perf_counter()
        # every task executes: with KFP's task cache a repeated run would execute none
        run = self._client.create_run_from_pipeline_package(
            str(spec), arguments=arguments, enable_caching=False
        )
        while True:
            state = self._client.get_run(run.run_id).state
            if state == "SUCCEEDED":
                return time.perf_counter() - started
            if state in ("FAILED", "CANCELED"):
                raise RuntimeError(f"run {run.run_id} ended {state}")
            time.sleep(0.05)

    def close(self) -> None:
        self._server.stop()


def measure(
    variants: dict[str, Callable[[Path, dict], float]], spec: Path, arguments: dict, repeat: int
) -> dict[str, list[float]]:
    """One warm-up each, then `repeat` rounds taking turns; seconds per variant."""
    for run in variants.values():
        run(spec, arguments)
    times: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for round_number in range(repeat):
        shift = round_number % len(names)  # who goes first moves on each round
        for name in names[shift:] + names[:shift]:
            times[name].append(variants[name](spec, arguments))
    return times


def report(title: str, times: dict[str, list[float]], baseline: str | None = None) -> None:
    print(f"\n{title}")
    base = statistics.median(times[baseline]) if baseline else None
    for name, values in times.items():
        median = statistics.median(values)
        ratio = f"  {median / base:.2f}x {baseline}" if base else ""
        runs = ", ".join(f"{value:.2f}" for value in values)
        print(f"  {name:<34} median {median:6.2f} s  ({runs}){ratio}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="measured rounds (default 5)")
    parser.add_argument(
        "--skip-use-venv", action="store_true", help="leave out kfp.local use_venv=True (slow)"
    )
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-parallelism-") as temporary:
        work = Path(temporary)
        env_cache = work / "env-cache"
        servers = {n: EmbeddedServer(work / f"server-{n}", env_cache, n) for n in (8, 4, 1)}
        shared = KfpLocal(use_venv=False)
        fresh = None if args.skip_use_venv else KfpLocal(use_venv=True)
        try:
            sample = {
                "embedded server, warm env cache": servers[4],
                "kfp.local use_venv=False": shared,
            }
            if fresh is not None:
                sample["kfp.local use_venv=True"] = fresh
            times = measure(sample, SAMPLE, SAMPLE_ARGUMENTS, args.repeat)
            report("4-task sample, submit to SUCCEEDED", times, "kfp.local use_venv=False")

            loop = loop_pipeline(work)
            variants = {
                "embedded server, --max-parallel-tasks 8": servers[8],
                "embedded server, --max-parallel-tasks 4": servers[4],
                "embedded server, --max-parallel-tasks 1": servers[1],
                "kfp.local use_venv=False": shared,
            }
            times = measure(variants, loop, {}, args.repeat)
            report("ParallelFor over 8 items of a 1 s task", times, "kfp.local use_venv=False")
        finally:
            for server in servers.values():
                server.close()
            shared.close()
            if fresh is not None:
                fresh.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
