"""Runs an Argo Workflow (a KFP v1 pipeline) as Argo's controller would, with local processes.

`WorkflowRunner.run` executes `spec.entrypoint` with `spec.arguments`, then `spec.onExit`
with `{{workflow.status}}`, and returns how the workflow ended. Templates:

- `container` and `script`: a pod, run as a process on this machine in an environment of its
  own (`TaskEnvironments.prepare`: kfp's `pip install` preamble installs into it; the image
  is not used). Its artifacts and parameter files live under RUN_DIR/pods/<pod>/fs (see
  `paths`); its output (stdout and stderr) is logs/<pod>.log; `outputs.result` is its stdout
  less one final newline, at most 256 KiB (`workflow/executor` `CaptureScriptResult`).
  With a `retryStrategy`, a Retry node whose attempts `<node>(0)`, `<node>(1)`... are pods
  (`{{retries}}` is the attempt), at most `limit` retries, with the strategy's backoff.
- `dag`: each task once the tasks it depends on (`dependencies` or `depends`) have ended and
  the dependency condition holds (else an Omitted node: `dependencies: [a]` is `depends: a`,
  a.Succeeded or a.Skipped), skipped when its `when` is false, expanded over `withItems`,
  `withParam` or `withSequence` (a TaskGroup node of `<task>(<i>:<item>)` nodes). As in
  Argo 3 (`workflow/controller/dag.go`), a failure stops only what depends on it: a task
  whose dependencies hold still starts; the DAG then fails (`assessDAGPhase`).
- `steps`: groups one after another, the steps of a group at once.

At most `max_parallel_tasks` pods of a run execute at once (fewer with `spec.parallelism`),
and at most `parallelism` tasks of a template that sets it. Nodes are named and reported as
Argo's (see `nodes`). Substitution: `{{workflow.name|uid|namespace|parameters.X|status}}`,
`{{inputs.parameters.X}}`, `{{inputs.artifacts.X.path}}`, `{{outputs.parameters.X.path}}`,
`{{outputs.artifacts.X.path}}`, `{{tasks.T.outputs.parameters.X}}`,
`{{tasks.T.outputs.result}}`, `{{tasks.T.status}}`, the same for `steps.S`,
`{{item}}`, `{{item.field}}`, `{{retries}}`, `{{pod.name}}`, `{{node.name}}`.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

from kfadapter.localkfp.attempts import TaskResult, TaskResults
from kfadapter.localkfp.environments import EnvironmentBuildError, PreparedCommand
from kfadapter.localkfp.workflows import nodes as argo
from kfadapter.localkfp.workflows.expressions import (
    ExpressionError,
    depends_tasks,
    evaluate_depends,
    evaluate_when,
    substitute,
    substitute_all,
)
from kfadapter.localkfp.workflows.nodes import (
    DAG,
    ERROR,
    FAILED,
    OMITTED,
    POD,
    RETRY,
    SKIPPED,
    SKIPPED_NODE,
    STEP_GROUP,
    STEPS,
    SUCCEEDED,
    TASK_GROUP,
    NodeTree,
)
from kfadapter.localkfp.workflows.paths import PathMap

_RESULT_BYTES = 256 * 1024  # Argo keeps at most this much stdout as outputs.result
_TAIL_LINES = 30
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


class Environments(Protocol):
    """What prepares a pod's command (environments.TaskEnvironments)."""

    def prepare(
        self, image: str, command: list[str]
    ) -> contextlib.AbstractContextManager[PreparedCommand]:
        """The command to run in the task's environment, and the variables to add."""
        ...


@dataclass
class Result:
    """How a node ended, what it produced, and the nodes its dependents hang from."""

    phase: str
    outbound: list[str]
    parameters: dict[str, str] = field(default_factory=dict)
    artifacts: dict[str, Path] = field(default_factory=dict)
    result: str | None = None
    exit_code: str | None = None
    message: str = ""


@dataclass
class _Arguments:
    parameters: dict[str, str] = field(default_factory=dict)
    artifacts: dict[str, Path] = field(default_factory=dict)


class WorkflowError(Exception):
    """A node cannot be executed (an input missing, an expression Argo would refuse)."""


class WorkflowRunner:
    """Executes one Argo Workflow, its pods as local processes."""

    def __init__(
        self,
        workflow: Mapping[str, Any],
        parameters: Mapping[str, str],
        run_id: str,
        run_directory: Path,
        status: Any,
        environments: Environments,
        max_parallel_tasks: int,
        results: TaskResults | None = None,
        previous: Mapping[str, TaskResult] | None = None,
    ) -> None:
        """`results`: where each ended node is recorded; `previous`: the nodes of the
        attempt a retry starts from (see `NodeTree`)."""
        spec = workflow.get("spec") or {}
        self._spec = spec
        self._templates: dict[str, Mapping[str, Any]] = {
            template["name"]: template for template in spec.get("templates") or []
        }
        self.workflow = argo.workflow_name(workflow, run_id)
        self.tree = NodeTree(self.workflow, status, results, previous)
        self._run_directory = run_directory
        self._environments = environments
        limit = max_parallel_tasks
        if isinstance(spec.get("parallelism"), int) and spec["parallelism"] > 0:
            limit = min(limit, spec["parallelism"])
        self._pod_slots = threading.BoundedSemaphore(limit)
        self._lock = threading.Lock()
        self.first_failure: str | None = None
        self._global: dict[str, str] = {
            "workflow.name": self.workflow,
            "workflow.uid": run_id,
            "workflow.namespace": str((workflow.get("metadata") or {}).get("namespace") or ""),
            "workflow.serviceAccountName": str(spec.get("serviceAccountName") or ""),
        }
        self._arguments: dict[str, str] = {}
        for parameter in (spec.get("arguments") or {}).get("parameters") or []:
            name = parameter["name"]
            value = parameters.get(name, parameter.get("value"))
            if value is None:
                raise WorkflowError(f"spec.arguments.parameters.{name}.value is required")
            self._arguments[name] = str(value)
            self._global[f"workflow.parameters.{name}"] = str(value)
        self._global["workflow.parameters"] = json.dumps(
            [{"name": name, "value": value} for name, value in self._arguments.items()]
        )

    def run(self) -> tuple[str, str | None]:
        """Execute the workflow; its phase (Succeeded, Failed or Error) and why it failed."""
        entrypoint = self._template(str(self._spec.get("entrypoint")))
        main = self._execute(
            entrypoint, self.workflow, None, _Arguments(dict(self._arguments)), self._global
        )
        phase = SUCCEEDED if main.phase == SUCCEEDED else main.phase
        exit_template = self._spec.get("onExit")
        if exit_template:
            self._global["workflow.status"] = phase
            handler = self._execute(
                self._template(str(exit_template)),
                f"{self.workflow}.onExit",
                None,
                _Arguments(dict(self._arguments)),
                self._global,
            )
            if handler.phase not in (SUCCEEDED, SKIPPED) and phase == SUCCEEDED:
                phase = FAILED
        if phase == SUCCEEDED:
            return SUCCEEDED, None
        return phase, self.first_failure or main.message or "the workflow failed"

    # -- templates -------------------------------------------------------------------------

    def _template(self, name: str) -> Mapping[str, Any]:
        if name not in self._templates:
            raise WorkflowError(f"template {name!r} not found")
        return self._templates[name]

    def _execute(
        self,
        template: Mapping[str, Any],
        node_name: str,
        boundary: str | None,
        arguments: _Arguments,
        scope: Mapping[str, str],
    ) -> Result:
        """One template as the node `node_name`: its inputs resolved, then run by kind."""
        try:
            values, artifacts = self._inputs(template, arguments)
        except WorkflowError as exc:
            return self._error_node(node_name, template, boundary, str(exc))
        values = {**scope, **values}
        if "dag" in template:
            return self._dag(substitute_all(template, values), node_name, boundary, values)
        if "steps" in template:
            return self._steps(substitute_all(template, values), node_name, boundary, values)
        if template.get("retryStrategy"):
            return self._retried(template, node_name, boundary, values, artifacts)
        return self._pod(template, node_name, boundary, values, artifacts, None)

    def _inputs(
        self, template: Mapping[str, Any], arguments: _Arguments
    ) -> tuple[dict[str, str], dict[str, Path | bytes]]:
        """The template's input parameters (as scope values) and input artifacts."""
        values: dict[str, str] = {}
        inputs = template.get("inputs") or {}
        for parameter in inputs.get("parameters") or []:
            name = parameter["name"]
            value = arguments.parameters.get(name, parameter.get("value", parameter.get("default")))
            if value is None:
                raise WorkflowError(f"inputs.parameters.{name} was not supplied")
            values[f"inputs.parameters.{name}"] = str(value)
        artifacts: dict[str, Path | bytes] = {}
        for artifact in inputs.get("artifacts") or []:
            name = artifact["name"]
            if name in arguments.artifacts:
                artifacts[name] = arguments.artifacts[name]
            elif "raw" in artifact:
                artifacts[name] = str((artifact["raw"] or {}).get("data", "")).encode("utf-8")
            elif not artifact.get("optional"):
                raise WorkflowError(f"inputs.artifacts.{name} was not supplied")
            if artifact.get("path"):
                values[f"inputs.artifacts.{name}.path"] = artifact["path"]
        return values, artifacts

    def _error_node(
        self, node_name: str, template: Mapping[str, Any], boundary: str | None, message: str
    ) -> Result:
        """A node that could not be executed: a Skipped-type node in phase Error, with the
        message (Argo's `initializeNodeOrMarkError`)."""
        name = str(template.get("template") or template.get("name"))
        self.tree.start(node_name, SKIPPED_NODE, name, boundary, ERROR, message)
        self._failed(self.tree.get(node_name).display_name, message)  # type: ignore[union-attr]
        return Result(ERROR, [node_name], message=message)

    def _carried(self, node_name: str) -> TaskResult | None:
        """The previous attempt's result of a pod (or Retry node) that succeeded, which a
        retry keeps; the exit handler's nodes run again (GenerateRetryExecution)."""
        earlier = self.tree.previous(node_name)
        if earlier is None or earlier.state != SUCCEEDED:
            return None
        if node_name.startswith(f"{self.workflow}.onExit"):
            return None
        return earlier

    def _failed(self, display_name: str, message: str) -> None:
        with self._lock:
            if self.first_failure is None:
                self.first_failure = f"task {display_name!r} failed: {message}"

    # -- pods ------------------------------------------------------------------------------

    def _retried(
        self,
        template: Mapping[str, Any],
        node_name: str,
        boundary: str | None,
        values: Mapping[str, str],
        artifacts: Mapping[str, Path | bytes],
    ) -> Result:
        """A Retry node and its attempts `<node>(<n>)` (Argo's `executeTemplate` with a
        retryStrategy): at most `limit` retries, after the strategy's backoff."""
        strategy = substitute_all(dict(template["retryStrategy"]), values)
        try:
            limit = int(str(strategy.get("limit", 0)))
        except ValueError:
            return self._error_node(
                node_name, template, boundary, "retryStrategy.limit is not a number"
            )
        policy = str(strategy.get("retryPolicy") or "OnFailure")
        backoff = strategy.get("backoff") or {}
        name = str(template.get("name"))
        earlier = self._carried(node_name)
        if earlier is not None:  # its succeeded attempt with it
            attempt_node = f"{node_name}({earlier.outputs.get('attempt', 0)})"
            self.tree.carried(node_name, RETRY, name, boundary)
            self.tree.add_child(node_name, attempt_node)
            if self.tree.previous(attempt_node) is not None:
                self.tree.carried(attempt_node, POD, name, boundary)
            return _result_from(earlier.outputs, [attempt_node])
        self.tree.start(node_name, RETRY, name, boundary)
        result = Result(FAILED, [node_name])
        for attempt in range(limit + 1):
            child = f"{node_name}({attempt})"
            self.tree.add_child(node_name, child)
            result = self._pod(template, child, boundary, values, artifacts, attempt)
            if result.phase == SUCCEEDED or attempt == limit:
                break
            if policy == "OnError" and result.phase != ERROR:
                break
            time.sleep(_backoff(backoff, attempt))
        outputs = {**_encoded(result), "attempt": attempt} if result.phase == SUCCEEDED else {}
        self.tree.finish(node_name, result.phase, result.message, outputs)
        if result.phase != SUCCEEDED:
            self._failed(self.tree.get(node_name).display_name, result.message)  # type: ignore[union-attr]
        return Result(
            result.phase,
            [f"{node_name}({attempt})"],
            result.parameters,
            result.artifacts,
            result.result,
            result.exit_code,
            result.message,
        )

    def _pod(
        self,
        template: Mapping[str, Any],
        node_name: str,
        boundary: str | None,
        values: Mapping[str, str],
        artifacts: Mapping[str, Path | bytes],
        attempt: int | None,
    ) -> Result:
        """A container or script template as one process, in a pod slot."""
        name = str(template.get("name"))
        earlier = self._carried(node_name)
        if earlier is not None:
            self.tree.carried(node_name, POD, name, boundary)
            return _result_from(earlier.outputs, [node_name])
        pod = argo.pod_name(self.workflow, node_name, name)
        pod_directory = self._run_directory / "pods" / pod
        outputs = template.get("outputs") or {}
        inputs = template.get("inputs") or {}
        declared = [a.get("path") for a in inputs.get("artifacts") or []]
        declared += [
            (p.get("valueFrom") or {}).get("path") for p in outputs.get("parameters") or []
        ]
        declared += [a.get("path") for a in outputs.get("artifacts") or []]
        paths = PathMap(pod_directory, [str(path) for path in declared if path])
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
        resolved = substitute_all(dict(template), scope)
        with self._pod_slots:
            self.tree.start(node_name, POD, name, boundary)
            display = self.tree.get(node_name).display_name  # type: ignore[union-attr]
            log_file = self._run_directory / "logs" / f"{pod}.log"
            log_file.parent.mkdir(parents=True, exist_ok=True)
            _link(log_file.with_name(f"{self.tree.id_of(node_name)}.log"), log_file.name)
            with log_file.open("w", encoding="utf-8") as log:
                try:
                    result = self._run_pod(resolved, pod_directory, paths, artifacts, log)
                except (WorkflowError, EnvironmentBuildError) as exc:
                    log.write(f"{exc}\n")
                    result = Result(ERROR, [node_name], message=str(exc))
            result.outbound = [node_name]
            if result.phase != SUCCEEDED and attempt is None:  # a retried pod: its Retry node
                self._failed(display, result.message)
            outputs = _encoded(result) if result.phase == SUCCEEDED else {}
            inputs = _encoded_inputs(template, values, artifacts, paths)
            self.tree.finish(node_name, result.phase, result.message, outputs, inputs)
        return result

    def _run_pod(
        self,
        template: Mapping[str, Any],
        pod_directory: Path,
        paths: PathMap,
        artifacts: Mapping[str, Path | bytes],
        log: TextIO,
    ) -> Result:
        """Stage the inputs, run the command, collect the outputs (Argo's executor)."""
        shutil.rmtree(pod_directory, ignore_errors=True)
        (paths.root / "tmp").mkdir(parents=True, exist_ok=True)  # every image has a /tmp
        outputs = template.get("outputs") or {}
        for declared in [
            *((p.get("valueFrom") or {}).get("path") for p in outputs.get("parameters") or []),
            *(a.get("path") for a in outputs.get("artifacts") or []),
        ]:
            if declared:  # `mkdir -p` of an undeclared parent reaches this machine's /tmp
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
        with self._environments.prepare(image, command) as prepared:
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
        return self._outputs(template, paths, stdout, code)

    def _outputs(
        self, template: Mapping[str, Any], paths: PathMap, stdout: str, code: int
    ) -> Result:
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

    # -- DAGs ------------------------------------------------------------------------------

    def _dag(
        self,
        template: Mapping[str, Any],
        node_name: str,
        boundary: str | None,
        scope: Mapping[str, str],
    ) -> Result:
        """A DAG node: each task once its dependencies have ended (see the module)."""
        name = str(template.get("name"))
        self.tree.start(node_name, DAG, name, boundary)
        tasks = {task["name"]: task for task in template["dag"].get("tasks") or []}
        dependencies = {key: _dependencies(task) for key, task in tasks.items()}
        gate = _gate(template)
        values = dict(scope)
        artifacts: dict[str, Path] = {}
        results: dict[str, Result] = {}
        phases: dict[str, str] = {}
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(tasks))) as pool:
            running: dict[concurrent.futures.Future[Result], str] = {}
            while len(phases) < len(tasks):
                progressed = False
                for key, task in tasks.items():
                    if key in phases or key in running.values():
                        continue
                    upstream = dependencies[key]
                    if any(dep not in phases for dep in upstream if dep in tasks):
                        continue
                    progressed = True
                    if any(dep not in tasks for dep in upstream):
                        missing = [dep for dep in upstream if dep not in tasks]
                        results[key] = self._error_node(
                            f"{node_name}.{key}", task, node_name, f"unknown dependencies {missing}"
                        )
                        phases[key] = ERROR
                        continue
                    try:
                        expression = task.get("depends") or " && ".join(upstream)
                        go = (
                            evaluate_depends(expression, {d: phases[d] for d in upstream})
                            if upstream
                            else True
                        )
                    except ExpressionError as exc:
                        results[key] = self._error_node(
                            f"{node_name}.{key}", task, node_name, str(exc)
                        )
                        phases[key] = ERROR
                        continue
                    if not go:
                        child = f"{node_name}.{key}"
                        self.tree.start(
                            child,
                            SKIPPED_NODE,
                            str(task.get("template")),
                            node_name,
                            OMITTED,
                            "omitted: depends condition not met",
                        )
                        self._connect(node_name, child, upstream, results)
                        results[key] = Result(OMITTED, [child])
                        phases[key] = OMITTED
                        continue
                    snapshot = (dict(values), dict(artifacts))
                    future = pool.submit(
                        self._dag_task, node_name, key, task, upstream, results, snapshot, gate
                    )
                    running[future] = key
                if not running:
                    if progressed:
                        continue
                    stuck = sorted(set(tasks) - set(phases))
                    self.tree.finish(node_name, ERROR, f"tasks {stuck} depend on each other")
                    return Result(ERROR, [node_name], message=f"tasks {stuck} form a cycle")
                done, _ = concurrent.futures.wait(
                    running, return_when=concurrent.futures.FIRST_COMPLETED
                )
                for future in done:
                    key = running.pop(future)
                    result = _result_of(future, f"{node_name}.{key}")
                    results[key] = result
                    phases[key] = result.phase
                    _publish(values, artifacts, f"tasks.{key}", result)
        leaves = [key for key in tasks if not any(key in dependencies[o] for o in tasks)]
        outbound = [node for key in leaves if key in results for node in results[key].outbound]
        failures = [
            results[k] for k in tasks if k in results and results[k].phase in (FAILED, ERROR)
        ]
        phase = FAILED if failures else SUCCEEDED
        message = failures[0].message if failures else ""
        outputs = Result(phase, outbound or [node_name], message=message)
        if phase == SUCCEEDED:
            outputs = self._template_outputs(template, values, artifacts, outputs)
        self.tree.finish(node_name, outputs.phase, outputs.message)
        return outputs

    def _dag_task(
        self,
        dag_node: str,
        key: str,
        task: Mapping[str, Any],
        upstream: list[str],
        results: Mapping[str, Result],
        snapshot: tuple[dict[str, str], dict[str, Path]],
        gate: contextlib.AbstractContextManager[Any],
    ) -> Result:
        """One DAG task: expanded over its items or not, its `when` checked."""
        values, artifacts = snapshot
        child = f"{dag_node}.{key}"
        connect: Callable[[str], None] = lambda node: self._connect(  # noqa: E731
            dag_node, node, upstream, results
        )
        return self._call(task, key, child, dag_node, values, artifacts, gate, connect, group=True)

    def _call(
        self,
        task: Mapping[str, Any],
        key: str,
        node_name: str,
        boundary: str,
        values: Mapping[str, str],
        artifacts: Mapping[str, Path],
        gate: contextlib.AbstractContextManager[Any],
        connect: Callable[[str], None],
        *,
        group: bool,
        parent: str | None = None,
    ) -> Result:
        """A DAG task or a step: its template called with its arguments, once or per item.
        DAG tasks expanded over items get a TaskGroup node; steps hang from their group."""
        try:
            items = _items(task, values)
        except (WorkflowError, ValueError) as exc:
            connect(node_name)
            return self._error_node(node_name, task, boundary, f"{exc}")
        if items is None:
            connect(node_name)
            return self._one_call(task, node_name, boundary, values, artifacts, gate)
        if not items:
            connect(node_name)
            self.tree.start(
                node_name,
                SKIPPED_NODE,
                str(task.get("template")),
                boundary,
                SKIPPED,
                "Skipped, empty params",
            )
            return Result(SKIPPED, [node_name])
        if group:  # a DAG task's items hang from its TaskGroup; a step's from its group
            self.tree.start(node_name, TASK_GROUP, str(task.get("template")), boundary)
            connect(node_name)
        calls = []
        for index, item in enumerate(items):
            name = f"{node_name}({index}:{_item_description(item)})"
            item_values = {**values, **_item_values(item)}
            calls.append((name, item_values))
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(calls)) as pool:
            futures = []
            for name, item_values in calls:
                if group:
                    self.tree.add_child(node_name, name)
                elif parent is not None:
                    self.tree.add_child(parent, name)
                futures.append(
                    pool.submit(self._one_call, task, name, boundary, item_values, artifacts, gate)
                )
            results = [
                _result_of(future, name) for future, (name, _) in zip(futures, calls, strict=True)
            ]
        failed = [result for result in results if result.phase in (FAILED, ERROR)]
        phase = FAILED if failed else SUCCEEDED
        outbound = [node for result in results for node in result.outbound]
        aggregated = Result(
            phase, outbound or [node_name], message=failed[0].message if failed else ""
        )
        aggregated.parameters = _aggregate_parameters(results)
        aggregated.result = json.dumps([r.result for r in results if r.result is not None])
        if group:
            self.tree.finish(node_name, phase, aggregated.message)
        return aggregated

    def _one_call(
        self,
        task: Mapping[str, Any],
        node_name: str,
        boundary: str,
        values: Mapping[str, str],
        artifacts: Mapping[str, Path],
        gate: contextlib.AbstractContextManager[Any],
    ) -> Result:
        """A task or step (or one item of it): `when`, arguments, its template."""
        resolved = substitute_all(
            {k: v for k, v in task.items() if k not in ("withItems", "withParam")}, values
        )
        template_name = str(resolved.get("template"))
        when = resolved.get("when")
        if when:
            try:
                run = evaluate_when(str(when))
            except ExpressionError as exc:
                return self._error_node(node_name, resolved, boundary, str(exc))
            if not run:
                self.tree.start(
                    node_name,
                    SKIPPED_NODE,
                    template_name,
                    boundary,
                    SKIPPED,
                    f"when '{when}' evaluated false",
                )
                return Result(SKIPPED, [node_name])
        try:
            arguments = _call_arguments(resolved, artifacts)
            template = self._template(template_name)
        except WorkflowError as exc:
            return self._error_node(node_name, resolved, boundary, str(exc))
        with gate:
            return self._execute(template, node_name, boundary, arguments, self._global)

    def _connect(
        self, dag_node: str, node: str, upstream: list[str], results: Mapping[str, Result]
    ) -> None:
        """Argo's DAG wiring: a root task under the DAG node, any other under the outbound
        nodes of each task it depends on."""
        if not upstream:
            self.tree.add_child(dag_node, node)
            return
        for dependency in upstream:
            for outbound in results[dependency].outbound:
                self.tree.add_child(outbound, node)

    def _template_outputs(
        self,
        template: Mapping[str, Any],
        values: Mapping[str, str],
        artifacts: Mapping[str, Path],
        result: Result,
    ) -> Result:
        """A DAG's or steps' outputs: `valueFrom.parameter` and artifacts `from`."""
        outputs = template.get("outputs") or {}
        for parameter in outputs.get("parameters") or []:
            source = (parameter.get("valueFrom") or {}).get("parameter")
            if source is not None:
                value = substitute(str(source), values)
                if "{{" in value:
                    result.phase, result.message = ERROR, f"Unable to resolve: {source}"
                    return result
                result.parameters[parameter["name"]] = value
        for artifact in outputs.get("artifacts") or []:
            if artifact.get("from"):
                key = _tag_key(str(artifact["from"]))
                if key not in artifacts:
                    result.phase, result.message = ERROR, f"Unable to resolve: {artifact['from']}"
                    return result
                result.artifacts[artifact["name"]] = artifacts[key]
        return result

    # -- steps -----------------------------------------------------------------------------

    def _steps(
        self,
        template: Mapping[str, Any],
        node_name: str,
        boundary: str | None,
        scope: Mapping[str, str],
    ) -> Result:
        """A Steps node: its groups `<node>[<i>]` one after another, each group's steps at
        once (Argo's `executeSteps`)."""
        name = str(template.get("name"))
        self.tree.start(node_name, STEPS, name, boundary)
        values = dict(scope)
        artifacts: dict[str, Path] = {}
        gate = _gate(template)
        previous: list[str] = []
        for index, group in enumerate(template.get("steps") or []):
            group_node = f"{node_name}[{index}]"
            self.tree.start(group_node, STEP_GROUP, name, node_name)
            if index == 0:
                self.tree.add_child(node_name, group_node)
            for outbound in previous:
                self.tree.add_child(outbound, group_node)
            steps = list(group or [])
            snapshot = dict(values)
            with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(steps))) as pool:
                futures = [
                    pool.submit(
                        self._call,
                        step,
                        step["name"],
                        f"{group_node}.{step['name']}",
                        node_name,
                        snapshot,
                        dict(artifacts),
                        gate,
                        lambda node, g=group_node: self.tree.add_child(g, node),
                        group=False,
                        parent=group_node,
                    )
                    for step in steps
                ]
                results = [
                    _result_of(future, f"{group_node}.{step['name']}")
                    for future, step in zip(futures, steps, strict=True)
                ]
            failed = [result for result in results if result.phase in (FAILED, ERROR)]
            self.tree.finish(group_node, FAILED if failed else SUCCEEDED)
            for step, result in zip(steps, results, strict=True):
                _publish(values, artifacts, f"steps.{step['name']}", result)
            previous = [node for result in results for node in result.outbound] or [group_node]
            if failed:
                self.tree.finish(node_name, FAILED, failed[0].message)
                return Result(FAILED, previous, message=failed[0].message)
        result = self._template_outputs(template, values, artifacts, Result(SUCCEEDED, previous))
        self.tree.finish(node_name, result.phase, result.message)
        return result


# -- helpers -------------------------------------------------------------------------------


def _encoded(result: Result) -> dict[str, Any]:
    """A pod's outputs as its recorded result keeps them (JSON)."""
    return {
        "parameters": dict(result.parameters),
        "artifacts": {
            name: _artifact_record(name, path) for name, path in result.artifacts.items()
        },
        "result": result.result,
        "exit_code": result.exit_code,
    }


def _encoded_inputs(
    template: Mapping[str, Any],
    values: Mapping[str, str],
    artifacts: Mapping[str, Path | bytes],
    paths: PathMap,
) -> dict[str, Any]:
    """A pod's resolved inputs as its recorded result keeps them: the values of the
    template's input parameters, and each input artifact's file (the upstream output's; a
    raw artifact's copy staged in the pod)."""
    declared = template.get("inputs") or {}
    parameters = {
        parameter["name"]: values[key]
        for parameter in declared.get("parameters") or []
        if (key := f"inputs.parameters.{parameter['name']}") in values
    }
    recorded = {}
    for artifact in declared.get("artifacts") or []:
        source = artifacts.get(artifact["name"])
        if isinstance(source, bytes):
            source = paths.local(artifact["path"]) if artifact.get("path") else None
        if source is not None:
            recorded[artifact["name"]] = _artifact_record(artifact["name"], source)
    return {"parameters": parameters, "artifacts": recorded}


def _artifact_record(name: str, path: Path) -> dict[str, Any]:
    """An Argo artifact in the shape attempts.encode_outputs gives a KFP artifact (which
    run_outputs reads): one item with its name and file; no type, as Argo gives none."""
    return {"list": False, "items": [{"name": name, "uri": str(path), "metadata": {}}]}


def _recorded_path(artifact: Any) -> Path:
    """The file of a recorded artifact (`_artifact_record`; a bare path in older records)."""
    if isinstance(artifact, str):
        return Path(artifact)
    return Path(artifact["items"][0]["uri"])


def _result_from(outputs: Mapping[str, Any], outbound: list[str]) -> Result:
    """The Result of a carried-forward pod, from its recorded outputs."""
    return Result(
        SUCCEEDED,
        outbound,
        dict(outputs.get("parameters") or {}),
        {name: _recorded_path(value) for name, value in (outputs.get("artifacts") or {}).items()},
        outputs.get("result"),
        outputs.get("exit_code"),
    )


def _dependencies(task: Mapping[str, Any]) -> list[str]:
    """The tasks a DAG task waits for: its `depends` expression's, else `dependencies`."""
    if task.get("depends"):
        return depends_tasks(str(task["depends"]))
    return [str(name) for name in task.get("dependencies") or []]


def _gate(template: Mapping[str, Any]) -> contextlib.AbstractContextManager[Any]:
    """At most `parallelism` tasks of the template at once (0 or none: no bound)."""
    limit = template.get("parallelism")
    if isinstance(limit, int) and limit > 0:
        return threading.BoundedSemaphore(limit)
    return contextlib.nullcontext()


def _items(task: Mapping[str, Any], values: Mapping[str, str]) -> list[Any] | None:
    """The items a task is expanded over (withItems, withParam, withSequence), or None."""
    if "withItems" in task:
        return list(substitute_all(task["withItems"], values))
    if "withParam" in task:
        text = substitute(str(task["withParam"]), values)
        try:
            items = json.loads(text)
        except ValueError as exc:
            raise WorkflowError(
                f"withParam value could not be parsed as a JSON list: {text}"
            ) from exc
        if not isinstance(items, list):
            raise WorkflowError(f"withParam value could not be parsed as a JSON list: {text}")
        return items
    if "withSequence" in task:
        sequence = substitute_all(dict(task["withSequence"]), values)
        start = int(str(sequence.get("start", 0)))
        if "count" in sequence:
            count = int(str(sequence["count"]))
            return [str(start + i) for i in range(count)]
        end = int(str(sequence.get("end", 0)))
        step = 1 if end >= start else -1
        return [str(i) for i in range(start, end + step, step)]
    return None


def _item_text(value: Any) -> str:
    """An item value as Argo substitutes it: strings as they are, others as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value, separators=(",", ":"))


def _item_values(item: Any) -> dict[str, str]:
    """`{{item}}` and, for a map, `{{item.<key>}}` (Argo's `processItem`)."""
    values = {"item": _item_text(item)}
    if isinstance(item, dict):
        for key, value in item.items():
            values[f"item.{key}"] = _item_text(value)
    return values


def _item_description(item: Any) -> str:
    """The item as Argo puts it in the node name: a map as its sorted `key:value` pairs."""
    if isinstance(item, dict):
        return ",".join(sorted(f"{key}:{_item_text(value)}" for key, value in item.items()))
    return _item_text(item)


def _call_arguments(task: Mapping[str, Any], artifacts: Mapping[str, Path]) -> _Arguments:
    """A task's or step's arguments: parameter values, artifacts from upstream outputs."""
    arguments = _Arguments()
    given = task.get("arguments") or {}
    for parameter in given.get("parameters") or []:
        value = parameter.get("value")
        if value is None:
            raise WorkflowError(f"arguments.parameters.{parameter['name']} has no value")
        if isinstance(value, str) and "{{" in value:
            raise WorkflowError(f"Unable to resolve: {value}")
        arguments.parameters[parameter["name"]] = str(value)
    for artifact in given.get("artifacts") or []:
        source = artifact.get("from")
        if source:
            key = _tag_key(str(source))
            if key not in artifacts:
                raise WorkflowError(f"Unable to resolve: {source}")
            arguments.artifacts[artifact["name"]] = artifacts[key]
    return arguments


def _tag_key(text: str) -> str:
    match = re.fullmatch(r"\s*\{\{\s*([^{}]*?)\s*\}\}\s*", text)
    return match[1] if match else text


def _publish(
    values: dict[str, str], artifacts: dict[str, Path], prefix: str, result: Result
) -> None:
    """What `{{tasks.T...}}` or `{{steps.S...}}` resolve to once T or S has ended."""
    values[f"{prefix}.status"] = result.phase
    if result.exit_code is not None:
        values[f"{prefix}.exitCode"] = result.exit_code
    if result.result is not None:
        values[f"{prefix}.outputs.result"] = result.result
    for name, value in result.parameters.items():
        values[f"{prefix}.outputs.parameters.{name}"] = value
    for name, path in result.artifacts.items():
        artifacts[f"{prefix}.outputs.artifacts.{name}"] = path


def _aggregate_parameters(results: list[Result]) -> dict[str, str]:
    """An expanded task's output parameters: each a JSON list of the items' values."""
    names = list(dict.fromkeys(name for result in results for name in result.parameters))
    return {
        name: json.dumps(
            [result.parameters[name] for result in results if name in result.parameters]
        )
        for name in names
    }


def _result_of(future: concurrent.futures.Future[Result], node_name: str) -> Result:
    try:
        return future.result()
    except Exception as exc:  # a defect in the runner: the node errors, the run goes on
        return Result(ERROR, [node_name], message=f"{type(exc).__name__}: {exc}")


def _link(link: Path, target: str) -> None:
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


def _backoff(backoff: Mapping[str, Any], attempt: int) -> float:
    """Seconds before retry `attempt + 1`: duration * factor^attempt, at most maxDuration."""
    duration = _seconds(backoff.get("duration"))
    factor = float(str(backoff.get("factor") or 1))
    delay = duration * factor**attempt
    ceiling = _seconds(backoff.get("maxDuration")) if backoff.get("maxDuration") else None
    return min(delay, ceiling) if ceiling is not None else delay


def _seconds(text: Any) -> float:
    """A duration (`10`, `10s`, `1m30s`, `500ms`) in seconds."""
    if text is None:
        return 0.0
    value = str(text).strip()
    if value.replace(".", "", 1).isdigit():
        return float(value)
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(number) * units[unit] for number, unit in _DURATION.findall(value))


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
