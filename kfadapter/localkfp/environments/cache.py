"""The cache of task environments: content keys, locks, build and publish, eviction.

Environments are keyed by their content (every install step with its requirements, flags and
indexes, the content of the image's requirements file, the Python and the installer) and kept
under ``CACHE_DIR``:

``envs/<key>/``
    A published environment: a complete venv with ``kfadapter-environment.json``.
``locks/<key>.lock``
    Its lock file. A task holds a shared ``flock`` while it uses the environment; a build
    holds an exclusive one. Its modification time is the environment's last use.
``building/<key>.<id>/``
    A build in progress. It is renamed to ``envs/<key>`` only when complete, so a crashed or
    killed build is never used; the next build removes it.
``trash/``
    Evicted environments being deleted.
``wheels/``
    A wheel of the server's own kfp, made from its installed files (checked against their
    RECORD hashes), so that the pin ``kfp==<server version>`` installs with no network.
``uv/``
    uv's cache of downloaded wheels: an environment rebuilt after eviction needs no network
    when its wheels are there.

When the environments together exceed ``max_bytes``, the least recently used ones that no
task holds are deleted. Environments in use are never deleted, so the bound can be exceeded
while they are.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from kfadapter.localkfp.environments.commands import (
    EnvironmentBuildError,
    InstallStep,
    TaskCommand,
    default_index,
    parse_task_command,
)
from kfadapter.localkfp.environments.installers import (
    INSTALLER_VARIABLE,
    make_installer,
    server_kfp_wheel,
    tree_size,
)

DEFAULT_INSTALL_TIMEOUT = 300.0
"""Seconds a whole environment build may take before it fails (creation and every install)."""

MARKER = "kfadapter-environment.json"
"""File in a published environment that describes it."""

_LAYOUT = 1  # bump when the way environments are built changes: old keys then go unused


@dataclass(frozen=True)
class PreparedCommand:
    """What to run for a task, and where."""

    command: list[str]
    """The program to exec: the component's command without kfp's pip-install preamble."""
    env: dict[str, str]
    """Variables to add to (or override in) the process environment."""
    environment: Path
    """The venv the task runs in."""


class TaskEnvironments:
    """The environments of tasks, built on first use, reused, bounded in size (see module)."""

    def __init__(
        self,
        cache_dir: Path,
        max_bytes: int,
        *,
        image_packages: Mapping[str, Path] | None = None,
        install_timeout: float = DEFAULT_INSTALL_TIMEOUT,
        installer: str | None = None,
    ) -> None:
        """``installer``: ``"uv"``, ``"pip"`` or None (``$KFADAPTER_ENV_INSTALLER``, else uv
        when found, else pip). ``install_timeout``: seconds a whole build may take."""
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.cache_dir = Path(cache_dir).resolve()
        self.max_bytes = max_bytes
        self.install_timeout = install_timeout
        self._image_packages = {image: Path(path) for image, path in (image_packages or {}).items()}
        self._file_digests: dict[Path, tuple[tuple[int, int], str]] = {}
        # builds that failed in this process (one run's worker): the tasks that wait for
        # the same environment fail with the same error instead of building it again
        self._failed: dict[str, EnvironmentBuildError] = {}
        for name in ("envs", "locks", "building", "trash", "wheels"):
            (self.cache_dir / name).mkdir(parents=True, exist_ok=True)
        self._installer = make_installer(
            self.cache_dir, installer or os.environ.get(INSTALLER_VARIABLE)
        )
        base = getattr(sys, "_base_executable", sys.executable)
        self._python_identity = (
            f"{sys.implementation.name}-{'.'.join(map(str, sys.version_info[:3]))}"
            f"-{os.path.realpath(base)}"
        )
        # The bin directories of the server's venv (never a system one such as /usr/bin).
        self._server_bins = {
            os.path.join(prefix, "bin")
            for prefix in (sys.prefix, os.environ.get("VIRTUAL_ENV"))
            if prefix and prefix != sys.base_prefix
        }
        if sys.prefix != sys.base_prefix:
            self._server_bins.add(os.path.dirname(sys.executable))
        try:
            self._kfp_version: str | None = importlib.metadata.version("kfp")
        except importlib.metadata.PackageNotFoundError:
            self._kfp_version = None

    @property
    def installer(self) -> str:
        """The installer in use and its version, e.g. ``uv-0.13.9``."""
        return self._installer.identity

    # -- the interface ---------------------------------------------------------------------

    @contextlib.contextmanager
    def prepare(self, image: str, command: Sequence[str]) -> Iterator[PreparedCommand]:
        """Environment for one task (built or reused, blocking while another process builds
        the same one), held as 'in use' (not evictable) while the context is open.

        ``command``: the container's command followed by its args, placeholders resolved.
        Raises EnvironmentBuildError when it cannot be built.
        """
        task = parse_task_command(command)
        steps = self._steps(image, task)
        key = self.key(steps)
        with self._held(key, steps) as directory:
            yield PreparedCommand(
                command=task.program, env=self._variables(directory), environment=directory
            )

    def key(self, steps: Sequence[InstallStep]) -> str:
        """The content key of an environment made of these steps."""
        described = []
        for step in steps:
            entry = {
                "requirements": list(step.requirements),
                "no_deps": step.no_deps,
                "index_url": step.index_url,
                "extra_index_urls": list(step.extra_index_urls),
                "trusted_hosts": list(step.trusted_hosts),
                "find_links": list(step.find_links),
                "pre": step.pre,
            }
            if step.requirements_file is not None:
                entry["requirements_file"] = self._digest(step.requirements_file)
            described.append(entry)
        payload = {
            "layout": _LAYOUT,
            "python": self._python_identity,
            "installer": self._installer.identity,
            "default_index": default_index(),
            "steps": described,
        }
        text = json.dumps(payload, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def environments(self) -> list[Path]:
        """The published environments."""
        return sorted(path for path in (self.cache_dir / "envs").iterdir() if _published(path))

    # -- internals -------------------------------------------------------------------------

    def _steps(self, image: str, task: TaskCommand) -> list[InstallStep]:
        steps = list(task.steps)
        mapped = self._image_packages.get(image)
        if mapped is not None:
            steps.insert(0, InstallStep(requirements_file=mapped, image=image))
        return steps

    def _digest(self, path: Path) -> str:
        """sha256 of a requirements file's content (remembered while the file is unchanged)."""
        try:
            status = path.stat()
            stamp = (status.st_mtime_ns, status.st_size)
            known = self._file_digests.get(path)
            if known is not None and known[0] == stamp:
                return known[1]
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as exc:
            raise EnvironmentBuildError(
                f"cannot read the image packages file {path}: {exc}"
            ) from exc
        self._file_digests[path] = (stamp, digest)
        return digest

    def _variables(self, directory: Path) -> dict[str, str]:
        """PATH with the venv first and without the server's own bin directory, and more."""
        inherited = os.environ.get("PATH", "").split(os.pathsep)
        path = [str(directory / "bin")] + [
            entry for entry in inherited if entry and entry not in self._server_bins
        ]
        return {
            "PATH": os.pathsep.join(path),
            "VIRTUAL_ENV": str(directory),
            "PYTHONNOUSERSITE": "1",
            "PYTHONPATH": "",  # Python treats an empty value as unset
            "PYTHONHOME": "",
        }

    @contextlib.contextmanager
    def _held(self, key: str, steps: Sequence[InstallStep]) -> Iterator[Path]:
        """The published environment ``key``, built if needed, under a shared lock."""
        directory = self.cache_dir / "envs" / key
        while True:
            lock = self._open_lock(key)
            try:
                exists = _published(directory)
                if exists:
                    fcntl.flock(lock, fcntl.LOCK_SH)
                elif not _lock_to_build(lock, directory):
                    continue  # another build published it meanwhile: use it, shared
                if not self._is_current_lock(lock, key):
                    continue  # evicted while we waited: its lock file is a new one
                built = False
                if not _published(directory):
                    if exists:
                        continue  # evicted meanwhile: build it under an exclusive lock
                    if key in self._failed:
                        raise EnvironmentBuildError(str(self._failed[key]))
                    try:
                        self._build(key, steps, directory)
                    except EnvironmentBuildError as error:
                        self._failed[key] = error
                        raise
                    built = True
                fcntl.flock(lock, fcntl.LOCK_SH)
                if not _published(directory):
                    continue
                os.utime(lock)
                if built:
                    self._evict(keep=key)
                    self._installer.trim_cache(self.max_bytes)
                yield directory
                return
            finally:
                os.close(lock)

    def _lock_path(self, key: str) -> Path:
        return self.cache_dir / "locks" / f"{key}.lock"

    def _open_lock(self, key: str) -> int:
        return os.open(self._lock_path(key), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def _is_current_lock(self, lock: int, key: str) -> bool:
        """False when the lock file was replaced (an eviction removed it) after we opened it."""
        try:
            return os.stat(self._lock_path(key)).st_ino == os.fstat(lock).st_ino
        except FileNotFoundError:
            return False

    def _build(self, key: str, steps: Sequence[InstallStep], directory: Path) -> None:
        """Build the environment in building/ and publish it (caller holds the exclusive lock)."""
        self._remove_leftovers(key)
        deadline = time.monotonic() + self.install_timeout
        building = self.cache_dir / "building" / f"{key}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        try:
            self._installer.create(building, deadline)
            for step in steps:
                self._installer.install(building, step, self._arguments(step), deadline)
            self._installer.finish(building, directory)
            description = {
                "key": key,
                "installer": self._installer.identity,
                "python": self._python_identity,
                "steps": [step.describe() for step in steps],
                "size": tree_size(building),
                "built_at": time.time(),
            }
            (building / MARKER).write_text(json.dumps(description, indent=1), encoding="utf-8")
            if directory.exists():  # an unpublished leftover of an older layout
                directory.rename(self._trash_path(key))
            building.rename(directory)
        finally:
            shutil.rmtree(building, ignore_errors=True)

    def _arguments(self, step: InstallStep) -> list[str]:
        """A step's requirements for the installer: the server's own kfp pin from its wheel."""
        if step.requirements_file is not None:
            return ["-r", str(step.requirements_file)]
        wheel = None
        arguments = []
        for requirement in step.requirements:
            pinned = re.fullmatch(r"\s*kfp\s*==\s*([\w.+!-]+)\s*", requirement)
            if pinned and self._kfp_version and pinned.group(1) == self._kfp_version:
                wheel = wheel or self._kfp_wheel()
                if wheel is not None:
                    arguments.append(str(wheel))
                    continue
            arguments.append(requirement)
        return arguments

    def _kfp_wheel(self) -> Path | None:
        directory = self.cache_dir / "wheels"
        lock = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            return server_kfp_wheel(directory)
        finally:
            os.close(lock)

    def _trash_path(self, key: str) -> Path:
        return self.cache_dir / "trash" / f"{key}.{uuid.uuid4().hex[:8]}"

    def _remove_leftovers(self, key: str) -> None:
        """Delete killed builds (those of ``key``: its lock is ours; others when their lock is
        free), the lock files of environments that do not exist, and the trash."""
        for leftover in (self.cache_dir / "building").iterdir():
            owner = leftover.name.split(".", 1)[0]
            if owner == key:
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                with self._free_lock(owner) as free:
                    if free:
                        shutil.rmtree(leftover, ignore_errors=True)
        for lock_file in (self.cache_dir / "locks").glob("*.lock"):
            owner = lock_file.stem
            if owner != key and not (self.cache_dir / "envs" / owner).exists():
                with self._free_lock(owner) as free:
                    if free and not (self.cache_dir / "envs" / owner).exists():
                        lock_file.unlink(missing_ok=True)
        for leftover in (self.cache_dir / "trash").iterdir():
            shutil.rmtree(leftover, ignore_errors=True)

    @contextlib.contextmanager
    def _free_lock(self, key: str) -> Iterator[bool]:
        """Whether the exclusive lock of ``key`` could be had at once (held while open)."""
        lock = self._open_lock(key)
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False  # being built or used right now
                return
            yield self._is_current_lock(lock, key)
        finally:
            os.close(lock)

    def _evict(self, keep: str) -> None:
        """Delete least recently used environments no task holds until the total fits."""
        entries = []
        for directory in (self.cache_dir / "envs").iterdir():
            try:
                size = int(json.loads((directory / MARKER).read_text(encoding="utf-8"))["size"])
                used = self._lock_path(directory.name).stat().st_mtime
            except (OSError, ValueError, KeyError, TypeError):
                continue
            entries.append((used, size, directory))
        total = sum(size for _, size, _ in entries)
        for _, size, directory in sorted(entries):
            if total <= self.max_bytes:
                return
            if directory.name == keep:
                continue
            trash = self._trash_path(directory.name)
            with self._free_lock(directory.name) as free:
                if not free:
                    continue  # in use
                try:
                    directory.rename(trash)
                except FileNotFoundError:
                    continue  # gone already
                self._lock_path(directory.name).unlink(missing_ok=True)
            shutil.rmtree(trash, ignore_errors=True)
            total -= size


def _lock_to_build(lock: int, directory: Path) -> bool:
    """Take the exclusive lock to build; False once another process has published the
    environment: the shared locks of the tasks using it would keep a blocking exclusive
    request waiting for as long as they run."""
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if _published(directory):
                return False
            time.sleep(0.05)


def _published(directory: Path) -> bool:
    return (directory / MARKER).is_file()
