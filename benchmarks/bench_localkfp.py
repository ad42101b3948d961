"""Scale benchmark of the embedded KFP server: list and get latencies over HTTP at 10k/100k rows.

Seeds a store directly (bulk insert) with PIPELINES pipelines (one version each),
EXPERIMENTS experiments and RUNS finished runs, starts the embedded server on it in a
process of its own (runs are not executed), then times, over real HTTP with `requests`:
the first page of 100, a deep page (a page token 90% into the list), filtered pages,
sorted pages and get calls. Prints the median and p95 of each in milliseconds.

With `--against DIR` (another checkout, e.g. `git worktree add /tmp/base main`) the same
store is served by both checkouts at once and each call goes to one then the other, so
that the two sets of figures come from the same moments of a shared, noisy machine.

    .venv/bin/python benchmarks/bench_localkfp.py [--pipelines 10000] [--runs 100000]
    .venv/bin/python benchmarks/bench_localkfp.py --against /tmp/base --repeat 200
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kfadapter.localkfp import query as q
from kfadapter.localkfp.fields import PIPELINES, RUNS
from kfadapter.localkfp.storage import Store, dumps

REPO = Path(__file__).resolve().parents[1]

SPEC = {
    "pipelineInfo": {"name": "bench"},
    "root": {
        "dag": {"tasks": {"t": {"componentRef": {"name": "comp-t"}, "taskInfo": {"name": "t"}}}},
        "inputDefinitions": {"parameters": {"n": {"parameterType": "NUMBER_INTEGER"}}},
    },
    "components": {"comp-t": {"executorLabel": "exec-t"}},
    "deploymentSpec": {"executors": {"exec-t": {"container": {"image": "python:3.11"}}}},
    "schemaVersion": "2.1.0",
    "sdkVersion": "kfp-2.17.0",
}
STATES = ("SUCCEEDED", "SUCCEEDED", "SUCCEEDED", "FAILED", "CANCELED")


# Serves DATA_DIR with the embedded server of whatever checkout is on PYTHONPATH, runs never
# executed, until stdin closes; prints the URL first. Uses only what every version offers.
SERVE = """
import sys
from kfadapter.localkfp.server import LocalKfpServer

class NullExecutor:
    def __init__(self, *args): pass
    def submit(self, *args, **options): pass
    def terminate(self, run_id): return False
    def log_path(self, run_id, node_id): return None
    def shutdown(self): pass

server = LocalKfpServer(sys.argv[1], port=0, executor_factory=NullExecutor).start()
print(server.url, flush=True)
sys.stdin.read()
server.stop()
"""


def serve(checkout: Path, data_dir: Path) -> tuple[subprocess.Popen[str], str]:
    """The embedded server of `checkout` on `data_dir`, in its own process, and its URL."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(data_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=checkout,
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def seed(store: Store, pipelines: int, experiments: int, runs: int) -> dict[str, Any]:
    """Bulk-insert the rows; returns ids the timings use."""
    rng = random.Random(7)
    base = 1_700_000_000 * 1_000_000
    spec_text = dumps(SPEC)
    pipeline_rows, version_rows = [], []
    for i in range(pipelines):
        pid = f"p-{i:06d}-{rng.getrandbits(32):08x}"
        created = base + i * 1_000_000
        pipeline_rows.append(
            {
                "id": pid,
                "name": f"pipeline-{i:06d}",
                "display_name": f"pipeline-{i:06d}",
                "description": "seeded",
                "namespace": "",
                "created_at": created,
                "tags": None,
            }
        )
        version_rows.append(
            {
                "id": f"v-{i:06d}-{rng.getrandbits(32):08x}",
                "pipeline_id": pid,
                "name": f"pipeline-{i:06d}",
                "display_name": f"pipeline-{i:06d}",
                "description": "",
                "created_at": created,
                "pipeline_spec": spec_text,
                "package_url": "",
                "code_source_url": "",
                "tags": None,
            }
        )
    experiment_ids = [f"e-{i:04d}" for i in range(experiments)]
    experiment_rows = [
        {
            "id": eid,
            "display_name": f"experiment-{i:04d}",
            "description": "",
            "namespace": "",
            "created_at": base + i,
            "storage_state": "AVAILABLE",
            "last_run_created_at": 0,
        }
        for i, eid in enumerate(experiment_ids)
    ]
    run_rows = []
    for i in range(runs):
        created = base + i * 500_000
        state = STATES[i % len(STATES)]
        tasks = [
            {
                "run_id": f"r-{i:07d}",
                "task_id": f"r-{i:07d}-{name}",
                "display_name": name,
                "state": state,
                "create_time": "2023-11-14T22:13:20Z",
                "start_time": "2023-11-14T22:13:21Z",
                "end_time": "2023-11-14T22:13:25Z",
            }
            for name in ("add", "subtract", "multiply")
        ]
        run_rows.append(
            {
                "id": f"r-{i:07d}",
                "experiment_id": experiment_ids[i % experiments],
                "namespace": "",
                "display_name": f"run-{rng.getrandbits(40):010x}",
                "description": "",
                "storage_state": "AVAILABLE",
                "pipeline_id": pipeline_rows[i % pipelines]["id"],
                "pipeline_version_id": version_rows[i % pipelines]["id"],
                "pipeline_spec": None,
                "runtime_config": dumps({"parameters": {"n": i}}),
                "service_account": "",
                "created_at": created,
                "scheduled_at": created,
                "finished_at": created + 5_000_000,
                "state": state,
                "error": dumps({"message": "boom"}) if state == "FAILED" else None,
                "task_details": dumps(tasks),
                "state_history": dumps(
                    [
                        {"update_time": created, "state": "PENDING"},
                        {"update_time": created + 1_000_000, "state": "RUNNING"},
                        {"update_time": created + 5_000_000, "state": state},
                    ]
                ),
                "recurring_run_id": "",
            }
        )
    db = store.db
    with db.write() as conn:
        db.insert_many(conn, "pipelines", pipeline_rows)
        db.insert_many(conn, "pipeline_versions", version_rows)
        db.insert_many(conn, "experiments", experiment_rows)
        for start in range(0, len(run_rows), 10_000):
            db.insert_many(conn, "runs", run_rows[start : start + 10_000])
    with db.write() as conn:
        conn.execute("ANALYZE")
    return {
        "pipeline_id": pipeline_rows[pipelines // 2]["id"],
        "run_id": run_rows[runs // 2]["id"],
        "experiment_id": experiment_ids[3],
    }


def deep_token(store: Store, listable: q.Listable, offset: int, sort: str, desc: bool) -> str:
    """A page token pointing `offset` rows into the list (as walking the pages would give)."""
    query = q.build_query(
        listable,
        page_size=100,
        page_token=None,
        sort_by=f"{sort} {'desc' if desc else ''}",
        filter_json=None,
    )
    column = listable.fields[sort].sql
    order = "DESC" if desc else "ASC"
    with store.db.read() as conn:
        row = conn.execute(
            f"SELECT *, {column} AS {q.SORT_VALUE} FROM {listable.table} "
            f"ORDER BY {column} {order}, id {order} "
            "LIMIT 1 OFFSET ?",
            (offset,),
        ).fetchone()
    return q.next_token(query, dict(row))


def timed(label: str, calls: list[Callable[[], requests.Response]], repeat: int) -> None:
    """Median and p95 of `repeat` calls to each server, after one warm-up each, the servers
    taking turns call by call (who goes first alternates); checks every answer is 200."""
    for call in calls:
        call().raise_for_status()
    samples: list[list[float]] = [[] for _ in calls]
    for turn in range(repeat):
        order = range(len(calls)) if turn % 2 == 0 else reversed(range(len(calls)))
        for index in order:
            started = time.perf_counter()
            response = calls[index]()
            samples[index].append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
    figures = []
    for times in samples:
        times.sort()
        p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
        figures.append(f"median {statistics.median(times):7.1f} ms   p95 {p95:7.1f} ms")
    print(f"{label:<52} " + "   |   ".join(figures), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipelines", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--experiments", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--against", metavar="DIR", help="another checkout to serve beside")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as directory:
        store = Store(Path(directory) / "kfp.sqlite3")
        started = time.perf_counter()
        ids = seed(store, args.pipelines, args.experiments, args.runs)
        print(
            f"seeded {args.pipelines} pipelines, {args.runs} runs in "
            f"{time.perf_counter() - started:.1f} s "
            f"({(Path(directory) / 'kfp.sqlite3').stat().st_size / 1e6:.0f} MB)",
            flush=True,
        )
        deep_pipelines = deep_token(
            store, PIPELINES, int(args.pipelines * 0.9), "created_at", False
        )
        deep_runs = deep_token(store, RUNS, int(args.runs * 0.9), "created_at", True)
        store.close()

        checkouts = [REPO] + ([Path(args.against).resolve()] if args.against else [])
        servers = []
        for index, checkout in enumerate(checkouts):
            data_dir = Path(directory) / f"server-{index}"
            data_dir.mkdir()
            shutil.copy(Path(directory) / "kfp.sqlite3", data_dir / "kfp.sqlite3")
            servers.append(serve(checkout, data_dir))
        print("columns: " + "   |   ".join(str(c) for c in checkouts), flush=True)
        session = requests.Session()
        failed = json.dumps(
            {"predicates": [{"key": "state", "operation": "EQUALS", "string_value": "FAILED"}]}
        )
        substring = json.dumps(
            {"predicates": [{"key": "name", "operation": "IS_SUBSTRING", "string_value": "-0042"}]}
        )
        cases: list[tuple[str, str, dict[str, Any]]] = [
            ("pipelines: first page of 100", "pipelines", {"page_size": 100}),
            (
                "pipelines: deep page of 100 (90% in)",
                "pipelines",
                {"page_size": 100, "page_token": deep_pipelines},
            ),
            (
                "pipelines: page of 100 sorted by name desc",
                "pipelines",
                {"page_size": 100, "sort_by": "name desc"},
            ),
            (
                "pipelines: name IS_SUBSTRING filter (scan)",
                "pipelines",
                {"page_size": 100, "filter": substring},
            ),
            (
                "runs: first page of 100 (created_at desc)",
                "runs",
                {"page_size": 100, "sort_by": "created_at desc"},
            ),
            (
                "runs: deep page of 100 (90% in)",
                "runs",
                {"page_size": 100, "page_token": deep_runs},
            ),
            (
                "runs: experiment + state=FAILED filter, page of 100",
                "runs",
                {
                    "page_size": 100,
                    "experiment_id": ids["experiment_id"],
                    "filter": failed,
                    "sort_by": "created_at desc",
                },
            ),
            (
                "runs: page of 100 sorted by display_name",
                "runs",
                {"page_size": 100, "sort_by": "name"},
            ),
            ("get pipeline", f"pipelines/{ids['pipeline_id']}", {}),
            ("get run", f"runs/{ids['run_id']}", {}),
        ]
        try:
            for label, path, params in cases:
                calls = [
                    lambda url=f"{url}/apis/v2beta1/{path}", params=params: session.get(
                        url, params=params
                    )
                    for _process, url in servers
                ]
                timed(label, calls, args.repeat)
        finally:
            for process, _url in servers:
                assert process.stdin is not None
                process.stdin.close()
                process.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
