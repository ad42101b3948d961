"""Pipelines that use the KFP v2 DSL features a lightweight-component pipeline can run locally.

(No `from __future__ import annotations`: kfp reads the annotations as types.)

Each pipeline checks its own result in a last component, which fails the run when a value
did not flow as it would on a cluster.
"""

from pathlib import Path
from typing import NamedTuple

from kfp import compiler, dsl
from kfp.dsl import (
    Artifact,
    Dataset,
    Input,
    InputPath,
    Metrics,
    Output,
    OutputPath,
    PipelineTaskFinalStatus,
)

IMAGE = "python:3.11"


@dsl.component(base_image=IMAGE)
def check(value: str, expected: str):
    """Fail unless the value that flowed in is the expected one."""
    if value != expected:
        raise ValueError(f"expected {expected!r}, got {value!r}")


# -- file passing -----------------------------------------------------------------------------


@dsl.component(base_image=IMAGE)
def write_text(text: str, data_output_path: OutputPath(str)):
    with open(data_output_path, "w") as file:
        file.write(text)


@dsl.component(base_image=IMAGE)
def write_dataset(text: str, dataset_path: OutputPath("Dataset")):
    with open(dataset_path, "w") as file:
        file.write(text)


@dsl.component(base_image=IMAGE)
def read_dataset_path(dataset: InputPath("Dataset")) -> str:
    with open(dataset) as file:
        return file.read()


@dsl.component(base_image=IMAGE)
def make_dataset(text: str, dataset: Output[Dataset]):
    with open(dataset.path, "w") as file:
        file.write(text)
    dataset.metadata["length"] = len(text)


@dsl.component(base_image=IMAGE)
def read_dataset(dataset: Input[Dataset]) -> str:
    with open(dataset.path) as file:
        text = file.read()
    if dataset.metadata.get("length") != len(text):
        raise ValueError(f"metadata did not flow: {dataset.metadata}")
    return text


@dsl.pipeline(name="file-passing")
def file_passing(text: str = "by file"):
    """OutputPath(str) read as a value; OutputPath/InputPath and Output/Input of artifacts."""
    written = write_text(text=text)
    check(value=written.outputs["data_output_path"], expected=text).set_display_name("check-param")
    by_path = read_dataset_path(dataset=write_dataset(text=text).outputs["dataset_path"])
    check(value=by_path.output, expected=text).set_display_name("check-path")
    by_artifact = read_dataset(dataset=make_dataset(text=text).outputs["dataset"])
    check(value=by_artifact.output, expected=text).set_display_name("check-artifact")


@dsl.component(base_image=IMAGE)
def read_text(data_input_path: InputPath(str)) -> str:
    with open(data_input_path) as file:
        return file.read()


@dsl.pipeline(name="input-path-of-a-parameter")
def input_path_of_a_parameter(text: str = "by file"):
    """InputPath(str) reading an OutputPath(str): KFP's executor looks for an artifact."""
    read_text(data_input_path=write_text(text=text).outputs["data_output_path"])


# -- metrics ----------------------------------------------------------------------------------


@dsl.component(base_image=IMAGE)
def evaluate(metrics: Output[Metrics]):
    metrics.log_metric("accuracy", 0.9)


@dsl.component(base_image=IMAGE)
def read_accuracy(metrics: Input[Metrics]) -> str:
    return str(metrics.metadata["accuracy"])


@dsl.pipeline(name="metrics")
def metrics_pipeline():
    accuracy = read_accuracy(metrics=evaluate().outputs["metrics"])
    check(value=accuracy.output, expected="0.9")


# -- conditions -------------------------------------------------------------------------------


@dsl.component(base_image=IMAGE)
def classify(number: int) -> str:
    return "big" if number > 10 else ("zero" if number == 0 else "small")


@dsl.component(base_image=IMAGE)
def say(word: str) -> str:
    return word


@dsl.pipeline(name="conditions")
def conditions(number: int = 42, expected: str = "big"):
    """dsl.If/Elif/Else with dsl.OneOf of the branch taken."""
    kind = classify(number=number)
    with dsl.If(kind.output == "big"):
        big = say(word="big")
    with dsl.Elif(kind.output == "zero"):
        zero = say(word="zero")
    with dsl.Else():
        small = say(word="small")
    check(value=dsl.OneOf(big.output, zero.output, small.output), expected=expected)


# -- loops ------------------------------------------------------------------------------------


@dsl.component(base_image=IMAGE)
def square(number: int) -> int:
    return number * number


@dsl.component(base_image=IMAGE)
def total(numbers: list) -> str:
    return str(sum(numbers))


@dsl.component(base_image=IMAGE)
def multiply(a: int, b: int) -> int:
    return a * b


@dsl.component(base_image=IMAGE)
def make_numbers() -> list:
    return [2, 3]


@dsl.pipeline(name="loops")
def loops(numbers: list = [1, 2, 3]):  # noqa: B006 (kfp reads the default)
    """ParallelFor over a parameter and over a task's output, with Collected; and a
    ParallelFor inside a ParallelFor."""
    with dsl.ParallelFor(numbers) as number:
        squared = square(number=number)
    check(
        value=total(numbers=dsl.Collected(squared.output)).output, expected="14"
    ).set_display_name("check-squares")
    with dsl.ParallelFor(make_numbers().output) as produced:  # over an upstream output
        cubed = multiply(a=square(number=produced).output, b=produced)
    check(value=total(numbers=dsl.Collected(cubed.output)).output, expected="35").set_display_name(
        "check-cubes"
    )
    with dsl.ParallelFor([1, 2]) as outer:  # noqa: SIM117 (a loop in a loop)
        with dsl.ParallelFor([10, 20]) as inner:
            multiply(a=outer, b=inner)


@dsl.component(base_image=IMAGE)
def sleep_then(seconds: float, item: int) -> int:
    import time

    time.sleep(seconds)
    return item


@dsl.component(base_image=IMAGE)
def shout(item: int) -> int:
    print(f"iteration item {item}")
    return item


@dsl.pipeline(name="printed-loop")
def printed_loop(items: list = [7, 8, 9]):  # noqa: B006 (kfp reads the default)
    """A ParallelFor whose iterations print their item, then a task after all of them."""
    with dsl.ParallelFor(items) as item:
        shouted = shout(item=item)
    total(numbers=dsl.Collected(shouted.output))


@dsl.pipeline(name="bounded-loop")
def bounded_loop(seconds: float = 3.0):
    """Four iterations, at most two at once."""
    with dsl.ParallelFor([1, 2, 3, 4], parallelism=2) as item:
        sleep_then(seconds=seconds, item=item)


@dsl.pipeline(name="independent")
def independent(seconds: float = 3.0):
    """Three tasks that depend on nothing."""
    sleep_then(seconds=seconds, item=1).set_display_name("first")
    sleep_then(seconds=seconds, item=2).set_display_name("second")
    sleep_then(seconds=seconds, item=3).set_display_name("third")


# -- nested pipelines, exit handlers, retries, upstream failures --------------------------------


@dsl.component(base_image=IMAGE)
def add(a: int, b: int) -> int:
    return a + b


@dsl.pipeline(name="inner")
def inner(a: int, b: int) -> int:
    return add(a=add(a=a, b=b).output, b=b).output


@dsl.component(base_image=IMAGE)
def as_text(number: int) -> str:
    return str(number)


@dsl.pipeline(name="nested")
def nested(a: int = 1, b: int = 2, expected: str = "5"):
    """A pipeline used as a component, its output used outside it: a + 2 * b."""
    result = inner(a=a, b=b)
    check(value=as_text(number=result.output).output, expected=expected)


@dsl.component(base_image=IMAGE)
def fail_if(fail: bool):
    if fail:
        raise RuntimeError("the body failed on purpose")


@dsl.component(base_image=IMAGE)
def report(status: PipelineTaskFinalStatus, marker_dir: str):
    import os

    with open(os.path.join(marker_dir, "exit-status"), "w") as file:
        file.write(status.state)


@dsl.pipeline(name="exit-handler")
def exit_handler(fail: bool = True, marker_dir: str = "/tmp"):
    """ExitHandler: its exit task runs after the body, and sees how it ended."""
    with dsl.ExitHandler(report(marker_dir=marker_dir)):
        fail_if(fail=fail)


@dsl.component(base_image=IMAGE)
def flaky(marker_dir: str) -> str:
    """Fails on its first attempt, succeeds on the next."""
    import os

    marker = os.path.join(marker_dir, "attempted")
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("first attempt fails")
    return "second attempt"


@dsl.pipeline(name="retries")
def retries(marker_dir: str = "/tmp"):
    attempt = flaky(marker_dir=marker_dir).set_retry(num_retries=2, backoff_duration="0s")
    check(value=attempt.output, expected="second attempt")


@dsl.component(base_image=IMAGE)
def clean_up() -> str:
    return "cleaned"


@dsl.pipeline(name="upstream-failure")
def upstream_failure():
    """A task that runs although its upstream task failed."""
    failing = fail_if(fail=True)
    clean_up().after(failing).ignore_upstream_failure()


@dsl.component(base_image=IMAGE)
def read_artifact(data: Input[Artifact]) -> str:
    with open(data.path) as file:
        return file.read()


@dsl.pipeline(name="import-data")
def importer_pipeline(uri: str = "/tmp/data.txt", expected: str = ""):
    imported = dsl.importer(artifact_uri=uri, artifact_class=Artifact, reimport=False)
    check(value=read_artifact(data=imported.output).output, expected=expected)


@dsl.component(base_image=IMAGE)
def pair(text: str) -> NamedTuple("Outputs", [("text", str), ("number", int)]):
    from collections import namedtuple

    return namedtuple("Outputs", ["text", "number"])(text, len(text))


@dsl.pipeline(name="named-outputs")
def named_outputs(text: str = "four"):
    made = pair(text=text).set_cpu_limit("1").set_memory_limit("500M")  # no effect locally
    check(value=as_text(number=made.outputs["number"]).output, expected="4")
    check(value=made.outputs["text"], expected=text)


PIPELINES = {
    "file_passing": file_passing,
    "input_path_of_a_parameter": input_path_of_a_parameter,
    "metrics": metrics_pipeline,
    "conditions": conditions,
    "loops": loops,
    "bounded_loop": bounded_loop,
    "independent": independent,
    "nested": nested,
    "exit_handler": exit_handler,
    "retries": retries,
    "upstream_failure": upstream_failure,
    "importer": importer_pipeline,
    "named_outputs": named_outputs,
}


# -- run retries (test_runs_e2e.py) ------------------------------------------------------------


@dsl.component(base_image=IMAGE)
def count_run(counter: str, tag: str, dataset: Output[Dataset]) -> str:
    """Append a line to the counter file: how often this task really executed."""
    with open(counter, "a") as file:
        file.write(tag + "\n")
    with open(dataset.path, "w") as file:
        file.write("counted " + tag)
    return "counted " + tag


@dsl.component(base_image=IMAGE)
def needs_marker(marker: str, value: str, dataset: Input[Dataset]):
    """Fail unless the marker file exists; check what the counting task passed on."""
    import os

    if not os.path.exists(marker):
        raise RuntimeError("the marker file is not there yet")
    with open(dataset.path) as file:
        text = file.read()
    if value != "counted first" or text != "counted first":
        raise ValueError(f"unexpected inputs {value!r}, {text!r}")


@dsl.component(base_image=IMAGE)
def wait_for_marker(marker: str, value: str):
    """Wait (up to 10 minutes) until the marker file exists."""
    import os
    import time

    deadline = time.monotonic() + 600
    while not os.path.exists(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    if value != "counted first":
        raise ValueError(f"unexpected input {value!r}")


@dsl.pipeline(name="retry-carries-forward")
def retry_carries_forward(counter: str, marker: str):
    """A counting task, a loop of counting tasks, then a task that fails without a marker."""
    counted = count_run(counter=counter, tag="first")
    with dsl.ParallelFor(["a", "b"]) as item:
        count_run(counter=counter, tag=item)
    needs_marker(marker=marker, value=counted.outputs["Output"], dataset=counted.outputs["dataset"])


@dsl.pipeline(name="retry-after-terminate")
def retry_after_terminate(counter: str, marker: str):
    """A counting task, then one that waits for a marker (terminated while it waits)."""
    counted = count_run(counter=counter, tag="first")
    wait_for_marker(marker=marker, value=counted.outputs["Output"])


@dsl.pipeline(name="retry-exit-handler")
def retry_exit_handler(counter: str, marker: str):
    """The body of retry_carries_forward's first and last task, in an ExitHandler whose exit
    task counts too."""
    with dsl.ExitHandler(count_run(counter=counter, tag="exit")):
        counted = count_run(counter=counter, tag="first")
        needs_marker(
            marker=marker, value=counted.outputs["Output"], dataset=counted.outputs["dataset"]
        )


RETRY_PIPELINES = {
    "retry_carries_forward": retry_carries_forward,
    "retry_after_terminate": retry_after_terminate,
    "retry_exit_handler": retry_exit_handler,
}


def compile_all(directory: Path, pipelines: dict | None = None) -> dict[str, Path]:
    """Compile every pipeline (of PIPELINES, or those given) to `directory/<name>.yaml`."""
    paths = {}
    for name, pipeline in (PIPELINES if pipelines is None else pipelines).items():
        paths[name] = Path(directory) / f"{name}.yaml"
        compiler.Compiler().compile(pipeline, str(paths[name]))
    return paths
