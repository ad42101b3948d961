"""Runs end to end: list keyed by name, get, terminate, logs, a pipeline's runs, KFP call counts."""

from __future__ import annotations

import math
import re

import pytest
import requests

from kfadapter.api.uploads import upload
from kfadapter.app import create_app
from kfadapter.errors import KfpError
from kfadapter.kfp import PAGE_SIZE, KfConnect, NewRun, PageRequest, filters
from kfadapter.localkfp.server import LocalKfpServer
from kfadapter.serving import ServerThread
from kfadapter.settings import Settings
from tests.adapter_support import RecordingProxy, tm_upload, unique, wait_for_state

pytestmark = pytest.mark.e2e  # real servers and processes on free ports

JSON = "application/json"


def _start_run(adapter, pipeline: str, name: str, parameters: dict | None = None) -> str:
    """Start a run through KfConnect (the adapter's own client) and return its id."""
    kfp = adapter.app.extensions["kfadapter"].kfconnect
    found = kfp.find_pipeline(pipeline)
    version = kfp.list_versions(found["pipeline_id"])[-1]
    experiment = kfp.find_experiment("Default")
    run = kfp.create_run(
        NewRun(
            name=name,
            experiment_id=experiment["experiment_id"],
            pipeline_id=found["pipeline_id"],
            version_id=version["pipeline_version_id"],
            parameters=parameters or {},
        )
    )
    return run["run_id"]


@pytest.fixture(scope="module")
def finished_runs(adapter, uploaded) -> dict[str, str]:
    """Two runs sharing one name plus one failing run, all finished: label -> run id."""
    name = unique("twin")
    runs = {
        "older": _start_run(adapter, uploaded["add_subtract_multiply"], name),
        "newer": _start_run(
            adapter, uploaded["add_subtract_multiply"], name, {"a": 6.0, "expected": 27.0}
        ),
        "failing": _start_run(adapter, uploaded["always_fails"], unique("fails")),
    }
    for run_id in runs.values():
        wait_for_state(adapter, run_id)
    return runs | {"name": name}


def test_runs_sharing_a_name_do_not_overwrite_each_other(adapter, finished_runs, uploaded):
    answer = adapter.get("/runs")
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == JSON
    runs = answer.json()
    name = finished_runs["name"]
    older, newer = finished_runs["older"], finished_runs["newer"]
    assert runs[name]["run_id"] == older
    assert runs[f"{name} ({newer})"]["run_id"] == newer
    entry = runs[name]
    assert {
        "run_id",
        "run_description",
        "run_status",
        "experiment_id",
        "pipeline_id",
        "pipeline_name",
    } <= set(entry)
    assert entry["run_status"] == "SUCCEEDED"
    assert entry["pipeline_name"] == uploaded["add_subtract_multiply"]


def test_get_run_has_the_older_keys_and_details(adapter, finished_runs):
    run_id = finished_runs["newer"]
    answer = adapter.get(f"/runs/{run_id}")
    assert answer.headers["Content-Type"] == JSON
    run = answer.json()
    assert (run["run_id"], run["run_name"], run["run_status"]) == (
        run_id,
        finished_runs["name"],
        "SUCCEEDED",
    )
    assert run["parameters"] == {"a": 6.0, "expected": 27.0}
    assert run["created_at"] and run["finished_at"]
    assert [s["state"] for s in run["state_history"]][-1] == "SUCCEEDED"
    assert {t["name"] for t in run["tasks"]} >= {"add", "subtract", "multiply"}
    assert all(t["state"] == "SUCCEEDED" for t in run["tasks"])
    failed = adapter.get(f"/runs/{finished_runs['failing']}").json()
    assert failed["run_status"] == "FAILED"
    assert failed["error"] is None  # KFP 2.17's toApiRun (server/api_converter.go) fills none


def test_unknown_runs_are_404(adapter):
    for answer in (
        adapter.get("/runs/no-such-run"),
        adapter.delete("/runs/no-such-run"),
        adapter.get("/runs/no-such-run/logs"),
    ):
        assert answer.status_code == 404
        assert answer.json()["message"] == "run 'no-such-run' not found"


def test_logs_of_every_task_or_one(adapter, finished_runs):
    """Each task's own log, read by the executor pod its task details lead to.

    KFP 2.17 gives no `pod_name` (`server/api_converter.go` `toApiPipelineTaskDetail`);
    a task's child is its executor's Argo node id, whose pod is
    `<workflow>-system-container-impl-<hash>` (`common/util/workflow.go`
    `RetrievePodName`), the name `/apis/v1alpha1/runs/{run}/nodes/{node}/log` takes
    (`resource/resource_manager.go` `ReadLog`). One get_run, then one log call per task.
    """
    run_id = finished_runs["failing"]
    mark = adapter.proxy.mark()
    tasks = adapter.get(f"/runs/{run_id}/logs").json()["tasks"]
    calls = adapter.proxy.since(mark)
    assert [t["name"] for t in tasks] == ["fail"]
    assert "this component always fails" in tasks[0]["log"]
    paths = [c.path.split("?")[0] for c in calls]
    assert len(paths) == 2 and paths[0] == f"/pipeline/apis/v2beta1/runs/{run_id}"
    node = re.fullmatch(rf"/pipeline/apis/v1alpha1/runs/{run_id}/nodes/(.+)/log", paths[1])
    assert node and re.fullmatch(r"always-fails-\w{5}-system-container-impl-\d+", node[1])
    one = adapter.get(f"/runs/{run_id}/logs", params={"task": "fail"}).json()["tasks"]
    assert one == tasks
    missing = adapter.get(f"/runs/{run_id}/logs", params={"task": "nope"})
    assert missing.status_code == 404


def test_each_task_gets_its_own_log(adapter, finished_runs):
    """Four tasks, four logs, each of its own component; drivers and DAG nodes of KFP's
    Argo node tree are not tasks of the pipeline and get no entry."""
    run_id = finished_runs["older"]
    mark = adapter.proxy.mark()
    tasks = adapter.get(f"/runs/{run_id}/logs").json()["tasks"]
    assert sorted(t["name"] for t in tasks) == ["add", "check-equals", "multiply", "subtract"]
    for task in tasks:
        assert task["error"] is None and task["state"] == "SUCCEEDED"
        component = task["name"].replace("-", "_")
        assert f"component `{component}`" in task["log"], task
        others = {"add", "subtract", "multiply", "check_equals"} - {component}
        assert not any(f"component `{other}`" in task["log"] for other in others)
    assert adapter.proxy.count("GET", "/apis/v2beta1/runs/", since=mark) == 1
    assert adapter.proxy.count("GET", "/apis/v1alpha1/runs/", since=mark) == 4


def test_each_iteration_of_a_loop_gets_its_own_log(adapter, tmp_path):
    """A ParallelFor's body task is one task per iteration (KFP's Argo compiler,
    `argocompiler/dag.go` `iteratorTask`: each iteration its own `iteration-item` DAG and
    executor pod); the loop's scaffolding nodes (`iteration-driver`, `iteration-iterations`,
    `iteration-item`...) are no tasks of the pipeline. Each iteration's log is its own."""
    from kfp import compiler

    from tests.localkfp.dsl_pipelines import printed_loop

    package = tmp_path / "printed_loop.yaml"
    compiler.Compiler().compile(printed_loop, str(package))
    name = unique("printed-loop")
    assert tm_upload(adapter, name, package).status_code == 200
    run_id = _start_run(adapter, name, unique("loop"), {"items": [7, 8, 9]})
    assert wait_for_state(adapter, run_id)["state"] == "SUCCEEDED"
    tasks = adapter.get(f"/runs/{run_id}/logs").json()["tasks"]
    assert sorted(t["name"] for t in tasks) == ["for-loop-1", "shout", "shout", "shout", "total"]
    shouts = [t for t in tasks if t["name"] == "shout"]
    assert len({t["task_id"] for t in shouts}) == 3
    printed = sorted(
        value for t in shouts for value in (7, 8, 9) if f"iteration item {value}" in t["log"]
    )
    assert printed == [7, 8, 9]  # each log holds one iteration's item, each item one log
    loop = next(t for t in tasks if t["name"] == "for-loop-1")
    assert loop["log"] is None and loop["state"] == "SUCCEEDED"


def test_a_task_without_a_log_says_why(adapter, finished_runs, kfp_proxy):
    """KFP answers 500 with `{"error_message", ...}` when it has no log for a node
    (`server/run_log_server.go` `ReadRunLogV1`): the adapter reports `log: null`."""
    run_id = finished_runs["failing"]
    answer = requests.get(f"{kfp_proxy.url}/apis/v1alpha1/runs/{run_id}/nodes/fail/log", timeout=30)
    assert answer.status_code == 500
    assert answer.json()["error_message"].startswith(f"Failed to read logs for run {run_id}")
    kfp = adapter.app.extensions["kfadapter"].kfconnect
    with pytest.raises(KfpError) as failure:
        kfp.task_log(run_id, "fail")
    assert failure.value.details["kfp_status"] == 500
    assert "Failed to read logs" in failure.value.message


def test_terminate_a_running_run(adapter, uploaded):
    run_id = _start_run(adapter, uploaded["sleeps"], unique("stop-me"), {"seconds": 120.0})
    wait_for_state(adapter, run_id, {"RUNNING"})
    answer = adapter.delete(f"/runs/{run_id}")
    assert answer.status_code == 200
    assert answer.json() == {"run_id": run_id, "status": "Terminated"}
    # KFP on Argo ends a terminated run FAILED (its workflow's deadline is set to 0)
    assert wait_for_state(adapter, run_id)["state"] == "FAILED"
    again = adapter.delete(f"/runs/{run_id}")  # a finished run: KFP's 400, with its state
    assert again.status_code == 400
    assert again.json()["run_state"] == "FAILED" and "it is FAILED" in again.json()["message"]


def test_runs_of_a_pipeline_newest_first_and_paged(adapter, finished_runs, uploaded, kfp_proxy):
    """KFP 2.17 refuses a `pipeline_id` run filter (`model/run.go` `runAPIToModelFieldMap`,
    `list.NewOptions`: 400); the adapter lists runs newest first and matches
    `pipeline_version_reference.pipeline_id` (`server/api_converter.go` `toApiRun`)."""
    name = uploaded["add_subtract_multiply"]
    pipeline_id = adapter.get(f"/pipelines/{name}").json()["id"]
    refused = requests.get(
        f"{kfp_proxy.url}/apis/v2beta1/runs",
        params={"filter": filters.equals("pipeline_id", pipeline_id)},
        timeout=30,
    )
    assert refused.status_code == 400

    mark = adapter.proxy.mark()
    body = adapter.get(f"/pipelines/{name}/runs").json()
    list_calls = [c for c in adapter.proxy.since(mark) if "/apis/v2beta1/runs?" in c.path]
    assert len(list_calls) == 1  # every run of the namespace fits one page of 200
    assert "filter" not in list_calls[0].path
    assert "total_size" not in body
    ids = [r["run_id"] for r in body["runs"]]
    assert ids.index(finished_runs["newer"]) < ids.index(finished_runs["older"])
    assert finished_runs["failing"] not in ids
    assert body["next_page_token"] == ""
    run = body["runs"][ids.index(finished_runs["older"])]
    assert run["pipeline_name"] == name
    assert run["experiment_name"] == "Default"
    assert run["pipeline_version_name"] == name
    assert run["state"] == "SUCCEEDED" and run["created_at"]

    paged, token = [], None
    while True:
        params = {"page_size": 1} | ({"page_token": token} if token else {})
        page = adapter.get(f"/pipelines/{body['pipeline_id']}/runs", params=params).json()
        paged += [r["run_id"] for r in page["runs"]]
        token = page["next_page_token"]
        if not token:
            break
    assert paged == ids  # complete, in order, nothing twice
    assert adapter.get(f"/pipelines/{name}/runs", params={"page_size": "x"}).status_code == 400
    bad = adapter.get(f"/pipelines/{name}/runs", params={"page_token": "not-ours"})
    assert bad.status_code == 400


def test_listing_runs_makes_no_call_per_run(adapter, finished_runs):
    proxy = adapter.proxy
    mark = proxy.mark()
    runs = adapter.get("/runs").json()
    calls = proxy.since(mark)
    assert len(runs) >= 3
    assert all("/runs/" not in c.path for c in calls)  # no GET /runs/<id>
    list_calls = [c for c in calls if "/apis/v2beta1/runs?" in c.path]
    assert len(list_calls) == math.ceil(len(runs) / PAGE_SIZE)


@pytest.fixture(scope="module")
def crowded_kfp(tmp_path_factory):
    """A separate embedded KFP server where hundreds of runs wait (one executes at a time)."""
    server = LocalKfpServer(
        data_dir=tmp_path_factory.mktemp("crowded-kfp"), port=0, max_concurrent_runs=1
    ).start()
    proxy = RecordingProxy(server.url).start()
    yield server, proxy
    proxy.stop()
    server.stop()


def test_kfp_calls_grow_with_pages_not_runs(crowded_kfp, compiled, tmp_path):
    server, proxy = crowded_kfp
    settings = Settings(
        kfp_endpoint=proxy.url + "/pipeline", data_dir=tmp_path, tracking_enabled=False
    )
    kfp = KfConnect(settings)
    pipeline = upload(kfp, "sleeper", compiled["sleeps"].read_bytes())
    experiment = kfp.find_experiment("Default")
    adapter = ServerThread(create_app(settings)).start()
    counts = {}
    try:
        created = 0
        for total in (10, 450):
            while created < total:
                kfp.create_run(
                    NewRun(
                        name=f"run-{created % 7}",
                        experiment_id=experiment["experiment_id"],
                        pipeline_id=pipeline["id"],
                        version_id=pipeline["version_id"],
                        parameters={"seconds": 30.0},
                    )
                )
                created += 1
            mark = proxy.mark()
            listed = requests.get(adapter.url + "/runs", timeout=60).json()
            assert len(listed) == total  # every run, names shared by many included
            counts[total] = proxy.count("GET", "/apis/v2beta1/runs?", since=mark)
            assert proxy.count("GET", "/apis/v2beta1/runs/", since=mark) == 0
            states = kfp.run_states([r["run_id"] for r in listed.values()])
            assert len(states) == total
    finally:
        adapter.stop()
    assert counts == {10: 1, 450: math.ceil(450 / PAGE_SIZE)}


@pytest.mark.parametrize(
    ("method", "path", "message"),
    [
        ("GET", "/runs/.", "run '.' not found"),
        ("GET", "/runs/..", "run '..' not found"),
        ("DELETE", "/runs/.", "run '.' not found"),
        ("GET", "/runs/./logs", "run '.' not found"),
        ("GET", "/recurringruns/.", "recurring run '.' not found"),
        ("GET", "/recurringruns/%2E%2E", "recurring run '..' not found"),
    ],
)
def test_dot_ids_are_404_and_never_reach_another_kfp_route(adapter, method, path, message):
    # http.client sends the path as written (requests would remove the dot segments).
    # Passed on, "runs/." would become KFP's list of runs and answer 200 with an empty run.
    import http.client
    import json
    from urllib.parse import urlsplit

    mark = adapter.proxy.mark()
    request_id = unique("dots")
    connection = http.client.HTTPConnection(urlsplit(adapter.url).netloc, timeout=30)
    try:
        connection.request(method, path, headers={"X-Request-ID": request_id})
        answer = connection.getresponse()
        body = json.loads(answer.read())
    finally:
        connection.close()
    assert answer.status == 404
    assert answer.getheader("Content-Type") == JSON
    assert body == {"status": 404, "message": message}

    def sent() -> list:
        return [c for c in adapter.proxy.since(mark) if c.headers.get("X-Request-Id") == request_id]

    assert sent() == []
    adapter.get("/runs/no-such-run", headers={"X-Request-ID": request_id})
    assert len(sent()) == 1  # an ordinary id does reach KFP, tagged with the request id


def test_runs_of_a_pipeline_among_many_read_page_by_page(crowded_kfp, compiled, tmp_path):
    """5 runs of one pipeline around 210 of another: pages of the adapter cost the KFP
    pages of 200 runs that must be read to fill them, and together hold every run once."""
    server, proxy = crowded_kfp
    settings = Settings(
        kfp_endpoint=proxy.url + "/pipeline", data_dir=tmp_path, tracking_enabled=False
    )
    kfp = KfConnect(settings)
    ours = upload(kfp, unique("ours"), compiled["sleeps"].read_bytes())
    others = upload(kfp, unique("others"), compiled["sleeps"].read_bytes())
    experiment = kfp.find_experiment("Default")

    def start(pipeline: dict, count: int) -> list[str]:
        return [
            kfp.create_run(
                NewRun(
                    name="r",
                    experiment_id=experiment["experiment_id"],
                    pipeline_id=pipeline["id"],
                    version_id=pipeline["version_id"],
                    parameters={"seconds": 30.0},
                )
            )["run_id"]
            for _ in range(count)
        ]

    oldest = start(ours, 3)
    start(others, 210)
    newest = start(ours, 2)
    expected = list(reversed(oldest + newest))  # newest first
    total = kfp.list_runs(PageRequest(page_size=1))["total_size"]  # every run of the server
    adapter = ServerThread(create_app(settings)).start()
    try:
        mark = proxy.mark()
        first = requests.get(
            f"{adapter.url}/pipelines/{ours['id']}/runs", params={"page_size": 4}, timeout=60
        ).json()
        assert [r["run_id"] for r in first["runs"]] == expected[:4]
        assert proxy.count("GET", "/apis/v2beta1/runs?", since=mark) == 2  # 200 + the rest

        mark = proxy.mark()
        second = requests.get(
            f"{adapter.url}/pipelines/{ours['id']}/runs",
            params={"page_size": 4, "page_token": first["next_page_token"]},
            timeout=60,
        ).json()
        assert [r["run_id"] for r in second["runs"]] == expected[4:]
        assert second["next_page_token"] == ""
        # from KFP's second page (where the first adapter page stopped) to the last one
        assert proxy.count("GET", "/apis/v2beta1/runs?", since=mark) == math.ceil(total / 200) - 1

        whole = requests.get(f"{adapter.url}/pipelines/{ours['id']}/runs", timeout=60).json()
        assert [r["run_id"] for r in whole["runs"]] == expected
    finally:
        adapter.stop()
