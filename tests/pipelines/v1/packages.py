"""kfp 1.8 source of packages.yaml: a lightweight component with packages_to_install, which
kfp 1.8 puts in front of its command as `pip install` (the task's environment must hold it).

Data for the tests, not imported by them (kfp 1.8 is not installed in the test venv).
The package is a tiny wheel the test builds and serves on a loopback index.
Regenerate: /tmp/kfp18/bin/python tests/pipelines/v1/packages.py (see add_subtract_multiply.py).
"""

from pathlib import Path

from kfp import compiler, dsl
from kfp.components import create_component_from_func


def probe_version(expected: str):
    """Fail unless the installed probe package has the expected version."""
    import kfadapter_v1_probe

    version = kfadapter_v1_probe.VERSION
    if version != expected:
        raise ValueError(f"expected {expected}, got {version}")
    print(f"kfadapter-v1-probe {version}")


probe_version_op = create_component_from_func(
    probe_version, base_image="python:3.11", packages_to_install=["kfadapter-v1-probe==0.1.0"]
)


@dsl.pipeline(name="packages-v1")
def packages_pipeline(expected: str = "0.1.0"):
    probe_version_op(expected)


if __name__ == "__main__":
    compiler.Compiler().compile(packages_pipeline, str(Path(__file__).with_suffix(".yaml")))
