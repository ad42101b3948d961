"""The execution of a run's component tasks: a container or importer task in a slot,
carried forward from the previous attempt or taken from the task cache, else executed with
attempts as its retry policy says; a container task's command, its placeholders resolved, runs
in its environment (`TaskEnvironments`) with its output in the task's log."""

from __future__ import annotations

import collections
import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Mapping
from typing import Any, Protocol, TextIO

from google.protobuf import json_format
from kfp.dsl import component_factory
from kfp.local import (
    executor_input_utils,
    executor_output_utils,
    importer_handler,
    placeholder_utils,
)
from kfp.local.cache import LocalCache
from kfp.local.orchestrator.orchestrator_utils import OrchestratorUtils
from kfp.pipeline_spec import pipeline_spec_pb2

from kfadapter.localkfp.attempts import TaskResult
from kfadapter.localkfp.environments import EnvironmentBuildError, PreparedCommand
from kfadapter.localkfp.orchestration.outcomes import (
    _ALL_UPSTREAM_COMPLETED,
    FAILED,
    SUCCEEDED,
    ComponentSpec,
    ExecutorSpec,
    Outcome,
    Scope,
    TaskCall,
    TaskReporter,
    TaskSpec,
    _failure,
)

_TAIL_LINES = 30
_NUMBER_INTEGER = pipeline_spec_pb2.ParameterType.NUMBER_INTEGER


class Environments(Protocol):
    """What prepares a task's command (environments.TaskEnvironments)."""

    def prepare(
        self, image: str, command: list[str]
    ) -> contextlib.AbstractContextManager[PreparedCommand]:
        """The command to run in the task's environment, and the variables to add."""
        ...


class ComponentTaskRunner:
    """Executes a run's component (container and importer) tasks."""

    def __init__(
        self,
        executors: Mapping[str, ExecutorSpec],
        pipeline_root: str,
        pipeline_id: str,
        reporter: TaskReporter,
        environments: Environments,
        slots: threading.BoundedSemaphore,
        previous: Mapping[str, TaskResult],
        cache: LocalCache | None,
    ) -> None:
        self._executors = executors
        self._pipeline_root = pipeline_root
        self._pipeline_id = pipeline_id
        self._reporter = reporter
        self._environments = environments
        self._slots = slots
        self._previous = previous
        self._cache = cache

    def run(
        self,
        name: str,
        display_name: str,
        task: TaskSpec,
        component: ComponentSpec,
        scope: Scope,
    ) -> Outcome:
        """A container or importer task: in a slot, reported, retried as its policy says;
        carried forward instead when the previous attempt ended it SUCCEEDED (an exit
        handler's task excepted: it runs again after its body); not executed when its cache
        key matches an earlier success (its recorded outputs feed the tasks downstream)."""
        executor = self._executors[component.executor_label]
        kind = "importer" if executor.WhichOneof("spec") == "importer" else "container"
        previous = self._previous.get(scope.child_path(name))
        if previous is not None and previous.state == SUCCEEDED and not _is_exit_task(task):
            return self._reporter.carried(display_name, name, scope.path, kind, previous)
        try:
            arguments = OrchestratorUtils.make_task_arguments(task.inputs, scope.store)
        except ValueError as exc:  # an input that no upstream task produced
            call, failure = None, _failure(exc)
        else:
            call, failure = TaskCall(name, task, component, executor, arguments, scope), None
        cache_key = self._cache_key(call) if call is not None and kind == "container" else None
        cached = self._cache.get(cache_key) if self._cache is not None and cache_key else None
        if cached is not None:  # KFP's driver: cached-decision true, the executor not run
            task_id, _ = self._reporter.started(
                display_name, name, scope.path, kind, previous=previous, cached=True
            )
            outcome = Outcome(SUCCEEDED, cached)
            self._reporter.finished(
                task_id, display_name, kind, outcome, inputs=_declared(call) if call else None
            )
            return outcome
        with self._slots:
            task_id, pod_name = self._reporter.started(
                display_name, name, scope.path, kind, previous=previous
            )
            with self._reporter.log_file(pod_name).open("w", encoding="utf-8") as log:
                if call is None:
                    assert failure is not None
                    outcome = failure
                    log.write(f"{outcome.error}\n")
                else:
                    outcome = self._attempts(call, log)
            if self._cache is not None and cache_key and outcome.state == SUCCEEDED:
                self._cache.put(cache_key, outcome.outputs)
            inputs = _declared(call) if call is not None else None
            self._reporter.finished(task_id, display_name, kind, outcome, inputs=inputs)
        return outcome

    def _cache_key(self, call: TaskCall) -> str | None:
        """The task's cache key, None when its caching is off (`caching_options`).

        As KFP's driver fingerprints a task: its component spec, image, command and
        resolved inputs, or the task's own `cache_key` when set (kfp.local's key).
        """
        options = call.task.caching_options
        if self._cache is None or not options.enable_cache:
            return None
        container = call.executor.container
        return self._cache.compute_key(
            component_name=json_format.MessageToJson(call.component, sort_keys=True),
            image=container.image,
            full_command=[*container.command, *container.args],
            arguments=call.arguments,
            env_vars={variable.name: variable.value for variable in container.env},
            custom_cache_key=options.cache_key or None,
        )

    def _attempts(self, call: TaskCall, log: TextIO) -> Outcome:
        """Execute the task, again after a failure while its retry policy allows."""
        policy = call.task.retry_policy
        retries = max(0, policy.max_retry_count)
        backoff = policy.backoff_duration.seconds if policy.HasField("backoff_duration") else 0
        factor = policy.backoff_factor if policy.backoff_factor > 0 else 2.0
        ceiling = (
            policy.backoff_max_duration.seconds if policy.HasField("backoff_max_duration") else 3600
        )
        for attempt in range(retries + 1):
            try:
                if call.executor.WhichOneof("spec") == "importer":
                    outcome = self._import(call)
                else:
                    outcome = self._execute(call, log)
            except EnvironmentBuildError as exc:  # retrying would not make the package appear
                log.write(f"{exc}\n")
                return Outcome(FAILED, error=str(exc))
            except Exception as exc:
                outcome = _failure(exc)
                log.write(f"{outcome.error}\n")
            if outcome.state == SUCCEEDED or attempt == retries:
                return outcome
            delay = min(backoff * factor**attempt, ceiling)
            log.write(f"attempt {attempt + 1} of {retries + 1} failed; retrying in {delay:.1f}s\n")
            log.flush()
            time.sleep(delay)
        raise AssertionError("unreachable")

    def _import(self, call: TaskCall) -> Outcome:
        """An importer task, with kfp.local's importer."""
        outputs, task_status = importer_handler.run_importer(
            pipeline_resource_name=call.scope.resource_name,
            component_name=call.task.component_ref.name,
            component_spec=call.component,
            executor_spec=call.executor,
            arguments=call.arguments,
            pipeline_root=self._pipeline_root,
            unique_pipeline_id=self._pipeline_id,
        )
        if task_status.name == "SUCCESS":
            return Outcome(SUCCEEDED, outputs)
        return Outcome(FAILED, error="the importer failed")

    def _execute(self, call: TaskCall, log: TextIO) -> Outcome:
        """A container task: its command, placeholders resolved, in its environment."""
        name, task, component, scope = call.name, call.task, call.component, call.scope
        arguments = call.arguments
        container = call.executor.container
        command = list(container.command) + list(container.args)
        _check_lightweight(command)
        task_resource_name = executor_input_utils.get_local_task_resource_name(
            task.component_ref.name
        )
        # One directory per task (kfp.local's is per component and pipeline, which tasks
        # running at once would share).
        task_root = os.path.join(
            self._pipeline_root, scope.resource_name, *filter(None, scope.path.split(".")), name
        )
        executor_input = executor_input_utils.construct_executor_input(
            component_spec=component,
            arguments=arguments,
            task_root=task_root,
            block_input_artifact=False,
        )
        executor_input_dict = executor_input_utils.executor_input_to_dict(
            executor_input=executor_input, component_spec=component
        )
        _whole_numbers_in_collections(executor_input_dict)
        command = placeholder_utils.replace_placeholders(
            full_command=command,
            executor_input_dict=executor_input_dict,
            pipeline_resource_name=scope.resource_name,
            task_resource_name=task_resource_name,
            pipeline_root=self._pipeline_root,
            unique_pipeline_id=self._pipeline_id,
        )
        variables = {variable.name: variable.value for variable in container.env}
        with self._environments.prepare(container.image, command) as prepared:
            return_code, tail = _run_logged(prepared.command, {**variables, **prepared.env}, log)
        if return_code != 0:
            return Outcome(FAILED, error=_error_message(tail, return_code))
        outputs = executor_output_utils.get_outputs_for_task(
            executor_input=executor_input, component_spec=component
        )
        return Outcome(SUCCEEDED, outputs)


def _declared(call: TaskCall) -> dict[str, Any]:
    """The task's arguments as its component declares them, for its recorded result: a
    whole float passed to an integer input as the integer the component receives."""
    declared = call.component.input_definitions.parameters
    arguments = dict(call.arguments)
    for name, value in arguments.items():
        if (
            name in declared
            and declared[name].parameter_type == _NUMBER_INTEGER
            and isinstance(value, float)
            and value.is_integer()
        ):
            arguments[name] = int(value)
    return arguments


def _is_exit_task(task: TaskSpec) -> bool:
    """Whether the task is an ExitHandler's exit task: it runs once its exit-handler-N
    group has completed, whatever the outcome (KFP's compiler names the group so)."""
    return task.trigger_policy.strategy == _ALL_UPSTREAM_COMPLETED and any(
        upstream.startswith("exit-handler-") for upstream in task.dependent_tasks
    )


def _whole_numbers_in_collections(executor_input: dict[str, Any]) -> None:
    """Whole numbers inside list and dict parameters as JSON integers, as on a cluster.

    The KFP launcher serializes the executor input with Go's protojson, which writes the
    number 14.0 as ``14``; protobuf's Python JSON writes ``14.0``. A component summing a
    ``list`` of ints would return "14.0" here and "14" on a cluster. Top-level parameters
    keep kfp.local's typing (kfp.local already casts declared ints).
    """

    def whole(value: Any) -> Any:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, list):
            return [whole(item) for item in value]
        if isinstance(value, dict):
            return {key: whole(item) for key, item in value.items()}
        return value

    values = executor_input.get("inputs", {}).get("parameterValues", {})
    for name, value in values.items():
        if isinstance(value, list | dict):
            values[name] = whole(value)


def _check_lightweight(command: list[str]) -> None:
    """Fail a task that is not a lightweight Python component (it would need its image)."""
    containerized = component_factory.CONTAINERIZED_PYTHON_COMPONENT_COMMAND
    if command[: len(containerized)] == containerized or not any(
        component_factory.EXECUTOR_MODULE in part for part in command
    ):
        raise RuntimeError(
            "only lightweight Python components (@dsl.component) run locally; this task is a "
            "container component, which needs its image and a container runtime"
        )


def _run_logged(
    command: list[str], variables: dict[str, str], log: TextIO
) -> tuple[int, collections.deque[str]]:
    """Run a command, its output into the log; its exit code and last lines."""
    tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
    with subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        bufsize=1,
        env={**os.environ, **variables},
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            log.write(line)
            log.flush()
            tail.append(line)
        return process.wait(), tail


def _error_message(tail: collections.deque[str], return_code: int) -> str:
    """The failed component's error: the last line it printed (its exception)."""
    lines = [line.strip() for line in tail if line.strip()]
    return lines[-1] if lines else f"the component exited with code {return_code}"
