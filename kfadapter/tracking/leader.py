"""Leader election per data dir: an exclusive flock on a lock file.

The holder (one thread in one process) runs the watcher and notifier. The kernel drops an
flock when the holder's file is closed, which includes the holder dying (SIGKILL too), so
the lock can never be left stale; another process (or gunicorn worker) takes over at its
next try. Two opens of the same file conflict even inside one process.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class LeaderLock:
    """An exclusive, non-blocking lock on `<data_dir>/<name>`."""

    FILE_NAME = "tracking.leader.lock"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    @classmethod
    def in_dir(cls, data_dir: Path) -> LeaderLock:
        """The tracking leader lock of a data dir."""
        return cls(Path(data_dir) / cls.FILE_NAME)

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it; True if held now. Never blocks."""
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        # The holder's pid, for an operator looking at the data dir (informational only).
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return True

    def release(self) -> None:
        """Give the lock up (closing the file releases it)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def holder_pid(self) -> int | None:
        """The pid the current holder wrote, if any (may be stale once released)."""
        try:
            text = self.path.read_text().strip()
        except FileNotFoundError:
            return None
        return int(text) if text.isdigit() else None
