"""The Argo Workflow runner on hand-written workflows (what kfp 1.8 does not compile: steps,
`depends`, scripts, withSequence, DAG outputs...), its pods real processes in real task
environments; the nodes it reports checked against Argo's controller
(`workflow/controller/operator.go`, `dag.go`, `steps.go` at the Argo release KFP 2.17 uses).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from kfadapter.localkfp.argo_names import node_id as tree_id
from kfadapter.localkfp.environments import TaskEnvironments
from kfadapter.localkfp.workflows import run_workflow

pytestmark = pytest.mark.e2e  # the pods are real processes


class Events:
    """The nodes a run reported, as they last stood."""

    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()

    def emit(self, event: str, **fields: Any) -> None:
        if event == "node":
            with self.lock:
                self.nodes[fields["node"]["name"]] = fields["node"]

    def phases(self) -> dict[str, str]:
        """Node name without the workflow's name (the shortest name) -> phase."""
        root = min(self.nodes, key=len)
        return {name[len(root) :].lstrip("."): n["phase"] for name, n in self.nodes.items()}


@pytest.fixture(scope="module")
def environments(tmp_path_factory) -> TaskEnvironments:
    return TaskEnvironments(tmp_path_factory.mktemp("env-cache"), 10**9)


def sh(name: str, script: str, **extra: Any) -> dict[str, Any]:
    """A container template running a shell script."""
    return {
        "name": name,
        "container": {"image": "alpine:3", "command": ["sh", "-c", script]},
        **extra,
    }


def workflow(entrypoint: str, *templates: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": "wf-"},
        "spec": {"entrypoint": entrypoint, "templates": list(templates), **spec},
    }


def run(
    document: dict[str, Any],
    tmp_path: Path,
    environments: TaskEnvironments,
    parameters: dict[str, str] | None = None,
    max_parallel_tasks: int = 4,
) -> tuple[str, str | None, Events]:
    events = Events()
    directory = tmp_path / "runs" / "run-1"
    directory.mkdir(parents=True)
    state, error = run_workflow(
        document, parameters or {}, directory, events, environments, max_parallel_tasks
    )
    return state, error, events


def log_of(tmp_path: Path, pod_prefix: str) -> str:
    logs = sorted((tmp_path / "runs" / "run-1" / "logs").glob(f"*-{pod_prefix}-*.log"))
    assert logs, f"no log of {pod_prefix}"
    return "\n".join(path.read_text() for path in logs)


def test_steps_run_group_after_group_with_outputs_between_them(tmp_path, environments):
    """A steps template: groups `<node>[i]` one after another, their steps at once;
    `{{steps.S.outputs.result}}` (a script's stdout) feeds the next group; a step whose
    `when` is false is Skipped (`steps.go` executeSteps, shouldExecute)."""
    document = workflow(
        "main",
        {
            "name": "main",
            "steps": [
                [{"name": "say", "template": "say"}, {"name": "other", "template": "echo"}],
                [
                    {
                        "name": "hear",
                        "template": "echo",
                        "arguments": {
                            "parameters": [
                                {"name": "text", "value": "{{steps.say.outputs.result}}"}
                            ]
                        },
                    },
                    {
                        "name": "each",
                        "template": "echo",
                        "withItems": ["x", "y"],
                        "arguments": {"parameters": [{"name": "text", "value": "item {{item}}"}]},
                    },
                    {
                        "name": "never",
                        "template": "echo",
                        "when": '"{{steps.say.outputs.result}}" == "nope"',
                    },
                ],
            ],
        },
        {
            "name": "say",
            "script": {
                "image": "python:3.11",
                "command": ["python3"],
                "source": "print('hello ' + 'steps')",
            },
        },
        sh(
            "echo",
            "echo heard: {{inputs.parameters.text}}",
            inputs={"parameters": [{"name": "text", "value": "none"}]},
        ),
    )
    state, error, events = run(document, tmp_path, environments)
    assert (state, error) == ("SUCCEEDED", None)
    phases = events.phases()
    assert phases["[0]"] == phases["[1]"] == "Succeeded"
    assert phases["[0].say"] == phases["[1].hear"] == "Succeeded"
    assert phases["[1].never"] == "Skipped"
    assert phases["[1].each(0:x)"] == phases["[1].each(1:y)"] == "Succeeded"
    assert "[1].each" not in phases  # steps have no TaskGroup: items hang from the group
    assert "heard: hello steps" in log_of(tmp_path, "echo")
    name = min(events.nodes, key=len)
    first = events.nodes[f"{name}[0]"]
    assert first["display_name"] == "[0]" and first["type"] == "StepGroup"
    group = events.nodes[f"{name}[1]"]
    assert tree_id(name, f"{name}[1].each(1:y)") in group["children"]
    # the next group hangs from the pods of the one before (addChildNode on outbound nodes)
    assert (
        events.nodes[f"{name}[0].say"]["children"] == events.nodes[f"{name}[0].other"]["children"]
    )


def test_depends_failure_paths_and_omitted_tasks(tmp_path, environments):
    """`depends` with task results: `b.Failed` runs the cleanup; a task that needs `b`
    succeeded is Omitted (a Skipped-type node, `dag.go`); the DAG fails with its failed
    task; the exit handler sees {{workflow.status}} Failed."""
    document = workflow(
        "main",
        {
            "name": "main",
            "dag": {
                "tasks": [
                    {"name": "b", "template": "fails"},
                    {"name": "cleanup", "template": "ok", "depends": "b.Failed"},
                    {"name": "next", "template": "ok", "depends": "b"},
                ]
            },
        },
        sh("fails", "echo broken >&2; exit 3"),
        sh("ok", "echo fine"),
        sh("exit", "echo status={{workflow.status}} name={{workflow.name}}"),
        onExit="exit",
    )
    state, error, events = run(document, tmp_path, environments)
    assert state == "FAILED"
    assert error == "task 'b' failed: broken"
    phases = events.phases()
    assert phases["b"] == "Failed" and phases["cleanup"] == "Succeeded"
    assert phases["next"] == "Omitted" and phases[""] == "Failed"
    assert "status=Failed name=wf-" in log_of(tmp_path, "exit")


def test_retries_are_attempt_nodes_and_exhaust(tmp_path, environments):
    """retryStrategy.limit 2: a Retry node with three failed attempts `t(0)`..`t(2)`."""
    document = workflow(
        "main",
        {"name": "main", "dag": {"tasks": [{"name": "t", "template": "flaky"}]}},
        sh("flaky", "echo attempt {{retries}}; exit 1", retryStrategy={"limit": "2"}),
    )
    state, _, events = run(document, tmp_path, environments)
    assert state == "FAILED"
    phases = events.phases()
    assert [phases[f"t({i})"] for i in range(3)] == ["Failed"] * 3
    assert phases["t"] == "Failed" and "t(3)" not in phases
    assert "attempt 2" in log_of(tmp_path, "flaky")


def test_with_sequence_dag_outputs_and_workflow_parameters(tmp_path, environments):
    """withSequence expands a task; a DAG template's output parameter comes from a task's
    (`valueFrom.parameter`); `{{workflow.parameters.X}}` takes the run's value."""
    document = workflow(
        "main",
        {
            "name": "main",
            "dag": {
                "tasks": [
                    {"name": "inner", "template": "inner"},
                    {
                        "name": "use",
                        "template": "echo",
                        "dependencies": ["inner"],
                        "arguments": {
                            "parameters": [
                                {"name": "text", "value": "{{tasks.inner.outputs.parameters.word}}"}
                            ]
                        },
                    },
                    {
                        "name": "count",
                        "template": "echo",
                        "withSequence": {"count": "2"},
                        "arguments": {"parameters": [{"name": "text", "value": "n{{item}}"}]},
                    },
                ]
            },
        },
        {
            "name": "inner",
            "dag": {"tasks": [{"name": "write", "template": "write"}]},
            "outputs": {
                "parameters": [
                    {
                        "name": "word",
                        "valueFrom": {"parameter": "{{tasks.write.outputs.parameters.word}}"},
                    }
                ]
            },
        },
        sh(
            "write",
            "mkdir -p /tmp/out && printf '%s' {{workflow.parameters.word}} > /tmp/out/word",
            outputs={"parameters": [{"name": "word", "valueFrom": {"path": "/tmp/out/word"}}]},
        ),
        sh(
            "echo", "echo got {{inputs.parameters.text}}", inputs={"parameters": [{"name": "text"}]}
        ),
        arguments={"parameters": [{"name": "word", "value": "default"}]},
    )
    state, error, events = run(document, tmp_path, environments, {"word": "given"})
    assert (state, error) == ("SUCCEEDED", None)
    phases = events.phases()
    assert (
        phases["count"] == "Succeeded"
        and phases["count(0:0)"] == phases["count(1:1)"] == "Succeeded"
    )
    text = log_of(tmp_path, "echo")
    assert "got given" in text and "got n0" in text and "got n1" in text


def test_pods_of_a_run_are_bounded_by_max_parallel_tasks(tmp_path, environments):
    """Three independent pods with --max-parallel-tasks 1 run one after another."""
    document = workflow(
        "main",
        {
            "name": "main",
            "dag": {"tasks": [{"name": f"t{i}", "template": "nap"} for i in range(3)]},
        },
        sh("nap", "sleep 0.3"),
    )
    started = time.monotonic()
    state, _, events = run(document, tmp_path, environments, max_parallel_tasks=1)
    assert state == "SUCCEEDED"
    assert time.monotonic() - started >= 0.9
    spans = sorted((n["start"], n["end"]) for n in events.nodes.values() if n["type"] == "Pod")
    assert len(spans) == 3


def test_a_missing_input_errors_the_node(tmp_path, environments):
    """An input parameter with no value and no default: the node is Error (Argo:
    'inputs.parameters.X was not supplied') and the run fails."""
    document = workflow(
        "main",
        {"name": "main", "dag": {"tasks": [{"name": "t", "template": "echo"}]}},
        sh("echo", "echo {{inputs.parameters.text}}", inputs={"parameters": [{"name": "text"}]}),
    )
    state, error, events = run(document, tmp_path, environments)
    assert state == "FAILED"
    assert "inputs.parameters.text was not supplied" in (error or "")
    assert events.phases()["t"] == "Error"


def test_a_retry_carries_succeeded_pods_forward(tmp_path, environments):
    """A retried V1 run keeps what succeeded, as KFP retries a workflow
    (`backend/src/common/util/workflow.go` GenerateRetryExecution): a succeeded pod is not
    run again and keeps its times, a failed one runs again, DAG nodes keep their start, the
    exit handler runs again."""
    from kfadapter.localkfp import attempts

    counter, marker = tmp_path / "counter", tmp_path / "marker"
    document = workflow(
        "main",
        {
            "name": "main",
            "dag": {
                "tasks": [
                    {"name": "a", "template": "count"},
                    {"name": "b", "template": "flaky", "dependencies": ["a"]},
                    {"name": "c", "template": "count", "dependencies": ["b"]},
                ]
            },
        },
        sh("count", f"echo ran >> {counter}"),
        sh("flaky", f"if [ -f {marker} ]; then echo ok; else touch {marker}; exit 1; fi"),
        sh("exit", "echo exit handler"),
        onExit="exit",
    )
    state, _, first = run(document, tmp_path, environments)
    assert state == "FAILED"
    assert first.phases()["c"] == "Omitted"
    directory = tmp_path / "runs" / "run-1"
    previous = attempts.carry_forward(directory, retry=True)
    again = Events()
    state, error = run_workflow(document, {}, directory, again, environments, 4, previous)
    assert (state, error) == ("SUCCEEDED", None)
    assert counter.read_text().splitlines() == ["ran", "ran"]  # a once, then c
    root = min(first.nodes, key=len)
    for name in (root, f"{root}.a"):
        assert again.nodes[name]["start"] == first.nodes[name]["start"]
    assert again.nodes[f"{root}.a"]["end"] == first.nodes[f"{root}.a"]["end"]
    assert again.phases()["b"] == again.phases()["c"] == "Succeeded"
    assert again.phases()["onExit"] == "Succeeded"
