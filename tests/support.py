"""Helpers every end-to-end test needs: free ports, polling with a deadline, real processes.

- `free_port()`: a loopback port nothing listens on.
- `wait_until(condition)`: poll until it holds, fail after a time-out (no fixed sleeps).
- `Process`: a command (e.g. `kfadapter serve`) run as a real process in its own process
  group, its output collected, stopped with SIGTERM (or SIGKILL).
- `adapter_env()`: the environment with no adapter setting inherited from the caller.
- `wait_live(url)`: wait until an adapter answers GET /liveness.
- `metric_value(text, name, **labels)`: one sample of a Prometheus text exposition.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
KFADAPTER = [PYTHON, "-m", "kfadapter"]
SETTING_PREFIXES = (
    "KFADAPTER_",
    "KFP_",
    "KUBEFLOW_",
    "KF_",
    "TRAININGMGR_",
    "PROMETHEUS_",
    "PS_",
)


def free_port() -> int:
    """A loopback port free right now (bound and released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(
    condition: Callable[[], Any],
    timeout: float = 20.0,
    step: float = 0.05,
    details: Callable[[], str] | None = None,
) -> Any:
    """Poll until condition() is truthy; return its value or fail after the time-out
    (the failure message ends with `details()`, e.g. a server's output)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = f"\n{details()}" if details is not None else ""
            raise AssertionError(f"condition not met within {timeout} s{extra}")
        time.sleep(step)


def adapter_env(**settings: str) -> dict[str, str]:
    """This process's environment without adapter settings, plus `settings`; the checkout
    importable (PYTHONPATH) so subprocesses run this code."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(SETTING_PREFIXES)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(settings)
    return env


def is_live(url: str) -> bool:
    """Whether the adapter at `url` answers GET /liveness with 200."""
    try:
        return requests.get(f"{url}/liveness", timeout=2).status_code == 200
    except (requests.ConnectionError, requests.Timeout):  # not up, or too busy yet
        return False


def wait_live(url: str, timeout: float = 60.0) -> None:
    """Wait until the adapter at `url` answers GET /liveness."""
    wait_until(lambda: is_live(url), timeout=timeout, step=0.1)


def metric_value(text: str, name: str, **labels: str) -> float:
    """A sample's value in Prometheus text (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


class Process:
    """A command run in its own process group, its stdout lines collected by a thread."""

    def __init__(
        self, args: list[str], env: Mapping[str, str] | None = None, cwd: Path | None = None
    ) -> None:
        self.popen = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=None if env is None else dict(env),
            cwd=cwd,
            start_new_session=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.output.append(line)
            self.lines.put(line)

    def wait_for_line(self, prefix: str, timeout: float = 60) -> str:
        """The first output line (from now on) that contains `prefix`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.popen.poll() is not None and self.lines.empty():
                    break
                continue
            if prefix in line:
                return line
        raise AssertionError(f"no line with {prefix!r}; output:\n{''.join(self.output)}")

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM, then the exit code (SIGKILL to the group if it does not stop)."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()
            output = "".join(self.output)
            raise AssertionError(f"did not stop on SIGTERM; output:\n{output}") from None

    def kill(self) -> None:
        """SIGKILL to the whole process group (the command and anything it started)."""
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()
