"""kfp 1.8 source of artifact.yaml: a file passed as an artifact (OutputPath -> InputPath),
and an exit handler that gets the workflow's status; the writer fails once and is retried
(retryStrategy.limit 1).

Data for the tests, not imported by them (kfp 1.8 is not installed in the test venv).
Regenerate: /tmp/kfp18/bin/python tests/pipelines/v1/artifact.py (see add_subtract_multiply.py).
"""

from pathlib import Path

from kfp import compiler, dsl
from kfp.components import InputPath, OutputPath, create_component_from_func

BASE_IMAGE = "python:3.11"


def write_lines(text: str, count: int, attempt: int, data_path: OutputPath(str)):
    """Write the text on `count` lines; the first attempt fails (Argo's {{retries}} is 0)."""
    if attempt == 0:
        raise RuntimeError("the first attempt fails, to be retried")
    with open(data_path, "w") as file:
        for _ in range(count):
            file.write(text + "\n")


def check_lines(data_path: InputPath(str), text: str, count: int):
    """Fail unless the file holds the text on `count` lines."""
    with open(data_path) as file:
        lines = file.read().splitlines()
    if lines != [text] * count:
        raise ValueError(f"unexpected file content: {lines!r}")
    print(f"read {len(lines)} lines of {text!r}")


def announce(status: str):
    """The exit handler: print how the workflow ended."""
    print(f"workflow status: {status}")


write_lines_op = create_component_from_func(write_lines, base_image=BASE_IMAGE)
check_lines_op = create_component_from_func(check_lines, base_image=BASE_IMAGE)
announce_op = create_component_from_func(announce, base_image=BASE_IMAGE)


@dsl.pipeline(name="artifact-v1")
def artifact_pipeline(text: str = "hello", count: int = 3):
    with dsl.ExitHandler(announce_op("{{workflow.status}}")):
        written = write_lines_op(text, count, "{{retries}}").set_retry(1)
        check_lines_op(written.outputs["data"], text, count)


if __name__ == "__main__":
    compiler.Compiler().compile(artifact_pipeline, str(Path(__file__).with_suffix(".yaml")))
