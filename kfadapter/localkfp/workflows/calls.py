"""What a DAG task or a step calls its template with: its dependencies, items and arguments."""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kfadapter.localkfp.workflows.expressions import depends_tasks, substitute, substitute_all
from kfadapter.localkfp.workflows.results import Arguments, WorkflowError


def task_dependencies(task: Mapping[str, Any]) -> list[str]:
    """The tasks a DAG task waits for: its `depends` expression's, else `dependencies`."""
    if task.get("depends"):
        return depends_tasks(str(task["depends"]))
    return [str(name) for name in task.get("dependencies") or []]


def parallelism_gate(template: Mapping[str, Any]) -> contextlib.AbstractContextManager[Any]:
    """At most `parallelism` tasks of the template at once (0 or none: no bound)."""
    limit = template.get("parallelism")
    if isinstance(limit, int) and limit > 0:
        return threading.BoundedSemaphore(limit)
    return contextlib.nullcontext()


def task_items(task: Mapping[str, Any], values: Mapping[str, str]) -> list[Any] | None:
    """The items a task is expanded over (withItems, withParam, withSequence), or None."""
    if "withItems" in task:
        return list(substitute_all(task["withItems"], values))
    if "withParam" in task:
        text = substitute(str(task["withParam"]), values)
        message = f"withParam value could not be parsed as a JSON list: {text}"
        try:
            items = json.loads(text)
        except ValueError as exc:
            raise WorkflowError(message) from exc
        if not isinstance(items, list):
            raise WorkflowError(message)
        return items
    if "withSequence" in task:
        sequence = substitute_all(dict(task["withSequence"]), values)
        start = int(str(sequence.get("start", 0)))
        if "count" in sequence:
            count = int(str(sequence["count"]))
            return [str(start + i) for i in range(count)]
        end = int(str(sequence.get("end", 0)))
        step = 1 if end >= start else -1
        return [str(i) for i in range(start, end + step, step)]
    return None


def _item_text(value: Any) -> str:
    """An item value as Argo substitutes it: strings as they are, others as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value, separators=(",", ":"))


def item_values(item: Any) -> dict[str, str]:
    """`{{item}}` and, for a map, `{{item.<key>}}` (Argo's `processItem`)."""
    values = {"item": _item_text(item)}
    if isinstance(item, dict):
        for key, value in item.items():
            values[f"item.{key}"] = _item_text(value)
    return values


def item_description(item: Any) -> str:
    """The item as Argo puts it in the node name: a map as its sorted `key:value` pairs."""
    if isinstance(item, dict):
        return ",".join(sorted(f"{key}:{_item_text(value)}" for key, value in item.items()))
    return _item_text(item)


def call_arguments(task: Mapping[str, Any], artifacts: Mapping[str, Path]) -> Arguments:
    """A task's or step's arguments: parameter values, artifacts from upstream outputs."""
    arguments = Arguments()
    given = task.get("arguments") or {}
    for parameter in given.get("parameters") or []:
        value = parameter.get("value")
        if value is None:
            raise WorkflowError(f"arguments.parameters.{parameter['name']} has no value")
        if isinstance(value, str) and "{{" in value:
            raise WorkflowError(f"Unable to resolve: {value}")
        arguments.parameters[parameter["name"]] = str(value)
    for artifact in given.get("artifacts") or []:
        source = artifact.get("from")
        if source:
            arguments.artifacts[artifact["name"]] = artifact_from(source, artifacts)
    return arguments


def artifact_from(source: Any, artifacts: Mapping[str, Path]) -> Path:
    """The artifact a `from: "{{tasks.T.outputs.artifacts.X}}"` names."""
    key = _tag_key(str(source))
    if key not in artifacts:
        raise WorkflowError(f"Unable to resolve: {source}")
    return artifacts[key]


def _tag_key(text: str) -> str:
    match = re.fullmatch(r"\s*\{\{\s*([^{}]*?)\s*\}\}\s*", text)
    return match[1] if match else text
