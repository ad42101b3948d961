"""A pod as a local process: its inputs staged, its command run, its outputs collected."""

from __future__ import annotations

import collections
import contextlib
import os
import shutil
import subprocess
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, TextIO

from kfadapter.localkfp.environments import PreparedCommand
from kfadapter.localkfp.workflows.nodes import ERROR, FAILED, SUCCEEDED
from kfadapter.localkfp.workflows.paths import PathMap
from kfadapter.localkfp.workflows.results import Result, WorkflowError

_RESULT_BYTES = 256 * 1024  # Argo keeps at most this much stdout as outputs.result
_TAIL_LINES = 30


class Environments(Protocol):
    """What prepares a pod's command (environments.TaskEnvironments)."""

    def prepare(
        self, image: str, command: list[str]
    ) -> contextlib.AbstractContextManager[PreparedCommand]:
        """The command to run in the task's environment, and the variables to add."""
        ...


def output_paths(template: Mapping[str, Any]) -> list[Any]:
    """The container paths of a pod's output parameter files and output artifacts."""
    outputs = template.get("outputs") or {}
    declared = [(p.get("valueFrom") or {}).get("path") for p in outputs.get("parameters") or []]
    declared += [a.get("path") for a in outputs.get("artifacts") or []]
    return [path for path in declared if path]


def pod_paths(template: Mapping[str, Any], pod_directory: Path) -> PathMap:
    """The pod's declared container paths (input artifacts, outputs) mapped under its
    directory."""
    declared = [a.get("path") for a in (template.get("inputs") or {}).get("artifacts") or []]
    declared += output_paths(template)
    return PathMap(pod_directory, [str(path) for path in declared if path])


def pod_scope(
    template: Mapping[str, Any],
    values: Mapping[str, str],
    pod: str,
    node_name: str,
    attempt: int | None,
) -> dict[str, str]:
    """The values a pod's template is substituted with: its node's, `{{pod.name}}`,
    `{{node.name}}`, `{{retries}}` and its outputs' paths."""
    outputs = template.get("outputs") or {}
    scope = dict(values)
    scope.update({"pod.name": pod, "node.name": node_name})
    if attempt is not None:
        scope["retries"] = str(attempt)
    for parameter in outputs.get("parameters") or []:
        path = (parameter.get("valueFrom") or {}).get("path")
        if path:
            scope[f"outputs.parameters.{parameter['name']}.path"] = path
    for artifact in outputs.get("artifacts") or []:
        if artifact.get("path"):
            scope[f"outputs.artifacts.{artifact['name']}.path"] = artifact["path"]
    return scope


def run_pod(
    environments: Environments,
    template: Mapping[str, Any],
    pod_directory: Path,
    paths: PathMap,
    artifacts: Mapping[str, Path | bytes],
    log: TextIO,
) -> Result:
    """Stage the inputs, run the command, collect the outputs (Argo's executor)."""
    shutil.rmtree(pod_directory, ignore_errors=True)
    (paths.root / "tmp").mkdir(parents=True, exist_ok=True)  # every image has a /tmp
    for declared in output_paths(template):
        # `mkdir -p` of an undeclared parent reaches this machine's /tmp
        paths.local(declared).parent.mkdir(parents=True, exist_ok=True)
    for artifact in (template.get("inputs") or {}).get("artifacts") or []:
        source = artifacts.get(artifact["name"])
        if source is not None and artifact.get("path"):
            _stage(source, paths.local(artifact["path"]))
    container = template.get("container") or template.get("script") or {}
    image = str(container.get("image") or "")
    command = [str(part) for part in container.get("command") or []]
    if "script" in template:
        source_file = pod_directory / "script"
        source_file.write_text(paths.rewrite(str(container.get("source") or "")), "utf-8")
        command = [*command, str(source_file)]
    command = [paths.rewrite(part) for part in command + list(container.get("args") or [])]
    if not command:
        raise WorkflowError(
            f"the container has no command: it would run the entrypoint of its image "
            f"{image!r}, and images are not used here (the local KFP server runs commands "
            "on this machine)"
        )
    variables = {
        str(variable["name"]): paths.rewrite(str(variable.get("value", "")))
        for variable in container.get("env") or []
    }
    with environments.prepare(image, command) as prepared:
        try:
            code, stdout, tail = _run_logged(
                prepared.command, {**variables, **prepared.env}, pod_directory, log
            )
        except FileNotFoundError:
            message = _not_installed(prepared.command[0], image)
            log.write(f"{message}\n")
            return Result(ERROR, [], message=message)
    if code != 0:
        last = next((line.strip() for line in reversed(tail) if line.strip()), "")
        message = last or f"Error (exit code {code})"
        if code == 127:
            message = f"{message} ({_not_installed_note(image)})"
        return Result(FAILED, [], message=message, exit_code=str(code))
    return _outputs(template, paths, stdout, code)


def _outputs(template: Mapping[str, Any], paths: PathMap, stdout: str, code: int) -> Result:
    """Output parameters and artifacts, as Argo's executor saves them."""
    outputs = template.get("outputs") or {}
    parameters: dict[str, str] = {}
    for parameter in outputs.get("parameters") or []:
        source = parameter.get("valueFrom") or {}
        if "path" not in source:
            continue
        local = paths.local(source["path"])
        try:
            parameters[parameter["name"]] = local.read_text(encoding="utf-8")
        except OSError as exc:
            if "default" in source:
                parameters[parameter["name"]] = str(source["default"])
                continue
            message = (
                f"failed to read output parameter {parameter['name']!r} from "
                f"{source['path']}: {exc.strerror or exc}"
            )
            return Result(ERROR, [], message=message, exit_code=str(code))
    artifacts: dict[str, Path] = {}
    for artifact in outputs.get("artifacts") or []:
        if not artifact.get("path"):
            continue
        local = paths.local(artifact["path"])
        if local.exists():
            artifacts[artifact["name"]] = local
        elif not artifact.get("optional"):
            message = (
                f"failed to save output artifact {artifact['name']!r}: "
                f"{artifact['path']} does not exist"
            )
            return Result(ERROR, [], message=message, exit_code=str(code))
    return Result(SUCCEEDED, [], parameters, artifacts, stdout.removesuffix("\n"), str(code))


def link_log(link: Path, target: str) -> None:
    """logs/<node id>.log -> the pod's log: Argo's `main-logs` artifact of the node, which
    KFP's ReadArtifact serves by node id (node_files.py)."""
    with contextlib.suppress(OSError):
        link.unlink(missing_ok=True)
        link.symlink_to(target)


def _stage(source: Path | bytes, target: Path) -> None:
    """Place an input artifact at its path, as Argo's executor does before the container."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(source, bytes):
        target.write_bytes(source)
    elif source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True)
    else:
        shutil.copy2(source, target)


def _not_installed_note(image: str) -> str:
    return (
        f"the task's image {image!r} was not used: the local KFP server runs the command on "
        "this machine, where it must be installed"
    )


def _not_installed(program: str, image: str) -> str:
    return f"the command {program!r} is not installed here ({_not_installed_note(image)})"


def _run_logged(
    command: list[str], variables: dict[str, str], directory: Path, log: TextIO
) -> tuple[int, str, collections.deque[str]]:
    """Run a pod's command, stdout and stderr into its log; exit code, stdout, last lines."""
    tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
    stdout: list[str] = []
    size = 0
    lock = threading.Lock()
    directory.mkdir(parents=True, exist_ok=True)
    with subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        bufsize=1,
        cwd=directory,
        env={**os.environ, **variables},
    ) as process:
        assert process.stdout is not None and process.stderr is not None

        def pump(stream: Any, keep: bool) -> None:
            nonlocal size
            for line in stream:
                with lock:
                    log.write(line)
                    log.flush()
                    tail.append(line)
                    if keep and size < _RESULT_BYTES:
                        stdout.append(line)
                        size += len(line)

        errors = threading.Thread(target=pump, args=(process.stderr, False), daemon=True)
        errors.start()
        pump(process.stdout, True)
        errors.join()
        return process.wait(), "".join(stdout), tail
