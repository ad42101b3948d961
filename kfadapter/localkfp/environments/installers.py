"""The installers that build task environments: uv, else pip; and the server's kfp as a wheel.

uv is the installer (``uv venv`` and ``uv pip install``); without it, ``python -m venv`` and
pip. Set ``KFADAPTER_ENV_INSTALLER=pip`` (or ``installer="pip"``) to force pip.
``server_kfp_wheel`` makes a wheel of the server's own kfp from its installed files, so that
the pin ``kfp==<server version>`` installs with no network.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import uuid
import zipfile
from base64 import urlsafe_b64encode
from pathlib import Path

from kfadapter.localkfp.environments.commands import EnvironmentBuildError, InstallStep

INSTALLER_VARIABLE = "KFADAPTER_ENV_INSTALLER"
"""Environment variable that picks the installer: ``uv`` or ``pip`` (default: uv if found)."""

_ERROR_CHARS = 1500
_NOISE = ("Using Python ", "Resolved ", "Prepared ", "WARNING: ")  # not the reason it failed


def make_installer(cache_dir: Path, choice: str | None) -> Installer:
    """The installer ``choice`` names: ``"uv"``, ``"pip"`` or None/empty (uv when found,
    else pip)."""
    if choice not in (None, "", "uv", "pip"):
        raise ValueError(f"installer must be 'uv' or 'pip', got {choice!r}")
    if choice != "pip":
        found = find_uv()
        if found is not None:
            return _Uv(cache_dir, *found)
        if choice == "uv":
            raise ValueError("installer 'uv' was asked for, but uv cannot be found")
    return _Pip(cache_dir)


class Installer:
    """Creates venvs and runs install steps in them."""

    identity: str

    def __init__(self, cache_dir: Path) -> None:
        self._cache_dir = cache_dir

    def create(self, directory: Path, deadline: float) -> None:
        raise NotImplementedError

    def install(
        self, directory: Path, step: InstallStep, requirements: list[str], deadline: float
    ) -> None:
        raise NotImplementedError

    def finish(self, built: Path, final: Path) -> None:
        """Make the venv built at ``built`` work at ``final`` (nothing for relocatable ones)."""

    def trim_cache(self, max_bytes: int) -> None:
        """Empty the installer's download cache under the cache dir if it exceeds max_bytes."""

    def _run(self, arguments: list[str], deadline: float, env: dict[str, str]) -> str | None:
        """Run a tool; None on success, else its error output (or the time-out)."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return "the install time-out ran out"
        try:
            result = subprocess.run(
                arguments,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=remaining,
                env=env,
                cwd=self._cache_dir,
            )
        except subprocess.TimeoutExpired:
            return "it did not finish within the install time-out"
        except OSError as exc:
            return f"could not start {arguments[0]}: {exc}"
        if result.returncode == 0:
            return None
        lines = (result.stderr.strip() or result.stdout.strip()).splitlines()
        errors = [line for line in lines if line.startswith("ERROR:")]  # pip's own verdict
        kept = errors or [line for line in lines if not line.startswith(_NOISE)]
        output = "\n".join(kept).strip()[-_ERROR_CHARS:]
        return output or f"{arguments[0]} exited with status {result.returncode}"


class _Uv(Installer):
    """``uv venv --relocatable`` and ``uv pip install``; uv's cache under the cache dir."""

    def __init__(self, cache_dir: Path, executable: str, version: str) -> None:
        super().__init__(cache_dir)
        self._uv = executable
        self.identity = f"uv-{version}"
        self._env = {
            **os.environ,
            "UV_CACHE_DIR": str(cache_dir / "uv"),
            "UV_NO_PROGRESS": "1",
            "NO_COLOR": "1",
            # A refused or missing index fails in about a second instead of ten.
            "UV_HTTP_RETRIES": os.environ.get("UV_HTTP_RETRIES", "1"),
            # Copies, not hardlinks into uv's cache (its default on Linux): a task that
            # rewrites a file of an installed package must not change other environments.
            "UV_LINK_MODE": "copy",
        }
        for variable in ("VIRTUAL_ENV", "CONDA_PREFIX", "UV_PYTHON"):
            self._env.pop(variable, None)

    def create(self, directory: Path, deadline: float) -> None:
        error = self._run(
            [
                self._uv,
                "venv",
                "--quiet",
                "--relocatable",
                "--python",
                sys.executable,
                str(directory),
            ],
            deadline,
            self._env,
        )
        if error:
            raise EnvironmentBuildError(f"could not create the task's environment: {error}")

    def install(
        self, directory: Path, step: InstallStep, requirements: list[str], deadline: float
    ) -> None:
        arguments = [self._uv, "pip", "install", "--python", str(_python(directory))]
        arguments += _index_options(step, trusted_option="--allow-insecure-host")
        if step.extra_index_urls:
            arguments += ["--index-strategy", "unsafe-best-match"]  # pip's way with extras
        if step.pre:
            arguments += ["--prerelease", "allow"]
        arguments += requirements
        error = self._run(arguments, deadline, self._env)
        if error and self._run([*arguments, "--offline"], deadline, self._env) is None:
            return  # the index cannot be reached, but uv's cache has it all
        if error:
            raise _install_error(step, error)

    def trim_cache(self, max_bytes: int) -> None:
        cache = self._cache_dir / "uv"
        if cache.is_dir() and tree_size(cache) > max_bytes:
            # uv waits for the installs using its cache; environments keep their files.
            self._run([self._uv, "cache", "clean", "--quiet"], time.monotonic() + 60, self._env)


class _Pip(Installer):
    """``python -m venv --without-pip`` and the server's pip with ``--python``."""

    def __init__(self, cache_dir: Path) -> None:
        super().__init__(cache_dir)
        self.identity = f"pip-{importlib.metadata.version('pip')}"
        self._env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}

    def create(self, directory: Path, deadline: float) -> None:
        error = self._run(
            [sys.executable, "-m", "venv", "--without-pip", str(directory)], deadline, self._env
        )
        if error:
            raise EnvironmentBuildError(f"could not create the task's environment: {error}")

    def install(
        self, directory: Path, step: InstallStep, requirements: list[str], deadline: float
    ) -> None:
        arguments = [sys.executable, "-m", "pip", "--python", str(_python(directory))]
        arguments += ["install", "--quiet", "--no-warn-script-location"]
        arguments += ["--timeout", "15", "--retries", "1"]
        arguments += _index_options(step, trusted_option="--trusted-host")
        if step.pre:
            arguments.append("--pre")
        error = self._run(arguments + requirements, deadline, self._env)
        if error:
            raise _install_error(step, error)

    def finish(self, built: Path, final: Path) -> None:
        """Point the scripts pip wrote (shebangs, activate) at the final location."""
        old, new = str(built).encode(), str(final).encode()
        for script in (built / "bin").iterdir():
            if script.is_file() and not script.is_symlink():
                content = script.read_bytes()
                if old in content:
                    script.write_bytes(content.replace(old, new))


def _index_options(step: InstallStep, trusted_option: str) -> list[str]:
    options = ["--no-deps"] if step.no_deps else []
    if step.index_url:
        options += ["--index-url", step.index_url]
    for url in step.extra_index_urls:
        options += ["--extra-index-url", url]
    for host in step.trusted_hosts:
        # kfp passes the index URLs as trusted hosts; uv and pip take host[:port].
        options += [trusted_option, urllib.parse.urlsplit(host).netloc if "://" in host else host]
    for location in step.find_links:
        options += ["--find-links", location]
    return options


def _install_error(step: InstallStep, error: str) -> EnvironmentBuildError:
    indexes = ", ".join(step.indexes())
    return EnvironmentBuildError(
        f"could not install {step.describe()} (index tried: {indexes}): {error}"
    )


def _python(directory: Path) -> Path:
    return directory / "bin" / "python"


def find_uv() -> tuple[str, str] | None:
    """uv's executable and version: from the ``uv`` package, else from PATH."""
    try:
        import uv

        return uv.find_uv_bin(), importlib.metadata.version("uv")
    except (ImportError, FileNotFoundError, importlib.metadata.PackageNotFoundError):
        pass
    executable = shutil.which("uv")
    if executable is None:
        return None
    try:
        output = subprocess.run(
            [executable, "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    return executable, output[1] if len(output) > 1 else "unknown"


def tree_size(directory: Path) -> int:
    """Bytes of the files under a directory (symlinks counted as links)."""
    total = 0
    for root, _, files in os.walk(directory):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


# -- the server's own kfp as a wheel -----------------------------------------------------------


def server_kfp_wheel(directory: Path) -> Path | None:
    """A wheel of the server's installed kfp in ``directory`` (made once), or None.

    It holds the installed files of the distribution, each checked against the sha256 its
    RECORD lists; if any differs (a modified installation) there is no wheel, and the pin is
    resolved from the index like any other.
    """
    try:
        distribution = importlib.metadata.distribution("kfp")
    except importlib.metadata.PackageNotFoundError:
        return None
    wheel_info = distribution.read_text("WHEEL") or ""
    tags = [
        line.split(":", 1)[1].strip() for line in wheel_info.splitlines() if line.startswith("Tag:")
    ]
    if not tags or distribution.files is None:
        return None
    target = directory / f"kfp-{distribution.version}-{tags[0]}.whl"
    if target.is_file():
        return target
    directory.mkdir(parents=True, exist_ok=True)
    info_dir = f"kfp-{distribution.version}.dist-info"
    skipped = {f"{info_dir}/{name}" for name in ("RECORD", "INSTALLER", "REQUESTED")}
    skipped.add(f"{info_dir}/direct_url.json")
    records: list[str] = []
    temporary = directory / f".{target.name}.{uuid.uuid4().hex}"
    try:
        with zipfile.ZipFile(temporary, "w") as archive:
            for entry in distribution.files:
                name = entry.as_posix()
                if name.startswith("../") or "__pycache__" in name or name in skipped:
                    continue
                content = Path(str(entry.locate())).read_bytes()
                digest = hashlib.sha256(content).digest()
                if entry.hash is None or entry.hash.value != _b64(digest):
                    return None  # not as installed from its wheel
                archive.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), content)
                records.append(f"{name},sha256={_b64(digest)},{len(content)}")
            records.append(f"{info_dir}/RECORD,,")
            record = zipfile.ZipInfo(f"{info_dir}/RECORD", (1980, 1, 1, 0, 0, 0))
            archive.writestr(record, "\n".join(records) + "\n")
        os.replace(temporary, target)
    except OSError:
        return None
    finally:
        temporary.unlink(missing_ok=True)
    return target


def _b64(digest: bytes) -> str:
    return urlsafe_b64encode(digest).rstrip(b"=").decode()
