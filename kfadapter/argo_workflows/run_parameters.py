"""A workflow's run parameters: read, checked for unknown names, set as KFP's RunWorkflow does."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from kfadapter.argo_workflows.document import argument_parameters

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


def parameters(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    """The run parameters: {"name", "value" (a string, None without one), "description"}."""
    listed = []
    for parameter in argument_parameters(workflow):
        value = parameter.get("value")
        listed.append(
            {
                "name": parameter.get("name", ""),
                "value": None if value is None else any_string(value),
                "description": parameter.get("description") or "",
            }
        )
    return listed


def unrecognized(workflow: dict[str, Any], values: Mapping[str, Any]) -> list[str]:
    """The given names the workflow has no parameter for (KFP's VerifyParameters)."""
    known = {p.get("name") for p in argument_parameters(workflow)}
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
    for parameter in argument_parameters(workflow):
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
