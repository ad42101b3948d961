"""The pods of a KFP v1 run's tasks, named from its task details and its workflow (fast).

KFP 2.17's task details of a V1 run are the workflow's Argo nodes, with display names and
their children's node ids only (`backend/src/common/util/workflow.go` NodeStatuses,
`server/api_converter.go` toModelTasks and toApiPipelineTaskDetail). A node's pod is
`<workflow>-<template>-<FNV-1a 32 of the node name>` (`common/util/workflow.go`
RetrievePodName, Argo's POD_NAMES v2), and node names follow Argo's controller
(`workflow/controller/dag.go`, `steps.go`, `operator.go`): `<dag node>.<task>`,
`<task>(<i>:<item>)`, a retry's `<node>(<n>)`, `<steps node>[<i>].<step>`,
`<workflow>.onExit`. The recorded runs (tests/data/v1_task_details.json) hold what the
embedded server's engine itself named each node's pod, which the adapter must find.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from kfadapter.argo_workflows import fnv32a
from kfadapter.kfp.flatten import flatten_run, run_tasks, v1_version
from kfadapter.localkfp.argo_names import task_detail_id
from tests.pipelines import v1_workflow

RECORDED = json.loads(
    (Path(__file__).parent / "data" / "v1_task_details.json").read_text(encoding="utf-8")
)


def _expected_pods(run_id: str, nodes: dict[str, str]) -> dict[str, list[str]]:
    """task_id -> pods, from the engine's own record: a pod node its pod, a retried node
    its attempts' pods (newest first), any other node none. The embedded server's task_id
    of a node is a uuid5 of its name (kfadapter/localkfp/argo_names.py task_detail_id)."""
    expected = {}
    for name, pod in nodes.items():
        attempts = {
            int(match[1]): nodes[other]
            for other in nodes
            if (match := re.fullmatch(r"\((\d+)\)", other[len(name) :])) and other.startswith(name)
        }
        pods = [pod] if pod else [attempts[n] for n in sorted(attempts, reverse=True)]
        expected[task_detail_id(run_id, name)] = pods
    return expected


@pytest.mark.parametrize("name", ["add_subtract_multiply", "loop", "artifact"])
def test_each_task_of_a_recorded_v1_run_names_the_pod_its_node_ran(name: str) -> None:
    """Every task gets the pods the engine ran for its node: in `loop`, items of a
    withItems (of dicts) and a withParam, and a task nested in each item's DAG (several
    entries of one display name); in `artifact`, a retried task (its attempts' pods, the
    newest first, and each attempt its own) and the exit handler's pod."""
    recorded = RECORDED[name]
    tasks = run_tasks(recorded["task_details"], v1_workflow(name))
    expected = _expected_pods(recorded["run_id"], recorded["nodes"])
    assert {task["task_id"]: task["pods"] for task in tasks} == {
        task["task_id"]: expected[task["task_id"]] for task in tasks
    }
    named = {pod for task in tasks for pod in task["pods"]}
    assert named == {pod for pod in recorded["nodes"].values() if pod}  # every pod found
    if name == "artifact":
        nodes = recorded["nodes"]
        retried = next(task for task in tasks if task["name"] == "write-lines")
        attempt = "artifact-v1-wsh96.exit-handler-1.write-lines({})"
        assert retried["pods"] == [nodes[attempt.format(1)], nodes[attempt.format(0)]]


def test_without_the_workflow_or_with_another_a_v1_task_names_no_pod() -> None:
    """The template is not in task details: without the workflow no pod is named, and a
    workflow whose DAG does not match the nodes names none either (never a wrong one)."""
    details = RECORDED["add_subtract_multiply"]["task_details"]
    assert all(task["pods"] == [] for task in run_tasks(details))
    other = v1_workflow("loop")
    assert all(task["pods"] == [] for task in run_tasks(details, other))


def test_a_v1_run_needs_its_version_and_a_v2_run_does_not() -> None:
    """`v1_version` says which version holds a V1 run's workflow; a v2 run (its details
    have KFP's `root-driver` node), a run with no details yet, or one carrying its
    workflow inline needs no call, and flatten_run reads an inline workflow itself."""
    recorded = RECORDED["add_subtract_multiply"]
    run = {
        "run_id": recorded["run_id"],
        "pipeline_version_reference": {"pipeline_id": "p", "pipeline_version_id": "v"},
        "run_details": {"task_details": recorded["task_details"]},
    }
    assert v1_version(run) == ("p", "v")
    assert v1_version({**run, "run_details": {}}) is None
    v2 = copy.deepcopy(run)
    v2["run_details"]["task_details"].append({"display_name": "root-driver"})
    assert v1_version(v2) is None
    inline = {**run, "pipeline_spec": v1_workflow("add_subtract_multiply")}
    assert v1_version(inline) is None
    assert all(task["pods"] for task in flatten_run(inline)["tasks"])


def _detail(display: str, children: list[str] = (), state: str = "SUCCEEDED") -> dict[str, Any]:
    return {
        "task_id": f"t-{display}",
        "display_name": display,
        "state": state,
        "child_tasks": [{"pod_name": child} for child in children],
    }


def test_steps_items_and_a_skipped_step() -> None:
    """A steps template: groups `<wf>[<i>]`, steps `<wf>[<i>].<step>`, a step's items
    directly in its group (Argo's steps.go expands them in place, no TaskGroup), and a
    step skipped by its `when` (no pod ran: none is named)."""
    wf = "steps-abcde"
    workflow = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "spec": {
            "entrypoint": "main",
            "templates": [
                {
                    "name": "main",
                    "steps": [
                        [{"name": "hello", "template": "say", "withItems": [1, 2]}],
                        [{"name": "bye", "template": "say", "when": "1 == 2"}],
                    ],
                },
                {"name": "say", "container": {"image": "alpine", "command": ["echo"]}},
            ],
        },
    }

    def node(name: str) -> str:
        return f"{wf}-{fnv32a(name)}"

    group0, group1 = f"{wf}[0]", f"{wf}[1]"
    items = [f"{group0}.hello(0:1)", f"{group0}.hello(1:2)"]
    details = [
        _detail(wf, [node(group0)]),
        _detail("[0]", [node(i) for i in items]),
        _detail("hello(0:1)", [node(group1)]),
        _detail("hello(1:2)", [node(group1)]),
        _detail("[1]", [node(f"{group1}.bye")]),
        _detail("bye", state="SKIPPED"),
    ]
    pods = {task["name"]: task["pods"] for task in run_tasks(details, workflow)}
    assert pods == {
        "[0]": [],
        "hello(0:1)": [f"{wf}-say-{fnv32a(items[0])}"],
        "hello(1:2)": [f"{wf}-say-{fnv32a(items[1])}"],
        "[1]": [],
        "bye": [],
    }
