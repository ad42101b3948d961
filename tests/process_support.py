"""Run commands as real processes in tests: output collected, stopped by SIGTERM."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

PYTHON = sys.executable
KFADAPTER = [PYTHON, "-m", "kfadapter"]


class Process:
    """A command run in its own process group, its stdout lines collected by a thread."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None):
        self.popen = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
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
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()
