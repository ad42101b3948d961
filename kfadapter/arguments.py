"""Pipeline specs: the parameters and tasks a version declares, and mapping arguments to them.

The training manager sends every argument as a string, named its own way (`modelName`,
`modelVersion`, ...). `map_arguments` fills the parameters the pipeline version actually
declares: a KFP v2 spec's `root.inputDefinitions.parameters`, or a KFP v1 pipeline's (an
Argo Workflow's) `spec.arguments.parameters`, which are all strings, required when they
have no `value`:

- argument names match parameter names case-insensitively (an exact match wins over
  other case variants); an argument whose value is JSON null counts as not given;
- `featurepath`, when declared and not given, is `<featuregroup_name>_<trainingjob_id>`;
- string values are converted to the declared type (NUMBER_INTEGER, NUMBER_DOUBLE,
  BOOLEAN, STRING, LIST and STRUCT from JSON);
- a required parameter (no default, not optional) with no value, and a value that does
  not convert, are reported together in one BadRequest;
- arguments that match no parameter are returned as `ignored`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from kfadapter import argo_workflows, jsontext
from kfadapter.errors import BadRequest

FEATUREPATH = "featurepath"

# KFP's NUMBER_INTEGER is an int64.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Longest number text read (a 64-bit integer written out in full, with room for "e" forms).
MAX_NUMBER_TEXT = 64

_TRUE = frozenset({"true", "1", "yes", "y", "on"})
_FALSE = frozenset({"false", "0", "no", "n", "off"})

# Older IR files name types differently (parameterType is the v2 name).
_LEGACY_TYPES = {"INT": "NUMBER_INTEGER", "DOUBLE": "NUMBER_DOUBLE", "STRING": "STRING"}


def spec_of(pipeline_spec: Any) -> dict[str, Any]:
    """The IR pipeline spec (the document with `root`) from what KFP stores for a version.

    KFP returns either the spec itself or {"pipeline_spec": ..., "platform_spec": ...}.
    """
    if not isinstance(pipeline_spec, dict):
        return {}
    inner = pipeline_spec.get("pipeline_spec")
    if isinstance(inner, dict) and "root" not in pipeline_spec:
        return inner
    return pipeline_spec


def declared_parameters(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The pipeline's input parameters: name, type, default, optional, description."""
    if argo_workflows.is_workflow(spec):
        return [
            {
                "name": parameter["name"],
                "type": "STRING",  # Argo parameters are strings
                "default": parameter["value"],
                "has_default": parameter["value"] is not None,
                "optional": parameter["value"] is not None,
                "description": parameter["description"],
            }
            for parameter in argo_workflows.parameters(spec)
        ]
    root = spec.get("root") if isinstance(spec, dict) else None
    definitions = ((root or {}).get("inputDefinitions") or {}).get("parameters") or {}
    parameters = []
    for name, definition in definitions.items():
        definition = definition if isinstance(definition, dict) else {}
        has_default = "defaultValue" in definition
        parameters.append(
            {
                "name": name,
                "type": _parameter_type(definition),
                "default": definition.get("defaultValue"),
                "has_default": has_default,
                "optional": bool(definition.get("isOptional")) or has_default,
                "description": definition.get("description") or "",
            }
        )
    return parameters


def pipeline_tasks(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The pipeline's top-level tasks: name, component (a V1 task's template),
    dependencies."""
    if argo_workflows.is_workflow(spec):
        return argo_workflows.entrypoint_tasks(spec)
    root = spec.get("root") if isinstance(spec, dict) else None
    tasks = ((root or {}).get("dag") or {}).get("tasks") or {}
    listed = []
    for name, task in tasks.items():
        task = task if isinstance(task, dict) else {}
        listed.append(
            {
                "name": (task.get("taskInfo") or {}).get("name") or name,
                "component": (task.get("componentRef") or {}).get("name") or "",
                "dependencies": list(task.get("dependentTasks") or []),
            }
        )
    return listed


@dataclass
class MappedArguments:
    """The parameter values to run with, and the arguments that matched no parameter."""

    parameters: dict[str, Any] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)


def map_arguments(
    declared: list[dict[str, Any]],
    arguments: dict[str, Any],
    *,
    trainingjob_id: str | None = None,
) -> MappedArguments:
    """Fill the declared parameters from the arguments; BadRequest naming what is wrong."""
    by_lower: dict[str, tuple[str, Any]] = {}
    for name, value in arguments.items():
        if value is not None:  # JSON null: not given
            by_lower.setdefault(str(name).lower(), (name, value))
    used: set[str] = set()
    mapped = MappedArguments()
    missing: list[str] = []
    invalid: list[str] = []
    for parameter in declared:
        name = parameter["name"]
        if arguments.get(name) is not None:
            match: tuple[str, Any] | None = (name, arguments[name])
        else:
            match = by_lower.get(name.lower())
        if match is None and name.lower() == FEATUREPATH:
            derived = _featurepath(by_lower, trainingjob_id)
            if derived is not None:
                mapped.parameters[name] = derived
                continue
        if match is None:
            if not parameter["optional"]:
                missing.append(name)
            continue
        used.add(match[0])
        try:
            mapped.parameters[name] = convert(match[1], parameter["type"])
        except ValueError as error:
            invalid.append(f"{name}: {error}")
    mapped.ignored = sorted(str(name) for name in arguments if name not in used)
    if missing or invalid:
        problems = []
        if missing:
            problems.append("missing required parameters: " + ", ".join(missing))
        if invalid:
            problems.append("badly typed values: " + "; ".join(invalid))
        raise BadRequest(
            "the arguments do not fit the pipeline's parameters: " + "; ".join(problems),
            missing_parameters=missing,
            invalid_parameters=invalid,
        )
    return mapped


def convert(value: Any, parameter_type: str) -> Any:
    """A value (usually a string) as the declared KFP parameter type; ValueError if it is not."""
    if parameter_type == "STRING":
        if isinstance(value, str):
            return value
        if isinstance(value, (dict, list)):
            return json.dumps(value)
        return str(value).lower() if isinstance(value, bool) else str(value)
    if parameter_type == "NUMBER_INTEGER":
        return _integer(value)
    if parameter_type == "NUMBER_DOUBLE":
        return _double(value)
    if parameter_type == "BOOLEAN":
        return _boolean(value)
    if parameter_type == "LIST":
        return _json_value(value, list, "a JSON list")
    if parameter_type == "STRUCT":
        return _json_value(value, dict, "a JSON object")
    return value  # an unknown type: passed on as given


def _parameter_type(definition: dict[str, Any]) -> str:
    """The KFP parameter type name of a definition."""
    declared = definition.get("parameterType") or definition.get("type") or "STRING"
    return _LEGACY_TYPES.get(str(declared), str(declared))


def _featurepath(by_lower: dict[str, tuple[str, Any]], trainingjob_id: str | None) -> str | None:
    """`<featuregroup_name>_<trainingjob_id>` when both are known, else None."""
    group = by_lower.get("featuregroup_name")
    job = by_lower.get("trainingjob_id")
    job_id = str(job[1]) if job is not None else trainingjob_id
    if group is None or not job_id:
        return None
    return f"{group[1]}_{job_id}"


def _integer(value: Any) -> int:
    """A whole number within KFP's int64 range, from an int, a whole float or a decimal text."""
    number = _whole_number(value)
    if number is None:
        raise ValueError(f"expected an integer, got {_short(value)}")
    if not INT64_MIN <= number <= INT64_MAX:
        raise ValueError(f"expected a 64-bit integer, got {_short(value)}")
    return number


def _whole_number(value: Any) -> int | None:
    """The whole number a value states, or None (booleans and fractions are not)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    text = str(value).strip()
    if not text.isascii() or "_" in text or len(text) > MAX_NUMBER_TEXT:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if number.is_integer() else None


def _short(value: Any) -> str:
    """A value's repr, cut to a length fit for an error message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _double(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {_short(value)}")
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"expected a number, got {_short(value)}") from None
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {_short(value)}")
    return number


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"expected true or false, got {_short(value)}")


def _json_value(value: Any, kind: type, described: str) -> Any:
    if isinstance(value, kind):
        return value
    try:
        parsed = jsontext.parse(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if not isinstance(parsed, kind):
        raise ValueError(f"expected {described}, got {_short(value)}")
    return parsed
