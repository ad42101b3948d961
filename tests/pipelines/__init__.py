"""Pipelines the tests compile and run: small, real kfp v2 pipelines.

(No `from __future__ import annotations`: kfp reads the annotations as types.)

`compile_pipeline(name, directory)` writes one as KFP IR YAML and returns its path.
"""

from pathlib import Path

from kfp import compiler, dsl

BASE_IMAGE = "python:3.11"


@dsl.component(base_image=BASE_IMAGE)
def add(a: float, b: float) -> float:
    """a + b"""
    return a + b


@dsl.component(base_image=BASE_IMAGE)
def subtract(a: float, b: float) -> float:
    """a - b"""
    return a - b


@dsl.component(base_image=BASE_IMAGE)
def multiply(a: float, b: float) -> float:
    """a * b"""
    return a * b


@dsl.component(base_image=BASE_IMAGE)
def check_equals(value: float, expected: float):
    """Fail unless the value that flowed in is the expected one."""
    if abs(value - expected) > 1e-9:
        raise ValueError(f"expected {expected}, got {value}")


@dsl.pipeline(name="add-subtract-multiply", description="(a + b) * (a - b), checked")
def add_subtract_multiply(a: float = 5.0, b: float = 3.0, expected: float = 16.0) -> float:
    total = add(a=a, b=b)
    difference = subtract(a=a, b=b)
    product = multiply(a=total.output, b=difference.output)
    check_equals(value=product.output, expected=expected)
    return product.output


@dsl.component(base_image=BASE_IMAGE)
def fail(reason: str):
    """Always fails with the reason."""
    raise RuntimeError(reason)


@dsl.pipeline(name="always-fails")
def always_fails(reason: str = "this component always fails"):
    fail(reason=reason)


@dsl.component(base_image=BASE_IMAGE)
def sleep_for(seconds: float):
    """Sleeps, for runs that are terminated while they run."""
    import time

    time.sleep(seconds)


@dsl.pipeline(name="sleeps")
def sleeps(seconds: float = 600.0):
    sleep_for(seconds=seconds)


@dsl.component(base_image=BASE_IMAGE)
def train(featurepath: str, epochs: int, modelname: str, modelversion: str) -> str:
    """Stands in for an O-RAN training component: echoes what it received."""
    if epochs < 1:
        raise ValueError(f"epochs must be positive, got {epochs}")
    return f"{featurepath}|{epochs}|{modelname}|{modelversion}"


@dsl.pipeline(name="qoe-training", description="The shape of O-RAN's sample training pipeline")
def qoe_training(featurepath: str, epochs: int, modelname: str, modelversion: str) -> str:
    return train(
        featurepath=featurepath, epochs=epochs, modelname=modelname, modelversion=modelversion
    ).output


PIPELINES = {
    "add_subtract_multiply": add_subtract_multiply,
    "always_fails": always_fails,
    "sleeps": sleeps,
    "qoe_training": qoe_training,
}


def compile_pipeline(name: str, directory: Path) -> Path:
    """Compile the named pipeline to `directory/<name>.yaml` and return the path."""
    path = Path(directory) / f"{name}.yaml"
    compiler.Compiler().compile(PIPELINES[name], str(path))
    return path


V1_DIRECTORY = Path(__file__).parent / "v1"
"""KFP v1 pipelines (Argo Workflows) compiled with kfp 1.8.22, beside their kfp 1.8 sources
(data: the test suite does not import them; each says how to regenerate its YAML)."""

V1_PIPELINES = (
    "add_subtract_multiply",
    "artifact",
    "condition",
    "loop",
    "missing_command",
    "packages",
    "sleeps",
    "unsupported",
)
"""The v1 pipelines in V1_DIRECTORY, each `<name>.yaml` compiled from `<name>.py`."""


def v1_workflow(name: str) -> dict:
    """The Argo Workflow of the v1 pipeline `name` (tests/pipelines/v1/<name>.yaml)."""
    import yaml

    return yaml.safe_load((V1_DIRECTORY / f"{name}.yaml").read_text(encoding="utf-8"))
