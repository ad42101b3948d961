"""FakeKfp: KFP in process, behind the `KfpClient` protocol, for the fast test tier.

It keeps KFP's JSON (as the v2beta1 API would send it) in dicts and answers through the
adapter's real flattening (`kfadapter.kfp.flatten`), raising the typed errors KfConnect
raises. Every call is recorded by name in `calls`; `fail_with` makes every call raise
(KFP unreachable, too slow, failing), the one fault the fast tests inject.

It is for the adapter's own logic (validation, error shapes, argument mapping, answer
shapes): lists come back whole, in insertion order, whatever the page token, sort or
filter asked for. What KFP itself does is tested end to end against the embedded server.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection
from typing import Any

import yaml

from kfadapter.argo_workflows import is_workflow
from kfadapter.errors import BadRequest, Conflict, NotFound
from kfadapter.kfp import NewRun, PageRequest
from kfadapter.kfp.flatten import (
    flatten_experiment,
    flatten_pipeline,
    flatten_recurring_run,
    flatten_run,
    flatten_version,
    v1_version,
)

STAMP = "2026-01-01T00:00:00Z"
Flatten = Callable[[dict[str, Any]], dict[str, Any]]
# The calls that change something in KFP.
WRITES = frozenset(
    {
        "delete_pipeline",
        "upload_pipeline",
        "upload_version",
        "delete_version",
        "create_experiment",
        "create_run",
        "terminate_run",
    }
)


class FakeKfp:
    """An in-process KFP with pipelines, versions, experiments, runs and recurring runs."""

    def __init__(self) -> None:
        self.pipelines: dict[str, dict[str, Any]] = {}  # id -> KFP pipeline JSON
        self.versions: dict[str, list[dict[str, Any]]] = {}  # pipeline id -> oldest first
        self.experiments: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self.recurring_runs: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []
        self.fail_with: Exception | None = None
        self._ids = itertools.count(1)

    # -- what tests use ----------------------------------------------------------------

    def add_pipeline(self, name: str, parameters: dict[str, dict[str, Any]] | None = None) -> str:
        """A pipeline whose one version declares these input parameters; its id."""
        spec = {"pipelineInfo": {"name": name}, "root": {"dag": {"tasks": {}}}}
        if parameters:
            spec["root"]["inputDefinitions"] = {"parameters": parameters}
        pipeline = self._new_pipeline(name, "")
        self._new_version(pipeline["pipeline_id"], name, spec, "")
        return pipeline["pipeline_id"]

    def writes(self) -> list[str]:
        """The calls made so far that change something."""
        return [call for call in self.calls if call in WRITES]

    # -- pipelines -------------------------------------------------------------------

    def healthz(self) -> dict[str, Any]:
        self._record("healthz")
        return {"multi_user": False}

    def list_pipelines(self, page: PageRequest) -> dict[str, Any]:
        self._record("list_pipelines")
        pipelines = [flatten_pipeline(p) for p in self.pipelines.values()]
        size = page.page_size or len(pipelines)
        return {"pipelines": pipelines[:size], "next_page_token": "", "total_size": len(pipelines)}

    def all_pipelines(self, *, filter: str | None = None) -> list[dict[str, Any]]:
        return self._all("all_pipelines", self.pipelines, flatten_pipeline)

    def find_pipeline(self, name: str) -> dict[str, Any] | None:
        return self._find("find_pipeline", self.pipelines, name, flatten_pipeline)

    def resolve_pipeline(self, id_or_name: str) -> dict[str, Any]:
        self._record("resolve_pipeline")
        found = self.pipelines.get(id_or_name) or _named(self.pipelines, id_or_name)
        if found:
            return flatten_pipeline(found)
        raise NotFound(f"pipeline {id_or_name!r} not found (no pipeline has this id or name)")

    def delete_pipeline(self, pipeline_id: str) -> None:
        self._record("delete_pipeline")
        self._pipeline(pipeline_id)
        del self.pipelines[pipeline_id]
        self.versions.pop(pipeline_id, None)

    def upload_pipeline(
        self, name: str, package: bytes, *, description: str | None = None
    ) -> dict[str, Any]:
        self._record("upload_pipeline")
        if _named(self.pipelines, name):
            raise Conflict(f"pipeline {name!r}: the name is taken")
        pipeline = self._new_pipeline(name, description or "")
        self._new_version(pipeline["pipeline_id"], name, _spec(package), description or "")
        return flatten_pipeline(pipeline)

    # -- versions --------------------------------------------------------------------

    def versions_page(
        self, pipeline_id: str, *, page_size: int, sort_by: str | None = None
    ) -> dict[str, Any]:
        self._record("versions_page")
        versions = list(self._versions(pipeline_id))
        if sort_by and sort_by.endswith("desc"):
            versions.reverse()
        return {
            "pipeline_versions": [flatten_version(v) for v in versions[:page_size]],
            "next_page_token": "",
            "total_size": len(versions),
        }

    def list_versions(self, pipeline_id: str) -> list[dict[str, Any]]:
        self._record("list_versions")
        return [flatten_version(v) for v in self._versions(pipeline_id)]

    def find_version(self, pipeline_id: str, name: str | None) -> dict[str, Any] | None:
        self._record("find_version")
        versions = [flatten_version(v) for v in self._versions(pipeline_id)]
        if name is None:
            return versions[-1] if versions else None
        matches = [
            v for v in versions if name in (v["display_name"], v["name"], v["pipeline_version_id"])
        ]
        return matches[-1] if matches else None

    def upload_version(
        self, pipeline: dict[str, Any], name: str, package: bytes, *, description: str | None = None
    ) -> dict[str, Any]:
        self._record("upload_version")
        return flatten_version(
            self._new_version(pipeline["pipeline_id"], name, _spec(package), description or "")
        )

    def delete_version(self, pipeline_id: str, version_id: str) -> None:
        self._record("delete_version")
        versions = self._versions(pipeline_id)
        versions[:] = [v for v in versions if v["pipeline_version_id"] != version_id]

    # -- experiments -------------------------------------------------------------------

    def all_experiments(self) -> list[dict[str, Any]]:
        return self._all("all_experiments", self.experiments, flatten_experiment)

    def find_experiment(self, name: str) -> dict[str, Any] | None:
        return self._find("find_experiment", self.experiments, name, flatten_experiment)

    def find_or_create_experiment(
        self, name: str, description: str | None = None
    ) -> dict[str, Any]:
        found = self.find_experiment(name)
        return found if found is not None else self.create_experiment(name, description)

    def create_experiment(self, name: str, description: str | None = None) -> dict[str, Any]:
        self._record("create_experiment")
        if _named(self.experiments, name):
            raise Conflict(f"experiment {name!r}: the name is taken")
        experiment_id = self._new_id("experiment")
        self.experiments[experiment_id] = {
            "experiment_id": experiment_id,
            "display_name": name,
            "description": description or "",
            "created_at": STAMP,
            "storage_state": "AVAILABLE",
        }
        return flatten_experiment(self.experiments[experiment_id])

    # -- runs --------------------------------------------------------------------------

    def all_runs(self) -> list[dict[str, Any]]:
        return self._all("all_runs", self.runs, flatten_run)

    def runs_of_pipeline(
        self, pipeline_id: str, *, page_size: int | None = None, page_token: str | None = None
    ) -> dict[str, Any]:
        self._record("runs_of_pipeline")
        runs = [
            flatten_run(r)
            for r in reversed(self.runs.values())
            if r["pipeline_version_reference"]["pipeline_id"] == pipeline_id
        ]
        return {"runs": runs[: page_size or 100], "next_page_token": ""}

    def get_run(self, run_id: str, *, v1_pods: bool = False) -> dict[str, Any]:
        """As KfConnect: with `v1_pods`, a V1 run's workflow is its version's spec."""
        self._record("get_run")
        run = self._run(run_id)
        version = v1_version(run) if v1_pods else None
        if version is None:
            return flatten_run(run)
        self._record("get_pipeline_version")
        pipeline_id, version_id = version
        versions = self.versions.get(pipeline_id, [])
        spec = next(
            (v["pipeline_spec"] for v in versions if v["pipeline_version_id"] == version_id), None
        )
        return flatten_run(run, spec if is_workflow(spec) else None)

    def create_run(self, run: NewRun) -> dict[str, Any]:
        """A V2 run from its v2beta1 body; a V1 run from its v1beta1 body, shown back as
        KFP's v2beta1 API shows it (the v1 parameters as runtime_config.parameters)."""
        self._record("create_run")
        run_id = self._new_id("run")
        if run.template_type == "V1":
            body = run.body_v1()
            references = {r["key"]["type"]: r["key"]["id"] for r in body["resource_references"]}
            self.runs[run_id] = {
                "display_name": body["name"],
                "description": body["description"],
                "experiment_id": references["EXPERIMENT"],
                "pipeline_version_reference": {
                    "pipeline_id": run.pipeline_id,
                    "pipeline_version_id": references["PIPELINE_VERSION"],
                },
                "runtime_config": {
                    "parameters": {
                        p["name"]: p["value"] for p in body["pipeline_spec"]["parameters"]
                    }
                },
                "run_id": run_id,
                "state": "PENDING",
                "created_at": STAMP,
            }
            return flatten_run(self.runs[run_id])
        self.runs[run_id] = {
            **run.body(),
            "run_id": run_id,
            "state": "PENDING",
            "created_at": STAMP,
        }
        return flatten_run(self.runs[run_id])

    def terminate_run(self, run_id: str) -> None:
        """As KFP: PENDING, RUNNING or PAUSED becomes CANCELING; any other state is a 400
        (`storage/run_store.go` TerminateRun)."""
        self._record("terminate_run")
        run = self._run(run_id)
        if run["state"] not in ("PENDING", "RUNNING", "PAUSED", "RUNTIME_STATE_UNSPECIFIED"):
            message = f"Failed to terminate a run {run_id}. Row not found"
            raise BadRequest(f"KFP rejected run {run_id!r}: {message}", kfp_message=message)
        run["state"] = "CANCELING"

    def run_states(self, run_ids: Collection[str]) -> dict[str, str]:
        self._record("run_states")
        return {run_id: self.runs[run_id]["state"] for run_id in run_ids if run_id in self.runs}

    def task_log(self, run_id: str, node_id: str) -> str:
        self._record("task_log")
        self._run(run_id)
        raise NotFound(f"log of task {node_id!r} of run {run_id!r} not found")

    # -- recurring runs ------------------------------------------------------------------

    def all_recurring_runs(self) -> list[dict[str, Any]]:
        return self._all("all_recurring_runs", self.recurring_runs, flatten_recurring_run)

    def get_recurring_run(self, recurring_run_id: str) -> dict[str, Any]:
        self._record("get_recurring_run")
        if recurring_run_id not in self.recurring_runs:
            raise NotFound(f"recurring run {recurring_run_id!r} not found")
        return flatten_recurring_run(self.recurring_runs[recurring_run_id])

    # -- internals ---------------------------------------------------------------------

    def _record(self, call: str) -> None:
        self.calls.append(call)
        if self.fail_with is not None:
            raise self.fail_with

    def _all(self, call: str, resources: dict[str, dict[str, Any]], flatten: Flatten) -> list:
        self._record(call)
        return [flatten(resource) for resource in resources.values()]

    def _find(
        self, call: str, resources: dict[str, dict[str, Any]], name: str, flatten: Flatten
    ) -> dict[str, Any] | None:
        self._record(call)
        found = _named(resources, name)
        return flatten(found) if found else None

    def _new_id(self, kind: str) -> str:
        return f"{kind}-{next(self._ids)}"

    def _new_pipeline(self, name: str, description: str) -> dict[str, Any]:
        pipeline_id = self._new_id("pipeline")
        self.pipelines[pipeline_id] = {
            "pipeline_id": pipeline_id,
            "display_name": name,
            "description": description,
            "created_at": STAMP,
        }
        self.versions[pipeline_id] = []
        return self.pipelines[pipeline_id]

    def _new_version(
        self, pipeline_id: str, name: str, spec: dict[str, Any], description: str
    ) -> dict[str, Any]:
        version = {
            "pipeline_id": pipeline_id,
            "pipeline_version_id": self._new_id("version"),
            "display_name": name,
            "description": description,
            "created_at": STAMP,
            "pipeline_spec": spec,
        }
        self._versions(pipeline_id).append(version)
        return version

    def _pipeline(self, pipeline_id: str) -> dict[str, Any]:
        if pipeline_id not in self.pipelines:
            raise NotFound(f"pipeline {pipeline_id!r} not found")
        return self.pipelines[pipeline_id]

    def _versions(self, pipeline_id: str) -> list[dict[str, Any]]:
        self._pipeline(pipeline_id)
        return self.versions[pipeline_id]

    def _run(self, run_id: str) -> dict[str, Any]:
        if run_id not in self.runs:
            raise NotFound(f"run {run_id!r} not found")
        return self.runs[run_id]


def _named(resources: dict[str, dict[str, Any]], name: str) -> dict[str, Any] | None:
    """The first resource with this display name, or None."""
    return next((r for r in resources.values() if r["display_name"] == name), None)


def _spec(package: bytes) -> dict[str, Any]:
    """The pipeline spec of an uploaded YAML or JSON package ({} for an archive)."""
    if package.startswith((b"PK\x03\x04", b"\x1f\x8b")):
        return {}
    document = yaml.safe_load(package)
    return document if isinstance(document, dict) else {}
