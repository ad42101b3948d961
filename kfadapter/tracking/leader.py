"""Leader election: who runs the watcher and the notifier.

- SQLite (one host): an exclusive flock on a lock file in the data dir (`LeaderLock`). The
  kernel drops an flock when the holder's file is closed, which includes the holder dying
  (SIGKILL too), so the lock can never be left stale; another process (or gunicorn worker)
  takes over at its next try. Two opens of the same file conflict even inside one process.
- PostgreSQL (any number of hosts): a session advisory lock held on a dedicated connection
  (`PostgresLeaderLock`). The server drops it when that session ends: at once when the
  holder's process dies (its kernel closes the socket), and after the TCP keepalive probes
  fail when its host or network does. The holder checks its session at every poll and
  steps down when it is gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)


class LeaderElection(Protocol):
    """A lock at most one tracker holds at a time."""

    @property
    def held(self) -> bool:
        """Whether this object believes it holds the lock."""

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it; True if held now. Never waits long."""

    def check(self) -> bool:
        """Whether the lock is still held (False after it was lost: then released)."""

    def release(self) -> None:
        """Give the lock up."""


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

    def check(self) -> bool:
        """Whether the lock is held: an flock is never lost while its file is open."""
        return self.held

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


class PostgresLeaderLock:
    """A PostgreSQL session advisory lock on a connection of its own (not a pooled one).

    `keepalive_idle` (seconds) is how long the server lets the holder's connection be
    silent before it probes it (then every second, 2 probes), so a holder whose host or
    network died loses the lock after about keepalive_idle + 2 s.
    """

    def __init__(self, url: str, *, timeout: float, keepalive_idle: int) -> None:
        self.url = url
        self._timeout = timeout
        self._keepalive_idle = max(1, keepalive_idle)
        self._conn = None
        self._held = False
        self._failing = False  # log a failure to compete once, not at every try

    @property
    def held(self) -> bool:
        return self._held

    def _connect(self):
        import psycopg

        from kfadapter.tracking.pgschema import connection_options

        options = connection_options(self._timeout, "kfadapter-leader")
        options["options"] += (
            f" -c tcp_keepalives_idle={self._keepalive_idle} -c tcp_keepalives_interval=1"
            " -c tcp_keepalives_count=2"
        )
        options["keepalives_idle"] = self._keepalive_idle
        options["keepalives_interval"] = 1
        options["keepalives_count"] = 2
        return psycopg.connect(self.url, autocommit=True, **options)

    def try_acquire(self) -> bool:
        if self._held:
            return self.check()
        import psycopg

        from kfadapter.tracking.pgschema import LEADER_LOCK_KEY

        try:
            if self._conn is None or self._conn.closed:
                self._conn = self._connect()
            row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK_KEY,))
            self._held = bool(row.fetchone()[0])
        except psycopg.Error as error:
            if not self._failing:
                log.warning("cannot compete for tracking leadership (will retry): %s", error)
            self._failing = True
            self._close()
            return False
        self._failing = False
        return self._held

    def check(self) -> bool:
        if not self._held:
            return False
        import psycopg

        try:
            self._conn.execute("SELECT 1").fetchone()
        except psycopg.Error as error:
            log.warning("tracking leadership lost (its database session ended): %s", error)
            self._close()
            return False
        return True

    def release(self) -> None:
        """Give the lock up: closing the session releases it."""
        self._close()

    def _close(self) -> None:
        conn, self._conn, self._held = self._conn, None, False
        if conn is not None:
            with contextlib.suppress(Exception):  # a broken connection: nothing to release
                conn.close()
