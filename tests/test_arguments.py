"""Argument mapping and spec reading: the rules in CONTRACT.md, on real compiled specs."""

from __future__ import annotations

import math

import pytest
import yaml

from kfadapter.arguments import (
    convert,
    declared_parameters,
    map_arguments,
    pipeline_tasks,
    spec_of,
)
from kfadapter.errors import BadRequest

TM_ARGUMENTS = {
    "trainingjob_id": "job-7",
    "featuregroup_name": "cells",
    "modelName": "qoe",
    "modelVersion": "3",
    "modellocation": "s3://models",
    "epochs": "5",
}


def _spec(compiled, name: str) -> dict:
    return yaml.safe_load(compiled[name].read_text())


def _typed_spec(**definitions: dict) -> dict:
    return {"root": {"inputDefinitions": {"parameters": definitions}}}


def test_declared_parameters_of_qoe_training(compiled):
    parameters = {p["name"]: p for p in declared_parameters(_spec(compiled, "qoe_training"))}
    assert set(parameters) == {"featurepath", "epochs", "modelname", "modelversion"}
    assert parameters["epochs"]["type"] == "NUMBER_INTEGER"
    assert parameters["featurepath"]["type"] == "STRING"
    assert all(not p["optional"] and p["default"] is None for p in parameters.values())


def test_declared_parameters_with_defaults(compiled):
    parameters = {p["name"]: p for p in declared_parameters(_spec(compiled, "sleeps"))}
    assert parameters["seconds"] == {
        "name": "seconds",
        "type": "NUMBER_DOUBLE",
        "default": 600.0,
        "has_default": True,
        "optional": True,
        "description": "",
    }


def test_tasks_with_dependencies(compiled):
    tasks = {t["name"]: t for t in pipeline_tasks(_spec(compiled, "add_subtract_multiply"))}
    assert set(tasks) == {"add", "subtract", "multiply", "check-equals"}
    assert sorted(tasks["multiply"]["dependencies"]) == ["add", "subtract"]
    assert tasks["add"]["dependencies"] == []
    assert tasks["check-equals"]["component"] == "comp-check-equals"


def test_spec_of_unwraps_a_platform_spec_pair():
    inner = {"root": {}, "pipelineInfo": {"name": "x"}}
    assert spec_of({"pipeline_spec": inner, "platform_spec": {}}) == inner
    assert spec_of(inner) == inner
    assert spec_of(None) == {}
    assert spec_of("text") == {}


def test_tm_arguments_fill_qoe_training(compiled):
    declared = declared_parameters(_spec(compiled, "qoe_training"))
    mapped = map_arguments(declared, TM_ARGUMENTS, trainingjob_id="job-7")
    assert mapped.parameters == {
        "featurepath": "cells_job-7",
        "epochs": 5,
        "modelname": "qoe",
        "modelversion": "3",
    }
    assert mapped.ignored == ["featuregroup_name", "modellocation", "trainingjob_id"]


def test_an_explicit_featurepath_wins(compiled):
    declared = declared_parameters(_spec(compiled, "qoe_training"))
    arguments = {**TM_ARGUMENTS, "FeaturePath": "given"}
    mapped = map_arguments(declared, arguments, trainingjob_id="job-7")
    assert mapped.parameters["featurepath"] == "given"


def test_featurepath_uses_the_path_job_id_when_arguments_lack_it(compiled):
    declared = declared_parameters(_spec(compiled, "qoe_training"))
    arguments = {k: v for k, v in TM_ARGUMENTS.items() if k != "trainingjob_id"}
    mapped = map_arguments(declared, arguments, trainingjob_id="from-path")
    assert mapped.parameters["featurepath"] == "cells_from-path"


def test_missing_required_parameters_are_named(compiled):
    declared = declared_parameters(_spec(compiled, "qoe_training"))
    with pytest.raises(BadRequest) as caught:
        map_arguments(declared, {"epochs": "2"}, trainingjob_id="j")
    error = caught.value
    assert error.details["missing_parameters"] == ["featurepath", "modelname", "modelversion"]
    assert "featurepath" in error.message and "modelversion" in error.message


def test_badly_typed_values_are_named_with_missing_ones(compiled):
    declared = declared_parameters(_spec(compiled, "qoe_training"))
    arguments = {**TM_ARGUMENTS, "epochs": "five"}
    del arguments["modelVersion"]
    with pytest.raises(BadRequest) as caught:
        map_arguments(declared, arguments, trainingjob_id="job-7")
    assert caught.value.details["missing_parameters"] == ["modelversion"]
    assert caught.value.details["invalid_parameters"] == ["epochs: expected an integer, got 'five'"]


def test_defaults_make_parameters_optional(compiled):
    declared = declared_parameters(_spec(compiled, "add_subtract_multiply"))
    assert map_arguments(declared, {}).parameters == {}
    assert map_arguments(declared, {"A": "2.5"}).parameters == {"a": 2.5}


def test_every_type_converts_from_strings():
    declared = declared_parameters(
        _typed_spec(
            i={"parameterType": "NUMBER_INTEGER"},
            d={"parameterType": "NUMBER_DOUBLE"},
            b={"parameterType": "BOOLEAN"},
            s={"parameterType": "STRING"},
            l={"parameterType": "LIST"},
            m={"parameterType": "STRUCT"},
        )
    )
    arguments = {"i": "7", "d": "0.25", "b": "True", "s": "x", "l": "[1, 2]", "m": '{"k": 1}'}
    assert map_arguments(declared, arguments).parameters == {
        "i": 7,
        "d": 0.25,
        "b": True,
        "s": "x",
        "l": [1, 2],
        "m": {"k": 1},
    }


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        ("10", "NUMBER_INTEGER", 10),
        (" -3 ", "NUMBER_INTEGER", -3),
        ("4.0", "NUMBER_INTEGER", 4),
        (6, "NUMBER_INTEGER", 6),
        ("1e3", "NUMBER_DOUBLE", 1000.0),
        (2, "NUMBER_DOUBLE", 2.0),
        ("false", "BOOLEAN", False),
        ("0", "BOOLEAN", False),
        ("yes", "BOOLEAN", True),
        (True, "BOOLEAN", True),
        (3, "STRING", "3"),
        (True, "STRING", "true"),
        ([1], "LIST", [1]),
        ({"a": 1}, "STRUCT", {"a": 1}),
        ("anything", "SOME_FUTURE_TYPE", "anything"),
    ],
)
def test_convert(value, kind, expected):
    assert convert(value, kind) == expected


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("4.5", "NUMBER_INTEGER"),
        ("", "NUMBER_INTEGER"),
        (True, "NUMBER_INTEGER"),
        ("abc", "NUMBER_DOUBLE"),
        ("nan", "NUMBER_DOUBLE"),
        ("inf", "NUMBER_DOUBLE"),
        ("maybe", "BOOLEAN"),
        ("[1,", "LIST"),
        ('{"a": 1}', "LIST"),
        ("[1]", "STRUCT"),
    ],
)
def test_convert_rejects(value, kind):
    with pytest.raises(ValueError):
        convert(value, kind)


def test_double_keeps_precision():
    assert math.isclose(convert("0.1", "NUMBER_DOUBLE"), 0.1)


def test_first_of_case_variants_wins_and_others_are_ignored():
    declared = declared_parameters(_typed_spec(name={"parameterType": "STRING"}))
    mapped = map_arguments(declared, {"Name": "a", "NAME": "b"})
    assert mapped.parameters == {"name": "a"}
    assert mapped.ignored == ["NAME"]


def test_an_exact_name_wins_over_case_variants():
    declared = declared_parameters(_typed_spec(epochs={"parameterType": "NUMBER_INTEGER"}))
    mapped = map_arguments(declared, {"EPOCHS": "2", "epochs": "3"})
    assert mapped.parameters == {"epochs": 3}
    assert mapped.ignored == ["EPOCHS"]


def test_null_arguments_count_as_not_given(compiled):
    declared = declared_parameters(_spec(compiled, "qoe_training"))
    arguments = {**TM_ARGUMENTS, "modelName": None, "featuregroup_name": None}
    with pytest.raises(BadRequest) as caught:
        map_arguments(declared, arguments, trainingjob_id="job-7")
    assert caught.value.details["missing_parameters"] == ["featurepath", "modelname"]
    optional = declared_parameters(_spec(compiled, "sleeps"))
    assert map_arguments(optional, {"seconds": None}).parameters == {}


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("9223372036854775808", "NUMBER_INTEGER"),
        (-(2**63) - 1, "NUMBER_INTEGER"),
        (1e308, "NUMBER_INTEGER"),
        ("1e30", "NUMBER_INTEGER"),
        ("1_000", "NUMBER_INTEGER"),
        ("٣", "NUMBER_INTEGER"),
        pytest.param(10**400, "NUMBER_DOUBLE", id="huge-int-as-double"),
        ('{"a": NaN}', "STRUCT"),
        pytest.param("[" * 5000 + "]" * 5000, "LIST", id="deep-list"),
        pytest.param("[" * 150 + "]" * 150, "LIST", id="deeper-than-a-json-body-may-nest"),
    ],
)
def test_convert_rejects_what_kfp_cannot_hold(value, kind):
    with pytest.raises(ValueError) as caught:
        convert(value, kind)
    assert len(str(caught.value)) < 120  # a huge value is not echoed in full


def test_int64_bounds_convert():
    assert convert("9223372036854775807", "NUMBER_INTEGER") == 2**63 - 1
    assert convert(str(-(2**63)), "NUMBER_INTEGER") == -(2**63)


# -- KFP v1 pipelines (Argo Workflows): spec.arguments.parameters, strings ------------------


def _workflow(*parameters: dict) -> dict:
    """A V1 pipeline as kfp 1.8 declares its run parameters (only what mapping reads)."""
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "spec": {"entrypoint": "main", "arguments": {"parameters": list(parameters)}},
    }


V1_TRAINING = _workflow(
    {"name": "featurepath"},
    {"name": "epochs", "value": 10},
    {"name": "modelName"},
    {"name": "modelversion", "value": "1"},
)


def test_declared_parameters_of_a_v1_workflow_are_strings_with_their_values_as_defaults():
    """KFP 2.17 reads a V1 pipeline's parameters from spec.arguments.parameters
    (backend/src/apiserver/template/argo_template.go ParametersJSON); Argo holds every
    value as a string, and a parameter without one must be given."""
    assert declared_parameters(V1_TRAINING) == [
        {
            "name": "featurepath",
            "type": "STRING",
            "default": None,
            "has_default": False,
            "optional": False,
            "description": "",
        },
        {
            "name": "epochs",
            "type": "STRING",
            "default": "10",
            "has_default": True,
            "optional": True,
            "description": "",
        },
        {
            "name": "modelName",
            "type": "STRING",
            "default": None,
            "has_default": False,
            "optional": False,
            "description": "",
        },
        {
            "name": "modelversion",
            "type": "STRING",
            "default": "1",
            "has_default": True,
            "optional": True,
            "description": "",
        },
    ]


def test_tm_arguments_fill_a_v1_workflow_with_the_v2_rules():
    """Case-insensitive names, featurepath from featuregroup_name and the job id, strings
    kept as strings, unknown arguments reported as ignored."""
    mapped = map_arguments(
        declared_parameters(V1_TRAINING), {**TM_ARGUMENTS, "EPOCHS": 7}, trainingjob_id="x"
    )
    assert mapped.parameters == {
        "featurepath": "cells_job-7",
        "epochs": "5",
        "modelName": "qoe",
        "modelversion": "3",
    }
    assert mapped.ignored == ["EPOCHS", "featuregroup_name", "modellocation", "trainingjob_id"]


def test_missing_required_v1_parameters_are_named():
    """A V1 parameter without a value that no argument fills is a 400 naming it (KFP would
    refuse the run with a 500: resource_manager.go CreateRun, Validate(false, false))."""
    with pytest.raises(BadRequest) as error:
        map_arguments(declared_parameters(V1_TRAINING), {"epochs": "3"})
    assert error.value.details["missing_parameters"] == ["featurepath", "modelName"]
    assert "missing required parameters: featurepath, modelName" in error.value.message


def test_tasks_of_a_v1_workflow_are_its_entrypoint_dag():
    workflow = {
        **_workflow(),
        "spec": {
            "entrypoint": "main",
            "templates": [
                {
                    "name": "main",
                    "dag": {
                        "tasks": [
                            {"name": "prepare", "template": "prep"},
                            {"name": "train", "template": "fit", "depends": "prepare.Succeeded"},
                        ]
                    },
                }
            ],
        },
    }
    assert pipeline_tasks(workflow) == [
        {"name": "prepare", "component": "prep", "dependencies": []},
        {"name": "train", "component": "fit", "dependencies": ["prepare"]},
    ]
