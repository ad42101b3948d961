"""The options of how tasks run, on `kfadapter local-kfp` and `kfadapter dev`: parsed into
TaskOptions, and a bad value is a usage error (exit 2) that says what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from kfadapter.cli import build_parser as build_cli_parser
from kfadapter.localkfp import environments
from kfadapter.localkfp.execution import DEFAULT_MAX_PARALLEL_TASKS, TaskOptions
from kfadapter.localkfp.server import build_parser
from kfadapter.localkfp.task_options import from_arguments


def _local_kfp(*arguments: str) -> TaskOptions:
    return from_arguments(build_parser().parse_args(list(arguments)))


def _dev(*arguments: str) -> TaskOptions:
    return from_arguments(build_cli_parser().parse_args(["dev", *arguments]))


def test_defaults() -> None:
    for options in (_local_kfp(), _dev()):
        assert options == TaskOptions(
            env_cache=None,  # DATA_DIR/env-cache, filled in by the executor
            env_cache_size=environments.DEFAULT_CACHE_SIZE,
            image_packages={},
            max_parallel_tasks=DEFAULT_MAX_PARALLEL_TASKS,
        )


@pytest.mark.parametrize("parse", [_local_kfp, _dev])
def test_values_are_parsed(parse, tmp_path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("pandas\n")
    other = tmp_path / "other.txt"
    other.write_text("numpy\n")
    options = parse(
        *("--env-cache", str(tmp_path / "cache"), "--env-cache-size", "2G"),
        *("--image-packages", f"traininghost/pipelineimage:latest={requirements}"),
        *("--image-packages", f"python:3.11={other}", "--max-parallel-tasks", "8"),
    )
    assert options.env_cache == tmp_path / "cache"
    assert options.env_cache_size == 2 * 1000**3
    assert options.image_packages == {
        "traininghost/pipelineimage:latest": requirements.resolve(),
        "python:3.11": other.resolve(),
    }
    assert options.max_parallel_tasks == 8


@pytest.mark.parametrize("parse", [_local_kfp, _dev])
@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--max-parallel-tasks", "0"], "--max-parallel-tasks: must be at least 1, got 0"),
        (["--max-parallel-tasks", "many"], "not a whole number: 'many'"),
        (["--env-cache-size", "lots"], "invalid size 'lots'"),
        (["--env-cache-size", "0"], "more than 0 bytes"),
        (["--image-packages", "no-equals-sign"], "expected IMAGE=REQUIREMENTS_FILE"),
        (["--image-packages", "python:3.11=/nonexistent/requirements.txt"], "no such file"),
    ],
)
def test_bad_values_are_usage_errors(parse, arguments, message, capsys) -> None:
    with pytest.raises(SystemExit) as exit_code:
        parse(*arguments)
    assert exit_code.value.code == 2
    assert message in capsys.readouterr().err


def test_task_options_check_their_values() -> None:
    with pytest.raises(ValueError, match="max_parallel_tasks"):
        TaskOptions(max_parallel_tasks=0)
    with pytest.raises(ValueError, match="env_cache_size"):
        TaskOptions(env_cache_size=0)
    assert TaskOptions(env_cache=Path("x")).max_parallel_tasks == DEFAULT_MAX_PARALLEL_TASKS


@pytest.mark.parametrize("parse", [_local_kfp, _dev])
def test_an_image_mapped_twice_is_a_usage_error(parse, tmp_path, capsys) -> None:
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text("tinypkg\n")
    second.write_text("otherpkg\n")
    with pytest.raises(SystemExit) as exit_code:
        parse("--image-packages", f"img={first}", "--image-packages", f"img={second}")
    assert exit_code.value.code == 2
    assert "the image 'img' is mapped twice" in capsys.readouterr().err
