"""Argo's validation rules on single parts: field names, template types, `{{...}}`, dependencies."""

from __future__ import annotations

import json
import re
from typing import Any

from kfadapter.argo_workflows.document import TEMPLATE_TYPES, WorkflowError

# Argo's name rules (`workflow/validate/validate.go`).
FIELD_NAME = re.compile(r"[a-zA-Z0-9][-a-zA-Z0-9]*")
FIELD_NAME_MAX = 128
FIELD_NAME_ERROR = (
    "name must consist of alpha-numeric characters or '-', and must start with an "
    "alpha-numeric character (e.g. My-name1-2, 123-NAME)"
)
_PARAM_NAME = re.compile(r"[-a-zA-Z0-9_]+")
_PARAM_NAME_ERROR = (
    "Parameter/Artifact name must consist of alpha-numeric characters, '_' or '-' e.g. "
    "my_param_1, MY-PARAM-1"
)
_TYPE_CHOICES = (
    "choose one of: container, containerSet, steps, script, resource, dag, suspend, "
    "template, template ref"
)
_TAG = re.compile(r"{{(.*?)}}", re.DOTALL)


def argo_error(message: str) -> WorkflowError:
    """Argo's validation error (which KFP passes on as it is)."""
    return WorkflowError(message, argo=True)


def field_names(items: list[Any], *, parameters: bool = False) -> None:
    """Argo's validateWorkflowFieldNames: present, well-formed and unique; the message
    starts with `[index]` for the caller to prefix."""
    seen: set[str] = set()
    for index, item in enumerate(items):
        name = item.get("name") or "" if isinstance(item, dict) else ""
        if not name:
            raise argo_error(f"[{index}].name is required")
        if parameters:
            problems = [] if _PARAM_NAME.fullmatch(name) else [_PARAM_NAME_ERROR]
        else:
            problems = []
            if len(name) > FIELD_NAME_MAX:
                problems.append(f"must be no more than {FIELD_NAME_MAX} characters")
            if not FIELD_NAME.fullmatch(name):
                problems.append(FIELD_NAME_ERROR)
        if problems:
            raise argo_error(f"[{index}].name: '{name}' is invalid: {';'.join(problems)}")
        if name in seen:
            raise argo_error(f"[{index}].name '{name}' is not unique")
        seen.add(name)


def prefixed(prefix: str, check: Any, *args: Any, **kwargs: Any) -> None:
    """`check(*args, **kwargs)`, its error's message prefixed by where it was found."""
    try:
        check(*args, **kwargs)
    except WorkflowError as error:
        raise argo_error(f"{prefix}{error.message}") from None


def template_kind(template: dict[str, Any]) -> str:
    """The template's one type; Argo's error when it has none or several."""
    kinds = [kind for kind in TEMPLATE_TYPES if template.get(kind) is not None]
    name = template.get("name", "")
    if not kinds:
        raise argo_error(f"templates.{name} template type unspecified. {_TYPE_CHOICES}")
    if len(kinds) > 1:
        raise argo_error(f"templates.{name} multiple template types specified. {_TYPE_CHOICES}")
    return kinds[0]


def tags(value: Any) -> list[str]:
    """The `{{...}}` references in a JSON value (expressions `{{=...}}` excluded)."""
    text = json.dumps(value)
    return [tag for tag in _TAG.findall(text) if not tag.strip().startswith("=")]


def task_ancestors(name: str, depends: dict[str, list[str]]) -> list[str]:
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


def no_cycles(template: str, depends: dict[str, list[str]]) -> None:
    """Argo's verifyNoCycles."""
    visited: set[str] = set()

    def visit(task: str, path: list[str]) -> None:
        if task in visited:
            return
        for dependency in depends.get(task, []):
            if dependency in path:
                raise argo_error(
                    f"templates.{template}.tasks dependency cycle detected: "
                    f"{'->'.join(path)}->{dependency}"
                )
            visit(dependency, [*path, dependency])
        visited.add(task)

    for task in depends:
        visit(task, [])
