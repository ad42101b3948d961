"""Cost of task environments (kfadapter/localkfp/environments/): cold, rebuilt, warm.

For the command kfp 2.17 compiles for a plain lightweight component (``pip install
kfp==2.17.0 --no-deps``), and for one that also installs a tiny package from a local index:

- cold: a new, empty cache directory (the kfp wheel made from the installed kfp, the venv,
  the installs);
- rebuilt: the environment deleted but the cache directory kept (the kfp wheel and uv's
  download cache are there, as after an eviction);
- warm: ``prepare`` of an environment that exists (no process is started), per call.

Each figure is the median of REPEAT measurements after one warm-up, for uv and for pip.

    .venv/bin/python benchmarks/bench_environments.py [--repeat 5] [--installer uv pip]
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kfadapter.localkfp.environments import MARKER, TaskEnvironments
from tests.localkfp.wheels import add_to_index, build_wheel, package_index

WARM_CALLS = 200


def report(x: int) -> int:
    return x


def component_command(packages: list[str], index_urls: list[str] | None) -> list[str]:
    from kfp import dsl

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        component = dsl.component(
            report, packages_to_install=packages or None, pip_index_urls=index_urls
        )
    container = component.component_spec.implementation.container
    return list(container.command) + list(container.args)


def median_ms(measure: Callable[[], float], repeat: int) -> float:
    measure()  # warm-up
    return statistics.median(measure() for _ in range(repeat)) * 1000


def prepare_seconds(cache: TaskEnvironments, command: list[str]) -> float:
    started = time.perf_counter()
    with cache.prepare("python:3.11", command):
        return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--installer", nargs="+", default=["uv", "pip"], choices=["uv", "pip"])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-environments-"))
    try:
        add_to_index(work / "index", build_wheel(work / "wheels", "tinypkg", "1.0.0"))
        with package_index(work / "index") as index:
            commands = {
                "kfp==2.17.0 pin": component_command([], None),
                "pin + tinypkg from a local index": component_command(["tinypkg"], [index.url]),
            }
            load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
            print(f"medians of {args.repeat} after one warm-up, ms (load average {load})")
            print(
                f"| installer | environment | cold | rebuilt | warm prepare ({WARM_CALLS} calls) |"
            )
            print("|---|---|---|---|---|")
            for installer in args.installer:
                for label, command in commands.items():
                    runs = iter(range(1_000_000))

                    def cold(command=command, installer=installer, runs=runs) -> float:
                        directory = work / f"cold-{installer}-{next(runs)}"
                        cache = TaskEnvironments(directory, 10**10, installer=installer)
                        seconds = prepare_seconds(cache, command)
                        shutil.rmtree(directory)
                        return seconds

                    kept = TaskEnvironments(work / f"kept-{installer}", 10**10, installer=installer)

                    def rebuilt(command=command, kept=kept) -> float:
                        for environment in kept.environments():
                            (environment / MARKER).unlink()  # unpublished: rebuilt next time
                        return prepare_seconds(kept, command)

                    def warm(command=command, kept=kept) -> float:
                        started = time.perf_counter()
                        for _ in range(WARM_CALLS):
                            with kept.prepare("python:3.11", command):
                                pass
                        return (time.perf_counter() - started) / WARM_CALLS

                    figures = [median_ms(m, args.repeat) for m in (cold, rebuilt, warm)]
                    print(
                        f"| {kept.installer} | {label} | {figures[0]:.0f} | {figures[1]:.0f} | "
                        f"{figures[2]:.2f} |"
                    )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
