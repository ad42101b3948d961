"""kfp 1.8 source of missing_command.yaml: a container whose command is not installed here
(its image would have it).

Data for the tests, not imported by them (kfp 1.8 is not installed in the test venv).
Regenerate: /tmp/kfp18/bin/python tests/pipelines/v1/missing_command.py (see
add_subtract_multiply.py).
"""

from pathlib import Path

from kfp import compiler, dsl
from kfp.components import load_component_from_text

convert_op = load_component_from_text(
    """
name: Convert
inputs:
- {name: source, type: String}
implementation:
  container:
    image: example.org/tools/converter:1.0
    command: [kfadapter-no-such-converter, --input, {inputValue: source}]
"""
)


@dsl.pipeline(name="missing-command-v1")
def missing_command_pipeline(source: str = "data.csv"):
    convert_op(source)


if __name__ == "__main__":
    compiler.Compiler().compile(missing_command_pipeline, str(Path(__file__).with_suffix(".yaml")))
