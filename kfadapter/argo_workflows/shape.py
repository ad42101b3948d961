"""A document read as Go reads it into Argo's types: KFP's "Failed to parse" (400) if mistyped."""

from __future__ import annotations

from typing import Any

from kfadapter.argo_workflows.document import TEMPLATE_TYPES, WorkflowError


def _parse_error(what: str) -> WorkflowError:
    return WorkflowError(f"Failed to parse the workflow template: {what}", argo=False)


def check_shape(document: Any) -> None:
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
        for kind in TEMPLATE_TYPES:
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
            _check_named_lists(
                _typed(template, side, dict, f"{where}.{side}") or {}, f"{where}.{side}"
            )
        for key in ("container", "script"):
            block = template.get(key) or {}
            _typed(block, "image", str, f"{where}.{key}.image")
            for listed in ("command", "args"):
                _strings(block, listed, f"{where}.{key}.{listed}")


def _check_task(task: Any, where: str) -> None:
    if not isinstance(task, dict):
        raise _parse_error(f"{where} must be a mapping")
    for key in ("name", "template", "depends", "when", "withParam"):
        _typed(task, key, str, f"{where}.{key}")
    _strings(task, "dependencies", f"{where}.dependencies")
    _typed(task, "withItems", list, f"{where}.withItems")
    _check_arguments(task.get("arguments"), f"{where}.arguments")


def _check_arguments(arguments: Any, where: str) -> None:
    if arguments is None:
        return
    if not isinstance(arguments, dict):
        raise _parse_error(f"{where} must be a mapping")
    _check_named_lists(arguments, where)


def _check_named_lists(block: dict[str, Any], where: str) -> None:
    """The `parameters` and `artifacts` lists of arguments, inputs or outputs."""
    for key in ("parameters", "artifacts"):
        for index, item in enumerate(_typed(block, key, list, f"{where}.{key}") or []):
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


def _strings(block: dict[str, Any], key: str, where: str) -> None:
    values = _typed(block, key, list, where) or []
    if not all(isinstance(v, str) for v in values):
        raise _parse_error(f"{where} must be a list of strings")
