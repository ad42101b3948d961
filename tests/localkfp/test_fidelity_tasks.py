"""A run's task details, logs and artifacts as KFP 2.17 serves them for a v2 run on Argo.

KFP paths (tag 2.17.0, repository kubeflow/pipelines) are cited in each test. The node
tree a v2 run has on Argo comes from the compiler (`backend/src/v2/compiler/argocompiler/
argo.go`, `dag.go`, `container.go`): the workflow's node, `root-driver`, `root`, and for
each task `T` the nodes `T-driver`, `T` and `T.executor`; Argo names nodes
`<parent>.<task>` with ids `<workflow>-<FNV-1a 32 of the name>`.
"""

import base64
import re
import time
from pathlib import Path

import pytest
import requests
from kfp import compiler, dsl

from kfadapter.localkfp.argo_nodes import fnv32a
from tests.localkfp import dsl_pipelines
from tests.localkfp.conftest import client_for

pytestmark = pytest.mark.e2e  # real servers and runs on free ports

NEVER = "0001-01-01T00:00:00Z"  # Go's zero time.Time as a protobuf Timestamp
ASM_TASKS = {  # add_subtract_multiply: task -> the tasks it waits for
    "add": [],
    "subtract": [],
    "multiply": ["add", "subtract"],
    "check-equals": ["multiply"],
}


@dsl.component(base_image="python:3.11")
def say(text: str) -> str:
    print(f"saying {text}")
    return text


@dsl.pipeline(name="inner")
def inner(text: str = "hi") -> str:
    # kfp.Client's enable_caching=False reaches only the root DAG's tasks: these say the
    # same text, so they would be taken from KFP's task cache
    first = say(text=text).set_caching_options(False)
    again = say(text=first.output).set_caching_options(False)
    return again.set_display_name("say-again").output


@dsl.pipeline(name="nested")
def nested(text: str = "hello"):
    first = say(text=text)
    sub = inner(text=first.output)
    say(text=sub.output).after(sub)


def node_id(workflow: str, name: str) -> str:
    """Argo's node id (workflow/util: `NodeID`): the workflow's name, or name-hash."""
    return workflow if name == workflow else f"{workflow}-{fnv32a(name)}"


def pod_of(workflow: str, name: str) -> str:
    """An executor's pod name (`common/util/workflow.go` `RetrievePodName`)."""
    return f"{workflow}-system-container-impl-{fnv32a(name)}"


def expected_tree(workflow: str, dags: dict[str, dict[str, list[str]]]) -> dict[str, list[str]]:
    """Node name -> child node names for container tasks in DAGs (path -> task -> needs).

    A task's driver is a child of its DAG when it needs nothing, else of the outbound
    nodes (the executor pods) of each task it needs; a sub-DAG's outbound nodes are those
    of its last tasks.
    """
    tree: dict[str, list[str]] = {workflow: [f"{workflow}.root-driver"]}
    tree[f"{workflow}.root-driver"] = [f"{workflow}.root"]

    def outbound(dag: str, task: str) -> list[str]:
        inner_path = f"{dag}.{task}"
        if inner_path.removeprefix(f"{workflow}.root").lstrip(".") in dags:
            tasks = dags[inner_path.removeprefix(f"{workflow}.root").lstrip(".")]
            needed = {n for needs in tasks.values() for n in needs}
            return [o for t in tasks if t not in needed for o in outbound(inner_path, t)]
        return [f"{inner_path}.executor"]

    for path, tasks in dags.items():
        dag = f"{workflow}.root" + (f".{path}" if path else "")
        tree.setdefault(dag, [])
        for task, needs in tasks.items():
            name = f"{dag}.{task}"
            tree[f"{name}-driver"] = [name]
            if (f"{path}.{task}" if path else task) not in dags:
                tree[name] = [f"{name}.executor"]
                tree.setdefault(f"{name}.executor", [])
            if not needs:
                tree[dag].append(f"{name}-driver")
            for need in needs:
                for out in outbound(dag, need):
                    tree.setdefault(out, []).append(f"{name}-driver")
    return tree


def workflow_of(details: list[dict]) -> str:
    """The workflow's name: what every child id (`<workflow>-<hash>`) starts with."""
    children = {c["pod_name"] for d in details for c in d.get("child_tasks") or []}
    (workflow,) = {child.rpartition("-")[0] for child in children}
    return workflow


def assert_argo_shape(details: list[dict], run_id: str, dags: dict) -> str:
    """The details are exactly the nodes of the DAGs' tree, sorted by node id, each with
    its display name and children; the workflow's name is returned."""
    workflow = workflow_of(details)
    tree = expected_tree(workflow, dags)
    ids = {node_id(workflow, name): name for name in tree}
    assert len(ids) == len(tree) == len(details)
    for detail, node in zip(details, sorted(ids), strict=True):
        name = ids[node]
        display = workflow if name == workflow else name.rsplit(".", 1)[-1]
        assert detail["display_name"] == display, (name, detail)
        children = [c["pod_name"] for c in detail.get("child_tasks") or []]
        assert sorted(children) == sorted(node_id(workflow, c) for c in tree[name]), name
        assert detail["run_id"] == run_id and detail["task_id"]
        assert not {"pod_name", "error", "inputs", "outputs", "state_history"} & set(detail)
        assert all(set(c) == {"pod_name"} for c in detail.get("child_tasks") or [])
    assert len({d["create_time"] for d in details}) == 1  # the workflow's creation time
    assert len({d["task_id"] for d in details}) == len(details)
    return workflow


def wait_for(url: str, run_id: str, check, deadline: float = 180.0) -> dict:
    """GET the run until check(run) is true."""
    stop = time.monotonic() + deadline
    while True:
        run = requests.get(f"{url}/apis/v2beta1/runs/{run_id}", timeout=30).json()
        if check(run):
            return run
        assert time.monotonic() < stop, f"run {run_id}: {run.get('state')}"
        time.sleep(0.3)


def finished(run: dict) -> bool:
    return run.get("state") in ("SUCCEEDED", "FAILED", "CANCELED", "SKIPPED")


@pytest.fixture(scope="module")
def runs(real_server, compiled, tmp_path_factory) -> dict[str, str]:
    """The module's runs, started together: label -> run id."""
    client = client_for(real_server)
    nested_package = tmp_path_factory.mktemp("nested") / "nested.yaml"
    compiler.Compiler().compile(nested, str(nested_package))

    def start(package: str, arguments: dict):
        # every task executes (its nodes are what is checked), whatever ran before
        return client.create_run_from_pipeline_package(
            package, arguments=arguments, enable_caching=False
        )

    return {
        "asm": start(str(compiled["add_subtract_multiply"]), arguments={}).run_id,
        "sleeps": start(str(compiled["sleeps"]), arguments={"seconds": 600}).run_id,
        "nested": start(str(nested_package), arguments={}).run_id,
    }


def test_fnv1a_is_argos_node_hash():
    """Argo hashes node names with FNV-1a 32 (`pkg/apis/workflow/v1alpha1`, `NodeID`):
    the published test vectors of the hash."""
    assert [fnv32a(text) for text in ("", "a", "foobar")] == [
        0x811C9DC5,
        0xE40C292C,
        0xBF9CF968,
    ]


def test_a_finished_run_has_one_task_per_argo_node(real_server, runs):
    """`server/api_converter.go` `toModelTasks` (one task per node of
    `common/util/workflow.go` `NodeStatuses`, sorted), `toApiPipelineTaskDetail` (no
    pod_name, error, inputs, outputs or state history; child ids as Argo gives them)."""
    run = wait_for(real_server.url, runs["asm"], finished)
    assert run["state"] == "SUCCEEDED"
    details = run["run_details"]["task_details"]
    workflow = assert_argo_shape(details, runs["asm"], {"": ASM_TASKS})
    # argo.go: generateName `<pipelineInfo.name>-`; Kubernetes adds 5 characters
    assert re.fullmatch(r"add-subtract-multiply-[bcdfghjklmnpqrstvwxz2456789]{5}", workflow)
    assert {d["state"] for d in details} == {"SUCCEEDED"}
    assert all(d["start_time"] <= d["end_time"] != NEVER for d in details)

    typed = client_for(real_server).get_run(runs["asm"]).run_details.task_details
    assert [t.display_name for t in typed] == [d["display_name"] for d in details]
    assert all(t.pod_name is None and t.error is None for t in typed)


def test_a_running_task_ends_at_go_zero_time_and_terminating_fails_it(real_server, runs):
    """A node still running has FinishedAt zero: `NodeStatuses` reads `.Unix()` of Go's
    zero time, which `toApiPipelineTaskDetail` sends as 0001-01-01T00:00:00Z. A terminated
    workflow's nodes end Failed (Argo has no canceled phase; `model.RuntimeState.ToV2`)."""
    url, run_id = real_server.url, runs["sleeps"]

    def sleeping(run: dict) -> bool:
        return any(
            d["display_name"] == "executor"
            for d in (run.get("run_details") or {}).get("task_details") or []
        )

    run = wait_for(url, run_id, sleeping)
    details = run["run_details"]["task_details"]
    tree = {"": {"sleep-for": []}}
    workflow = assert_argo_shape(details, run_id, tree)
    states = {d["display_name"]: (d["state"], d["end_time"]) for d in details}
    for name in (workflow, "root", "sleep-for", "executor"):
        assert states[name] == ("RUNNING", NEVER), name
    for name in ("root-driver", "sleep-for-driver"):
        assert states[name][0] == "SUCCEEDED" and states[name][1] != NEVER
    typed = client_for(real_server).get_run(run_id).run_details.task_details
    assert {t.end_time.year for t in typed if t.state == "RUNNING"} == {1}  # kfp.Client reads it

    assert requests.post(f"{url}/apis/v2beta1/runs/{run_id}:terminate", timeout=30).ok
    run = wait_for(url, run_id, finished)
    details = run["run_details"]["task_details"]
    assert_argo_shape(details, run_id, tree)
    for detail in details:
        if not detail["display_name"].endswith("-driver"):
            assert detail["state"] == "FAILED" and detail["end_time"] != NEVER, detail


def test_a_nested_pipeline_has_its_dag_nodes(real_server, runs):
    """A sub-pipeline task `S` is `S-driver` (`system-dag-driver`) and the DAG `S` holding
    its tasks (`argocompiler/dag.go`: `dag.Depends = S-driver`); the tasks after `S` wait
    for its last tasks' pods (Argo's outbound nodes of a DAG). The DAG node's phase and
    times are its own (`common/util/workflow.go` `NodeStatuses`)."""
    run = wait_for(real_server.url, runs["nested"], finished)
    assert run["state"] == "SUCCEEDED"
    dags = {
        "": {"say": [], "inner": ["say"], "say-2": ["inner"]},
        "inner": {"say": [], "say-2": ["say"]},
    }
    details = run["run_details"]["task_details"]
    workflow = assert_argo_shape(details, runs["nested"], dags)
    assert {d["state"] for d in details} == {"SUCCEEDED"}
    # the sub-DAG's node has the state and times the worker reports for it, around its tasks'
    nodes = by_node(details)
    inner_dag = nodes[node_id(workflow, f"{workflow}.root.inner")]
    inner_tasks = [
        nodes[node_id(workflow, f"{workflow}.root.inner.{task}.executor")] for task in dags["inner"]
    ]
    assert inner_dag["start_time"] <= min(t["start_time"] for t in inner_tasks)
    assert NEVER != inner_dag["end_time"] >= max(t["end_time"] for t in inner_tasks)


def test_logs_are_read_by_executor_pod_name(real_server, runs):
    """`/apis/v1alpha1/runs/{run}/nodes/{node}/log` reads the pod named `node`
    (`resource/resource_manager.go` `ReadLog`, `readRunLogFromPod`); anything else,
    an unknown run included, is HTTP 500 with `{"error_message", "error_details"}`
    (`server/run_log_server.go` `ReadRunLogV1`, `writeErrorToResponse`)."""
    url, run_id = real_server.url, runs["asm"]
    run = wait_for(url, run_id, finished)
    workflow = workflow_of(run["run_details"]["task_details"])
    for task in ASM_TASKS:
        pod = pod_of(workflow, f"{workflow}.root.{task}.executor")
        answer = requests.get(f"{url}/apis/v1alpha1/runs/{run_id}/nodes/{pod}/log", timeout=30)
        assert answer.status_code == 200, (task, answer.text)
        assert f"component `{task.replace('-', '_')}`" in answer.text
    executor_node = node_id(workflow, f"{workflow}.root.add.executor")
    task_id = run["run_details"]["task_details"][0]["task_id"]
    for wrong, where in [
        ("add", run_id),  # the task's name
        (executor_node, run_id),  # the Argo node id, not the pod's name
        (task_id, run_id),
        (pod_of(workflow, f"{workflow}.root.add.executor"), "no-such-run"),
    ]:
        answer = requests.get(f"{url}/apis/v1alpha1/runs/{where}/nodes/{wrong}/log", timeout=30)
        assert answer.status_code == 500, (wrong, answer.text)
        body = answer.json()
        assert set(body) == {"error_message", "error_details"}
        assert body["error_message"].startswith(f"Failed to read logs for run {where}")


def test_read_artifact_returns_an_executor_nodes_archived_log(real_server, runs):
    """`server/run_server.go` `ReadArtifact` -> `resource_manager.go` `ReadArtifact`:
    the node's Argo output artifact by name (`common/util/workflow.go`
    `FindObjectStoreArtifactKeyOrEmpty`, keyed by Argo node id), its file as base64
    `data`. A v2 pod's only Argo output is the archived log `main-logs`; anything else is
    404 (gRPC NOT_FOUND, 5)."""
    url, run_id = real_server.url, runs["asm"]
    run = wait_for(url, run_id, finished)
    workflow = workflow_of(run["run_details"]["task_details"])
    name = f"{workflow}.root.multiply.executor"
    node, pod = node_id(workflow, name), pod_of(workflow, name)
    read = f"{url}/apis/v2beta1/runs/{run_id}/nodes/{{}}/artifacts/{{}}:read"
    found = requests.get(read.format(node, "main-logs"), timeout=30)
    assert found.status_code == 200, found.text
    assert set(found.json()) == {"data"}
    data = base64.b64decode(found.json()["data"])
    log = requests.get(f"{url}/apis/v1alpha1/runs/{run_id}/nodes/{pod}/log", timeout=30)
    assert data == log.content and b"component `multiply`" in data
    for wrong_node, artifact in [(node, "Output"), (pod, "main-logs"), ("nope", "main-logs")]:
        answer = requests.get(read.format(wrong_node, artifact), timeout=30)
        assert answer.status_code == 404, (wrong_node, artifact)
        body = answer.json()
        assert body["code"] == 5 and "not found" in body["message"]
    unknown = requests.get(
        f"{url}/apis/v2beta1/runs/no-such-run/nodes/{node}/artifacts/main-logs:read", timeout=30
    )
    assert unknown.status_code == 404 and unknown.json()["code"] == 5
    prefixed = requests.get(
        f"{url}/pipeline/apis/v2beta1/runs/{run_id}/nodes/{node}/artifacts/main-logs:read",
        timeout=30,
    )
    assert prefixed.status_code == 200 and prefixed.json() == found.json()


def test_log_files_are_linked_under_pod_names(real_server, runs):
    """Where the embedded server keeps them: logs/<pod>.log beside the worker's file."""
    run = wait_for(real_server.url, runs["asm"], finished)
    logs = Path(real_server.data_dir) / "runs" / runs["asm"] / "logs"
    linked = sorted(p.name for p in logs.iterdir() if p.is_symlink())
    assert len(linked) == 4 and all("-system-container-impl-" in n for n in linked)
    assert run["state"] == "SUCCEEDED"


@pytest.fixture(scope="module")
def dag_runs(real_server, tmp_path_factory) -> dict[str, str]:
    """A ParallelFor run and a condition run (the Elif branch taken): label -> run id."""
    client = client_for(real_server)
    directory = tmp_path_factory.mktemp("dags")
    packages = {}
    for name in ("printed_loop", "conditions"):
        packages[name] = str(directory / f"{name}.yaml")
        compiler.Compiler().compile(getattr(dsl_pipelines, name), packages[name])

    def start(package: str, arguments: dict):
        # every task executes (its nodes are what is checked), whatever ran before
        return client.create_run_from_pipeline_package(
            package, arguments=arguments, enable_caching=False
        )

    return {
        "loop": start(packages["printed_loop"], arguments={"items": [7, 8, 9]}).run_id,
        "conditions": start(
            packages["conditions"], arguments={"number": 0, "expected": "zero"}
        ).run_id,
    }


def by_node(details: list[dict]) -> dict[str, dict]:
    """Argo node id -> entry: the entries are sorted by node id, and every node but the
    workflow's is the child of one."""
    workflow = workflow_of(details)
    ids = sorted({workflow} | {c["pod_name"] for d in details for c in d.get("child_tasks") or []})
    assert len(ids) == len(details)
    return dict(zip(ids, details, strict=True))


def children(entry: dict) -> list[str]:
    return sorted(c["pod_name"] for c in entry.get("child_tasks") or [])


def test_a_parallel_for_has_each_iterations_tasks_and_logs(real_server, dag_runs):
    """KFP's Argo compiler (`argocompiler/dag.go` `iteratorTask`, `iterationItemTask`)
    makes a ParallelFor `L` a DAG of `iteration-driver` and `iteration-iterations`, a
    `withSequence` Argo expands (`workflow/controller/dag.go` `expandTask`, `processItem`)
    into a TaskGroup of DAGs `iteration-iterations(i:i)`, each `iteration-item-driver` >
    `iteration-item` > the body's `T-driver` > `T` > `executor`; the task after the loop
    waits for every iteration's pod. Each iteration's executor is its own pod, whose log
    (`run_log_server.go`) and archived `main-logs` (`ReadArtifact`, by node id) hold that
    iteration's output."""
    url, run_id = real_server.url, dag_runs["loop"]
    run = wait_for(url, run_id, finished)
    assert run["state"] == "SUCCEEDED"
    details = run["run_details"]["task_details"]
    nodes, workflow = by_node(details), workflow_of(details)
    assert len({d["task_id"] for d in details}) == len(details)
    loop = f"{workflow}.root.for-loop-1"
    items = [f"{loop}.iteration-iterations({i}:{i})" for i in range(3)]
    expected = {
        f"{workflow}.root": [loop],  # total waits for the loop: not a root task
        loop: [f"{loop}.iteration-driver"],
        f"{loop}.iteration-driver": [f"{loop}.iteration-iterations"],
        f"{loop}.iteration-iterations": items,
    }
    for item in items:
        body = f"{item}.iteration-item"
        expected |= {
            item: [f"{item}.iteration-item-driver"],
            f"{item}.iteration-item-driver": [body],
            body: [f"{body}.shout-driver"],
            f"{body}.shout-driver": [f"{body}.shout"],
            f"{body}.shout": [f"{body}.shout.executor"],
            f"{body}.shout.executor": [f"{workflow}.root.total-driver"],
        }
    for name, kids in expected.items():
        entry = nodes[node_id(workflow, name)]
        assert entry["display_name"] == name.rpartition(".")[2], name
        assert children(entry) == sorted(node_id(workflow, k) for k in kids), name
        assert entry["state"] == "SUCCEEDED" and entry["end_time"] != NEVER, name
    assert [nodes[node_id(workflow, i)]["display_name"] for i in items] == [
        "iteration-iterations(0:0)",
        "iteration-iterations(1:1)",
        "iteration-iterations(2:2)",
    ]
    # the workflow, root-driver, root; L, its driver, the TaskGroup; each iteration with
    # its item's driver, its item and shout's 3 nodes; total's 3 nodes
    assert len(details) == 3 + 3 + 3 * (1 + 2 + 3) + 3

    read = f"{url}/apis/v2beta1/runs/{run_id}/nodes/{{}}/artifacts/main-logs:read"
    for index, value in enumerate([7, 8, 9]):
        executor = node_id(workflow, f"{items[index]}.iteration-item.shout.executor")
        pod = pod_of(workflow, f"{items[index]}.iteration-item.shout.executor")
        log = requests.get(f"{url}/apis/v1alpha1/runs/{run_id}/nodes/{pod}/log", timeout=30)
        assert log.status_code == 200, log.text
        assert f"iteration item {value}" in log.text
        assert not any(f"iteration item {other}" in log.text for other in {7, 8, 9} - {value})
        archived = requests.get(read.format(executor), timeout=30)
        assert archived.status_code == 200
        assert base64.b64decode(archived.json()["data"]) == log.content


def test_a_condition_branch_not_taken_is_skipped(real_server, dag_runs):
    """A branch whose condition is false: its driver runs, then Argo skips its DAG task
    (`argocompiler/dag.go`: `when: <driver's condition> != false`; Argo's
    `executeDAGTask` makes a Skipped node), which KFP reports SKIPPED
    (`model.RuntimeState`, Argo's `Skipped`); the task after the group waits for the
    group's outbound nodes: the skipped nodes themselves and the taken branch's pod."""
    run = wait_for(real_server.url, dag_runs["conditions"], finished)
    assert run["state"] == "SUCCEEDED"
    details = run["run_details"]["task_details"]
    nodes, workflow = by_node(details), workflow_of(details)
    group = f"{workflow}.root.condition-branches-1"
    state = {
        name: nodes[node_id(workflow, f"{group}.{name}")]["state"]
        for name in ("condition-2", "condition-3", "condition-4")
    }
    assert state == {"condition-2": "SKIPPED", "condition-3": "SUCCEEDED", "condition-4": "SKIPPED"}
    for name in ("condition-2", "condition-4"):
        skipped = nodes[node_id(workflow, f"{group}.{name}")]
        assert children(skipped) == [node_id(workflow, f"{workflow}.root.check-driver")]
        assert skipped["end_time"] != NEVER
        assert nodes[node_id(workflow, f"{group}.{name}-driver")]["state"] == "SUCCEEDED"
    taken = f"{group}.condition-3.say-2.executor"
    assert children(nodes[node_id(workflow, taken)]) == [
        node_id(workflow, f"{workflow}.root.check-driver")
    ]
    assert nodes[node_id(workflow, group)]["state"] == "SUCCEEDED"
    assert not any(d["display_name"].startswith("say") and d["state"] == "SKIPPED" for d in details)
