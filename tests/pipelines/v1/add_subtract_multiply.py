"""kfp 1.8 source of add_subtract_multiply.yaml: (a + b) * (a - b), checked by a last task.

Data for the tests, not imported by them (kfp 1.8 is not installed in the test venv).
Regenerate with a kfp 1.8 of its own, outside the repository:

    python3 -m venv /tmp/kfp18 && /tmp/kfp18/bin/pip install kfp==1.8.22
    /tmp/kfp18/bin/python tests/pipelines/v1/add_subtract_multiply.py
"""

from pathlib import Path

from kfp import compiler, dsl
from kfp.components import create_component_from_func

BASE_IMAGE = "python:3.11"


def add(a: float, b: float) -> float:
    """a + b"""
    return a + b


def subtract(a: float, b: float) -> float:
    """a - b"""
    return a - b


def multiply(a: float, b: float) -> float:
    """a * b"""
    return a * b


def check_equals(value: float, expected: float):
    """Fail unless the value that flowed in is the expected one."""
    if abs(value - expected) > 1e-9:
        raise ValueError(f"expected {expected}, got {value}")
    print(f"checked: {value} == {expected}")


add_op = create_component_from_func(add, base_image=BASE_IMAGE)
subtract_op = create_component_from_func(subtract, base_image=BASE_IMAGE)
multiply_op = create_component_from_func(multiply, base_image=BASE_IMAGE)
check_equals_op = create_component_from_func(check_equals, base_image=BASE_IMAGE)


@dsl.pipeline(name="add-subtract-multiply-v1", description="(a + b) * (a - b), checked")
def add_subtract_multiply(a: float = 5.0, b: float = 3.0, expected: float = 16.0):
    total = add_op(a, b)
    difference = subtract_op(a, b)
    product = multiply_op(total.output, difference.output)
    check_equals_op(product.output, expected)


if __name__ == "__main__":
    compiler.Compiler().compile(add_subtract_multiply, str(Path(__file__).with_suffix(".yaml")))
