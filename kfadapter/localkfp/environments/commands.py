"""Reading a component's command: the pip installs in front of kfp's program.

kfp puts ``pip install`` commands in front of a lightweight component's program (its pin
``kfp==X --no-deps``, ``packages_to_install``, ``pip_index_urls``); on a cluster they install
into the task's container. ``parse_task_command`` takes them out of the command as install
steps (``InstallStep``), which build the task's environment, and leaves the program that runs
in it.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


class EnvironmentBuildError(Exception):
    """A task's environment could not be built; the message names the packages and indexes."""


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
        named = [step.index_url] if step.index_url else [default_index()]
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
# kfp 1.8's wrapper (`kfp/components/_python_op.py`, packages_to_install):
# (PIP_DISABLE_PIP_VERSION_CHECK=1 python3 -m pip install ... || <the same> --user) && "$0" "$@"
_KFP_V1_WRAPPER = re.compile(r'\((?P<install>[^()|&]+?) \|\| (?P<user>[^()|&]+?)\) && "\$0" "\$@"')


def parse_task_command(command: Sequence[str]) -> TaskCommand:
    """Split kfp's lightweight-component wrapper into its pip installs and the program.

    The wrapper is ``sh -c SCRIPT PROGRAM...`` where SCRIPT makes sure pip exists, runs
    ``python3 -m pip install ...`` commands joined by ``&&`` and ends with ``"$0" "$@"``
    (kfp/dsl/component_factory.py, ``_get_packages_to_install_command``); kfp 1.8's is
    ``(pip install P || pip install P --user) && "$0" "$@"`` (``kfp/components/_python_op.py``).
    Any other command is returned unchanged with no install steps. Raises
    EnvironmentBuildError for a wrapper whose pip commands use an option that cannot be
    honoured here.
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
    v1 = _KFP_V1_WRAPPER.fullmatch(script.strip())
    if v1 is not None and v1["user"] == f"{v1['install']} --user":
        script = f'{v1["install"]} && "$0" "$@"'  # kfp 1.8: retried with --user, same packages
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


def default_index() -> str:
    """The index an install step consults when it names none (the installers' default)."""
    for variable in ("UV_DEFAULT_INDEX", "UV_INDEX_URL", "PIP_INDEX_URL"):
        if os.environ.get(variable):
            return os.environ[variable]
    return "https://pypi.org/simple"
