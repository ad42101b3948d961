"""KFP v1 pipelines: Argo `Workflow` documents as KFP 2.17 recognises, checks and runs them.

kfp 1.8 (`dsl-compile`, `Compiler().compile()`) and Elyra's KFP processor write an Argo
Workflow; KFP 2.17 stores it as a V1 template (`apiserver/template/template.go`:
`isArgoWorkflow`, an `apiVersion` of `argoproj.io/...` and `kind: Workflow`). Its run
parameters are `spec.arguments.parameters` (a name and an optional `value`, always a
string to Argo). No I/O here: the embedded server and the adapter both use it.

- `check_upload` is what KFP checks when it stores one (`template/argo_template.go`
  `ValidateWorkflow`): the document must read as an Argo Workflow of `apiVersion`
  `argoproj.io/v1alpha1` (else KFP's invalid-input error, a 400), then Argo's own
  validation runs with `Lint` and `IgnoreEntrypoint` on (`workflow/validate/validate.go`):
  template names present, well-formed and unique, one type per template, `{{...}}`
  references that resolve (inputs, workflow parameters, task and step outputs, items),
  DAG tasks and steps naming templates that exist, dependencies that exist and no cycle,
  inputs a task must pass, images, output parameters. KFP passes Argo's error on as it
  is (not a KFP user error), so its upload routes answer that one with a 500:
  `WorkflowError.argo` says which kind an error is. The messages are Argo's.
- `check_runnable` is what creating a run adds (`resource/resource_manager.go` CreateRun:
  `executionSpec.Validate(false, false)`): the entrypoint, and a value for every
  parameter; KFP answers an internal error (500) when it fails.
- `with_values` is `template/argo_template.go` RunWorkflow's treatment of the values:
  `VerifyParameters` (an unknown name is a 400), `OverrideParameters`, then the
  `[[RunUUID]]`, `[[ScheduledTime]]`, `[[CurrentTime]]` macros
  (`common/util/parameter_formatter.go`).
- `fnv32a`, `node_id` and `pod_name` are the names Argo gives a run's nodes and pods
  (POD_NAMES v2): a node's id is `<workflow>-<FNV-1a 32 of its name>`, its pod
  `<workflow>-<template>-<same number>` (KFP's `common/util/workflow.go` RetrievePodName).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

API_VERSION = "argoproj.io/v1alpha1"
KIND = "Workflow"
_GROUP = "argoproj.io/"

# Argo's name rules (`workflow/validate/validate.go`).
_FIELD_NAME = re.compile(r"[a-zA-Z0-9][-a-zA-Z0-9]*")
_FIELD_NAME_MAX = 128
_FIELD_NAME_ERROR = (
    "name must consist of alpha-numeric characters or '-', and must start with an "
    "alpha-numeric character (e.g. My-name1-2, 123-NAME)"
)
_PARAM_NAME = re.compile(r"[-a-zA-Z0-9_]+")
_PARAM_NAME_ERROR = (
    "Parameter/Artifact name must consist of alpha-numeric characters, '_' or '-' e.g. "
    "my_param_1, MY-PARAM-1"
)
_MAX_WORKFLOW_NAME = 63
_TEMPLATE_TYPES = (
    "container",
    "containerSet",
    "steps",
    "script",
    "resource",
    "dag",
    "suspend",
    "data",
    "http",
    "plugin",
)
_TYPE_CHOICES = (
    "choose one of: container, containerSet, steps, script, resource, dag, suspend, "
    "template, template ref"
)
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
_TAG = re.compile(r"{{(.*?)}}", re.DOTALL)
_DEPENDS_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_]*)(?:\.[A-Za-z]+)?")
_MACRO = re.compile(r"\[\[(.*?)\]\]")
_GO_LAYOUT = {  # Go time layout elements -> strftime, for [[ScheduledTime.<layout>]]
    "2006": "%Y",
    "01": "%m",
    "02": "%d",
    "15": "%H",
    "04": "%M",
    "05": "%S",
}
_DEFAULT_TIME_LAYOUT = "20060102150405"


class WorkflowError(ValueError):
    """A workflow KFP refuses, with the message KFP (or Argo) gives.

    `argo`: Argo's validation refused it; KFP does not turn that error into one of its
    user errors, so the upload routes answer 500 and the gRPC routes 500 (code 13).
    Otherwise it is KFP's own invalid-input error: 400 (code 3).
    """

    def __init__(self, message: str, *, argo: bool) -> None:
        super().__init__(message)
        self.message = message
        self.argo = argo


def is_workflow(document: Any) -> bool:
    """Whether KFP takes the document for an Argo Workflow (a V1 template)."""
    return (
        isinstance(document, dict)
        and isinstance(document.get("apiVersion"), str)
        and document["apiVersion"].startswith(_GROUP)
        and document.get("kind") == KIND
    )


def template_type(spec: Any) -> str:
    """ "V1" for an Argo Workflow, "V2" for anything else (a KFP v2 pipeline spec)."""
    return "V1" if is_workflow(spec) else "V2"


def fnv32a(text: str) -> int:
    """FNV-1a (32 bit) of the UTF-8 text: Argo's hash of node names."""
    value = 0x811C9DC5
    for byte in text.encode("utf-8"):
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


def node_id(workflow: str, node_name: str) -> str:
    """Argo's id of a node: the workflow's name for its own node, else `<workflow>-<hash>`."""
    return workflow if node_name == workflow else f"{workflow}-{fnv32a(node_name)}"


def pod_name(workflow: str, node_name: str, template: str) -> str:
    """The pod of a node that runs `template` (KFP's `common/util/workflow.go`
    RetrievePodName, Argo's POD_NAMES v2): `<workflow>-<template>-<hash of the node name>`;
    the workflow's own node's pod is the workflow, an inline template's `<workflow>-<hash>`."""
    if node_name == workflow:
        return workflow
    prefix = workflow if ".inline" in node_name else f"{workflow}-{template}"
    return f"{prefix}-{fnv32a(node_name)}"


def check_upload(document: Any) -> dict[str, Any]:
    """The workflow, if KFP 2.17 stores it; WorkflowError saying what is wrong if not."""
    _check_shape(document)
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
    parameter, an entrypoint that names a template and gets the inputs it declares."""
    for parameter in _arguments(workflow):
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
    supplied = {p.get("name") for p in _arguments(workflow)}
    for name in _unsupplied_inputs(template, supplied):
        raise WorkflowError(
            f"templates.{entrypoint} inputs.parameters.{name} was not supplied", argo=True
        )


def parameters(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    """The run parameters: {"name", "value" (a string, None without one), "description"}."""
    listed = []
    for parameter in _arguments(workflow):
        value = parameter.get("value")
        listed.append(
            {
                "name": parameter.get("name", ""),
                "value": None if value is None else any_string(value),
                "description": parameter.get("description") or "",
            }
        )
    return listed


def entrypoint_tasks(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    """The entrypoint's tasks (a DAG's, or a steps template's steps in order): name,
    component (the template it runs), dependencies."""
    spec = workflow.get("spec") or {}
    entrypoint = spec.get("entrypoint")
    template = next(
        (
            t
            for t in spec.get("templates") or []
            if isinstance(t, dict) and t.get("name") == entrypoint
        ),
        {},
    )
    listed = []
    for task in (template.get("dag") or {}).get("tasks") or []:
        if isinstance(task, dict):
            listed.append(
                {
                    "name": task.get("name") or "",
                    "component": task.get("template") or "",
                    "dependencies": _dependencies(task),
                }
            )
    previous: list[str] = []
    for group in template.get("steps") or []:
        names = []
        for step in group or []:
            if isinstance(step, dict):
                listed.append(
                    {
                        "name": step.get("name") or "",
                        "component": step.get("template") or "",
                        "dependencies": list(previous),
                    }
                )
                names.append(step.get("name") or "")
        previous = names
    return listed


def unrecognized(workflow: dict[str, Any], values: Mapping[str, Any]) -> list[str]:
    """The given names the workflow has no parameter for (KFP's VerifyParameters)."""
    known = {p.get("name") for p in _arguments(workflow)}
    return [name for name in values if name not in known]


def with_values(
    workflow: dict[str, Any],
    values: Mapping[str, str],
    *,
    run_id: str,
    scheduled_at: datetime,
    now: datetime,
) -> dict[str, Any]:
    """A copy of the workflow with these parameter values, as KFP's RunWorkflow makes it:
    each parameter keeps only its name and value (the given one, else its own), then the
    `[[...]]` macros in the values are replaced. Unknown names must be refused before."""
    result = copy.deepcopy(workflow)
    spec = result.setdefault("spec", {})
    arguments = spec.setdefault("arguments", {}) if isinstance(spec, dict) else {}
    resolved = []
    for parameter in _arguments(workflow):
        name = parameter.get("name", "")
        if name in values:
            value: str | None = values[name]
        elif parameter.get("value") is not None:
            value = any_string(parameter["value"])
        else:
            value = None
        entry: dict[str, Any] = {"name": name}
        if value is not None:
            entry["value"] = format_macros(value, run_id, scheduled_at, now)
        resolved.append(entry)
    if resolved:
        arguments["parameters"] = resolved
    return result


def values_of(workflow: dict[str, Any]) -> dict[str, str]:
    """{name: value} of the parameters that have a value."""
    return {p["name"]: p["value"] for p in parameters(workflow) if p["value"] is not None}


def any_string(value: Any) -> str:
    """A parameter value as Argo's AnyString holds it: text, a number or a boolean."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    return str(value)


def format_macros(text: str, run_id: str, scheduled_at: datetime, now: datetime) -> str:
    """KFP's run parameter macros: [[RunUUID]], [[ScheduledTime]], [[CurrentTime]] and
    [[ScheduledTime.<Go layout>]] / [[CurrentTime.<Go layout>]]; others stay as they are."""

    def substitute(match: re.Match[str]) -> str:
        macro = match.group(1)
        if macro == "RunUUID":
            return run_id
        for prefix, moment in (("ScheduledTime", scheduled_at), ("CurrentTime", now)):
            if macro == prefix:
                return _go_format(moment, _DEFAULT_TIME_LAYOUT)
            if macro.startswith(prefix + "."):
                return _go_format(moment, macro[len(prefix) + 1 :])
        return match.group(0)

    return _MACRO.sub(substitute, text)


def _go_format(moment: datetime, layout: str) -> str:
    """A UTC time in a Go layout (its numeric elements: 2006 01 02 15 04 05)."""
    pattern = re.compile("|".join(sorted(_GO_LAYOUT, key=len, reverse=True)))
    strftime = pattern.sub(lambda m: _GO_LAYOUT[m.group(0)], layout.replace("%", "%%"))
    return moment.astimezone(UTC).strftime(strftime)


# -- reading the document as Go reads it into Argo's types -----------------------------


def _parse_error(what: str) -> WorkflowError:
    return WorkflowError(f"Failed to parse the workflow template: {what}", argo=False)


def _check_shape(document: Any) -> None:
    """KFP's "Failed to parse the workflow template" (400) when a field Argo's types read
    has the wrong JSON type; unknown fields are ignored, as Go's decoder ignores them."""
    if not isinstance(document, dict):
        raise _parse_error("the document is not a mapping")
    for key in ("apiVersion", "kind"):
        _typed(document, key, str, key)
    metadata = _typed(document, "metadata", dict, "metadata") or {}
    for key in ("name", "generateName"):
        _typed(metadata, key, str, f"metadata.{key}")
    spec = _typed(document, "spec", dict, "spec") or {}
    for key in ("entrypoint", "onExit", "serviceAccountName"):
        _typed(spec, key, str, f"spec.{key}")
    _check_arguments(spec.get("arguments"), "spec.arguments")
    templates = _typed(spec, "templates", list, "spec.templates") or []
    for index, template in enumerate(templates):
        where = f"spec.templates[{index}]"
        if not isinstance(template, dict):
            raise _parse_error(f"{where} must be a mapping")
        _typed(template, "name", str, f"{where}.name")
        for kind in _TEMPLATE_TYPES:
            if kind == "steps":
                groups = _typed(template, kind, list, f"{where}.steps") or []
                for group_index, group in enumerate(groups):
                    if not isinstance(group, list):
                        raise _parse_error(f"{where}.steps[{group_index}] must be a list")
                    for step_index, step in enumerate(group):
                        _check_task(step, f"{where}.steps[{group_index}][{step_index}]")
            else:
                _typed(template, kind, dict, f"{where}.{kind}")
        dag = template.get("dag") or {}
        for task_index, task in enumerate(_typed(dag, "tasks", list, f"{where}.dag.tasks") or []):
            _check_task(task, f"{where}.dag.tasks[{task_index}]")
        for side in ("inputs", "outputs"):
            block = _typed(template, side, dict, f"{where}.{side}") or {}
            for key in ("parameters", "artifacts"):
                items = _typed(block, key, list, f"{where}.{side}.{key}") or []
                for item_index, item in enumerate(items):
                    _check_named(item, f"{where}.{side}.{key}[{item_index}]")
        for key in ("container", "script"):
            block = template.get(key) or {}
            _typed(block, "image", str, f"{where}.{key}.image")
            for listed in ("command", "args"):
                values = _typed(block, listed, list, f"{where}.{key}.{listed}") or []
                if not all(isinstance(v, str) for v in values):
                    raise _parse_error(f"{where}.{key}.{listed} must be a list of strings")


def _check_task(task: Any, where: str) -> None:
    if not isinstance(task, dict):
        raise _parse_error(f"{where} must be a mapping")
    for key in ("name", "template", "depends", "when", "withParam"):
        _typed(task, key, str, f"{where}.{key}")
    dependencies = _typed(task, "dependencies", list, f"{where}.dependencies") or []
    if not all(isinstance(d, str) for d in dependencies):
        raise _parse_error(f"{where}.dependencies must be a list of strings")
    _typed(task, "withItems", list, f"{where}.withItems")
    _check_arguments(task.get("arguments"), f"{where}.arguments")


def _check_arguments(arguments: Any, where: str) -> None:
    if arguments is None:
        return
    if not isinstance(arguments, dict):
        raise _parse_error(f"{where} must be a mapping")
    for key in ("parameters", "artifacts"):
        for index, item in enumerate(_typed(arguments, key, list, f"{where}.{key}") or []):
            _check_named(item, f"{where}.{key}[{index}]")


def _check_named(item: Any, where: str) -> None:
    if not isinstance(item, dict):
        raise _parse_error(f"{where} must be a mapping")
    _typed(item, "name", str, f"{where}.name")
    value = item.get("value")
    if value is not None and not isinstance(value, str | int | float | bool):
        raise _parse_error(f"{where}.value must be a string, a number or a boolean")


def _typed(block: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = block.get(key)
    if value is not None and not isinstance(value, kind):
        label = {str: "a string", dict: "a mapping", list: "a list"}[kind]
        raise _parse_error(f"{where} must be {label}, got {type(value).__name__}")
    return value


def _arguments(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    spec = workflow.get("spec") if isinstance(workflow, dict) else None
    arguments = (spec or {}).get("arguments") or {}
    listed = arguments.get("parameters") if isinstance(arguments, dict) else None
    return [p for p in listed or [] if isinstance(p, dict)]


def _inputs(template: dict[str, Any]) -> list[dict[str, Any]]:
    return (template.get("inputs") or {}).get("parameters") or []


def _unsupplied_inputs(template: dict[str, Any], supplied: set[Any]) -> list[str]:
    """Inputs without a value or default that the caller does not pass (ProcessArgs)."""
    return [
        p.get("name", "")
        for p in _inputs(template)
        if p.get("name") not in supplied
        and p.get("value") is None
        and p.get("default") is None
        and p.get("valueFrom") is None
    ]


# -- Argo's validation (Lint, IgnoreEntrypoint), as KFP runs it at upload --------------


def _argo(message: str) -> WorkflowError:
    return WorkflowError(message, argo=True)


def _field_names(items: list[Any], *, parameters: bool = False) -> None:
    """Argo's validateWorkflowFieldNames: present, well-formed and unique; the message
    starts with `[index]` for the caller to prefix."""
    seen: set[str] = set()
    for index, item in enumerate(items):
        name = item.get("name") or "" if isinstance(item, dict) else ""
        if not name:
            raise _argo(f"[{index}].name is required")
        if parameters:
            problems = [] if _PARAM_NAME.fullmatch(name) else [_PARAM_NAME_ERROR]
        else:
            problems = []
            if len(name) > _FIELD_NAME_MAX:
                problems.append(f"must be no more than {_FIELD_NAME_MAX} characters")
            if not _FIELD_NAME.fullmatch(name):
                problems.append(_FIELD_NAME_ERROR)
        if problems:
            raise _argo(f"[{index}].name: '{name}' is invalid: {';'.join(problems)}")
        if name in seen:
            raise _argo(f"[{index}].name '{name}' is not unique")
        seen.add(name)


def _prefixed(prefix: str, check: Any, *args: Any, **kwargs: Any) -> None:
    try:
        check(*args, **kwargs)
    except WorkflowError as error:
        raise _argo(f"{prefix}{error.message}") from None


def _template_kind(template: dict[str, Any]) -> str:
    kinds = [kind for kind in _TEMPLATE_TYPES if template.get(kind) is not None]
    name = template.get("name", "")
    if not kinds:
        raise _argo(f"templates.{name} template type unspecified. {_TYPE_CHOICES}")
    if len(kinds) > 1:
        raise _argo(f"templates.{name} multiple template types specified. {_TYPE_CHOICES}")
    return kinds[0]


def _tags(value: Any) -> list[str]:
    """The `{{...}}` references in a JSON value (expressions `{{=...}}` excluded)."""
    text = json.dumps(value)
    return [tag for tag in _TAG.findall(text) if not tag.strip().startswith("=")]


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
            raise _argo(
                f'workflow name "{name}" must not be more than {_MAX_WORKFLOW_NAME} characters '
                f"long (currently {len(name)})"
            )
        _prefixed("spec.templates", _field_names, list(self.spec.get("templates") or []))
        arguments = self.spec.get("arguments") or {}
        for key in ("parameters", "artifacts"):
            _prefixed(
                f"spec.arguments.{key}",
                _field_names,
                list(arguments.get(key) or []),
                parameters=True,
            )
        parameters = _arguments(self.workflow)
        if parameters:
            self.globals |= {"workflow.parameters", "workflow.parameters.json"}
        self.globals |= {f"workflow.parameters.{p.get('name')}" for p in parameters}
        on_exit = self.spec.get("onExit")
        if on_exit:
            self.globals.add("workflow.failures")
            self.holder(on_exit, None)
        for template in self.spec.get("templates") or []:
            _prefixed(f"templates.{template.get('name')} ", self.holder, template.get("name"), None)

    def holder(self, template_name: str, supplied: set[Any] | None) -> dict[str, Any]:
        """Argo's validateTemplateHolder for a template name; `supplied`: the input names
        the caller passes (None: any, Argo's FakeArguments)."""
        template = self.templates.get(template_name)
        if template is None:
            raise _argo(f"template name '{template_name}' undefined")
        self.template(template, supplied)
        return template

    def template(self, template: dict[str, Any], supplied: set[Any] | None) -> None:
        name = template.get("name", "")
        kind = _template_kind(template)
        inputs = template.get("inputs") or {}
        for key in ("parameters", "artifacts"):
            _prefixed(
                f"templates.{name}.inputs.{key}",
                _field_names,
                list(inputs.get(key) or []),
                parameters=True,
            )
        if supplied is not None:
            for missing in _unsupplied_inputs(template, supplied):
                raise _argo(f"templates.{name} inputs.parameters.{missing} was not supplied")
        if name in self.done:
            return
        self.done.add(name)
        scope = {f"inputs.parameters.{p.get('name')}" for p in _inputs(template)}
        if _inputs(template):
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
        for raw in _tags(value):
            tag = raw.strip()
            if not tag.startswith(_CHECKED_ROOTS) or tag in scope or tag in self.globals:
                continue
            if items and (tag == "item" or tag.startswith("item.")):
                continue
            if tag.startswith(_RUNTIME_PREFIXES):
                continue
            raise _argo(f"failed to resolve {{{{{raw}}}}}")

    def leaf(self, template: dict[str, Any], kind: str, scope: set[str]) -> None:
        name = template.get("name", "")
        _prefixed(f"templates.{name}: ", self.resolve, scope, template)
        defaults = self.spec.get("templateDefaults") or {}
        for key in ("container", "script"):
            block = template.get(key)
            if (
                kind == key
                and not (block or {}).get("image")
                and not (defaults.get(key) or {}).get("image")
            ):
                raise _argo(f"templates.{name}.{key}.image may not be empty")
        if template.get("parallelism") is not None:
            raise _argo(f"templates.{name}.parallelism is only valid for steps and dag templates")

    def add_outputs(self, scope: set[str], root: str, name: str, template: dict[str, Any] | None,
                    aggregate: bool, ancestor: bool) -> None:  # fmt: skip
        """Argo's addOutputsToScope for a task or step `name` under `root` (tasks/steps)."""
        for key in ("id", "startedAt", "finishedAt", "hostNodeName"):
            scope.add(f"{root}.{name}.{key}")
        if ancestor:
            scope.add(f"{root}.{name}.status")
        if template is None:
            return
        kind = next((k for k in _TEMPLATE_TYPES if template.get(k) is not None), "")
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
            raise _argo(f"templates.{name}.activeDeadlineSeconds is only valid for leaf templates")
        tasks = [t for t in (template.get("dag") or {}).get("tasks") or [] if isinstance(t, dict)]
        if not tasks:
            raise _argo(f"templates.{name} must have at least one task")
        _prefixed(f"templates.{name}.tasks", _field_names, tasks)
        by_name = {t["name"]: t for t in tasks}
        depends = {t["name"]: _dependencies(t) for t in tasks}
        using_depends = any(t.get("depends") for t in tasks)
        resolved: dict[str, dict[str, Any] | None] = {}
        for task in tasks:
            task_name = task["name"]
            if (using_depends or task.get("dependencies")) and task_name[0].isdigit():
                raise _argo(
                    f"templates.{name}.tasks.{task_name} name cannot begin with a digit when "
                    "using either 'depends' or 'dependencies'"
                )
            if using_depends and task.get("dependencies"):
                raise _argo(
                    f"templates.{name} cannot use both 'depends' and 'dependencies' in the same "
                    "DAG template"
                )
            resolved[task_name] = self.task_template(f"templates.{name}.tasks.{task_name} ", task)
            aggregate = bool(task.get("withItems") or task.get("withParam"))
            self.add_outputs(scope, "tasks", task_name, resolved[task_name], aggregate, False)
            for dependency in depends[task_name]:
                if dependency not in by_name:
                    raise _argo(
                        f"templates.{name}.tasks.{task_name} dependency '{dependency}' not defined"
                    )
        _no_cycles(name, depends)
        for task in tasks:
            task_name = task["name"]
            task_scope = set(scope)
            ancestors = _ancestors(task_name, depends)
            for ancestor in ancestors:
                ancestor_task = by_name[ancestor]
                aggregate = bool(ancestor_task.get("withItems") or ancestor_task.get("withParam"))
                self.add_outputs(task_scope, "tasks", ancestor, resolved[ancestor], aggregate, True)
            if task.get("hooks"):
                task_scope.add(f"tasks.{task_name}.status")
            items = bool(task.get("withItems") or task.get("withParam") or task.get("withSequence"))
            if task.get("withItems") or task.get("withSequence"):
                task_scope.add("item")
            _prefixed(
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
                        raise _argo(
                            f"templates.{name}.tasks.{task_name} missing dependency "
                            f"'{referenced}' for parameter '{parameter.get('name')}'"
                        )
            self.task_template(f"templates.{name}.tasks.{task_name} ", task, actual=True)

    def steps(self, template: dict[str, Any], scope: set[str]) -> None:
        name = template.get("name", "")
        if template.get("activeDeadlineSeconds") is not None:
            raise _argo(f"templates.{name}.activeDeadlineSeconds is only valid for leaf templates")
        seen: set[str] = set()
        for index, group in enumerate(template.get("steps") or []):
            for step in group or []:
                step_name = step.get("name") or ""
                if not step_name:
                    raise _argo(f"templates.{name}.steps[{index}].name is required")
                if step_name in seen:
                    raise _argo(f"templates.{name}.steps[{index}].name '{step_name}' is not unique")
                if not _FIELD_NAME.fullmatch(step_name) or len(step_name) > _FIELD_NAME_MAX:
                    raise _argo(
                        f"templates.{name}.steps[{index}].name '{step_name}' is invalid: "
                        f"{_FIELD_NAME_ERROR}"
                    )
                seen.add(step_name)
                scope.add(f"steps.{step_name}.status")
                where = f"templates.{name}.steps[{index}].{step_name} "
                resolved = self.task_template(where, step)
                items = bool(step.get("withItems") or step.get("withParam"))
                step_scope = set(scope)
                if step.get("withItems") or step.get("withSequence"):
                    step_scope.add("item")
                _prefixed(
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
                raise _argo(f"template name '{holder}' undefined")
            return self.holder(holder, supplied)
        except WorkflowError as error:
            raise _argo(f"{where}{error.message}") from None

    def outputs(self, template: dict[str, Any], kind: str, scope: set[str]) -> None:
        name = template.get("name", "")
        outputs = template.get("outputs") or {}
        for key in ("parameters", "artifacts"):
            _prefixed(
                f"templates.{name}.outputs.{key} ",
                _field_names,
                list(outputs.get(key) or []),
                parameters=True,
            )
        _prefixed(f"templates.{name}.outputs ", self.resolve, scope, outputs)
        for parameter in outputs.get("parameters") or []:
            reference = f"templates.{name}.outputs.parameters.{parameter.get('name')}"
            value_from = parameter.get("valueFrom")
            if value_from is not None and parameter.get("value") is not None:
                raise _argo(f"{reference} has both valueFrom and value specified, choose one")
            if parameter.get("value") is not None:
                continue
            if value_from is None:
                raise _argo(f"{reference} does not have valueFrom or value specified")
            label = _TYPE_LABELS.get(kind, kind)
            if kind in {"container", "containerSet", "script"} and not value_from.get("path"):
                raise _argo(f"{reference}.path must be specified for {label} templates")
            if kind in {"dag", "steps"} and not (
                value_from.get("parameter") or value_from.get("expression")
            ):
                raise _argo(
                    f"{reference}.parameter or expression must be specified for {label} templates"
                )


def _dependencies(task: dict[str, Any]) -> list[str]:
    """The tasks a DAG task depends on: `dependencies`, or the names in `depends`."""
    if task.get("depends"):
        expression = re.sub(r"&&|\|\||!|\(|\)", " ", task["depends"])
        return [m.group(1) for m in _DEPENDS_NAME.finditer(expression)]
    return list(task.get("dependencies") or [])


def _ancestors(name: str, depends: dict[str, list[str]]) -> list[str]:
    """Every task `name` depends on, directly or not."""
    found: list[str] = []
    pending = list(depends.get(name, []))
    while pending:
        current = pending.pop()
        if current in found or current not in depends:
            continue
        found.append(current)
        pending.extend(depends[current])
    return found


def _no_cycles(template: str, depends: dict[str, list[str]]) -> None:
    """Argo's verifyNoCycles."""
    visited: set[str] = set()

    def visit(task: str, path: list[str]) -> None:
        if task in visited:
            return
        for dependency in depends.get(task, []):
            if dependency in path:
                raise _argo(
                    f"templates.{template}.tasks dependency cycle detected: "
                    f"{'->'.join(path)}->{dependency}"
                )
            visit(dependency, [*path, dependency])
        visited.add(task)

    for task in depends:
        visit(task, [])
