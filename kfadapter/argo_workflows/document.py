"""An Argo Workflow as KFP 2.17 recognises it, the error it refuses one with, and its parts."""

from __future__ import annotations

import re
from typing import Any

API_VERSION = "argoproj.io/v1alpha1"
KIND = "Workflow"
_GROUP = "argoproj.io/"
# The types a template can be (one field each in Argo's `Template`).
TEMPLATE_TYPES = (
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
_DEPENDS_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_]*)(?:\.[A-Za-z]+)?")


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


def argument_parameters(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    """The workflow's parameters (`spec.arguments.parameters`), mappings only."""
    spec = workflow.get("spec") if isinstance(workflow, dict) else None
    arguments = (spec or {}).get("arguments") or {}
    listed = arguments.get("parameters") if isinstance(arguments, dict) else None
    return [p for p in listed or [] if isinstance(p, dict)]


def input_parameters(template: dict[str, Any]) -> list[dict[str, Any]]:
    """A template's input parameters."""
    return (template.get("inputs") or {}).get("parameters") or []


def unsupplied_inputs(template: dict[str, Any], supplied: set[Any]) -> list[str]:
    """Inputs without a value or default that the caller does not pass (ProcessArgs)."""
    return [
        p.get("name", "")
        for p in input_parameters(template)
        if p.get("name") not in supplied
        and p.get("value") is None
        and p.get("default") is None
        and p.get("valueFrom") is None
    ]


def dependencies(task: dict[str, Any]) -> list[str]:
    """The tasks a DAG task depends on: `dependencies`, or the names in `depends`."""
    if task.get("depends"):
        expression = re.sub(r"&&|\|\||!|\(|\)", " ", task["depends"])
        return [m.group(1) for m in _DEPENDS_NAME.finditer(expression)]
    return list(task.get("dependencies") or [])


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
                    "dependencies": dependencies(task),
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
