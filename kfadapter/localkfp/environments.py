"""Per-task Python environments of the embedded KFP server, and the cache that keeps them.

On a cluster every task runs in a container of its own, and the pip commands that kfp puts in
front of a lightweight component (``pip install kfp==X --no-deps``, ``packages_to_install``,
``pip_index_urls``) install into that container. Here each task gets a virtual environment
that holds exactly that: the packages its component's pip commands name, in their order and
with their flags, after the packages that ``--image-packages`` maps to its image. The pip
commands are taken out of the component's command; the rest (kfp's program) runs in the
environment. Environments use the server's Python (its version is part of the key).

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

uv is the installer (``uv venv`` and ``uv pip install``); without it, ``python -m venv`` and
pip. Set ``KFADAPTER_ENV_INSTALLER=pip`` (or ``installer="pip"``) to force pip.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.parse
import uuid
import zipfile
from base64 import urlsafe_b64encode
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_CACHE_SIZE = 5 * 1024**3
"""Default bound of the environment cache: 5 GiB."""

DEFAULT_INSTALL_TIMEOUT = 300.0
"""Seconds a whole environment build may take before it fails (creation and every install)."""

INSTALLER_VARIABLE = "KFADAPTER_ENV_INSTALLER"
"""Environment variable that picks the installer: ``uv`` or ``pip`` (default: uv if found)."""

MARKER = "kfadapter-environment.json"
"""File in a published environment that describes it."""

_LAYOUT = 1  # bump when the way environments are built changes: old keys then go unused
_ERROR_CHARS = 1500
_NOISE = ("Using Python ", "Resolved ", "Prepared ", "WARNING: ")  # not the reason it failed
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "ki": 1024,
    "kib": 1024,
    "mi": 1024**2,
    "mib": 1024**2,
    "gi": 1024**3,
    "gib": 1024**3,
    "ti": 1024**4,
    "tib": 1024**4,
}


class EnvironmentBuildError(Exception):
    """A task's environment could not be built; the message names the packages and indexes."""


@dataclass(frozen=True)
class PreparedCommand:
    """What to run for a task, and where."""

    command: list[str]
    """The program to exec: the component's command without kfp's pip-install preamble."""
    env: dict[str, str]
    """Variables to add to (or override in) the process environment."""
    environment: Path
    """The venv the task runs in."""


@dataclass(frozen=True)
class InstallStep:
    """One ``pip install`` of a task's environment, in the order it runs."""

    requirements: tuple[str, ...] = ()
    no_deps: bool = False
    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    trusted_hosts: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    pre: bool = False
    requirements_file: Path | None = None
    """An ``--image-packages`` requirements file (its content is part of the key)."""
    image: str | None = None

    def indexes(self) -> list[str]:
        """The indexes this step consults (the default index when it names none)."""
        step = self._from_file() if self.requirements_file is not None else self
        named = [step.index_url] if step.index_url else [_default_index()]
        return named + list(step.extra_index_urls) + list(step.find_links)

    def describe(self) -> str:
        """The packages of this step, for messages."""
        listed = ", ".join(repr(requirement) for requirement in self._from_file().requirements)
        if self.requirements_file is not None:
            return f"{listed} (the packages of image {self.image!r}, {self.requirements_file})"
        return listed

    def _from_file(self) -> InstallStep:
        """The requirements and index options of the requirements file (for messages)."""
        if self.requirements_file is None:
            return self
        try:
            lines = self.requirements_file.read_text(encoding="utf-8").splitlines()
            words = [word for line in lines for word in shlex.split(line, comments=True)]
            return _pip_install_step([w for w in words if w not in ("-r", "-c", "-e")])
        except (OSError, ValueError, EnvironmentBuildError):
            return InstallStep()


@dataclass(frozen=True)
class TaskCommand:
    """A task's command split into its install steps and the program that follows them."""

    program: list[str]
    steps: tuple[InstallStep, ...] = field(default=())


# -- reading kfp's lightweight-component command -----------------------------------------------

_PIP_PREFIXES = (
    ("python3", "-m", "pip", "install"),
    ("python", "-m", "pip", "install"),
    ("pip3", "install"),
    ("pip", "install"),
)
_IGNORED_PIP_FLAGS = {
    "--quiet",
    "-q",
    "--no-warn-script-location",
    "--disable-pip-version-check",
    "--no-input",
    "--upgrade",
    "-U",
    "--no-cache-dir",
    "--user",
}
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_IF_BLOCK = re.compile(r"^[ \t]*if\b[^\n]*\n(?:(?![ \t]*fi\b).*\n)*?[ \t]*fi[ \t]*$", re.M)
_RUN_REST = ["$0", "$@"]


def parse_task_command(command: Sequence[str]) -> TaskCommand:
    """Split kfp's lightweight-component wrapper into its pip installs and the program.

    The wrapper is ``sh -c SCRIPT PROGRAM...`` where SCRIPT makes sure pip exists, runs
    ``python3 -m pip install ...`` commands joined by ``&&`` and ends with ``"$0" "$@"``
    (kfp/dsl/component_factory.py, ``_get_packages_to_install_command``). Any other command is
    returned unchanged with no install steps. Raises EnvironmentBuildError for a wrapper whose
    pip commands use an option that cannot be honoured here.
    """
    command = list(command)
    if len(command) < 4 or os.path.basename(command[0]) not in ("sh", "bash") or command[1] != "-c":
        return TaskCommand(program=command)
    steps = _install_steps(command[2])
    if steps is None:
        return TaskCommand(program=command)
    return TaskCommand(program=command[3:], steps=steps)


@functools.lru_cache(maxsize=256)
def _install_steps(script: str) -> tuple[InstallStep, ...] | None:
    """The pip installs of a wrapper script; None if it is not kfp's wrapper (remembered: every
    task of a component has the same script)."""
    commands = _shell_commands(script)
    if not commands or commands[-1] != _RUN_REST:
        return None
    steps: list[InstallStep] = []
    for words in commands[:-1]:
        if _is_venv_setup(words):
            continue
        while words and _ASSIGNMENT.match(words[0]):
            words = words[1:]
        if not words:
            continue
        prefix = next((p for p in _PIP_PREFIXES if tuple(words[: len(p)]) == p), None)
        if prefix is None:
            return None
        steps.append(_pip_install_step(words[len(prefix) :]))
    return tuple(steps)


def _shell_commands(script: str) -> list[list[str]] | None:
    """The simple commands of a wrapper script (words each), without its ensurepip block."""
    script = _IF_BLOCK.sub(lambda block: "" if "ensurepip" in block[0] else block[0], script)
    if "ensurepip" in script:
        return None
    commands: list[list[str]] = []
    for line in script.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars="&;|")
        lexer.whitespace_split = True
        lexer.commenters = ""
        try:
            tokens = list(lexer)
        except ValueError:
            return None
        current: list[str] = []
        for token in tokens:
            if token in ("&&", ";"):
                if current:
                    commands.append(current)
                current = []
            elif set(token) <= set("&;|"):
                return None  # pipes, ||, background jobs: not kfp's wrapper
            else:
                current.append(token)
        if current:
            commands.append(current)
    return commands


def _is_venv_setup(words: list[str]) -> bool:
    """kfp's ``use_venv`` lines: this environment already is the venv they would make."""
    return (
        words[0] == "export"
        or words[:3] == ["python3", "-m", "venv"]
        or (words[0] == "." and words[-1].endswith("/bin/activate"))
        or (len(words) == 2 and words[1] == "-d)" and words[0].endswith("=$(mktemp"))
    )


def _pip_install_step(words: list[str]) -> InstallStep:
    """One ``pip install`` invocation's requirements and the options that matter."""
    requirements: list[str] = []
    options: dict[str, list[str]] = {"index": [], "extra": [], "trusted": [], "links": []}
    no_deps = pre = False
    with_value = {
        "--index-url": "index",
        "-i": "index",
        "--extra-index-url": "extra",
        "--trusted-host": "trusted",
        "--find-links": "links",
        "-f": "links",
    }
    position = 0
    while position < len(words):
        word = words[position]
        position += 1
        name, equals, inline = word.partition("=")
        if name in with_value:
            if equals:
                value = inline
            elif position < len(words):
                value = words[position]
                position += 1
            else:
                raise EnvironmentBuildError(f"pip option {word} of the component has no value")
            options[with_value[name]].append(value)
        elif word == "--no-deps":
            no_deps = True
        elif word == "--pre":
            pre = True
        elif word in _IGNORED_PIP_FLAGS:
            continue
        elif word.startswith("-"):
            raise EnvironmentBuildError(
                f"the component's pip install uses {word}, which the local KFP server does"
                " not support"
            )
        else:
            requirements.append(word)
    index_urls = options["index"]
    return InstallStep(
        requirements=tuple(requirements),
        no_deps=no_deps,
        index_url=index_urls[-1] if index_urls else None,
        extra_index_urls=tuple(options["extra"]),
        trusted_hosts=tuple(options["trusted"]),
        find_links=tuple(options["links"]),
        pre=pre,
    )


# -- options ---------------------------------------------------------------------------------


def parse_size(text: str) -> int:
    """Bytes from a size such as ``5GiB``, ``800MB``, ``2G`` or ``1048576``.

    ``KiB``/``Ki``, ``MiB``/``Mi``, ``GiB``/``Gi``, ``TiB``/``Ti`` are powers of 1024;
    ``K``/``KB``, ``M``/``MB``, ``G``/``GB``, ``T``/``TB`` powers of 1000.
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text or "")
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise ValueError(
            f"invalid size {text!r}: expected a number of bytes, optionally with a unit"
            " (e.g. 5GiB, 800MB, 2G)"
        )
    size = int(float(match.group(1)) * _UNITS[unit])
    if size <= 0:
        raise ValueError(f"invalid size {text!r}: it must be more than 0 bytes")
    return size


def parse_image_packages(items: Sequence[str]) -> dict[str, Path]:
    """``IMAGE=REQUIREMENTS_FILE`` items as a mapping (files resolved to absolute paths)."""
    mapping: dict[str, Path] = {}
    for item in items:
        image, equals, file_name = item.partition("=")
        image = image.strip()
        if not equals or not image or not file_name.strip():
            raise ValueError(f"invalid image packages {item!r}: expected IMAGE=REQUIREMENTS_FILE")
        path = Path(file_name.strip()).expanduser().resolve()
        if not path.is_file():
            raise ValueError(f"invalid image packages {item!r}: no such file {path}")
        if image in mapping and mapping[image] != path:
            raise ValueError(f"invalid image packages {item!r}: image {image!r} is mapped twice")
        mapping[image] = path
    return mapping


# -- installers ------------------------------------------------------------------------------


class _Installer:
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


class _Uv(_Installer):
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
        if cache.is_dir() and _tree_size(cache) > max_bytes:
            # uv waits for the installs using its cache; environments keep their files.
            self._run([self._uv, "cache", "clean", "--quiet"], time.monotonic() + 60, self._env)


class _Pip(_Installer):
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


def _default_index() -> str:
    for variable in ("UV_DEFAULT_INDEX", "UV_INDEX_URL", "PIP_INDEX_URL"):
        if os.environ.get(variable):
            return os.environ[variable]
    return "https://pypi.org/simple"


def _python(directory: Path) -> Path:
    return directory / "bin" / "python"


def _find_uv() -> tuple[str, str] | None:
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


# -- the cache ---------------------------------------------------------------------------------


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
        for name in ("envs", "locks", "building", "trash", "wheels"):
            (self.cache_dir / name).mkdir(parents=True, exist_ok=True)
        self._installer = self._make_installer(installer or os.environ.get(INSTALLER_VARIABLE))
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

    def _make_installer(self, choice: str | None) -> _Installer:
        if choice not in (None, "", "uv", "pip"):
            raise ValueError(f"installer must be 'uv' or 'pip', got {choice!r}")
        if choice != "pip":
            found = _find_uv()
            if found is not None:
                return _Uv(self.cache_dir, *found)
            if choice == "uv":
                raise ValueError("installer 'uv' was asked for, but uv cannot be found")
        return _Pip(self.cache_dir)

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
            "default_index": _default_index(),
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
                fcntl.flock(lock, fcntl.LOCK_SH if exists else fcntl.LOCK_EX)
                if not self._is_current_lock(lock, key):
                    continue  # evicted while we waited: its lock file is a new one
                built = False
                if not _published(directory):
                    if exists:
                        continue  # evicted meanwhile: build it under an exclusive lock
                    self._build(key, steps, directory)
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
                "size": _tree_size(building),
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


def _published(directory: Path) -> bool:
    return (directory / MARKER).is_file()


def _tree_size(directory: Path) -> int:
    """Bytes of the files under a directory (symlinks counted as links)."""
    total = 0
    for root, _, files in os.walk(directory):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


__all__ = [
    "DEFAULT_CACHE_SIZE",
    "DEFAULT_INSTALL_TIMEOUT",
    "INSTALLER_VARIABLE",
    "EnvironmentBuildError",
    "InstallStep",
    "PreparedCommand",
    "TaskCommand",
    "TaskEnvironments",
    "parse_image_packages",
    "parse_size",
    "parse_task_command",
    "server_kfp_wheel",
]
