"""The scheduler of a run's DAGs: `PipelineRunner` starts every task of a DAG whose upstream
tasks are done (`_run_tasks`), runs sub-DAGs, conditions and ParallelFor loops (their
iterations at once, at most `parallelism`), exit tasks once their group completed, and hands
component tasks to `component_tasks`."""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import json
import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kfp.local import executor_input_utils, io, placeholder_utils
from kfp.local import utils as local_utils
from kfp.local.cache import LocalCache
from kfp.local.orchestrator import task_spec_utils
from kfp.local.orchestrator.enhanced_dag_orchestrator import ConditionEvaluator
from kfp.local.orchestrator.orchestrator_utils import OrchestratorUtils
from kfp.pipeline_spec import pipeline_spec_pb2

from kfadapter.localkfp.attempts import TaskResult
from kfadapter.localkfp.orchestration.component_tasks import ComponentTaskRunner, Environments
from kfadapter.localkfp.orchestration.outcomes import (
    _ALL_UPSTREAM_COMPLETED,
    FAILED,
    SKIPPED,
    SUCCEEDED,
    ComponentSpec,
    Outcome,
    Scope,
    TaskReporter,
    TaskSpec,
    _failure,
)

logger = logging.getLogger(__name__)

_NOT_RUN = "NOT_RUN"  # never started: an upstream task failed (not reported)


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
        self._reporter = reporter
        self._previous: Mapping[str, TaskResult] = previous or {}
        self._component_tasks = ComponentTaskRunner(
            executors={
                name: local_utils.struct_to_executor_spec(executor)
                for name, executor in pipeline_spec.deployment_spec["executors"].items()
            },
            pipeline_root=str(pipeline_root),
            pipeline_id=placeholder_utils.make_random_id(),
            reporter=reporter,
            environments=environments,
            slots=threading.BoundedSemaphore(max_parallel_tasks),
            previous=self._previous,
            cache=cache,
        )

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
        return self._component_tasks.run(name, display_name, task, component, scope)

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


def _outcome_of(future: concurrent.futures.Future[Outcome]) -> Outcome:
    """A task thread's outcome; an unexpected exception fails the task."""
    try:
        return future.result()
    except Exception as exc:
        logger.exception("a task thread failed")
        return _failure(exc)
