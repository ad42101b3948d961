"""Argo's validation as KFP runs it at upload (`check_upload`) and run (`check_runnable`)."""

from __future__ import annotations

from typing import Any

from kfadapter.argo_workflows.document import (
    API_VERSION,
    TEMPLATE_TYPES,
    WorkflowError,
    argument_parameters,
    dependencies,
    input_parameters,
    unsupplied_inputs,
)
from kfadapter.argo_workflows.rules import (
    FIELD_NAME,
    FIELD_NAME_ERROR,
    FIELD_NAME_MAX,
    argo_error,
    field_names,
    no_cycles,
    prefixed,
    tags,
    task_ancestors,
    template_kind,
)
from kfadapter.argo_workflows.shape import check_shape

_MAX_WORKFLOW_NAME = 63
_LEAF_TYPES = {
    "container",
    "containerSet",
    "script",
    "resource",
    "suspend",
    "data",
    "http",
    "plugin",
}
_POD_TYPES = {"container", "containerSet", "script", "resource"}
_TYPE_LABELS = {
    "container": "Container",
    "containerSet": "ContainerSet",
    "script": "Script",
    "resource": "Resource",
    "dag": "DAG",
    "steps": "Steps",
}
# The roots of the references Argo checks (`workflow/common` GlobalVarValidWorkflowVariablePrefix).
_CHECKED_ROOTS = ("item", "steps.", "inputs.", "outputs.", "pod.", "workflow.", "tasks.")
# References Argo leaves to run time (`resolveAllVariables`).
_RUNTIME_PREFIXES = (
    "outputs.",
    "workflow.creationTimestamp",
    "workflow.scheduledTime",
    "workflow.duration",
    "tasks.name",
    "steps.name",
    "node.name",
)


def check_upload(document: Any) -> dict[str, Any]:
    """The workflow, if KFP 2.17 stores it; WorkflowError saying what is wrong if not.

    KFP's `template/argo_template.go` ValidateWorkflow: the document must read as an Argo
    Workflow of `apiVersion` `argoproj.io/v1alpha1` (else KFP's invalid-input error, a
    400), then Argo's own validation runs with `Lint` and `IgnoreEntrypoint` on
    (`workflow/validate/validate.go`): template names present, well-formed and unique, one
    type per template, `{{...}}` references that resolve (inputs, workflow parameters, task
    and step outputs, items), DAG tasks and steps naming templates that exist, dependencies
    that exist and no cycle, inputs a task must pass, images, output parameters. KFP passes
    Argo's error on as it is (`WorkflowError.argo`), so its upload routes answer it with a
    500. The messages are Argo's.
    """
    check_shape(document)
    if document["apiVersion"] != API_VERSION:
        raise WorkflowError(
            f"Unsupported argo version. Expected: {API_VERSION}. Received: "
            f"{document['apiVersion']}",
            argo=False,
        )
    _Validation(document).run()
    return document


def check_runnable(workflow: dict[str, Any]) -> None:
    """WorkflowError (argo) unless a run can start the workflow: a value for every
    parameter, an entrypoint that names a template and gets the inputs it declares
    (KFP's `resource/resource_manager.go` CreateRun: `executionSpec.Validate(false, false)`;
    KFP answers an internal error, 500, when it fails)."""
    for parameter in argument_parameters(workflow):
        name = parameter.get("name", "")
        if "value" not in parameter and "valueFrom" not in parameter:
            raise WorkflowError(
                f"spec.arguments.{name}.value or spec.arguments.{name}.valueFrom is required",
                argo=True,
            )
    entrypoint = (workflow.get("spec") or {}).get("entrypoint") or ""
    if not entrypoint:
        raise WorkflowError("spec.entrypoint is required", argo=True)
    validation = _Validation(workflow)
    template = validation.templates.get(entrypoint)
    if template is None:
        raise WorkflowError(f"template name '{entrypoint}' undefined", argo=True)
    supplied = {p.get("name") for p in argument_parameters(workflow)}
    for name in unsupplied_inputs(template, supplied):
        raise WorkflowError(
            f"templates.{entrypoint} inputs.parameters.{name} was not supplied", argo=True
        )


class _Validation:
    """One pass of Argo's validation over a workflow (its template cache included)."""

    def __init__(self, workflow: dict[str, Any]) -> None:
        self.workflow = workflow
        self.spec = workflow.get("spec") or {}
        self.templates = {
            t.get("name"): t for t in self.spec.get("templates") or [] if isinstance(t, dict)
        }
        self.done: set[str] = set()
        self.globals = {
            "workflow.name",
            "workflow.namespace",
            "workflow.serviceAccountName",
            "workflow.uid",
            "workflow.status",
            "workflow.annotations",
            "workflow.annotations.json",
            "workflow.labels",
            "workflow.labels.json",
        }
        metadata = workflow.get("metadata") or {}
        for key in ("annotations", "labels"):
            for label in metadata.get(key) or {}:
                self.globals.add(f"workflow.{key}.{label}")
        if self.spec.get("priority") is not None:
            self.globals.add("workflow.priority")

    def run(self) -> None:
        name = (self.workflow.get("metadata") or {}).get("name") or ""
        if len(name) > _MAX_WORKFLOW_NAME:
            raise argo_error(
                f'workflow name "{name}" must not be more than {_MAX_WORKFLOW_NAME} characters '
                f"long (currently {len(name)})"
            )
        prefixed("spec.templates", field_names, list(self.spec.get("templates") or []))
        _named_lists("spec.arguments", self.spec.get("arguments") or {})
        parameters = argument_parameters(self.workflow)
        if parameters:
            self.globals |= {"workflow.parameters", "workflow.parameters.json"}
        self.globals |= {f"workflow.parameters.{p.get('name')}" for p in parameters}
        on_exit = self.spec.get("onExit")
        if on_exit:
            self.globals.add("workflow.failures")
            self.holder(on_exit, None)
        for template in self.spec.get("templates") or []:
            prefixed(f"templates.{template.get('name')} ", self.holder, template.get("name"), None)

    def holder(self, template_name: str, supplied: set[Any] | None) -> dict[str, Any]:
        """Argo's validateTemplateHolder for a template name; `supplied`: the input names
        the caller passes (None: any, Argo's FakeArguments)."""
        template = self.templates.get(template_name)
        if template is None:
            raise argo_error(f"template name '{template_name}' undefined")
        self.template(template, supplied)
        return template

    def template(self, template: dict[str, Any], supplied: set[Any] | None) -> None:
        name = template.get("name", "")
        kind = template_kind(template)
        inputs = template.get("inputs") or {}
        _named_lists(f"templates.{name}.inputs", inputs)
        if supplied is not None:
            for missing in unsupplied_inputs(template, supplied):
                raise argo_error(f"templates.{name} inputs.parameters.{missing} was not supplied")
        if name in self.done:
            return
        self.done.add(name)
        scope = {f"inputs.parameters.{p.get('name')}" for p in input_parameters(template)}
        if input_parameters(template):
            scope.add("inputs.parameters")
        for artifact in inputs.get("artifacts") or []:
            scope.add(f"inputs.artifacts.{artifact.get('name')}")
            if kind in _LEAF_TYPES:
                scope.add(f"inputs.artifacts.{artifact.get('name')}.path")
        if kind in _POD_TYPES:
            scope.add("pod.name")
        if template.get("retryStrategy") is not None:
            scope |= {"retries", "lastRetry.exitCode", "lastRetry.status", "lastRetry.duration"}
            scope.add("lastRetry.message")
        outputs = template.get("outputs") or {}
        if kind in _LEAF_TYPES:
            for key in ("artifacts", "parameters"):
                for item in outputs.get(key) or []:
                    scope.add(f"outputs.{key}.{item.get('name')}.path")
        if kind == "dag":
            self.dag(template, scope)
        elif kind == "steps":
            self.steps(template, scope)
        else:
            self.leaf(template, kind, scope)
        self.outputs(template, kind, scope)

    def resolve(self, scope: set[str], value: Any, items: bool = False) -> None:
        """Argo's resolveAllVariables: every checked reference is in scope or global."""
        for raw in tags(value):
            tag = raw.strip()
            if not tag.startswith(_CHECKED_ROOTS) or tag in scope or tag in self.globals:
                continue
            if items and (tag == "item" or tag.startswith("item.")):
                continue
            if tag.startswith(_RUNTIME_PREFIXES):
                continue
            raise argo_error(f"failed to resolve {{{{{raw}}}}}")

    def leaf(self, template: dict[str, Any], kind: str, scope: set[str]) -> None:
        name = template.get("name", "")
        prefixed(f"templates.{name}: ", self.resolve, scope, template)
        defaults = self.spec.get("templateDefaults") or {}
        for key in ("container", "script"):
            block = template.get(key)
            if (
                kind == key
                and not (block or {}).get("image")
                and not (defaults.get(key) or {}).get("image")
            ):
                raise argo_error(f"templates.{name}.{key}.image may not be empty")
        if template.get("parallelism") is not None:
            raise argo_error(
                f"templates.{name}.parallelism is only valid for steps and dag templates"
            )

    def add_outputs(self, scope: set[str], root: str, name: str, template: dict[str, Any] | None,
                    aggregate: bool, ancestor: bool) -> None:  # fmt: skip
        """Argo's addOutputsToScope for a task or step `name` under `root` (tasks/steps)."""
        for key in ("id", "startedAt", "finishedAt", "hostNodeName"):
            scope.add(f"{root}.{name}.{key}")
        if ancestor:
            scope.add(f"{root}.{name}.status")
        if template is None:
            return
        kind = next((k for k in TEMPLATE_TYPES if template.get(k) is not None), "")
        if kind in {"container", "containerSet", "script", "data", "http", "plugin"}:
            scope |= {f"{root}.{name}.outputs.result", f"{root}.{name}.exitCode"}
        outputs = template.get("outputs") or {}
        for key in ("parameters", "artifacts"):
            for item in outputs.get(key) or []:
                scope.add(f"{root}.{name}.outputs.{key}.{item.get('name')}")
        if aggregate:
            scope.add(f"{root}.{name}.outputs.parameters")
            if kind in {"script", "containerSet"}:
                scope |= {f"{root}.{name}.outputs.result", f"{root}.{name}.exitCode"}

    def dag(self, template: dict[str, Any], scope: set[str]) -> None:
        name = template.get("name", "")
        if template.get("activeDeadlineSeconds") is not None:
            raise argo_error(
                f"templates.{name}.activeDeadlineSeconds is only valid for leaf templates"
            )
        tasks = [t for t in (template.get("dag") or {}).get("tasks") or [] if isinstance(t, dict)]
        if not tasks:
            raise argo_error(f"templates.{name} must have at least one task")
        prefixed(f"templates.{name}.tasks", field_names, tasks)
        by_name = {t["name"]: t for t in tasks}
        depends = {t["name"]: dependencies(t) for t in tasks}
        using_depends = any(t.get("depends") for t in tasks)
        resolved: dict[str, dict[str, Any] | None] = {}
        for task in tasks:
            task_name = task["name"]
            if (using_depends or task.get("dependencies")) and task_name[0].isdigit():
                raise argo_error(
                    f"templates.{name}.tasks.{task_name} name cannot begin with a digit when "
                    "using either 'depends' or 'dependencies'"
                )
            if using_depends and task.get("dependencies"):
                raise argo_error(
                    f"templates.{name} cannot use both 'depends' and 'dependencies' in the same "
                    "DAG template"
                )
            resolved[task_name] = self.task_template(f"templates.{name}.tasks.{task_name} ", task)
            self.add_outputs(scope, "tasks", task_name, resolved[task_name], _fans_out(task), False)
            for dependency in depends[task_name]:
                if dependency not in by_name:
                    raise argo_error(
                        f"templates.{name}.tasks.{task_name} dependency '{dependency}' not defined"
                    )
        no_cycles(name, depends)
        for task in tasks:
            task_name = task["name"]
            task_scope = set(scope)
            ancestors = task_ancestors(task_name, depends)
            for ancestor in ancestors:
                aggregate = _fans_out(by_name[ancestor])
                self.add_outputs(task_scope, "tasks", ancestor, resolved[ancestor], aggregate, True)
            if task.get("hooks"):
                task_scope.add(f"tasks.{task_name}.status")
            items = _fans_out(task) or bool(task.get("withSequence"))
            if task.get("withItems") or task.get("withSequence"):
                task_scope.add("item")
            prefixed(
                f"templates.{name}.tasks.{task_name} ",
                self.resolve,
                task_scope,
                task,
                items=bool(task.get("withParam")) or items,
            )
            for parameter in (task.get("arguments") or {}).get("parameters") or []:
                value = parameter.get("value")
                if isinstance(value, str) and value.startswith("{{tasks."):
                    referenced = value.split(".")[1]
                    if referenced not in ancestors:
                        raise argo_error(
                            f"templates.{name}.tasks.{task_name} missing dependency "
                            f"'{referenced}' for parameter '{parameter.get('name')}'"
                        )
            self.task_template(f"templates.{name}.tasks.{task_name} ", task, actual=True)

    def steps(self, template: dict[str, Any], scope: set[str]) -> None:
        name = template.get("name", "")
        if template.get("activeDeadlineSeconds") is not None:
            raise argo_error(
                f"templates.{name}.activeDeadlineSeconds is only valid for leaf templates"
            )
        seen: set[str] = set()
        for index, group in enumerate(template.get("steps") or []):
            for step in group or []:
                step_name = step.get("name") or ""
                if not step_name:
                    raise argo_error(f"templates.{name}.steps[{index}].name is required")
                if step_name in seen:
                    raise argo_error(
                        f"templates.{name}.steps[{index}].name '{step_name}' is not unique"
                    )
                if not FIELD_NAME.fullmatch(step_name) or len(step_name) > FIELD_NAME_MAX:
                    raise argo_error(
                        f"templates.{name}.steps[{index}].name '{step_name}' is invalid: "
                        f"{FIELD_NAME_ERROR}"
                    )
                seen.add(step_name)
                scope.add(f"steps.{step_name}.status")
                where = f"templates.{name}.steps[{index}].{step_name} "
                resolved = self.task_template(where, step)
                items = _fans_out(step)
                step_scope = set(scope)
                if step.get("withItems") or step.get("withSequence"):
                    step_scope.add("item")
                prefixed(
                    f"templates.{name}.steps ",
                    self.resolve,
                    step_scope,
                    step,
                    items=bool(step.get("withParam")),
                )
                self.add_outputs(scope, "steps", step_name, resolved, items, False)
                self.task_template(where, step, actual=True)

    def task_template(
        self, where: str, task: dict[str, Any], *, actual: bool = False
    ) -> dict[str, Any] | None:
        """The template a DAG task or step names, validated (with the task's own
        arguments when `actual`); None for a templateRef, which is not looked up here."""
        if task.get("templateRef") is not None or task.get("inline") is not None:
            return None
        supplied = None
        if actual:
            supplied = {
                p.get("name") for p in (task.get("arguments") or {}).get("parameters") or []
            }
        holder = task.get("template") or ""
        try:
            if not holder:
                raise argo_error(f"template name '{holder}' undefined")
            return self.holder(holder, supplied)
        except WorkflowError as error:
            raise argo_error(f"{where}{error.message}") from None

    def outputs(self, template: dict[str, Any], kind: str, scope: set[str]) -> None:
        name = template.get("name", "")
        outputs = template.get("outputs") or {}
        _named_lists(f"templates.{name}.outputs", outputs, " ")
        prefixed(f"templates.{name}.outputs ", self.resolve, scope, outputs)
        for parameter in outputs.get("parameters") or []:
            reference = f"templates.{name}.outputs.parameters.{parameter.get('name')}"
            value_from = parameter.get("valueFrom")
            if value_from is not None and parameter.get("value") is not None:
                raise argo_error(f"{reference} has both valueFrom and value specified, choose one")
            if parameter.get("value") is not None:
                continue
            if value_from is None:
                raise argo_error(f"{reference} does not have valueFrom or value specified")
            label = _TYPE_LABELS.get(kind, kind)
            if kind in {"container", "containerSet", "script"} and not value_from.get("path"):
                raise argo_error(f"{reference}.path must be specified for {label} templates")
            if kind in {"dag", "steps"} and not (
                value_from.get("parameter") or value_from.get("expression")
            ):
                raise argo_error(
                    f"{reference}.parameter or expression must be specified for {label} templates"
                )


def _named_lists(where: str, block: dict[str, Any], separator: str = "") -> None:
    """Argo's field-name check of the `parameters` and `artifacts` of arguments, inputs or
    outputs; an error starts `<where>.<list><separator>`."""
    for key in ("parameters", "artifacts"):
        items = list(block.get(key) or [])
        prefixed(f"{where}.{key}{separator}", field_names, items, parameters=True)


def _fans_out(task: dict[str, Any]) -> bool:
    """Whether a DAG task or step runs once per item (`withItems`, `withParam`)."""
    return bool(task.get("withItems") or task.get("withParam"))
