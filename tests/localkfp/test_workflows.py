"""KFP v1 (Argo Workflow) local execution, the pure parts: substitution, `when`/`depends`,
container paths, the feature check, Argo's node names and KFP's task details of them."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from kfadapter.localkfp.argo_names import NEVER, fnv32a
from kfadapter.localkfp.environments import parse_task_command
from kfadapter.localkfp.workflows import UnsupportedWorkflow, check_supported, is_workflow
from kfadapter.localkfp.workflows import nodes as argo
from kfadapter.localkfp.workflows.calls import item_description, item_values, task_items
from kfadapter.localkfp.workflows.engine import WorkflowError
from kfadapter.localkfp.workflows.expressions import (
    ExpressionError,
    depends_tasks,
    evaluate_depends,
    evaluate_when,
    substitute,
    substitute_all,
)
from kfadapter.localkfp.workflows.paths import PathMap
from tests.pipelines import V1_PIPELINES, v1_workflow

# -- substitution ----------------------------------------------------------------------------


def test_substitute_replaces_known_tags_and_keeps_the_others():
    """Argo's `{{key}}` tags, spaces inside the braces ignored; a tag not in scope stays
    (`workflow/common/util.go` substituteParams)."""
    values = {"inputs.parameters.a": "5.0", "item.b": "2"}
    text = "--a {{inputs.parameters.a}} --b {{ item.b }} --c {{tasks.x.outputs.result}}"
    assert substitute(text, values) == "--a 5.0 --b 2 --c {{tasks.x.outputs.result}}"
    assert substitute_all({"args": ["{{item.b}}", 3]}, values) == {"args": ["2", 3]}


@pytest.mark.parametrize(
    ("item", "values", "description"),
    [
        ("a", {"item": "a"}, "a"),
        (1, {"item": "1"}, "1"),
        (
            {"b": 2, "a": 1, "total": 3},
            {"item": '{"b":2,"a":1,"total":3}', "item.a": "1", "item.b": "2", "item.total": "3"},
            "a:1,b:2,total:3",
        ),
    ],
)
def test_items_are_substituted_and_named_as_argo_expands_them(item, values, description):
    """`{{item}}`, `{{item.<key>}}` and the `<task>(<i>:<item>)` node name of an expanded
    task: a map's pairs sorted (`workflow/controller/steps.go` processItem)."""
    assert item_values(item) == values
    assert item_description(item) == description


def test_with_param_is_a_json_list_and_with_sequence_counts():
    """withParam is parsed as a JSON list (else the task errors); withSequence gives
    `count` numbers from `start`, or `start`..`end` inclusive."""
    values = {"tasks.make-list.outputs.parameters.make-list-Output": "[1, 2, 3]"}
    task = {"withParam": "{{tasks.make-list.outputs.parameters.make-list-Output}}"}
    assert task_items(task, values) == [1, 2, 3]
    assert task_items({"withSequence": {"count": "3"}}, {}) == ["0", "1", "2"]
    assert task_items({"withSequence": {"start": "2", "end": "4"}}, {}) == ["2", "3", "4"]
    assert task_items({"name": "plain"}, {}) is None
    with pytest.raises(WorkflowError, match="JSON list"):
        task_items({"withParam": "not json"}, {})


# -- when and depends ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('"big" == "big"', True),  # kfp 1.8's dsl.Condition(output == "big")
        ('"small" == "big"', False),
        ("7 > 5", True),  # dsl.Condition(output > 5): numbers compare as numbers
        ("heads == heads", True),  # unquoted words are strings (shouldExecute)
        ("tails != heads && 2 <= 2", True),
        ("!(1 == 1) || false", False),
        ("'abc' =~ '^a'", True),
    ],
)
def test_when_is_evaluated_as_argo_evaluates_it(expression, expected):
    """govaluate with variables read as strings (`workflow/controller/steps.go`
    shouldExecute)."""
    assert evaluate_when(expression) is expected


@pytest.mark.parametrize("expression", ["5", '"a" ==', "a > 1", "(1 == 1"])
def test_a_when_that_is_not_boolean_is_an_error(expression):
    """Argo fails the node: 'Expected boolean evaluation', an invalid token, and so on."""
    with pytest.raises(ExpressionError):
        evaluate_when(expression)


def test_depends_reads_task_results():
    """`A` is A.Succeeded || A.Skipped (|| Daemoned); A.Failed, A.Omitted... as Argo's
    `depends` logic (`workflow/common/ancestry.go`)."""
    phases = {"a": "Succeeded", "b": "Failed", "c": "Skipped"}
    assert evaluate_depends("a && c", phases) is True
    assert evaluate_depends("a && b", phases) is False
    assert evaluate_depends("a && b.Failed", phases) is True
    assert evaluate_depends("(b.Succeeded || c.Skipped) && !a.Failed", phases) is True
    assert depends_tasks("a && (b.Failed || c)") == ["a", "b", "c"]
    with pytest.raises(ExpressionError, match="unknown task result"):
        evaluate_depends("a.Finished", phases)


# -- paths -----------------------------------------------------------------------------------


def test_container_paths_map_into_the_pods_directory(tmp_path: Path):
    """Declared artifact and parameter paths are rewritten wherever they occur, the longest
    first, and paths below a declared one follow it."""
    paths = PathMap(tmp_path / "pod", ["/tmp/outputs/Output/data", "/tmp/outputs/model"])
    local = tmp_path / "pod" / "fs"
    assert paths.local("/tmp/outputs/Output/data") == local / "tmp/outputs/Output/data"
    assert paths.rewrite("----output-paths /tmp/outputs/Output/data") == (
        f"----output-paths {local}/tmp/outputs/Output/data"
    )
    assert paths.rewrite("save('/tmp/outputs/model/weights.h5')") == (
        f"save('{local}/tmp/outputs/model/weights.h5')"
    )
    assert paths.rewrite("/tmp/other") == "/tmp/other"


# -- kfp 1.8's pip install wrapper -------------------------------------------------------------


def test_kfp_1_8_packages_to_install_become_the_tasks_environment():
    """kfp 1.8 puts `(pip install P || pip install P --user) && "$0" "$@"` in front of a
    lightweight component (`kfp/components/_python_op.py`): the packages are the
    environment's install step, the rest is the program."""
    template = next(t for t in v1_workflow("packages")["spec"]["templates"] if "container" in t)
    command = template["container"]["command"] + template["container"]["args"]
    parsed = parse_task_command(command)
    assert [step.requirements for step in parsed.steps] == [("kfadapter-v1-probe==0.1.0",)]
    assert parsed.program[:2] == ["sh", "-ec"]
    assert "python3 -u" in parsed.program[2]


# -- the feature check -----------------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in V1_PIPELINES if n != "unsupported"])
def test_the_kfp_1_8_pipelines_pass_the_feature_check(name):
    """What kfp 1.8 compiles for lightweight components, conditions, loops, artifacts, exit
    handlers and retries runs locally."""
    workflow = v1_workflow(name)
    assert is_workflow(workflow)
    check_supported(workflow)


def test_a_resource_template_is_refused_naming_it():
    """dsl.ResourceOp compiles to a `resource` template: it needs a cluster."""
    with pytest.raises(
        UnsupportedWorkflow, match=r"resource templates \(template 'make-config-map'\)"
    ):
        check_supported(v1_workflow("unsupported"))


def _with(change) -> dict:
    workflow = copy.deepcopy(v1_workflow("add_subtract_multiply"))
    change(workflow["spec"], next(t for t in workflow["spec"]["templates"] if t["name"] == "add"))
    return workflow


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda s, t: t.update(sidecars=[{"name": "db", "image": "redis"}]), "sidecars"),
        (lambda s, t: t.update(initContainers=[{"name": "i", "image": "a"}]), "init containers"),
        (lambda s, t: t.update(daemon=True), "daemon templates"),
        (lambda s, t: t.update(volumes=[{"name": "v", "emptyDir": {}}]), "volumes"),
        (lambda s, t: t["container"].update(volumeMounts=[{"name": "v"}]), "volume mounts"),
        (
            lambda s, t: t["container"].update(env=[{"name": "X", "valueFrom": {}}]),
            "valueFrom",
        ),
        (lambda s, t: s.update(volumeClaimTemplates=[{}]), "volumes"),
        (lambda s, t: s["templates"].append({"name": "wait", "suspend": {}}), "suspend templates"),
        (lambda s, t: s["templates"].append({"name": "h", "http": {"url": "x"}}), "http templates"),
        (lambda s, t: s.update(suspend=True), "suspended workflow"),
        (
            lambda s, t: t["container"]["args"].append("{{=sprig.upper('a')}}"),
            "expression tags",
        ),
        (
            lambda s, t: t.update(inputs={"artifacts": [{"name": "d", "s3": {"key": "k"}}]}),
            "s3 input artifacts",
        ),
    ],
)
def test_other_features_are_refused_at_once_naming_them(change, named):
    """Anything the local runner cannot do fails the run before any task starts, with a
    message naming the feature (and the template)."""
    with pytest.raises(UnsupportedWorkflow, match=named) as raised:
        check_supported(_with(change))
    assert "no task was started" in str(raised.value)


# -- Argo's node names and KFP's task details ------------------------------------------------


def test_node_ids_and_pod_names_are_argos():
    """Node id `<wf>-<FNV-1a 32 of the node name>` (Argo's `NodeID`); a pod is
    `<wf>-<template>-<same number>` (POD_NAMES v2; KFP's `RetrievePodName`,
    `backend/src/common/util/workflow.go`); the workflow's own node keeps its name."""
    tree = argo.NodeTree("wf-abcde", _Sink())
    assert tree.id_of("wf-abcde.add") == f"wf-abcde-{fnv32a('wf-abcde.add')}"
    assert argo.pod_name("wf-abcde", "wf-abcde.add", "add") == (
        f"wf-abcde-add-{fnv32a('wf-abcde.add')}"
    )
    assert argo.pod_name("wf-abcde", "wf-abcde", "main") == "wf-abcde"
    workflow = {"metadata": {"generateName": "add-subtract-multiply-v1-"}}
    name = argo.workflow_name(workflow, "run-1")
    assert (
        name.startswith("add-subtract-multiply-v1-")
        and len(name) == len("add-subtract-multiply-v1-") + 5
    )
    assert argo.workflow_name(workflow, "run-1") == name  # fixed per run


@pytest.mark.parametrize(
    ("name", "boundary", "display"),
    [
        ("wf", None, "wf"),
        ("wf.onExit", None, "wf.onExit"),
        ("wf.add", "wf", "add"),
        ("wf.for-loop-2(0:a:1,b:2)", "wf", "for-loop-2(0:a:1,b:2)"),
        ("wf.for-loop-2(0:1).square", "wf.for-loop-2(0:1)", "square"),
        ("wf.steps[0]", "wf.steps", "[0]"),
        ("wf.steps[1].hello", "wf.steps", "hello"),
        ("wf.task(1)", "wf", "task(1)"),
    ],
)
def test_display_names_are_the_name_without_its_boundary(name, boundary, display):
    """Argo's `initializeNode`: the node name without its boundary node's name and the `.`
    or `[i].` that follows (`stepsOrDagSeparator`)."""
    tree = argo.NodeTree("wf", _Sink())
    assert tree.start(name, argo.POD, "t", boundary).display_name == display


def test_task_details_are_one_entry_per_node_sorted_by_node_id():
    """KFP 2.17 reports a V1 run's nodes (`NodeStatuses`, `toModelTasks` sorted by node id,
    `toApiPipelineTaskDetail`): display name, v2 state (Error -> FAILED; Omitted has none),
    end `0001-01-01T00:00:00Z` while running, children's node ids; no pod name or error."""
    sink = _Sink()
    tree = argo.NodeTree("wf-x", sink)
    tree.start("wf-x", argo.DAG, "main", None)
    tree.add_child("wf-x", "wf-x.a")
    tree.start("wf-x.a", argo.POD, "a", "wf-x")
    tree.finish("wf-x.a", argo.ERROR, "the command 'x' is not installed here")
    tree.start("wf-x.b", argo.SKIPPED_NODE, "b", "wf-x", argo.OMITTED, "omitted")
    nodes = {event["node"]["name"]: event["node"] for event in sink.events}
    details = argo.task_details("run-1", "wf-x", nodes.values(), created="2026-01-01T00:00:00Z")
    ids = [argo.NodeTree("wf-x", sink).id_of(name) for name in ("wf-x", "wf-x.a", "wf-x.b")]
    by_name = {detail["display_name"]: detail for detail in details}
    assert [d["display_name"] for d in details] == [
        name for _, name in sorted(zip(ids, ["wf-x", "a", "b"], strict=True))
    ]
    assert by_name["wf-x"]["state"] == "RUNNING" and by_name["wf-x"]["end_time"] == NEVER
    assert by_name["wf-x"]["child_tasks"] == [{"pod_name": ids[1]}]
    assert by_name["a"]["state"] == "FAILED" and by_name["a"]["end_time"] != NEVER
    assert "state" not in by_name["b"]
    assert all("pod_name" not in d and "error" not in d for d in details)
    assert len({d["task_id"] for d in details}) == 3


class _Sink:
    """Collects emitted events."""

    def __init__(self) -> None:
        self.events: list[dict] = []

    def emit(self, event: str, **fields) -> None:
        self.events.append({"event": event, **fields})
