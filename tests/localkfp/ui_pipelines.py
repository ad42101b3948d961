"""Pipelines the web UI's browser tests run (tests/localkfp/test_ui.py).

(No `from __future__ import annotations`: kfp reads the annotations as types.)
"""

from kfp import dsl
from kfp.dsl import ClassificationMetrics, Metrics, Model, Output

IMAGE = "python:3.11"


@dsl.component(base_image=IMAGE)
def wait_for_file(path: str, timeout: float = 120.0) -> str:
    """Prints while it waits for the file the test creates, then returns its text."""
    import os
    import time

    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear")
        print(f"waiting for {path}", flush=True)
        time.sleep(0.5)
    with open(path) as file:
        return file.read()


@dsl.pipeline(name="waits-for-a-file")
def waits_for_a_file(path: str):
    wait_for_file(path=path)


@dsl.component(base_image=IMAGE)
def evaluate(
    metrics: Output[Metrics], classification: Output[ClassificationMetrics], model: Output[Model]
):
    """Writes what an evaluation step writes: scalars, a confusion matrix, a ROC curve, a model."""
    metrics.log_metric("accuracy", 0.9)
    metrics.log_metric("loss", 0.25)
    classification.log_confusion_matrix(["cat", "dog"], [[8, 2], [1, 9]])
    classification.log_roc_curve([0.0, 0.25, 1.0], [0.0, 0.75, 1.0], [1.0, 0.5, 0.0])
    with open(model.path, "w") as file:
        file.write("model weights")


@dsl.pipeline(name="writes-metrics")
def writes_metrics():
    evaluate()
