"""A real PostgreSQL server for the tests: initdb + pg_ctl in a temporary directory.

The server binaries come from Debian's `postgresql` package (/usr/lib/postgresql/*/bin),
which `scripts/system-packages.sh` installs. PostgreSQL refuses to run as root, and CI runs
as root: then the directory is given to the `postgres` system user and every server
command runs through `runuser -u postgres --`; otherwise the server runs as the caller.
It listens on 127.0.0.1 on a free port, with password (SCRAM) authentication, so wrong
credentials are really refused. `fsync=off` unless `durable`: the tests stop and start it
cleanly, never pull the power (benchmarks ask for a durable server).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.support import free_port

SYSTEM_PACKAGES = "scripts/system-packages.sh"
USER = "kfadapter"
PASSWORD = "tracking-test-password"


def server_bin_dir() -> Path:
    """The newest /usr/lib/postgresql/<version>/bin holding initdb and pg_ctl; the test
    fails (never skips) naming the script that installs them when there is none."""
    found = sorted(
        (Path(path).parent for path in glob.glob("/usr/lib/postgresql/*/bin/initdb")),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
    )
    found = [path for path in found if (path / "pg_ctl").exists()]
    if not found:
        pytest.fail(
            "PostgreSQL server binaries (initdb, pg_ctl) not found under "
            f"/usr/lib/postgresql/*/bin: run `bash {SYSTEM_PACKAGES}` (it installs "
            "Debian's postgresql package)",
            pytrace=False,
        )
    return found[-1]


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory, on a free port of 127.0.0.1."""

    def __init__(self, *, durable: bool = False) -> None:
        self.durable = durable
        self.bin_dir = server_bin_dir()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="kfadapter-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        pwfile = self.root / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        if self._as_postgres:
            shutil.chown(pwfile, "postgres", "postgres")
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            USER,
            f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
            "-E",
            "UTF8",
            "--locale=C",
        )

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(self.bin_dir / tool), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if check and result.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(
                f"{tool} failed ({result.returncode}): {result.stderr}{result.stdout}\n{log}"
            )
        return result

    def start(self) -> PostgresServer:
        """Start (or start again after stop()) on the same port and data."""
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
        options += "-c max_connections=300"
        if not self.durable:
            options += " -c fsync=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`fast`: sessions are ended, as in a database restart)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def destroy(self) -> None:
        """Stop the server and remove its directory."""
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres", *, user: str = USER, password: str = PASSWORD) -> str:
        """A postgresql:// URL of a database on this server."""
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database; its URL."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)
