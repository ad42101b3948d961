"""Task caching across runs on the embedded server, over HTTP with the unmodified kfp.Client.

As on a KFP 2.17 cluster: the driver fingerprints a task whose `caching_options.enable_cache`
is true (the compiler's default) and, when an earlier execution of that fingerprint
succeeded, outputs `cached-decision: true`; the executor's template then has
`when: {{inputs.parameters.cached-decision}} != true` (backend/src/v2/compiler/argocompiler/
container.go, `addContainerExecutorTemplate`), so the pod does not run: Argo makes its node
Skipped, which KFP reports as SKIPPED (`model.RuntimeState`), while the task's DAG node
succeeds and its recorded outputs feed the tasks downstream. `kfp.Client(...)
.create_run_from_pipeline_package(enable_caching=False)` turns caching off for every task
(sdk/python/kfp/client/client.py `_override_caching_options`).
(No `from __future__ import annotations`: kfp reads the annotations as types.)
"""

from pathlib import Path

import pytest
import requests
from kfp import compiler, dsl

from kfadapter.localkfp.argo_nodes import executor_pod_name
from tests.localkfp.dsl_pipelines import IMAGE

pytestmark = pytest.mark.e2e  # the session's embedded KFP server, real task processes


@dsl.component(base_image=IMAGE)
def doubled(number: int, counter_dir: str) -> int:
    """Counts its executions in the file `doubled` of counter_dir; twice the number."""
    with open(counter_dir + "/doubled", "a") as file:
        file.write("ran\n")
    return number * 2


@dsl.component(base_image=IMAGE)
def received(value: int, counter_dir: str) -> str:
    """Counts its executions in the file `received`, one line per value it got."""
    with open(counter_dir + "/received", "a") as file:
        file.write(f"{value}\n")
    return str(value)


@dsl.pipeline(name="task-cache-pipeline")
def cached_pipeline(number: int, counter_dir: str):
    """`doubled` (cached) feeding `received` (caching off: it runs every time)."""
    first = doubled(number=number, counter_dir=counter_dir)
    receiver = received(value=first.output, counter_dir=counter_dir)
    receiver.set_caching_options(False)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _node(details: list[dict], display_name: str) -> dict:
    """The one task detail of that display name."""
    (node,) = [detail for detail in details if detail["display_name"] == display_name]
    return node


def test_second_identical_run_takes_the_task_from_the_cache(
    kfp_client, local_kfp, adapter, tmp_path: Path
) -> None:
    """An identical second run does not execute `doubled` (its counter stays at one) and
    `received` gets its recorded output; `enable_caching=False` executes it again; a changed
    input misses the cache. The cached task's executor node is SKIPPED, its DAG node
    SUCCEEDED, and its pod has no log: the adapter's /runs/<id>/logs says so with a 200."""
    package = tmp_path / "cached.yaml"
    compiler.Compiler().compile(cached_pipeline, str(package))
    counters = tmp_path / "counters"
    counters.mkdir()
    arguments = {"number": 21, "counter_dir": str(counters)}

    def run(**options) -> str:
        result = kfp_client.create_run_from_pipeline_package(
            str(package), arguments=options.pop("arguments", arguments), **options
        )
        finished = kfp_client.wait_for_run_completion(result.run_id, timeout=120)
        assert finished.state == "SUCCEEDED", finished
        return result.run_id

    run()
    assert _lines(counters / "doubled") == ["ran"]
    assert _lines(counters / "received") == ["42"]

    second = run()
    assert _lines(counters / "doubled") == ["ran"], "the cached task executed"
    assert _lines(counters / "received") == ["42", "42"], "its output did not feed downstream"
    details = kfp_client.get_run(second).run_details.task_details
    details = [detail.to_dict() for detail in details]
    assert _node(details, "doubled")["state"] == "SUCCEEDED"
    assert _node(details, "received")["state"] == "SUCCEEDED"
    executors = sorted(d["state"] for d in details if d["display_name"] == "executor")
    assert executors == ["SKIPPED", "SUCCEEDED"]
    (executor_id,) = [child["pod_name"] for child in _node(details, "doubled")["child_tasks"]]
    pod_log = requests.get(
        f"{local_kfp.url}/apis/v1alpha1/runs/{second}/nodes/{executor_pod_name(executor_id)}/log",
        timeout=30,
    )
    assert pod_log.status_code == 500, pod_log.text  # KFP: the pod never ran, no log to read
    logs = adapter.get(f"/runs/{second}/logs", params={"task": "doubled"})
    assert logs.status_code == 200, logs.text
    (entry,) = logs.json()["tasks"]
    assert entry["log"] is None
    assert "cache" in entry["error"], entry

    run(enable_caching=False)
    assert _lines(counters / "doubled") == ["ran", "ran"]

    run(arguments={**arguments, "number": 5})
    assert _lines(counters / "doubled") == ["ran", "ran", "ran"]
    assert _lines(counters / "received")[-1] == "10"
