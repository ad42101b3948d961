"""JSON as KFP's grpc-gateway reads and writes it (`backend/src/apiserver/common/utils.go`,
CustomMarshaler: protojson with UseProtoNames, EmitUnpopulated false, DiscardUnknown false).

- Requests: a field the message does not have is a 400; a field may be named as in the
  proto (`display_name`) or by its JSON name (`displayName`); the result uses proto names.
  Each value must have its field's JSON type, else a 400 naming the field: a string; a
  number or a quoted integer for an integer field; true or false; an enum's name or
  number; a Timestamp's RFC 3339 string; an object for a message or a map; an array for
  a list (a null inside a map or a list included); a non-empty Any names its "@type".
  A field's own null means unset; Struct, Value and the rest of an Any stay free-form.
- Answers: fields holding their zero value are left out (empty strings, false, 0, empty
  lists and maps, an enum's first value), as `total_size: 0` is on a cluster. Inside a
  google.protobuf.Struct (`pipeline_spec`, parameter values) and a map every value stays.

The message shapes come from the generated client of the same release (kfp_server_api's
`openapi_types`), so no field list is kept by hand.
"""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

import kfp_server_api.models as api_models

from kfadapter.localkfp.apierrors import ApiError, bad_request
from kfadapter.localkfp.query import parse_int64
from kfadapter.localkfp.timefmt import parse_rfc3339

_LIST = re.compile(r"list\[(.+)\]")
_MAP = re.compile(r"dict\(str, (.+)\)")
_OPAQUE = {"object", "ProtobufAny"}  # Struct, Value and Any: free-form JSON
INT64, INT32 = "int64", "int"
# kfp_server_api types an int64 as `str` (the swagger's string of format int64); these are
# the int64 fields of kfp_api_v2beta1.swagger.json, read as protojson reads an int64.
_INT64_FIELDS = {
    ("V2beta1PeriodicSchedule", "interval_second"),
    ("V2beta1RecurringRun", "max_concurrency"),
    ("V2beta1Predicate", "long_value"),
    ("PredicateLongValues", "values"),
    ("V2beta1PipelineTaskDetail", "execution_id"),
    ("V2beta1RunDetails", "pipeline_context_id"),
    ("V2beta1RunDetails", "pipeline_run_context_id"),
}
_ZERO_SCALARS: tuple[Any, ...] = ("", 0, False)
_STORAGE_STATES = {0: "STORAGE_STATE_UNSPECIFIED", 1: "AVAILABLE", 2: "ARCHIVED"}
# The numbers of the v2beta1 enums a request may carry (`backend/api/v2beta1/*.proto`;
# not their order: RecurringRun.Status has DISABLED = 3).
ENUM_NUMBERS: dict[str, dict[int, str]] = {
    "RecurringRunMode": {0: "MODE_UNSPECIFIED", 1: "ENABLE", 2: "DISABLE"},
    "V2beta1RecurringRunStatus": {0: "STATUS_UNSPECIFIED", 1: "ENABLED", 3: "DISABLED"},
    "V2beta1RunStorageState": _STORAGE_STATES,
    "AuthorizeRequestVerb": dict(enumerate(("UNASSIGNED_VERB", "CREATE", "GET", "DELETE"))),
    "AuthorizeRequestResources": {0: "UNASSIGNED_RESOURCES", 1: "VIEWERS"},
    "V2beta1DeletePropagationPolicy": dict(
        enumerate(("DELETE_PROPAGATION_POLICY_UNSPECIFIED", "FOREGROUND", "BACKGROUND", "ORPHAN"))
    ),
    "V2beta1ExperimentStorageState": _STORAGE_STATES,
    "V2beta1RuntimeState": dict(
        enumerate(
            (
                "RUNTIME_STATE_UNSPECIFIED",
                "PENDING",
                "RUNNING",
                "SUCCEEDED",
                "SKIPPED",
                "FAILED",
                "CANCELING",
                "CANCELED",
                "PAUSED",
            )
        )
    ),
}


def _camel(name: str) -> str:
    """protojson's JSON name of a proto field name (lowerCamelCase)."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


@cache
def _fields(model: str) -> dict[str, str] | None:
    """The fields (proto name -> type) of a message, None when `model` is no message."""
    cls = getattr(api_models, model, None)
    types = getattr(cls, "openapi_types", None)
    if cls is None or not types:
        return None
    fields = {cls.attribute_map.get(attr, attr): kind for attr, kind in types.items()}
    for name, kind in fields.items():
        if (model, name) in _INT64_FIELDS:
            fields[name] = kind.replace("str", INT64)
    return fields


@cache
def _names(model: str) -> dict[str, str]:
    """Every name a request may give a field of the message: proto and JSON name."""
    names: dict[str, str] = {}
    for name in _fields(model) or {}:
        names[name] = name
        names.setdefault(_camel(name), name)
    return names


@cache
def _enum_zero(model: str) -> str | None:
    """The first (zero) value of an enum type, None when `model` is no enum."""
    values = getattr(getattr(api_models, model, None), "allowable_values", None)
    return values[0] if values else None


def decode(document: Any, model: str, where: str = "request body") -> Any:
    """The request's message with proto field names; 400 naming an unknown field or one
    whose value is not of its type. A body that is no object is left to the service."""
    if _fields(model) is None or not isinstance(document, dict):
        return document
    return _decode_message(document, model, where)


def _decode_message(document: dict[str, Any], model: str, where: str) -> dict[str, Any]:
    fields, names = _fields(model) or {}, _names(model)
    result: dict[str, Any] = {}
    for key, value in document.items():
        name = names.get(key)
        if name is None:
            raise bad_request(f'{where}: unknown field "{key}" in {model}')
        if name in result:
            raise bad_request(f"{where} gives the field {name!r} twice")
        # a field's null is unset (protojson); a null inside a list or map is not
        path = f"{where}.{name}"
        result[name] = None if value is None else _decode_value(value, fields[name], path)
    return result


def _decode_value(value: Any, kind: str, where: str) -> Any:
    """The value of a field, list item or map value of type `kind`; 400 when it is not."""
    if kind == "object":
        return value  # google.protobuf.Struct or Value: any JSON
    if match := _LIST.fullmatch(kind):
        items = _expect(value, list, "an array", where)
        return [_decode_value(item, match[1], f"{where}[{i}]") for i, item in enumerate(items)]
    if match := _MAP.fullmatch(kind):
        pairs = _expect(value, dict, "an object", where)
        return {k: _decode_value(v, match[1], f"{where}.{k}") for k, v in pairs.items()}
    if kind == "ProtobufAny":  # an empty object, or one naming its type in "@type"
        what = 'an object (google.protobuf.Any) with an "@type" string'
        if _expect(value, dict, what, where) and not isinstance(value.get("@type"), str):
            raise _invalid(value, what, where)
        return value
    if _fields(kind) is not None:
        return _decode_message(_expect(value, dict, f"an object ({kind})", where), kind, where)
    if _enum_zero(kind) is not None:
        return _decode_enum(value, kind, where)
    return _decode_scalar(value, kind, where)


def _decode_scalar(value: Any, kind: str, where: str) -> Any:
    if kind == "str":
        return _expect(value, str, "a string", where)
    if kind == "bool":
        return _expect(value, bool, "true or false", where)
    if kind == "datetime":  # google.protobuf.Timestamp
        parse_rfc3339(_expect(value, str, "an RFC 3339 timestamp string", where), where)
        return value
    if kind in (INT64, INT32):
        bits = 64 if kind == INT64 else 32
        what = f"an int{bits} (a number or a quoted integer)"
        try:
            number = parse_int64(value, where)
        except ApiError:
            raise _invalid(value, what, where) from None
        if not -(2 ** (bits - 1)) <= number < 2 ** (bits - 1):
            raise _invalid(value, what, where)
        return value
    return value  # a type this module does not know: as given


def _decode_enum(value: Any, kind: str, where: str) -> Any:
    """protojson reads an enum by its exact name or by any int32 number (proto3 enums are
    open); a known number becomes its name."""
    names = getattr(api_models, kind).allowable_values
    if isinstance(value, str) and value in names:
        return value
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and float(value).is_integer() and -(2**31) <= value < 2**31:
        return ENUM_NUMBERS.get(kind, {}).get(int(value), int(value))
    raise _invalid(value, f"a {kind} name ({', '.join(names)}) or number", where)


def _expect(value: Any, kind: type, what: str, where: str) -> Any:
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise _invalid(value, what, where)
    return value


def _invalid(value: Any, what: str, where: str) -> ApiError:
    shown = json.dumps(value, ensure_ascii=False)
    if len(shown) > 100:
        shown = shown[:100] + "..."
    return bad_request(f"{where}: invalid value {shown}; the field takes {what}")


def enum_name(value: str, model: str) -> str | None:
    """The name of an enum value given by name or known number (as grpc-gateway reads an
    enum query parameter: `runtime/query.go`), None when it is neither."""
    numbers = ENUM_NUMBERS[model]
    if value in numbers.values():
        return value
    try:
        return numbers.get(int(value)) if value.lstrip("+-").isdigit() else None
    except ValueError:
        return None


# How a field's type is written: (OPAQUE,), (LIST, kind), (MAP, kind), (MESSAGE, model),
# (ENUM, zero value) or (SCALAR,); worked out once per type name.
OPAQUE, LIST, MAP, MESSAGE, ENUM, SCALAR = range(6)


@cache
def _kind(type_name: str) -> tuple[Any, ...]:
    if type_name in _OPAQUE:
        return (OPAQUE,)
    if match := _LIST.fullmatch(type_name):
        return (LIST, _kind(match[1]))
    if match := _MAP.fullmatch(type_name):
        return (MAP, _kind(match[1]))
    if _fields(type_name) is not None:
        return (MESSAGE, type_name)
    zero = _enum_zero(type_name)
    return (ENUM, zero) if zero is not None else (SCALAR,)


@cache
def _field_kinds(model: str) -> dict[str, tuple[Any, ...]]:
    return {name: _kind(type_name) for name, type_name in (_fields(model) or {}).items()}


def encode(value: Any, model: str) -> Any:
    """The answer as KFP sends it: the message without its zero-valued fields."""
    return _encode(value, (MESSAGE, model))


def _encode(value: Any, kind: tuple[Any, ...]) -> Any:
    tag = kind[0]
    if tag == MESSAGE and isinstance(value, dict):
        kinds = _field_kinds(kind[1])
        result: dict[str, Any] = {}
        for key, item in value.items():
            field_kind = kinds.get(key)
            if field_kind is None:
                result[key] = item  # not in the message: the service's own extra, as is
                continue
            # protojson leaves out an unset field, a scalar's or enum's zero value and an
            # empty list or map; a set message (a dict) is written even when empty
            if item is None:
                continue
            field_tag = field_kind[0]
            if field_tag == SCALAR:
                if not (isinstance(item, bool | int | float | str) and item in _ZERO_SCALARS):
                    result[key] = item
            elif field_tag == ENUM:
                if item != field_kind[1] and item != "":
                    result[key] = item
            elif field_tag in (LIST, MAP):
                if item:
                    result[key] = _encode(item, field_kind)
            elif field_tag == MESSAGE:
                result[key] = _encode(item, field_kind)
            else:
                result[key] = item
        return result
    if tag == LIST and isinstance(value, list):
        return [_encode(item, kind[1]) for item in value]
    if tag == MAP and isinstance(value, dict):
        return {key: _encode(item, kind[1]) for key, item in value.items()}
    return value
