"""kfp 1.8 source of unsupported.yaml: a Kubernetes resource template (dsl.ResourceOp), which
needs a cluster: the run fails at once, naming it.

Data for the tests, not imported by them (kfp 1.8 is not installed in the test venv).
Regenerate: /tmp/kfp18/bin/python tests/pipelines/v1/unsupported.py (see
add_subtract_multiply.py).
"""

from pathlib import Path

from kfp import compiler, dsl
from kfp.components import create_component_from_func


def hello() -> str:
    """A task that never runs: the workflow is refused before any task starts."""
    return "hello"


hello_op = create_component_from_func(hello, base_image="python:3.11")


@dsl.pipeline(name="unsupported-v1")
def unsupported_pipeline():
    hello_op()
    dsl.ResourceOp(
        name="make-config-map",
        k8s_resource={
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"generateName": "kfadapter-"},
            "data": {"key": "value"},
        },
        action="create",
    )


if __name__ == "__main__":
    compiler.Compiler().compile(unsupported_pipeline, str(Path(__file__).with_suffix(".yaml")))
