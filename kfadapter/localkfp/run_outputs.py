"""What a run's tasks wrote, read back from the run's directory for the local extension routes.

KFP's UI reads a task's inputs, outputs, metrics and artifacts from ML Metadata and the
object store; KFP's REST API has no route for them (`kfp_api_v2beta1.swagger.json`: only
`:read` of an Argo output artifact, see node_files.py). The embedded server's worker records
each ended task in RUN_DIR/task_results.jsonl (attempts.py): its state, error, arguments and
outputs as KFP's executor wrote them to executor_output.json, `Output[Metrics]` scalars and
`ClassificationMetrics` included, in each artifact's `metadata`. This module turns those
records into the JSON of `/apis/local/v1/runs/{id}/tasks` and `.../artifacts`, and finds an
artifact's file for a download: only a file or directory the run itself wrote, under its own
directory (anything the URL names is looked up in the records, never joined to a path).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from kfadapter.argo_workflows import is_workflow
from kfadapter.localkfp import argo_names, attempts
from kfadapter.localkfp import execution_protocol as protocol
from kfadapter.localkfp.apierrors import ApiError
from kfadapter.localkfp.argo_spec import ITERATION, component_name, dag_tasks
from kfadapter.localkfp.workflows import nodes as workflow_nodes

EXTENSION = "/apis/local/v1"
"""The prefix of the embedded server's own routes (no KFP route has it)."""

MAX_ZIP_BYTES = 256 * 1024 * 1024
"""The largest artifact directory zipped for a download."""


def run_directory(data_dir: Path, run_id: str) -> Path:
    """The run's directory; 404 for an id that cannot be one path component."""
    if not protocol.is_safe_name(run_id):
        raise ApiError(404, f"Run {run_id} not found")
    return protocol.run_dir(data_dir, run_id)


def run_tasks(directory: Path, run_id: str) -> list[dict[str, Any]]:
    """The ended tasks of the run's current attempt, in the order they ended."""
    spec = _spec(directory)
    results = attempts.load(directory / attempts.TASK_RESULTS).values()
    if is_workflow(spec):
        workflow = workflow_nodes.workflow_name(spec, run_id)
        return [_workflow_node(result, workflow, run_id, directory) for result in results]
    workflow = argo_names.workflow_name(spec, run_id)
    return [_task(result, spec, workflow, run_id, directory) for result in results]


def run_artifacts(directory: Path, run_id: str) -> list[dict[str, Any]]:
    """Every output artifact of the run's ended tasks, each with its task."""
    return [
        {**artifact, "task": task["name"], "task_path": _joined(task)}
        for task in run_tasks(directory, run_id)
        for artifact in task["outputs"]["artifacts"]
    ]


def artifact_file(directory: Path, task_path: str, name: str, index: int) -> Path:
    """The file or directory of output artifact `name` (item `index`) of the task at
    `task_path`; 404 when the run has no such artifact or it wrote no file."""
    result = attempts.load(directory / attempts.TASK_RESULTS).get(task_path)
    artifact = ((result.outputs.get("artifacts") or {}) if result else {}).get(name)
    items = (artifact.get("items") or []) if isinstance(artifact, dict) else []
    if not 0 <= index < len(items):
        raise ApiError(404, f"task {task_path!r} of this run has no output artifact {name!r}")
    path = _local_file(directory, items[index].get("uri"))
    if path is None:
        raise ApiError(404, f"output artifact {name!r} of task {task_path!r} has no file")
    return path


def zipped(directory: Path) -> io.BytesIO:
    """A directory artifact as a zip of its regular files (symlinks left out)."""
    buffer = io.BytesIO()
    total = 0
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_symlink() or not path.is_file():
                continue
            total += path.stat().st_size
            if total > MAX_ZIP_BYTES:
                raise ApiError(413, f"artifact directory is larger than {MAX_ZIP_BYTES} bytes")
            archive.write(path, path.relative_to(directory).as_posix())
    buffer.seek(0)
    return buffer


def _spec(directory: Path) -> dict[str, Any]:
    """The pipeline spec the run executes (written by the executor), {} when absent."""
    try:
        spec = json.loads((directory / "spec.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return spec if isinstance(spec, dict) else {}


def _task(
    result: attempts.TaskResult,
    spec: Mapping[str, Any],
    workflow: str,
    run_id: str,
    directory: Path,
) -> dict[str, Any]:
    *parent, name = result.path.split(".")
    kind = _kind(spec, tuple(parent), name)
    node = argo_names.task_node_name(spec, workflow, (*parent, name))
    pod_name = None
    if kind == "container":
        executor_node = argo_names.node_id(workflow, f"{node}.executor")
        pod_name = argo_names.executor_pod_name(executor_node)
    download = f"{EXTENSION[1:]}/runs/{run_id}/artifacts/{quote(result.path, safe='')}"
    return {
        "name": name,
        "path": parent,
        "kind": kind,
        "state": result.state,
        "start_time": _rfc3339(result.start),
        "end_time": _rfc3339(result.end),
        "task_id": argo_names.task_detail_id(run_id, node),
        "node_id": argo_names.node_id(workflow, node),
        "pod_name": pod_name,
        "error": result.error,
        "inputs": _io(result.inputs, directory, None),
        "outputs": _io(result.outputs, directory, download),
    }


def _workflow_node(
    result: attempts.TaskResult, workflow: str, run_id: str, directory: Path
) -> dict[str, Any]:
    """An ended Argo node of a V1 run (workflows/nodes.py records each by its node name):
    `path` and `name` are its node name split at dots (`<workflow>.<task>`: path
    [`<workflow>`], name `<task>`), its state as KFP's task details give it (None for
    Omitted), `kind` container for a pod, else dag."""
    node = result.path
    *parent, name = node.split(".")
    download = f"{EXTENSION[1:]}/runs/{run_id}/artifacts/{quote(node, safe='')}"
    return {
        "name": name,
        "path": parent,
        "kind": "container" if result.pod_name else "dag",
        "state": workflow_nodes.kfp_state(result.state),
        "start_time": _rfc3339(result.start),
        "end_time": _rfc3339(result.end),
        "task_id": argo_names.task_detail_id(run_id, node),
        "node_id": argo_names.node_id(workflow, node),
        "pod_name": result.pod_name or None,
        "error": result.error,
        "inputs": _io(result.inputs, directory, None),
        "outputs": _io(result.outputs, directory, download),
    }


def _joined(task: Mapping[str, Any]) -> str:
    return ".".join([*task["path"], task["name"]])


def _kind(spec: Mapping[str, Any], parent: tuple[str, ...], name: str) -> str:
    """container, importer or dag, as the spec says; a loop's iteration is a DAG."""
    keys = tuple(key for key in parent if not ITERATION.fullmatch(key))
    task = dag_tasks(spec, keys).get(name) or {}
    component = (spec.get("components") or {}).get(component_name(task)) or {}
    if not task:
        return "dag" if ITERATION.fullmatch(name) else "container"
    if "dag" in component:
        return "dag"
    executors = (spec.get("deploymentSpec") or {}).get("executors") or {}
    executor = executors.get(component.get("executorLabel", "")) or {}
    return "importer" if "importer" in executor else "container"


def _io(encoded: Mapping[str, Any], directory: Path, download: str | None) -> dict[str, Any]:
    """Parameters and artifacts as attempts.encode_outputs wrote them, artifacts listed."""
    artifacts = []
    for key, artifact in (encoded.get("artifacts") or {}).items():
        items = (artifact.get("items") or []) if isinstance(artifact, dict) else []
        for index, item in enumerate(items):
            link = None
            if download is not None and _local_file(directory, item.get("uri")) is not None:
                link = f"{download}/{quote(key, safe='')}"
                link += f"?index={index}" if artifact.get("list") else ""
            artifacts.append(
                {
                    "name": key,
                    "type": ((item.get("type") or {}).get("schemaTitle")) or "",
                    "uri": item.get("uri") or "",
                    "metadata": item.get("metadata") or {},
                    "download": link,
                }
            )
    return {"parameters": dict(encoded.get("parameters") or {}), "artifacts": artifacts}


def _local_file(directory: Path, uri: Any) -> Path | None:
    """The artifact's file or directory if it exists inside the run's directory."""
    if not isinstance(uri, str) or not uri:
        return None
    try:
        path = Path(uri).resolve()
        inside = path.is_relative_to(directory.resolve())
    except (OSError, ValueError):
        return None
    return path if inside and path.exists() else None


def _rfc3339(event_time: str) -> str:
    """An event time (ISO 8601) as KFP's whole-second RFC 3339."""
    try:
        return protocol.to_rfc3339(protocol.from_event_time(event_time))
    except (TypeError, ValueError):
        return ""
