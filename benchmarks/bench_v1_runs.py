"""KFP v1 (Argo Workflow) runs on the embedded server, submit to SUCCEEDED, beside v2 runs.

The 4-task add/subtract/multiply pipeline both ways: compiled with kfp 1.8
(`tests/pipelines/v1/add_subtract_multiply.yaml`, run through `POST /apis/v1beta1/runs`) and
with kfp 2.17 (`kfadapter/samples/add_subtract_multiply.yaml`, `kfp.Client`), on one server
with a warm environment cache (one warm-up run of each first), `get_run` polled every 50 ms.
The two take turns; medians of `--repeat` rounds.

    .venv/bin/python benchmarks/bench_v1_runs.py --repeat 7
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kfadapter.localkfp.server import LocalKfpServer  # noqa: E402

V1_PIPELINE = ROOT / "tests/pipelines/v1/add_subtract_multiply.yaml"
V2_PIPELINE = ROOT / "kfadapter/samples/add_subtract_multiply.yaml"
FINAL = {"SUCCEEDED", "FAILED", "SKIPPED", "CANCELED"}


def wait(client, run_id: str) -> str:
    while (state := client.get_run(run_id).state) not in FINAL:
        time.sleep(0.05)
    return state


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="measured rounds (default 7)")
    args = parser.parse_args()
    import kfp

    with tempfile.TemporaryDirectory() as directory:
        server = LocalKfpServer(Path(directory), port=0, max_concurrent_runs=2).start()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                client = kfp.Client(host=server.url)
            pipeline = client.upload_pipeline(str(V1_PIPELINE), pipeline_name="v1")
            version = client.list_pipeline_versions(pipeline.pipeline_id).pipeline_versions[0]

            def v1() -> float:
                started = time.perf_counter()
                body = {
                    "name": "bench",
                    "pipeline_spec": {"parameters": [{"name": "a", "value": "5"}]},
                    "resource_references": [
                        {
                            "key": {"type": "PIPELINE_VERSION", "id": version.pipeline_version_id},
                            "relationship": "CREATOR",
                        }
                    ],
                }
                answer = requests.post(f"{server.url}/apis/v1beta1/runs", json=body, timeout=30)
                state = wait(client, answer.json()["run"]["id"])
                assert state == "SUCCEEDED", state
                return time.perf_counter() - started

            def v2() -> float:
                started = time.perf_counter()
                run = client.create_run_from_pipeline_package(
                    str(V2_PIPELINE), arguments={}, enable_caching=False
                )
                state = wait(client, run.run_id)
                assert state == "SUCCEEDED", state
                return time.perf_counter() - started

            variants = {"v1 (kfp 1.8 workflow)": v1, "v2 (kfp 2.17 IR)": v2}
            for run in variants.values():  # warm-up: builds the environments
                run()
            times: dict[str, list[float]] = {name: [] for name in variants}
            for round_ in range(args.repeat):
                order = list(variants)
                if round_ % 2:
                    order.reverse()
                for name in order:
                    times[name].append(variants[name]())
        finally:
            server.stop()
    print("| 4-task add/subtract/multiply | median s | rounds |")
    print("|---|---|---|")
    for name, values in times.items():
        rounds = ", ".join(f"{value:.2f}" for value in values)
        print(f"| {name} | {statistics.median(values):.2f} | {rounds} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
