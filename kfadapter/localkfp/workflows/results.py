"""A node's `Result`, what `{{tasks.T...}}` resolve to after it, and what its record keeps."""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kfadapter.localkfp.workflows.nodes import ERROR, FAILED, SUCCEEDED
from kfadapter.localkfp.workflows.paths import PathMap


class WorkflowError(Exception):
    """A node cannot be executed (an input missing, an expression Argo would refuse)."""


@dataclass
class Result:
    """How a node ended, what it produced, and the nodes its dependents hang from."""

    phase: str
    outbound: list[str]
    parameters: dict[str, str] = field(default_factory=dict)
    artifacts: dict[str, Path] = field(default_factory=dict)
    result: str | None = None
    exit_code: str | None = None
    message: str = ""


@dataclass
class Arguments:
    """What a template is called with: parameter values and artifact files."""

    parameters: dict[str, str] = field(default_factory=dict)
    artifacts: dict[str, Path] = field(default_factory=dict)


def failures(results: Iterable[Result]) -> list[Result]:
    """The results that failed or errored, in order."""
    return [result for result in results if result.phase in (FAILED, ERROR)]


def result_of(future: concurrent.futures.Future[Result], node_name: str) -> Result:
    """A node's result from its thread; a defect in the runner errors the node, the run goes
    on."""
    try:
        return future.result()
    except Exception as exc:
        return Result(ERROR, [node_name], message=f"{type(exc).__name__}: {exc}")


def publish(
    values: dict[str, str], artifacts: dict[str, Path], prefix: str, result: Result
) -> None:
    """What `{{tasks.T...}}` or `{{steps.S...}}` resolve to once T or S has ended."""
    values[f"{prefix}.status"] = result.phase
    if result.exit_code is not None:
        values[f"{prefix}.exitCode"] = result.exit_code
    if result.result is not None:
        values[f"{prefix}.outputs.result"] = result.result
    for name, value in result.parameters.items():
        values[f"{prefix}.outputs.parameters.{name}"] = value
    for name, path in result.artifacts.items():
        artifacts[f"{prefix}.outputs.artifacts.{name}"] = path


def aggregate_parameters(results: list[Result]) -> dict[str, str]:
    """An expanded task's output parameters: each a JSON list of the items' values."""
    names = list(dict.fromkeys(name for result in results for name in result.parameters))
    return {
        name: json.dumps(
            [result.parameters[name] for result in results if name in result.parameters]
        )
        for name in names
    }


# -- recorded results ----------------------------------------------------------------------


def encoded(result: Result) -> dict[str, Any]:
    """A pod's outputs as its recorded result keeps them (JSON)."""
    return {
        "parameters": dict(result.parameters),
        "artifacts": {
            name: _artifact_record(name, path) for name, path in result.artifacts.items()
        },
        "result": result.result,
        "exit_code": result.exit_code,
    }


def encoded_inputs(
    template: Mapping[str, Any],
    values: Mapping[str, str],
    artifacts: Mapping[str, Path | bytes],
    paths: PathMap,
) -> dict[str, Any]:
    """A pod's resolved inputs as its recorded result keeps them: the values of the
    template's input parameters, and each input artifact's file (the upstream output's; a
    raw artifact's copy staged in the pod)."""
    declared = template.get("inputs") or {}
    parameters = {
        parameter["name"]: values[key]
        for parameter in declared.get("parameters") or []
        if (key := f"inputs.parameters.{parameter['name']}") in values
    }
    recorded = {}
    for artifact in declared.get("artifacts") or []:
        source = artifacts.get(artifact["name"])
        if isinstance(source, bytes):
            source = paths.local(artifact["path"]) if artifact.get("path") else None
        if source is not None:
            recorded[artifact["name"]] = _artifact_record(artifact["name"], source)
    return {"parameters": parameters, "artifacts": recorded}


def result_from(outputs: Mapping[str, Any], outbound: list[str]) -> Result:
    """The Result of a carried-forward pod, from its recorded outputs."""
    return Result(
        SUCCEEDED,
        outbound,
        dict(outputs.get("parameters") or {}),
        {name: _recorded_path(value) for name, value in (outputs.get("artifacts") or {}).items()},
        outputs.get("result"),
        outputs.get("exit_code"),
    )


def _artifact_record(name: str, path: Path) -> dict[str, Any]:
    """An Argo artifact in the shape attempts.encode_outputs gives a KFP artifact (which
    run_outputs reads): one item with its name and file; no type, as Argo gives none."""
    return {"list": False, "items": [{"name": name, "uri": str(path), "metadata": {}}]}


def _recorded_path(artifact: Any) -> Path:
    """The file of a recorded artifact (`_artifact_record`; a bare path in older records)."""
    if isinstance(artifact, str):
        return Path(artifact)
    return Path(artifact["items"][0]["uri"])
