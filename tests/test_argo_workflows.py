"""KFP v1 pipelines (Argo Workflows): what KFP 2.17 accepts, refuses and runs, in process.

The workflows are the kfp 1.8 compilations in tests/pipelines/v1 (read as files: kfp 1.8
is not installed here), changed one way each. KFP's upload check is
backend/src/apiserver/template/argo_template.go `ValidateWorkflow` (a KFP invalid-input
error for a document that does not read as a Workflow or has another apiVersion), then
Argo's `validate.ValidateWorkflow` with Lint and IgnoreEntrypoint
(argo-workflows workflow/validate/validate.go), whose errors KFP does not wrap as user
errors; creating a run adds `executionSpec.Validate(false, false)`
(backend/src/apiserver/resource/resource_manager.go CreateRun).
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from kfadapter import argo_workflows as argo
from tests.pipelines import v1_workflow

ASM = "add_subtract_multiply"


def _changed(change: Any, name: str = ASM) -> dict[str, Any]:
    workflow = copy.deepcopy(v1_workflow(name))
    change(workflow)
    return workflow


def _templates(workflow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in workflow["spec"]["templates"]}


def _dag_task(workflow: dict[str, Any], task: str) -> dict[str, Any]:
    dag = _templates(workflow)["add-subtract-multiply-v1"]["dag"]
    return next(t for t in dag["tasks"] if t["name"] == task)


@pytest.mark.parametrize(
    "name", ["add_subtract_multiply", "artifact", "condition", "loop", "missing_command"]
)
def test_kfp_18_workflows_pass_the_upload_and_run_checks(name: str) -> None:
    """What kfp 1.8 compiles passes KFP's template check and CreateRun's validation."""
    workflow = v1_workflow(name)
    assert argo.is_workflow(workflow) and argo.template_type(workflow) == "V1"
    assert argo.check_upload(workflow) is workflow
    argo.check_runnable(workflow)


def test_recognised_as_kfp_does_by_api_group_and_kind() -> None:
    """template.go isArgoWorkflow: apiVersion starting argoproj.io/ and kind Workflow."""
    assert argo.is_workflow({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow"})
    assert argo.is_workflow({"apiVersion": "argoproj.io/v9", "kind": "Workflow"})
    assert not argo.is_workflow({"apiVersion": "argoproj.io/v1alpha1", "kind": "CronWorkflow"})
    assert not argo.is_workflow({"apiVersion": "v1", "kind": "Workflow"})
    assert not argo.is_workflow({"pipelineInfo": {"name": "p"}, "root": {}})
    assert argo.template_type({"pipelineInfo": {"name": "p"}, "root": {}}) == "V2"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda w: w.__setitem__("apiVersion", "argoproj.io/v1beta1"),
            "Unsupported argo version. Expected: argoproj.io/v1alpha1. Received: "
            "argoproj.io/v1beta1",
        ),
        (
            lambda w: w["spec"].__setitem__("templates", {"add": {}}),
            "Failed to parse the workflow template: spec.templates must be a list, got dict",
        ),
        (
            lambda w: w["spec"]["arguments"]["parameters"][0].__setitem__("name", 5),
            "Failed to parse the workflow template: spec.arguments.parameters[0].name must be "
            "a string, got int",
        ),
    ],
)
def test_kfp_invalid_input_errors(change: Any, message: str) -> None:
    """argo_template.go ValidateWorkflow's own checks: KFP user errors (a 400)."""
    with pytest.raises(argo.WorkflowError) as error:
        argo.check_upload(_changed(change))
    assert (error.value.message, error.value.argo) == (message, False)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda w: w["spec"]["templates"].append(copy.deepcopy(w["spec"]["templates"][0])),
            "spec.templates[5].name 'add' is not unique",
        ),
        (
            lambda w: _dag_task(w, "add").__setitem__("template", "addition"),
            "templates.add-subtract-multiply-v1 templates.add-subtract-multiply-v1.tasks.add "
            "template name 'addition' undefined",
        ),
        (
            lambda w: _templates(w)["add"]["container"]["args"].append("{{inputs.parameters.c}}"),
            "templates.add templates.add: failed to resolve {{inputs.parameters.c}}",
        ),
        (
            lambda w: _templates(w)["add"]["container"]["args"].append("{{workflow.parameters.c}}"),
            "templates.add templates.add: failed to resolve {{workflow.parameters.c}}",
        ),
        (
            lambda w: _dag_task(w, "check-equals")["arguments"]["parameters"][1].__setitem__(
                "value", "{{tasks.multiply.outputs.parameters.product}}"
            ),
            "templates.add-subtract-multiply-v1 templates.add-subtract-multiply-v1.tasks."
            "check-equals failed to resolve {{tasks.multiply.outputs.parameters.product}}",
        ),
        (
            lambda w: _dag_task(w, "check-equals").pop("dependencies"),
            "templates.add-subtract-multiply-v1 templates.add-subtract-multiply-v1.tasks."
            "check-equals missing dependency 'multiply' for parameter 'multiply-Output'",
        ),
        (
            lambda w: _dag_task(w, "add").__setitem__("dependencies", ["divide"]),
            "templates.add-subtract-multiply-v1 templates.add-subtract-multiply-v1.tasks.add "
            "dependency 'divide' not defined",
        ),
        (
            lambda w: _dag_task(w, "add").__setitem__("dependencies", ["multiply"]),
            "templates.add-subtract-multiply-v1 templates.add-subtract-multiply-v1.tasks "
            "dependency cycle detected: multiply->add->multiply",
        ),
        (
            lambda w: _dag_task(w, "add")["arguments"]["parameters"].pop(),
            "templates.add-subtract-multiply-v1 templates.add-subtract-multiply-v1.tasks.add "
            "templates.add inputs.parameters.b was not supplied",
        ),
        (
            lambda w: _templates(w)["add"].pop("container"),
            "templates.add templates.add template type unspecified. choose one of: container, "
            "containerSet, steps, script, resource, dag, suspend, template, template ref",
        ),
        (
            lambda w: _templates(w)["add"]["container"].pop("image"),
            "templates.add templates.add.container.image may not be empty",
        ),
        (
            lambda w: _templates(w)["add"].__setitem__("name", "add_one"),
            "spec.templates[0].name: 'add_one' is invalid: name must consist of alpha-numeric "
            "characters or '-', and must start with an alpha-numeric character "
            "(e.g. My-name1-2, 123-NAME)",
        ),
        (
            lambda w: w["spec"]["arguments"]["parameters"].append({"name": "a"}),
            "spec.arguments.parameters[3].name 'a' is not unique",
        ),
        (
            lambda w: _templates(w)["add"]["outputs"]["parameters"][0].pop("valueFrom"),
            "templates.add templates.add.outputs.parameters.add-Output does not have valueFrom "
            "or value specified",
        ),
        (
            lambda w: w["spec"].__setitem__("onExit", "cleanup"),
            "template name 'cleanup' undefined",
        ),
    ],
)
def test_argo_validation_errors_say_what_is_wrong(change: Any, message: str) -> None:
    """Argo's validation as KFP runs it at upload (Lint, IgnoreEntrypoint): Argo's message;
    `argo` set, since KFP passes that error on unwrapped (an upload answers 500)."""
    with pytest.raises(argo.WorkflowError) as error:
        argo.check_upload(_changed(change))
    assert (error.value.message, error.value.argo) == (message, True)


def test_upload_ignores_the_entrypoint_and_missing_values_as_kfp_does() -> None:
    """KFP validates with IgnoreEntrypoint and Lint: an entrypoint naming no template and
    a parameter without a value are stored; creating a run refuses both (Validate(false,
    false) in CreateRun), with Argo's messages."""
    no_entrypoint = _changed(lambda w: w["spec"].__setitem__("entrypoint", "main"))
    argo.check_upload(no_entrypoint)
    with pytest.raises(argo.WorkflowError, match="^template name 'main' undefined$"):
        argo.check_runnable(no_entrypoint)
    unset = _changed(lambda w: w["spec"]["arguments"]["parameters"][1].pop("value"))
    argo.check_upload(unset)
    with pytest.raises(argo.WorkflowError) as error:
        argo.check_runnable(unset)
    assert error.value.message == "spec.arguments.b.value or spec.arguments.b.valueFrom is required"
    without = _changed(lambda w: w["spec"].pop("entrypoint"))
    with pytest.raises(argo.WorkflowError, match="^spec.entrypoint is required$"):
        argo.check_runnable(without)


def test_parameters_and_entrypoint_tasks() -> None:
    """spec.arguments.parameters: names and string values (None without a value); the
    entrypoint DAG's tasks with their templates and dependencies."""
    workflow = _changed(lambda w: w["spec"]["arguments"]["parameters"][2].pop("value"))
    assert argo.parameters(workflow) == [
        {"name": "a", "value": "5.0", "description": ""},
        {"name": "b", "value": "3.0", "description": ""},
        {"name": "expected", "value": None, "description": ""},
    ]
    assert argo.entrypoint_tasks(workflow) == [
        {"name": "add", "component": "add", "dependencies": []},
        {"name": "check-equals", "component": "check-equals", "dependencies": ["multiply"]},
        {"name": "multiply", "component": "multiply", "dependencies": ["add", "subtract"]},
        {"name": "subtract", "component": "subtract", "dependencies": []},
    ]
    assert argo.any_string(3) == "3" and argo.any_string(True) == "true"


def test_values_override_and_macros_as_run_workflow_does() -> None:
    """argo_template.go RunWorkflow: VerifyParameters names unknown values, OverrideParameters
    keeps name and value only, common/util/parameter_formatter.go replaces the macros."""
    workflow = v1_workflow(ASM)
    assert argo.unrecognized(workflow, {"a": "1", "c": "2"}) == ["c"]
    scheduled = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    now = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
    resolved = argo.with_values(
        workflow,
        {"a": "run [[RunUUID]] at [[ScheduledTime]]", "b": "[[CurrentTime.2006-01-02 15:04]]"},
        run_id="r-1",
        scheduled_at=scheduled,
        now=now,
    )
    assert resolved["spec"]["arguments"]["parameters"] == [
        {"name": "a", "value": "run r-1 at 20260102030405"},
        {"name": "b", "value": "2026-12-01 12:00"},
        {"name": "expected", "value": "16.0"},
    ]
    assert argo.values_of(resolved)["expected"] == "16.0"
    assert workflow["spec"]["arguments"]["parameters"][0]["value"] == "5.0"  # not changed
    assert argo.format_macros("[[Index]] [[RunUUID]]", "x", scheduled, now) == "[[Index]] x"


# -- the adapter's reading of V1 runs ---------------------------------------------------


def test_a_v1beta1_run_answer_reads_as_a_v2beta1_run() -> None:
    """KFP's v1beta1 CreateRun answers an ApiRunDetail (backend/src/apiserver/server/
    api_converter.go toApiRunDetailV1): ids, the version and experiment as resource
    references, the v1 status (model.RuntimeState.ToV1())."""
    from kfadapter.kfp.flatten import flatten_run_v1

    run = flatten_run_v1(
        {
            "run": {
                "id": "r1",
                "name": "job-1",
                "status": "Running",
                "pipeline_spec": {
                    "pipeline_id": "p1",
                    "parameters": [{"name": "a", "value": "7"}],
                },
                "resource_references": [
                    {"key": {"type": "EXPERIMENT", "id": "e1"}, "relationship": "OWNER"},
                    {"key": {"type": "PIPELINE_VERSION", "id": "v1"}, "relationship": "CREATOR"},
                ],
                "created_at": "2026-12-01T12:00:00Z",
            },
            "pipeline_runtime": {"workflow_manifest": "{}"},
        }
    )
    assert {k: run[k] for k in ("run_id", "display_name", "state", "experiment_id")} == {
        "run_id": "r1",
        "display_name": "job-1",
        "state": "RUNNING",
        "experiment_id": "e1",
    }
    assert (run["pipeline_id"], run["pipeline_version_id"]) == ("p1", "v1")
    assert run["parameters"] == {"a": "7"}
    assert flatten_run_v1({"run": {"id": "r2"}})["state"] == "PENDING"


def test_a_v1_runs_tasks_are_its_nodes_without_invented_pods() -> None:
    """A V1 run's task details are its Argo nodes (no root/root-driver nodes): every node
    but the workflow's is a task; a node's pod is named after its template, which the
    details do not carry, so no V2 executor pod name is made up for it."""
    from kfadapter.kfp.flatten import run_tasks

    details = [
        {"display_name": "wf-abcde", "child_tasks": [{"pod_name": "wf-abcde-11"}]},
        {"display_name": "add", "state": "SUCCEEDED", "child_tasks": [{"pod_name": "wf-abcde-22"}]},
        {"display_name": "check-driver", "state": "SUCCEEDED"},
    ]
    tasks = run_tasks(details)
    assert [(t["name"], t["pods"]) for t in tasks] == [("add", []), ("check-driver", [])]
