"""What a run's attempt leaves for its retry (kfadapter/localkfp/attempts.py): task results
as JSON lines, kept across attempts, outputs (parameters and artifacts) read back as kfp's
classes. KFP's model: `backend/src/common/util/workflow.go` GenerateRetryExecution keeps the
succeeded nodes of the failed workflow."""

from __future__ import annotations

from pathlib import Path

from kfp import dsl

from kfadapter.localkfp import attempts
from kfadapter.localkfp.attempts import TaskResult, TaskResults


def _result(path: str, state: str) -> TaskResult:
    return TaskResult(path, state, "2026-01-01T00:00:00+00:00", "2026-01-01T00:00:01+00:00", "p")


def test_the_last_result_of_a_task_wins_and_a_line_cut_short_is_ignored(tmp_path: Path) -> None:
    file = tmp_path / attempts.TASK_RESULTS
    results = TaskResults(file)
    results.record(_result("train", "FAILED"))
    results.record(_result("for-loop-1.iteration-0.train", "SUCCEEDED"))
    results.record(_result("train", "SUCCEEDED"))
    with file.open("a") as stream:
        stream.write('{"path": "check", "state": "SUCC')  # a worker killed mid-write
    loaded = attempts.load(file)
    assert {path: r.state for path, r in loaded.items()} == {
        "train": "SUCCEEDED",
        "for-loop-1.iteration-0.train": "SUCCEEDED",
    }


def test_a_retry_starts_from_every_earlier_attempt_and_a_new_run_from_none(tmp_path: Path) -> None:
    TaskResults(tmp_path / attempts.TASK_RESULTS).record(_result("a", "SUCCEEDED"))
    first = attempts.carry_forward(tmp_path, retry=True)
    assert first is not None and set(attempts.load(first)) == {"a"}
    # the second attempt was terminated before it reported "a" again; "b" failed
    TaskResults(tmp_path / attempts.TASK_RESULTS).record(_result("b", "FAILED"))
    second = attempts.carry_forward(tmp_path, retry=True)
    assert second is not None
    assert {p: r.state for p, r in attempts.load(second).items()} == {
        "a": "SUCCEEDED",
        "b": "FAILED",
    }
    assert not (tmp_path / attempts.TASK_RESULTS).exists()
    assert attempts.carry_forward(tmp_path, retry=False) is None
    assert not (tmp_path / attempts.PREVIOUS_TASK_RESULTS).exists()


def test_outputs_come_back_as_the_parameters_and_artifact_classes_they_were() -> None:
    dataset = dsl.Dataset(name="data", uri="/tmp/out/data", metadata={"rows": 3})
    models = [dsl.Model(name="m", uri="/tmp/out/m0"), dsl.Model(name="m", uri="/tmp/out/m1")]
    outputs = {"Output": "text", "numbers": [1, 2], "dataset": dataset, "models": models}
    back = attempts.decode_outputs(attempts.encode_outputs(outputs))
    assert back["Output"] == "text" and back["numbers"] == [1, 2]
    assert isinstance(back["dataset"], dsl.Dataset)
    assert (back["dataset"].uri, back["dataset"].metadata) == ("/tmp/out/data", {"rows": 3})
    assert [type(m) for m in back["models"]] == [dsl.Model, dsl.Model]
    assert [m.uri for m in back["models"]] == ["/tmp/out/m0", "/tmp/out/m1"]


def test_a_result_keeps_its_inputs_and_error_and_older_lines_still_load(tmp_path: Path) -> None:
    """Each result records the task's arguments and its error (the web UI reads them);
    a line an earlier release wrote, without them, loads with none."""
    file = tmp_path / attempts.TASK_RESULTS
    model = dsl.Model(name="model", uri=str(tmp_path / "model"), metadata={"k": 1})
    TaskResults(file).record(
        TaskResult(
            "check",
            "FAILED",
            "2026-01-01T00:00:00+00:00",
            "2026-01-01T00:00:01+00:00",
            "check",
            {},
            attempts.encode_outputs({"epochs": 3, "model": model}),
            "ValueError: no",
        )
    )
    with file.open("a") as stream:
        stream.write(
            '{"path": "old", "state": "SUCCEEDED", "start": "s", "end": "e", "pod_name": "old",'
            ' "outputs": {}}\n'
        )
    loaded = attempts.load(file)
    assert loaded["check"].error == "ValueError: no"
    assert attempts.decode_outputs(loaded["check"].inputs)["epochs"] == 3
    assert attempts.decode_outputs(loaded["check"].inputs)["model"].metadata == {"k": 1}
    assert (loaded["old"].inputs, loaded["old"].error) == ({}, None)
