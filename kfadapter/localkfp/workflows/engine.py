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

import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kfadapter.localkfp.attempts import TaskResult, TaskResults
from kfadapter.localkfp.environments import EnvironmentBuildError
from kfadapter.localkfp.workflows import nodes as argo
from kfadapter.localkfp.workflows.expressions import substitute_all
from kfadapter.localkfp.workflows.nodes import (
    ERROR,
    FAILED,
    POD,
    SKIPPED,
    SKIPPED_NODE,
    SUCCEEDED,
    NodeTree,
)
from kfadapter.localkfp.workflows.pods import (
    Environments,
    link_log,
    pod_paths,
    pod_scope,
    run_pod,
)
from kfadapter.localkfp.workflows.results import (
    Arguments,
    Result,
    WorkflowError,
    encoded,
    encoded_inputs,
    result_from,
)
from kfadapter.localkfp.workflows.retries import Retries
from kfadapter.localkfp.workflows.scheduling import Scheduling

__all__ = ["Environments", "Result", "WorkflowError", "WorkflowRunner"]


class WorkflowRunner(Scheduling, Retries):
    """Executes one Argo Workflow, its pods as local processes (its DAG and steps nodes in
    `scheduling`, its Retry nodes and carried-forward pods in `retries`)."""

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
            entrypoint, self.workflow, None, Arguments(dict(self._arguments)), self._global
        )
        phase = SUCCEEDED if main.phase == SUCCEEDED else main.phase
        exit_template = self._spec.get("onExit")
        if exit_template:
            self._global["workflow.status"] = phase
            handler = self._execute(
                self._template(str(exit_template)),
                f"{self.workflow}.onExit",
                None,
                Arguments(dict(self._arguments)),
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
        arguments: Arguments,
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
        self, template: Mapping[str, Any], arguments: Arguments
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

    def _failed(self, display_name: str, message: str) -> None:
        with self._lock:
            if self.first_failure is None:
                self.first_failure = f"task {display_name!r} failed: {message}"

    # -- pods ------------------------------------------------------------------------------

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
            return result_from(earlier.outputs, [node_name])
        pod = argo.pod_name(self.workflow, node_name, name)
        pod_directory = self._run_directory / "pods" / pod
        paths = pod_paths(template, pod_directory)
        scope = pod_scope(template, values, pod, node_name, attempt)
        resolved = substitute_all(dict(template), scope)
        with self._pod_slots:
            self.tree.start(node_name, POD, name, boundary)
            display = self.tree.get(node_name).display_name  # type: ignore[union-attr]
            log_file = self._run_directory / "logs" / f"{pod}.log"
            log_file.parent.mkdir(parents=True, exist_ok=True)
            link_log(log_file.with_name(f"{self.tree.id_of(node_name)}.log"), log_file.name)
            with log_file.open("w", encoding="utf-8") as log:
                try:
                    result = run_pod(
                        self._environments, resolved, pod_directory, paths, artifacts, log
                    )
                except (WorkflowError, EnvironmentBuildError) as exc:
                    log.write(f"{exc}\n")
                    result = Result(ERROR, [node_name], message=str(exc))
            result.outbound = [node_name]
            if result.phase != SUCCEEDED and attempt is None:  # a retried pod: its Retry node
                self._failed(display, result.message)
            outputs = encoded(result) if result.phase == SUCCEEDED else {}
            inputs = encoded_inputs(template, values, artifacts, paths)
            self.tree.finish(node_name, result.phase, result.message, outputs, inputs)
        return result
