"""The command-line options of how a run's tasks execute (`kfadapter local-kfp`, `dev`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kfadapter.localkfp.execution import DEFAULT_MAX_PARALLEL_TASKS, TaskOptions


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--env-cache, --env-cache-size, --image-packages and --max-parallel-tasks."""
    from kfadapter.localkfp import environments

    parser.add_argument(
        "--env-cache",
        type=Path,
        default=None,
        metavar="DIR",
        help="where task environments are kept (default: DATA_DIR/env-cache)",
    )
    parser.add_argument(
        "--env-cache-size",
        type=_checked(environments.parse_size),
        default=environments.DEFAULT_CACHE_SIZE,
        metavar="SIZE",
        help="bound of the environment cache, e.g. 5G or 500M; the least recently used "
        f"environments go first (default: {environments.DEFAULT_CACHE_SIZE / 1024**3:g}GiB)",
    )
    parser.add_argument(
        "--image-packages",
        type=_checked(lambda text: environments.parse_image_packages([text])),
        action=_ImagePackages,
        default={},
        metavar="IMAGE=REQUIREMENTS_FILE",
        help="tasks whose base image is IMAGE get the packages of REQUIREMENTS_FILE (repeatable)",
    )
    parser.add_argument(
        "--max-parallel-tasks",
        type=_checked(_positive_int),
        default=DEFAULT_MAX_PARALLEL_TASKS,
        metavar="N",
        help=f"tasks of one run that execute at once (default: {DEFAULT_MAX_PARALLEL_TASKS})",
    )


def from_arguments(args: argparse.Namespace) -> TaskOptions:
    """The task options of arguments parsed with `add_arguments`."""
    return TaskOptions(
        env_cache=args.env_cache,
        env_cache_size=args.env_cache_size,
        image_packages=dict(args.image_packages),
        max_parallel_tasks=args.max_parallel_tasks,
    )


class _ImagePackages(argparse.Action):
    """Collects the repeated --image-packages mappings; an image mapped twice is an error."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        mappings: dict[str, Path] = dict(getattr(namespace, self.dest) or {})
        for image, requirements in values.items():
            if image in mappings:
                parser.error(f"argument {option_string}: the image {image!r} is mapped twice")
            mappings[image] = requirements
        setattr(namespace, self.dest, mappings)


def _checked(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from a parser whose ValueError says what is wrong."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return convert


def _positive_int(text: str) -> int:
    """A whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise ValueError(f"must be at least 1, got {value}")
    return value
