"""kfp 1.8 source of loop.yaml: dsl.ParallelFor over a static list of dicts (withItems,
{{item.field}}) and over an upstream task's output (withParam).

Data for the tests, not imported by them (kfp 1.8 is not installed in the test venv).
Regenerate: /tmp/kfp18/bin/python tests/pipelines/v1/loop.py (see add_subtract_multiply.py).
"""

from pathlib import Path

from kfp import compiler, dsl
from kfp.components import create_component_from_func

BASE_IMAGE = "python:3.11"


def check_sum(a: int, b: int, total: int):
    """Fail unless a + b == total."""
    if a + b != total:
        raise ValueError(f"{a} + {b} != {total}")
    print(f"{a} + {b} == {total}")


def make_list(count: int) -> list:
    """[1, 2, ..., count]"""
    return list(range(1, count + 1))


def square(value: int) -> int:
    """value * value"""
    print(f"square of {value}")
    return value * value


check_sum_op = create_component_from_func(check_sum, base_image=BASE_IMAGE)
make_list_op = create_component_from_func(make_list, base_image=BASE_IMAGE)
square_op = create_component_from_func(square, base_image=BASE_IMAGE)


@dsl.pipeline(name="loop-v1")
def loop_pipeline(count: int = 3):
    with dsl.ParallelFor([{"a": 1, "b": 2, "total": 3}, {"a": 10, "b": 5, "total": 15}]) as item:
        check_sum_op(item.a, item.b, item.total)
    numbers = make_list_op(count)
    with dsl.ParallelFor(numbers.output) as number:
        square_op(number)


if __name__ == "__main__":
    compiler.Compiler().compile(loop_pipeline, str(Path(__file__).with_suffix(".yaml")))
