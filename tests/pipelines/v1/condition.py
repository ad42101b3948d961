"""kfp 1.8 source of condition.yaml: dsl.Condition on an upstream output; one branch runs,
the other is skipped.

Data for the tests, not imported by them (kfp 1.8 is not installed in the test venv).
Regenerate: /tmp/kfp18/bin/python tests/pipelines/v1/condition.py (see add_subtract_multiply.py).
"""

from pathlib import Path

from kfp import compiler, dsl
from kfp.components import create_component_from_func

BASE_IMAGE = "python:3.11"


def size_of(value: int) -> str:
    """'big' above 5, else 'small'."""
    return "big" if value > 5 else "small"


def report(message: str, expected: str):
    """Fail unless the message is the expected one."""
    if message != expected:
        raise ValueError(f"expected {expected!r}, got {message!r}")
    print(f"branch taken with {message!r}")


size_of_op = create_component_from_func(size_of, base_image=BASE_IMAGE)
report_op = create_component_from_func(report, base_image=BASE_IMAGE)


@dsl.pipeline(name="condition-v1")
def condition_pipeline(value: int = 7):
    size = size_of_op(value)
    with dsl.Condition(size.output == "big"):
        report_op(size.output, "big")
    with dsl.Condition(size.output == "small"):
        report_op(size.output, "small")


if __name__ == "__main__":
    compiler.Compiler().compile(condition_pipeline, str(Path(__file__).with_suffix(".yaml")))
