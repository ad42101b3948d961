"""What the embedded server accepts in a request body, with a 400 that says what is wrong."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from kfadapter.localkfp import query as q
from kfadapter.localkfp.apierrors import ApiError, bad_request, parse_json_text
from kfadapter.localkfp.storage.database import dumps

MAX_NAME_LENGTH = 255
MAX_RECURRING_CONCURRENCY = 10
RECURRING_MODES = ("ENABLE", "DISABLE", "MODE_UNSPECIFIED")


def parse_json_body(raw: bytes) -> Any:
    """The JSON document of a request body ({} when empty); 400 when it is not JSON."""
    if not raw or not raw.strip():
        return {}
    return parse_json_text(raw, "request body")


def single_user_namespace(namespace: str) -> str:
    """The namespace KFP uses for a request's namespace: always "" on a single-user
    deployment (`resource/resource_manager.go`, ReplaceNamespace), as this server is."""
    del namespace
    return ""


def json_object(value: Any, what: str) -> dict[str, Any]:
    """A JSON object ({} for null); 400 for anything else."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_request(f"{what} must be a JSON object")
    return value


def text(body: dict[str, Any], key: str, where: str) -> str:
    """A string field ("" when absent); 400 when it is not a string."""
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise bad_request(f"{where}.{key} must be a string, got {type(value).__name__}")
    return value


def name(value: str, what: str) -> str:
    """A resource name: not blank, at most MAX_NAME_LENGTH characters, no control characters."""
    if not value or not value.strip():
        raise bad_request(f"{what} name is empty; please specify a valid name")
    if len(value) > MAX_NAME_LENGTH:
        raise bad_request(f"{what} name is longer than {MAX_NAME_LENGTH} characters")
    if any(ord(char) < 32 for char in value):
        raise bad_request(f"{what} name contains control characters")
    return value


# Column lengths KFP checks (`validation/length.go`, LengthSpecs), in bytes as Go's len().
FIELD_LIMITS = {
    ("Pipeline", "Name"): 128,
    ("Pipeline", "Namespace"): 63,
    ("PipelineVersion", "Name"): 127,
    ("PipelineVersion", "PipelineId"): 64,
    ("Experiment", "Name"): 128,
    ("Experiment", "Namespace"): 63,
}
# What a v2 spec's pipelineInfo.name must look like (`common/utils.go`, ValidatePipelineName).
SPEC_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,127}")


def field_length_error(model: str, field: str, value: str) -> str | None:
    """KFP's message when a field is longer than its column allows, else None."""
    limit = FIELD_LIMITS[(model, field)]
    if len(value.encode()) > limit:
        return f"{model}.{field} length cannot exceed {limit}"
    return None


def model_fields(model: str, what: str, **values: str) -> None:
    """500, as KFP answers (`server/api_converter.go`: ValidateModel wrapped in an internal
    error), when a field of a pipeline or version body is longer than its column."""
    for field, value in values.items():
        problem = field_length_error(model, field, value)
        if problem:
            raise ApiError(500, f"Failed to convert API {what} to model {what}: {problem}")


def experiment_name(body: dict[str, Any]) -> str:
    """The display_name of an experiment body, as KFP's toModelExperiment takes it: empty,
    or longer than its column (as is the namespace), is a 500 (`server/api_converter.go`)."""
    name = text(body, "display_name", "experiment")
    if not name:
        raise ApiError(
            500,
            "Failed to convert API experiment to model experiment: Experiment must have a "
            "non-empty name",
        )
    namespace = text(body, "namespace", "experiment")
    model_fields("Experiment", "experiment", Name=name, Namespace=namespace)
    return name


def spec_pipeline_name(name: str) -> None:
    """400 unless a v2 spec's pipelineInfo.name is one KFP stores (MLMD's rule)."""
    if not name:
        raise bad_request("pipeline's name cannot be empty")
    if len(name.encode()) > 128:
        raise bad_request("pipeline's name must contain no more than 128 characters")
    if not SPEC_NAME_PATTERN.fullmatch(name):
        raise bad_request(
            f"pipeline's name {name!r} (pipelineInfo.name of the spec) must contain only "
            "lowercase alphanumeric characters or '-' and must start with alphanumeric "
            "characters"
        )


def tags(body: dict[str, Any], what: str) -> str | None:
    """The `tags` object of a body as stored (JSON text, None when absent or empty); that
    its values are strings protojson.decode has checked, as KFP's gateway does."""
    value = body.get("tags")
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise bad_request(f"{what}.tags must be an object of strings")
    return dumps(value) if value else None


def mutable_fields(body: dict[str, Any], what: str) -> dict[str, Any]:
    """display_name and tags of a PATCH body (KFP's mutable fields), as stored."""
    fields: dict[str, Any] = {}
    if body.get("display_name") is not None:
        fields["display_name"] = name(text(body, "display_name", what), what.capitalize())
    if body.get("tags") is not None:
        fields["tags"] = tags(body, what)
    if not fields:
        raise bad_request(f"nothing to update: {what} mutable fields are display_name, tags")
    return fields


def runtime_config(body: dict[str, Any], what: str) -> dict[str, Any]:
    """The runtime config of a run or recurring run: its parameters and pipeline root."""
    config = json_object(body.get("runtime_config"), f"{what}.runtime_config")
    parameters = config.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise bad_request(f"{what}.runtime_config.parameters must be an object")
    result: dict[str, Any] = {}
    if parameters:
        result["parameters"] = parameters
    root = config.get("pipeline_root")
    if root:
        if not isinstance(root, str):
            raise bad_request(f"{what}.runtime_config.pipeline_root must be a string")
        result["pipeline_root"] = root
    return result


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# What a run's parameter value must be in JSON for each declared type (KFP checks the
# protobuf Value kind: `template/v2_template.go`, validatePipelineJobInputs).
_PARAMETER_KINDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "NUMBER_DOUBLE": ("double or integer", _is_number),
    "NUMBER_INTEGER": ("double or integer", _is_number),
    "STRING": ("string", lambda x: isinstance(x, str)),
    "BOOLEAN": ("bool", lambda x: isinstance(x, bool)),
    "LIST": ("list", lambda x: isinstance(x, list)),
    "STRUCT": ("struct", lambda x: isinstance(x, dict)),
}


def pipeline_parameters(ir: dict[str, Any], parameters: dict[str, Any]) -> None:
    """400 unless the parameters fit what the pipeline's root declares, as KFP checks a run
    or recurring run when it is created: every parameter without a default and not
    optional is given, each given value has its declared type, and none is undeclared."""
    root = ir.get("root") if isinstance(ir, dict) else None
    inputs = root.get("inputDefinitions") if isinstance(root, dict) else None
    declared = inputs.get("parameters") if isinstance(inputs, dict) else None
    declared = declared if isinstance(declared, dict) else {}
    problems: list[str] = []
    for name, spec in declared.items():
        spec = spec if isinstance(spec, dict) else {}
        if name not in parameters:
            if not spec.get("isOptional") and "defaultValue" not in spec:
                problems.append(
                    f"parameter {name} is not optional, yet has neither default value nor "
                    "user provided value"
                )
            continue
        kind = spec.get("parameterType") or "PARAMETER_TYPE_ENUM_UNSPECIFIED"
        if kind == "PARAMETER_TYPE_ENUM_UNSPECIFIED":
            problems.append(f"input parameter {name} has unspecified type")
        elif kind == "TASK_FINAL_STATUS":
            problems.append(
                f"input parameter {name} requires type TASK_FINAL_STATUS, which is invalid "
                "for root component"
            )
        elif not isinstance(kind, str) or kind not in _PARAMETER_KINDS:
            problems.append(f"input parameter {name} requires type unknown")
        else:
            label, fits = _PARAMETER_KINDS[kind]
            if not fits(parameters[name]):
                problems.append(
                    f"input parameter {name} requires type {label}, but the parameter value "
                    f"{dumps(parameters[name])} is not of {label} value type"
                )
    extra = [name for name in parameters if name not in declared]
    if extra:
        problems.append(f"parameter(s) provided are not required by pipeline: {', '.join(extra)}")
    if problems:
        raise bad_request("invalid pipeline job inputs: " + "; ".join(problems))


def max_concurrency(raw: Any) -> int:
    """A recurring run's max_concurrency: 1 to MAX_RECURRING_CONCURRENCY; absent counts as 0
    and is refused, as KFP refuses it (`server/recurring_run_server.go`)."""
    value = 0 if raw in (None, "") else q.parse_int64(raw, "recurring_run.max_concurrency")
    if not 1 <= value <= MAX_RECURRING_CONCURRENCY:
        raise bad_request(
            "The max concurrency of the recurring run is out of range. Support 1-"
            f"{MAX_RECURRING_CONCURRENCY}. Received {value}."
        )
    return value


def optional_bool(body: dict[str, Any], key: str, where: str) -> bool:
    """A boolean field (false when absent); 400 when it is not true or false."""
    value = body.get(key)
    if value is not None and not isinstance(value, bool):
        raise bad_request(f"{where}.{key} must be true or false, got {value!r}")
    return bool(value)


def recurring_mode(body: dict[str, Any]) -> str:
    """A recurring run's mode; only ENABLE enables it (KFP: absent or unspecified is
    disabled, `server/api_converter.go`)."""
    mode = body.get("mode") or "MODE_UNSPECIFIED"
    if mode not in RECURRING_MODES:
        raise bad_request(f"mode must be ENABLE or DISABLE, got {mode!r}")
    return mode
