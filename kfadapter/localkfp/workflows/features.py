"""What of an Argo Workflow runs locally: checked before any task starts.

`check_supported` walks the whole workflow and raises `UnsupportedWorkflow`, naming every
feature that cannot run here (resource, suspend, http, plugin, containerSet and data
templates, sidecars, init containers, daemons, volumes and volume mounts, secrets and
config maps in the environment, artifact repositories, template references, expression
tags...). Fields that only tell Kubernetes how to schedule a pod (resources, node
selectors, tolerations, security contexts, metadata, service accounts) are accepted and
have no effect, as the v2 runner treats `set_cpu_limit` and the like.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from kfadapter.localkfp.workflows.expressions import tags


class UnsupportedWorkflow(ValueError):
    """The workflow uses something the local runner does not run; the message names it."""


_SPEC_IGNORED = {
    "entrypoint",
    "templates",
    "arguments",
    "onExit",
    "parallelism",
    "serviceAccountName",
    "automountServiceAccountToken",
    "podGC",
    "ttlStrategy",
    "ttlSecondsAfterFinished",
    "activeDeadlineSeconds",
    "imagePullSecrets",
    "nodeSelector",
    "tolerations",
    "affinity",
    "securityContext",
    "podPriorityClassName",
    "priority",
    "podMetadata",
    "archiveLogs",
    "workflowMetadata",
    "podDisruptionBudget",
    "schedulerName",
    "dnsPolicy",
    "dnsConfig",
    "hostAliases",
    "hostNetwork",
    "metrics",
    "shutdown",
}
_TEMPLATE_KINDS = ("container", "script", "dag", "steps")
_UNSUPPORTED_KINDS = ("resource", "suspend", "http", "plugin", "containerSet", "data")
_TEMPLATE_IGNORED = {
    "name",
    "inputs",
    "outputs",
    "metadata",
    "retryStrategy",
    "parallelism",
    "nodeSelector",
    "tolerations",
    "affinity",
    "securityContext",
    "serviceAccountName",
    "automountServiceAccountToken",
    "activeDeadlineSeconds",
    "timeout",
    "priorityClassName",
    "priority",
    "schedulerName",
    "podSpecPatch",
    "archiveLocation",
    "failFast",
    "memoize",
    "metrics",
    "executor",
    "hostAliases",
    *_TEMPLATE_KINDS,
}
_TEMPLATE_FEATURES = {
    "sidecars": "sidecars",
    "initContainers": "init containers",
    "daemon": "daemon templates",
    "volumes": "volumes",
    "synchronization": "synchronization (mutexes, semaphores)",
}
_CONTAINER_IGNORED = {
    "name",
    "image",
    "command",
    "args",
    "source",
    "env",
    "resources",
    "imagePullPolicy",
    "securityContext",
    "ports",
    "workingDir",
    "terminationMessagePath",
    "terminationMessagePolicy",
    "stdin",
    "stdinOnce",
    "tty",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
}
_CONTAINER_FEATURES = {
    "volumeMounts": "volume mounts",
    "volumeDevices": "volume devices",
    "envFrom": "environment from config maps or secrets (envFrom)",
    "lifecycle": "container lifecycle hooks",
}
_TASK_IGNORED = {
    "name",
    "template",
    "arguments",
    "dependencies",
    "depends",
    "when",
    "withItems",
    "withParam",
    "withSequence",
}
_TASK_FEATURES = {
    "templateRef": "template references (WorkflowTemplates)",
    "inline": "inline templates",
    "hooks": "lifecycle hooks",
    "onExit": "task-level onExit",
    "continueOn": "continueOn",
}
_ARTIFACT_SOURCES = (
    "s3",
    "gcs",
    "git",
    "http",
    "hdfs",
    "oss",
    "azure",
    "artifactory",
    "raw",
)


def check_supported(workflow: Mapping[str, Any]) -> None:
    """Raise UnsupportedWorkflow naming what this workflow uses that does not run locally."""
    problems = list(dict.fromkeys(_problems(workflow)))
    if problems:
        raise UnsupportedWorkflow(
            "this workflow uses "
            + "; ".join(problems)
            + ", which the local KFP server does not run (it runs container, script, dag and"
            " steps templates as processes on this machine); no task was started"
        )


def _problems(workflow: Mapping[str, Any]) -> Iterator[str]:
    spec = workflow.get("spec") or {}
    if not isinstance(spec, Mapping):
        yield "a spec that is not a mapping"
        return
    for key in spec:
        if key == "volumes" or key == "volumeClaimTemplates":
            yield f"volumes (spec.{key})"
        elif key == "suspend":
            yield "a suspended workflow (spec.suspend)"
        elif key not in _SPEC_IGNORED:
            yield f"spec.{key}"
    templates = spec.get("templates") or []
    names = {template.get("name") for template in templates if isinstance(template, Mapping)}
    for template in templates:
        if not isinstance(template, Mapping):
            yield "a template that is not a mapping"
            continue
        yield from _template_problems(template, names)
    for text in _strings(workflow):
        for key in tags(text):
            if key.startswith("="):
                yield f"expression tags ({{{{{key[:30]}}}}})"


def _template_problems(template: Mapping[str, Any], names: set[Any]) -> Iterator[str]:
    name = template.get("name")
    where = f"template {name!r}"
    for kind in _UNSUPPORTED_KINDS:
        if kind in template:
            yield f"{kind} templates ({where})"
    if not any(kind in template for kind in (*_TEMPLATE_KINDS, *_UNSUPPORTED_KINDS)):
        yield f"a template of no kind this runner knows ({where})"
    for key in template:
        if key in _TEMPLATE_FEATURES:
            if key != "daemon" or template[key]:
                yield f"{_TEMPLATE_FEATURES[key]} ({where})"
        elif key not in _TEMPLATE_IGNORED and key not in _UNSUPPORTED_KINDS:
            yield f"{key} ({where})"
    for kind in ("container", "script"):
        container = template.get(kind)
        if isinstance(container, Mapping):
            yield from _container_problems(container, where)
    strategy = template.get("retryStrategy") or {}
    for key in strategy:
        if key not in ("limit", "retryPolicy", "backoff"):
            yield f"retryStrategy.{key} ({where})"
    inputs = template.get("inputs") or {}
    for artifact in inputs.get("artifacts") or []:
        sources = [source for source in _ARTIFACT_SOURCES if source in artifact]
        for source in sources:
            if source != "raw":
                yield f"{source} input artifacts ({where}, artifact {artifact.get('name')!r})"
    outputs = template.get("outputs") or {}
    for parameter in outputs.get("parameters") or []:
        for key in parameter.get("valueFrom") or {}:
            if key not in ("path", "default", "parameter"):
                yield f"outputs from valueFrom.{key} ({where})"
    if "globalName" in str(outputs):
        yield f"global outputs ({where})"
    dag = template.get("dag") or {}
    for key in dag:
        if key not in ("tasks", "target", "failFast"):
            yield f"dag.{key} ({where})"
    if "target" in dag:
        yield f"dag.target ({where})"
    for task in dag.get("tasks") or []:
        yield from _task_problems(task, names, f"{where}, task {task.get('name')!r}")
    for group in template.get("steps") or []:
        for step in group or []:
            yield from _task_problems(step, names, f"{where}, step {step.get('name')!r}")


def _container_problems(container: Mapping[str, Any], where: str) -> Iterator[str]:
    for key in container:
        if key in _CONTAINER_FEATURES:
            yield f"{_CONTAINER_FEATURES[key]} ({where})"
        elif key not in _CONTAINER_IGNORED:
            yield f"container.{key} ({where})"
    for variable in container.get("env") or []:
        if "valueFrom" in variable:
            yield f"environment variables from secrets or fields (valueFrom) ({where})"


def _task_problems(task: Mapping[str, Any], names: set[Any], where: str) -> Iterator[str]:
    for key in task:
        if key in _TASK_FEATURES:
            yield f"{_TASK_FEATURES[key]} ({where})"
        elif key not in _TASK_IGNORED:
            yield f"{key} ({where})"
    if "template" in task and task["template"] not in names:
        yield f"a template that does not exist: {task['template']!r} ({where})"
    sequence = task.get("withSequence") or {}
    if "format" in sequence:
        yield f"withSequence.format ({where})"
    for artifact in (task.get("arguments") or {}).get("artifacts") or []:
        for source in _ARTIFACT_SOURCES:
            if source in artifact and source != "raw":
                yield f"{source} artifacts ({where})"


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
