"""Runs a pipeline spec's DAGs in the run's worker: every task whose upstream tasks are done
starts at once, as on a KFP cluster.

kfp.local 2.17 runs the tasks of a DAG one after another, so this module replaces its
orchestration and keeps KFP's own pieces for the rest: kfp.local's helpers resolve task
arguments, loop iterations, conditions, nested DAG arguments, placeholders, executor input and
output and importers, and the component code runs under KFP's executor
(``kfp.dsl.executor_main``) inside the command of the component, in the task's own environment
(`TaskEnvironments`).

Concurrency: a thread per started task. Container tasks of a run hold one of
``max_parallel_tasks`` slots while they execute; a ``ParallelFor`` with ``parallelism=N`` runs
at most N iterations at once. After a task fails, a DAG starts no new task but those that run
on completion of their upstream tasks (exit handlers, ``ignore_upstream_failure``), and the
running ones finish (Argo's fail-fast DAGs).

Every task, container or DAG (sub-pipeline, loop, loop iteration, condition), is reported to
`TaskReporter` with where it sits in the DAG (see `execution_protocol`), and its result is
recorded (`attempts`). A retried run starts from the previous attempt's results, as KFP
retries a workflow (`backend/src/common/util/workflow.go` GenerateRetryExecution): a
component task that SUCCEEDED and a condition branch that was SKIPPED are not executed
again but reported with their times and pod names, their outputs feeding the tasks
downstream; failed and never-started tasks and exit-handler tasks run again, under the pod
name they had; DAGs are evaluated again around them.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import json
import logging
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

from google.protobuf import json_format
from kfp.dsl import component_factory
from kfp.local import (
    executor_input_utils,
    executor_output_utils,
    importer_handler,
    io,
    placeholder_utils,
)
from kfp.local import utils as local_utils
from kfp.local.cache import LocalCache
from kfp.local.orchestrator import task_spec_utils
from kfp.local.orchestrator.enhanced_dag_orchestrator import ConditionEvaluator
from kfp.local.orchestrator.orchestrator_utils import OrchestratorUtils
from kfp.pipeline_spec import pipeline_spec_pb2

from kfadapter.localkfp import attempts
from kfadapter.localkfp import execution_protocol as protocol
from kfadapter.localkfp.attempts import TaskResult, TaskResults
from kfadapter.localkfp.environments import EnvironmentBuildError, PreparedCommand

logger = logging.getLogger(__name__)

SUCCEEDED, FAILED, SKIPPED = "SUCCEEDED", "FAILED", "SKIPPED"
_NOT_RUN = "NOT_RUN"  # never started: an upstream task failed (not reported)
_TAIL_LINES = 30
_ALL_UPSTREAM_COMPLETED = (
    pipeline_spec_pb2.PipelineTaskSpec.TriggerPolicy.TriggerStrategy.ALL_UPSTREAM_TASKS_COMPLETED
)

TaskSpec = pipeline_spec_pb2.PipelineTaskSpec
ComponentSpec = pipeline_spec_pb2.ComponentSpec
ExecutorSpec = pipeline_spec_pb2.PipelineDeploymentConfig.ExecutorSpec


class Environments(Protocol):
    """What prepares a task's command (environments.TaskEnvironments)."""

    def prepare(
        self, image: str, command: list[str]
    ) -> contextlib.AbstractContextManager[PreparedCommand]:
        """The command to run in the task's environment, and the variables to add."""
        ...


class Emitter(Protocol):
    """Where task events go (worker.StatusWriter)."""

    def emit(self, event: str, **fields: Any) -> None:
        """Send one event."""
        ...


@dataclass
class Outcome:
    """How a task or DAG ended, and its outputs."""

    state: str
    outputs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


class TaskReporter:
    """Names tasks (unique pod names), reports their start and end, records their results,
    keeps the first failure."""

    def __init__(
        self,
        run_directory: Path,
        status: Emitter,
        results: TaskResults | None = None,
        reserved_pod_names: set[str] | None = None,
    ) -> None:
        self._run_directory = run_directory
        self._status = status
        self._results = results
        self._lock = threading.Lock()
        self._pod_names: set[str] = set()
        self._reserved = set(reserved_pod_names or ())  # the previous attempt's pod names
        self._started: dict[str, tuple[str, str, str]] = {}  # task id -> path, start, pod
        self.first_failure: str | None = None

    def log_file(self, pod_name: str) -> Path:
        """The task's log file (its directory created)."""
        path = protocol.task_log_file(self._run_directory, pod_name)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def started(
        self,
        display_name: str,
        task_name: str,
        parent: str,
        kind: str,
        *,
        previous: TaskResult | None = None,
        **extra: Any,
    ) -> tuple[str, str]:
        """Report a task's start (at its previous start and under its previous pod name
        when it had one); returns its (task id, pod name)."""
        base = protocol.pod_name_for(task_name)
        with self._lock:
            if previous is not None and previous.pod_name not in self._pod_names:
                pod_name = previous.pod_name
            else:
                pod_name, number = base, 1
                while pod_name in self._pod_names or pod_name in self._reserved:
                    number += 1
                    pod_name = f"{base}-{number}"
            self._pod_names.add(pod_name)
        task_id = str(uuid.uuid4())
        start = protocol.to_event_time(protocol.utc_now())
        if previous is not None and kind == "dag":  # Argo keeps a DAG node's start
            start = previous.start
        path = f"{parent}.{task_name}" if parent else task_name
        with self._lock:
            self._started[task_id] = (path, start, pod_name)
        self._status.emit(
            protocol.TASK_STARTED,
            task_id=task_id,
            pod_name=pod_name,
            display_name=display_name,
            task_name=task_name,
            parent=parent,
            kind=kind,
            time=start,
            **extra,
        )
        return task_id, pod_name

    def carried(
        self, display_name: str, task_name: str, parent: str, kind: str, previous: TaskResult
    ) -> Outcome:
        """Report a task the previous attempt ended (SUCCEEDED or SKIPPED) as it ended then,
        without executing it; its outputs as they were."""
        outputs = attempts.decode_outputs(previous.outputs) if kind != "dag" else {}
        outcome = Outcome(previous.state, outputs)
        task_id = str(uuid.uuid4())
        path = f"{parent}.{task_name}" if parent else task_name
        with self._lock:
            self._pod_names.add(previous.pod_name)
            self._started[task_id] = (path, previous.start, previous.pod_name)
        self._status.emit(
            protocol.TASK_STARTED,
            task_id=task_id,
            pod_name=previous.pod_name,
            display_name=display_name,
            task_name=task_name,
            parent=parent,
            kind=kind,
            time=previous.start,
        )
        self._finish(task_id, kind, outcome, previous.end, previous.outputs)
        return outcome

    def finished(
        self,
        task_id: str,
        display_name: str,
        kind: str,
        outcome: Outcome,
        previous: TaskResult | None = None,
    ) -> None:
        """Report a task's end; a failed container task's error becomes the run's if first.
        A DAG that succeeded again, as before, keeps its previous end."""
        if outcome.state == FAILED and kind != "dag":
            with self._lock:
                if self.first_failure is None:
                    self.first_failure = f"task {display_name!r} failed: {outcome.error}"
        end = protocol.to_event_time(protocol.utc_now())
        if previous is not None and kind == "dag" and previous.state == outcome.state:
            end = previous.end
        encoded = (
            attempts.encode_outputs(outcome.outputs)
            if kind != "dag" and outcome.state == SUCCEEDED
            else {}
        )
        self._finish(task_id, kind, outcome, end, encoded)

    def _finish(
        self, task_id: str, kind: str, outcome: Outcome, end: str, outputs: dict[str, Any]
    ) -> None:
        """Emit task_finished and record the task's result."""
        self._status.emit(
            protocol.TASK_FINISHED,
            task_id=task_id,
            state=outcome.state,
            error=outcome.error,
            time=end,
        )
        with self._lock:
            path, start, pod_name = self._started.pop(task_id)
        if self._results is not None and outcome.state in (SUCCEEDED, FAILED, SKIPPED):
            self._results.record(TaskResult(path, outcome.state, start, end, pod_name, outputs))


@dataclass(frozen=True)
class Scope:
    """Where a DAG runs: its path of task names, its resource name, its IO store."""

    path: str  # "" for the root, "for-loop-2.iteration-1" inside a loop's second iteration
    resource_name: str  # kfp.local's pipeline resource name (placeholders, artifact dirs)
    store: io.IOStore

    def child_path(self, task_name: str) -> str:
        """The path of a DAG task's own scope."""
        return f"{self.path}.{task_name}" if self.path else task_name


@dataclass(frozen=True)
class TaskCall:
    """One component or importer task ready to execute: its spec and resolved arguments."""

    name: str  # the task's key in its DAG
    task: TaskSpec
    component: ComponentSpec
    executor: ExecutorSpec
    arguments: dict[str, Any]
    scope: Scope


class PipelineRunner:
    """Executes one pipeline spec: its DAGs, loops, conditions and component tasks."""

    def __init__(
        self,
        pipeline_spec: pipeline_spec_pb2.PipelineSpec,
        pipeline_root: Path,
        reporter: TaskReporter,
        environments: Environments,
        max_parallel_tasks: int,
        previous: Mapping[str, TaskResult] | None = None,
        cache: LocalCache | None = None,
    ) -> None:
        if max_parallel_tasks < 1:
            raise ValueError(f"max_parallel_tasks must be at least 1, got {max_parallel_tasks}")
        self._spec = pipeline_spec
        self._components: dict[str, ComponentSpec] = dict(pipeline_spec.components.items())
        self._executors = {
            name: local_utils.struct_to_executor_spec(executor)
            for name, executor in pipeline_spec.deployment_spec["executors"].items()
        }
        self._pipeline_root = str(pipeline_root)
        self._reporter = reporter
        self._environments = environments
        self._slots = threading.BoundedSemaphore(max_parallel_tasks)
        self._pipeline_id = placeholder_utils.make_random_id()
        self._previous: Mapping[str, TaskResult] = previous or {}
        self._cache = cache

    def run(self, arguments: dict[str, Any]) -> Outcome:
        """Execute the root DAG with the run's arguments."""
        resource_name = executor_input_utils.get_local_pipeline_resource_name(
            self._spec.pipeline_info.name
        )
        return self._run_dag(self._spec.root, arguments, "", resource_name, None)

    # -- DAGs ------------------------------------------------------------------------------

    def _run_dag(
        self,
        component: ComponentSpec,
        arguments: dict[str, Any],
        path: str,
        resource_name: str,
        parent_store: io.IOStore | None,
    ) -> Outcome:
        """Run a DAG's tasks as their upstream tasks end; then collect the DAG's outputs."""
        store = io.IOStore(parent=parent_store)
        inputs = OrchestratorUtils.join_user_inputs_and_defaults(
            dag_arguments=arguments, dag_inputs_spec=component.input_definitions
        )
        for name, value in inputs.items():
            store.put_parent_input(name, value)
        tasks: dict[str, TaskSpec] = dict(component.dag.tasks.items())
        errors = self._run_tasks(tasks, Scope(path, resource_name, store))
        if errors:
            return Outcome(FAILED, error=errors[0])
        try:
            outputs = OrchestratorUtils.get_dag_outputs(
                dag_outputs_spec=component.dag.outputs, io_store=store
            )
        except (ValueError, KeyError) as exc:
            return _failure(exc)
        return Outcome(SUCCEEDED, outputs)

    def _run_tasks(self, tasks: dict[str, TaskSpec], scope: Scope) -> list[str]:
        """Start each task of a DAG once its upstream tasks have ended; wait for all of them.

        Returns the errors of the failed tasks, first failure first. Task statuses and
        outputs go to the scope's store, for the tasks downstream and the DAG's outputs.
        """
        store = scope.store
        states: dict[str, str] = {}
        errors: list[str] = []
        with concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, len(tasks)),
            thread_name_prefix=f"dag{'-' + scope.path if scope.path else ''}",
        ) as pool:
            running: dict[concurrent.futures.Future[Outcome], str] = {}
            while len(states) < len(tasks):
                settled = len(states)
                for name, task in tasks.items():
                    if name in states or name in running.values():
                        continue
                    upstream = [states.get(dep) for dep in task.dependent_tasks if dep in tasks]
                    if any(state is None for state in upstream):
                        continue
                    on_completion = task.trigger_policy.strategy == _ALL_UPSTREAM_COMPLETED
                    upstream_failed = any(state in (FAILED, _NOT_RUN) for state in upstream)
                    if (errors or upstream_failed) and not on_completion:
                        states[name] = _NOT_RUN
                        store.put_task_status(name, FAILED)
                        continue
                    running[pool.submit(self._run_task, name, task, scope)] = name
                if not running:
                    if len(states) > settled:
                        continue  # tasks just marked NOT_RUN may unblock others
                    # nothing runs and nothing can start: the tasks left wait on each other
                    stuck = sorted(set(tasks) - set(states))
                    errors.append(f"the tasks {', '.join(stuck)} depend on each other in a cycle")
                    for name in stuck:
                        states[name] = _NOT_RUN
                        store.put_task_status(name, FAILED)
                    break
                done, _ = concurrent.futures.wait(
                    running, return_when=concurrent.futures.FIRST_COMPLETED
                )
                for future in done:
                    name = running.pop(future)
                    outcome = _outcome_of(future)
                    states[name] = outcome.state
                    if outcome.state == FAILED:
                        errors.append(f"task {name!r} failed: {outcome.error}")
                    if outcome.state != SKIPPED:
                        store.put_task_status(name, outcome.state)
                    if outcome.state == SUCCEEDED:
                        for key, value in outcome.outputs.items():
                            store.put_task_output(name, key, value)
        return errors

    def _run_task(self, name: str, task: TaskSpec, scope: Scope) -> Outcome:
        """One task of a DAG: a loop, a sub-DAG (condition, nested pipeline) or a component."""
        component = self._components[task.component_ref.name]
        display_name = task.task_info.name or name
        previous = self._previous.get(scope.child_path(name))
        if task.WhichOneof("iterator"):
            return self._reported_dag(
                display_name, name, scope, lambda path: self._run_loop(name, task, scope, path)
            )
        if component.WhichOneof("implementation") == "dag":
            condition = task.trigger_policy.condition
            if previous is not None and previous.state == SKIPPED:  # carried forward
                return self._reporter.carried(display_name, name, scope.path, "dag", previous)
            if condition and not ConditionEvaluator.evaluate_condition(condition, scope.store):
                task_id, _ = self._reporter.started(display_name, name, scope.path, "dag")
                self._reporter.finished(task_id, display_name, "dag", Outcome(SKIPPED))
                return Outcome(SKIPPED)
            return self._reported_dag(
                display_name,
                name,
                scope,
                lambda path: self._run_sub_dag(name, task, component, scope, path),
            )
        return self._run_component_task(name, display_name, task, component, scope)

    def _reported_dag(
        self,
        display_name: str,
        name: str,
        scope: Scope,
        body: Callable[[str], Outcome],
        **extra: Any,
    ) -> Outcome:
        """Run a DAG task between its task_started and task_finished events (a retried
        DAG keeps its previous start, and its end if it ends as before)."""
        previous = self._previous.get(scope.child_path(name))
        task_id, _ = self._reporter.started(
            display_name, name, scope.path, "dag", previous=previous, **extra
        )
        try:
            outcome = body(scope.child_path(name))
        except Exception as exc:  # kfp.local's helpers raise on inputs they cannot resolve
            logger.exception("DAG task %s failed", name)
            outcome = _failure(exc)
        self._reporter.finished(task_id, display_name, "dag", outcome, previous)
        return outcome

    def _run_sub_dag(
        self,
        name: str,
        task: TaskSpec,
        component: ComponentSpec,
        scope: Scope,
        path: str,
        resource_name: str | None = None,
    ) -> Outcome:
        """A nested pipeline, condition branch or loop iteration: its DAG in a new scope."""
        arguments = task_spec_utils.build_nested_dag_arguments(
            task_name=name, task_spec=task, component_spec=component, io_store=scope.store
        )
        return self._run_dag(
            component, arguments, path, resource_name or scope.resource_name, scope.store
        )

    def _run_loop(self, name: str, task: TaskSpec, scope: Scope, path: str) -> Outcome:
        """A ParallelFor: its iterations at once (at most `parallelism`), outputs collected."""
        if task.WhichOneof("iterator") == "artifact_iterator":
            # KFP's backend does not run these either (backend/src/v2/compiler/argocompiler/
            # dag.go: "artifact iterator not implemented yet"); kfp.local would.
            return Outcome(
                FAILED,
                error="a ParallelFor over artifacts does not run on KFP's backend "
                "(artifact iterator not implemented yet), so it does not run here either",
            )
        component = self._components[task.component_ref.name]
        iterations = self._iterations(name, task, scope)
        limit = task.iterator_policy.parallelism_limit if task.HasField("iterator_policy") else 0
        gate = threading.BoundedSemaphore(limit) if limit > 0 else contextlib.nullcontext()
        loop_scope = Scope(path, scope.resource_name, scope.store)

        def iteration(index: int, spec: TaskSpec) -> Outcome:
            with gate:
                iteration_name = f"{name}-iteration-{index}"  # kfp.local's naming, its helpers
                resource_name = task_spec_utils.get_nested_pipeline_resource_name(
                    iteration_name, scope.resource_name
                )
                return self._reported_dag(
                    f"{task.task_info.name or name}-iteration-{index}",
                    f"iteration-{index}",
                    loop_scope,
                    lambda iteration_path: self._run_sub_dag(
                        iteration_name, spec, component, scope, iteration_path, resource_name
                    ),
                    iteration=index,
                )

        if not iterations:
            return Outcome(SUCCEEDED)
        with concurrent.futures.ThreadPoolExecutor(
            max_workers=len(iterations), thread_name_prefix=f"loop-{name}"
        ) as pool:
            futures = [pool.submit(iteration, i, spec) for i, spec in enumerate(iterations)]
            outcomes = [_outcome_of(future) for future in futures]
        failures = [outcome for outcome in outcomes if outcome.state != SUCCEEDED]
        if failures:
            return Outcome(FAILED, error=failures[0].error)
        collected: dict[str, list[Any]] = collections.defaultdict(list)
        for outcome in outcomes:
            for key, value in outcome.outputs.items():
                collected[key].append(value)
        return Outcome(SUCCEEDED, dict(collected))

    def _iterations(self, name: str, task: TaskSpec, scope: Scope) -> list[TaskSpec]:
        """The task spec of each iteration of a parameter loop, its item bound."""
        items_spec = task.parameter_iterator.items
        if items_spec.HasField("raw"):
            items = json.loads(items_spec.raw)
        else:
            arguments = OrchestratorUtils.make_task_arguments(task.inputs, scope.store)
            items = arguments[items_spec.input_parameter]
        if isinstance(items, str):
            items = json.loads(items)
        return [
            task_spec_utils.create_parameter_loop_iteration_task_spec(task, item, name)
            for item in items
        ]

    # -- component tasks -------------------------------------------------------------------

    def _run_component_task(
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
            self._reporter.finished(task_id, display_name, kind, outcome)
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
            self._reporter.finished(task_id, display_name, kind, outcome)
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


def _failure(exc: Exception) -> Outcome:
    """A failed outcome whose error names the exception."""
    return Outcome(FAILED, error=f"{type(exc).__name__}: {exc}")


def _outcome_of(future: concurrent.futures.Future[Outcome]) -> Outcome:
    """A task thread's outcome; an unexpected exception fails the task."""
    try:
        return future.result()
    except Exception as exc:
        logger.exception("a task thread failed")
        return _failure(exc)
