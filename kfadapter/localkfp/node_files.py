"""What KFP serves of a run's Argo nodes: an executor pod's log, a node's artifacts.

- `/apis/v1alpha1/runs/{run}/nodes/{node}/log` (`server/run_log_server.go`,
  `resource/resource_manager.go` `ReadLog`): `node` is a pod name; KFP streams that
  pod's log (or its archived copy). Any failure, an unknown run included, is HTTP 500
  with `{"error_message", "error_details"}` ("Failed to read logs for run ...").
- `/apis/v2beta1/runs/{run}/nodes/{node}/artifacts/{name}:read` (`server/run_server.go`
  `ReadArtifact`, `resource_manager.go` `ReadArtifact`, `common/util/workflow.go`
  `FindObjectStoreArtifactKeyOrEmpty`): `node` is an Argo node id; KFP returns the
  object-store file of that node's Argo output artifact as `{"data": <base64>}`, 404 when
  the node has no such artifact. The pods of a v2 run declare no Argo outputs; the one
  Argo adds is `main-logs` (the archived log, with KFP's default `archiveLogs: true`),
  once the pod has finished.

The embedded server keeps a task's log as logs/<executor pod name>.log (see
run_progress.py; a V1 run's pods as logs/<workflow>-<template>-<n>.log, see workflows/); the
ids are checked against the run's task details, so only what KFP would serve is served.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from kfadapter.localkfp import argo_nodes
from kfadapter.localkfp.apierrors import ApiError, UploadError
from kfadapter.localkfp.execution import Executor

LOG_ARTIFACT = "main-logs"
"""The Argo output artifact of a pod's archived log."""

_FINAL = {"SUCCEEDED", "FAILED", "SKIPPED"}


def log_file(
    executor: Executor | None, run_id: str, node_id: str, details: list[dict[str, Any]] | None
) -> Path:
    """The log of the executor pod `node_id` of the run; 500 as KFP answers otherwise.

    `details`: the run's task details, None when there is no such run.
    """
    if details is None:
        raise _log_error(run_id, f"run {run_id} not found")
    path = None
    known = node_id in argo_nodes.executor_pod_names(details) or _is_workflow_pod(node_id, details)
    if executor is not None and known:
        path = executor.log_path(run_id, node_id)
    if path is None or not Path(path).is_file():
        raise _log_error(run_id, f'pods "{node_id}" not found')
    return Path(path)


def read_artifact(
    executor: Executor | None,
    run_id: str,
    node_id: str,
    artifact_name: str,
    details: list[dict[str, Any]],
) -> dict[str, Any]:
    """ReadArtifact's answer: the node's `main-logs` once its pod finished; else 404."""
    finished = {
        child["pod_name"]
        for detail in details
        if detail.get("display_name") != "executor" and detail.get("state") in _FINAL
        for child in detail.get("child_tasks") or []
        if child.get("pod_name")
    }
    path = None
    if executor is not None and artifact_name == LOG_ARTIFACT and node_id in finished:
        path = executor.log_path(run_id, argo_nodes.executor_pod_name(node_id))
        if path is None:  # a V1 run's pod keeps its log under its node id too (workflows/)
            path = executor.log_path(run_id, node_id)
    if path is None or not Path(path).is_file():
        request = f'run_id:"{run_id}" node_id:"{node_id}" artifact_name:"{artifact_name}"'
        raise ApiError(
            404,
            f"failed to read artifact '{request}'.: ResourceNotFoundError: artifact "
            f"runs/{run_id}/nodes/{node_id}/artifacts/{artifact_name} not found",
        )
    return {"data": base64.b64encode(Path(path).read_bytes()).decode("ascii")}


def _is_workflow_pod(name: str, details: list[dict[str, Any]]) -> bool:
    """Whether `name` is a pod of a V1 run's nodes: `<workflow>-<template>-<n>` where
    `<workflow>-<n>` is the id of one of its nodes (a child in the task details, or the exit
    handler `<workflow>.onExit`, which hangs from no node), as `RetrievePodName` names it."""
    prefix, _, digits = name.rpartition("-")
    if not digits.isdigit():
        return False
    children = {
        child.get("pod_name") for detail in details for child in detail.get("child_tasks") or []
    }
    names = {detail.get("display_name") for detail in details}
    for workflow in filter(None, names):
        if not prefix.startswith(f"{workflow}-"):
            continue
        exit_node = f"{workflow}.onExit"
        if f"{workflow}-{digits}" in children or (
            exit_node in names and digits == str(argo_nodes.fnv32a(exit_node))
        ):
            return True
    return False


def _log_error(run_id: str, reason: str) -> UploadError:
    """KFP's log route error: HTTP 500, `{"error_message", "error_details"}`."""
    return UploadError(500, f"Failed to read logs for run {run_id}: {reason}")
