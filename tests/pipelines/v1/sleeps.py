"""kfp 1.8 source of sleeps.yaml: one task that sleeps (to be terminated).

Data for the tests, not imported by them (kfp 1.8 is not installed in the test venv).
Regenerate: /tmp/kfp18/bin/python tests/pipelines/v1/sleeps.py (see add_subtract_multiply.py).
"""

from pathlib import Path

from kfp import compiler, dsl
from kfp.components import create_component_from_func


def sleep_for(seconds: float):
    """Sleep, saying so first."""
    import time

    print(f"sleeping {seconds}s", flush=True)
    time.sleep(seconds)


sleep_for_op = create_component_from_func(sleep_for, base_image="python:3.11")


@dsl.pipeline(name="sleeps-v1")
def sleeps_pipeline(seconds: float = 600.0):
    sleep_for_op(seconds)


if __name__ == "__main__":
    compiler.Compiler().compile(sleeps_pipeline, str(Path(__file__).with_suffix(".yaml")))
