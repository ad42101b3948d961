"""Looking at run processes from outside, as an operator would (Linux /proc)."""

from __future__ import annotations

import time
from pathlib import Path

from tests.support import wait_until

DEADLINE_SECONDS = 60.0


def worker_pid(run_directory: Path) -> int:
    """The pid of the worker executing the run in exactly this directory.

    Matching the full path (not just the run id) keeps tests apart from other test
    sessions on the same machine that use the same run ids.
    """
    wanted = str(Path(run_directory).resolve()).encode()

    def find() -> int | None:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                command = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"kfadapter.localkfp.worker" in command and wanted in command:
                return int(entry.name)
        return None

    return wait_until(
        find, DEADLINE_SECONDS, details=lambda: f"no worker process for {run_directory}"
    )


def live_group_members(pgid: int) -> list[int]:
    """Pids of the processes of the group that are still alive (zombies do not count).

    Orphaned members are reaped by init, which may take seconds on a busy machine; a
    zombie runs no code, so it does not count as a survivor.
    """
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()  # after "pid (comm) "
        state, group = fields[0], int(fields[2])
        if group == pgid and state not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def wait_group_gone(pgid: int) -> bool:
    """Whether every process of the group has ended, waiting up to the deadline."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while live_group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not live_group_members(pgid)
