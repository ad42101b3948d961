"""Dag and steps templates: their tasks and steps scheduled, expanded over items, `when`."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kfadapter.localkfp.workflows.calls import (
    artifact_from,
    call_arguments,
    item_description,
    item_values,
    parallelism_gate,
    task_dependencies,
    task_items,
)
from kfadapter.localkfp.workflows.expressions import (
    ExpressionError,
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
    SKIPPED,
    SKIPPED_NODE,
    STEP_GROUP,
    STEPS,
    SUCCEEDED,
    TASK_GROUP,
    NodeTree,
)
from kfadapter.localkfp.workflows.results import (
    Arguments,
    Result,
    WorkflowError,
    aggregate_parameters,
    failures,
    publish,
    result_of,
)


class Scheduling:
    """The runner's DAG and steps nodes (a part of `WorkflowRunner`)."""

    tree: NodeTree
    _global: dict[str, str]

    if TYPE_CHECKING:

        def _template(self, name: str) -> Mapping[str, Any]: ...

        def _execute(
            self,
            template: Mapping[str, Any],
            node_name: str,
            boundary: str | None,
            arguments: Arguments,
            scope: Mapping[str, str],
        ) -> Result: ...

        def _error_node(
            self, node_name: str, template: Mapping[str, Any], boundary: str | None, message: str
        ) -> Result: ...

    # -- DAGs ------------------------------------------------------------------------------

    def _dag(
        self,
        template: Mapping[str, Any],
        node_name: str,
        boundary: str | None,
        scope: Mapping[str, str],
    ) -> Result:
        """A DAG node: each task once its dependencies have ended (see `engine`)."""
        name = str(template.get("name"))
        self.tree.start(node_name, DAG, name, boundary)
        tasks = {task["name"]: task for task in template["dag"].get("tasks") or []}
        dependencies = {key: task_dependencies(task) for key, task in tasks.items()}
        gate = parallelism_gate(template)
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
                    try:
                        go = _depends_hold(task, upstream, tasks, phases)
                    except (WorkflowError, ExpressionError) as exc:
                        results[key] = self._error_node(
                            f"{node_name}.{key}", task, node_name, str(exc)
                        )
                        phases[key] = ERROR
                        continue
                    if not go:
                        child = f"{node_name}.{key}"
                        omitted = self._skipped(
                            child,
                            str(task.get("template")),
                            node_name,
                            OMITTED,
                            "omitted: depends condition not met",
                        )
                        self._connect(node_name, child, upstream, results)
                        results[key] = omitted
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
                    result = result_of(future, f"{node_name}.{key}")
                    results[key] = result
                    phases[key] = result.phase
                    publish(values, artifacts, f"tasks.{key}", result)
        leaves = [key for key in tasks if not any(key in dependencies[o] for o in tasks)]
        outbound = [node for key in leaves if key in results for node in results[key].outbound]
        failed = failures(results[k] for k in tasks if k in results)
        phase = FAILED if failed else SUCCEEDED
        message = failed[0].message if failed else ""
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
            items = task_items(task, values)
        except (WorkflowError, ValueError) as exc:
            connect(node_name)
            return self._error_node(node_name, task, boundary, f"{exc}")
        if items is None:
            connect(node_name)
            return self._one_call(task, node_name, boundary, values, artifacts, gate)
        if not items:
            connect(node_name)
            return self._skipped(
                node_name, str(task.get("template")), boundary, SKIPPED, "Skipped, empty params"
            )
        if group:  # a DAG task's items hang from its TaskGroup; a step's from its group
            self.tree.start(node_name, TASK_GROUP, str(task.get("template")), boundary)
            connect(node_name)
        calls = []
        for index, item in enumerate(items):
            name = f"{node_name}({index}:{item_description(item)})"
            item_scope = {**values, **item_values(item)}
            calls.append((name, item_scope))
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(calls)) as pool:
            futures = []
            for name, item_scope in calls:
                if group:
                    self.tree.add_child(node_name, name)
                elif parent is not None:
                    self.tree.add_child(parent, name)
                futures.append(
                    pool.submit(self._one_call, task, name, boundary, item_scope, artifacts, gate)
                )
            results = [
                result_of(future, name) for future, (name, _) in zip(futures, calls, strict=True)
            ]
        failed = failures(results)
        phase = FAILED if failed else SUCCEEDED
        outbound = [node for result in results for node in result.outbound]
        aggregated = Result(
            phase, outbound or [node_name], message=failed[0].message if failed else ""
        )
        aggregated.parameters = aggregate_parameters(results)
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
                return self._skipped(
                    node_name, template_name, boundary, SKIPPED, f"when '{when}' evaluated false"
                )
        try:
            arguments = call_arguments(resolved, artifacts)
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
                try:
                    result.artifacts[artifact["name"]] = artifact_from(artifact["from"], artifacts)
                except WorkflowError as exc:
                    result.phase, result.message = ERROR, str(exc)
                    return result
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
        gate = parallelism_gate(template)
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
                    result_of(future, f"{group_node}.{step['name']}")
                    for future, step in zip(futures, steps, strict=True)
                ]
            failed = failures(results)
            self.tree.finish(group_node, FAILED if failed else SUCCEEDED)
            for step, result in zip(steps, results, strict=True):
                publish(values, artifacts, f"steps.{step['name']}", result)
            previous = [node for result in results for node in result.outbound] or [group_node]
            if failed:
                self.tree.finish(node_name, FAILED, failed[0].message)
                return Result(FAILED, previous, message=failed[0].message)
        result = self._template_outputs(template, values, artifacts, Result(SUCCEEDED, previous))
        self.tree.finish(node_name, result.phase, result.message)
        return result

    def _skipped(
        self, node_name: str, template: str, boundary: str, phase: str, message: str
    ) -> Result:
        """A node that does not run: a Skipped-type node in phase Skipped or Omitted."""
        self.tree.start(node_name, SKIPPED_NODE, template, boundary, phase, message)
        return Result(phase, [node_name])


def _depends_hold(
    task: Mapping[str, Any],
    upstream: list[str],
    tasks: Mapping[str, Any],
    phases: Mapping[str, str],
) -> bool:
    """Whether a DAG task whose dependencies have ended starts: its `depends` (or
    `dependencies`) condition over their phases."""
    missing = [dep for dep in upstream if dep not in tasks]
    if missing:
        raise WorkflowError(f"unknown dependencies {missing}")
    if not upstream:
        return True
    expression = task.get("depends") or " && ".join(upstream)
    return evaluate_depends(expression, {d: phases[d] for d in upstream})
