"""KFP calls on experiments, runs and recurring runs (a part of KfConnect)."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Collection, Iterator
from typing import Any

from kfadapter.argo_workflows import is_workflow
from kfadapter.arguments import spec_of
from kfadapter.errors import BadRequest, Conflict, NotFound
from kfadapter.kfp import filters
from kfadapter.kfp.flatten import (
    flatten_experiment,
    flatten_page,
    flatten_recurring_run,
    flatten_run,
    flatten_run_v1,
    v1_version,
)
from kfadapter.kfp.interface import NewRun, PageRequest
from kfadapter.kfp.transport import PAGE_SIZE, Transport

log = logging.getLogger(__name__)

# Run ids per `run_id IN (...)` list call: keeps the query string a few kB.
RUN_IDS_PER_CALL = 100
# KFP's path of a task's log, which its generated client has no method for.
TASK_LOG_PATH = "/apis/v1alpha1/runs/{run_id}/nodes/{node_id}/log"
# KFP's v1beta1 runs API, the one way to give a V1 (Argo) pipeline's run its values.
RUNS_V1_PATH = "/apis/v1beta1/runs"


class RunCalls:
    """KfConnect's methods for experiments, runs and recurring runs, in its namespace."""

    _kfp: Transport
    _namespace: str | None

    def all_experiments(self) -> list[dict[str, Any]]:
        """Every experiment in the namespace, oldest first."""
        experiments = self._kfp.walk(
            "list_experiments",
            self._kfp.apis.experiments.experiment_service_list_experiments,
            "experiments",
            sort_by="created_at",
            namespace=self._namespace,
        )
        return [flatten_experiment(raw) for raw in experiments]

    def find_experiment(self, name: str) -> dict[str, Any] | None:
        """The experiment with this display name, or None."""
        answer = self._kfp.read(
            "list_experiments",
            self._kfp.apis.experiments.experiment_service_list_experiments,
            filter=filters.equals("display_name", name),
            page_size=PAGE_SIZE,
            namespace=self._namespace,
        )
        found = flatten_page(answer, "experiments", flatten_experiment)["experiments"]
        return next((e for e in found if e["display_name"] == name), None)

    def find_or_create_experiment(
        self, name: str, description: str | None = None
    ) -> dict[str, Any]:
        """The experiment with this name, created when missing.

        When another caller creates it at the same moment, KFP answers 409 to one of
        the two: that one then reads the experiment the other created.
        """
        found = self.find_experiment(name)
        if found is not None:
            return found
        try:
            return self.create_experiment(name, description)
        except Conflict:
            found = self.find_experiment(name)
            if found is None:
                raise
            log.info("experiment %r was created meanwhile by another caller", name)
            return found

    def create_experiment(self, name: str, description: str | None = None) -> dict[str, Any]:
        """Create an experiment; Conflict when the name is taken."""
        body = {"display_name": name, "description": description or ""}
        if self._namespace:
            body["namespace"] = self._namespace
        answer = self._kfp.write(
            "create_experiment",
            self._kfp.apis.experiments.experiment_service_create_experiment,
            body,
            subject=f"experiment {name!r}",
        )
        return flatten_experiment(answer)

    # ------------------------------------------------------------------ runs

    def list_runs(self, page: PageRequest) -> dict[str, Any]:
        """One page of runs in the namespace: {"runs", "next_page_token", "total_size"}."""
        answer = self._kfp.read(
            "list_runs",
            self._kfp.apis.runs.run_service_list_runs,
            **page.params(),
            namespace=self._namespace,
        )
        return flatten_page(answer, "runs", flatten_run)

    def all_runs(self) -> list[dict[str, Any]]:
        """Every run in the namespace (walking pages of PAGE_SIZE), oldest first."""
        return [flatten_run(raw) for raw in self._walk_runs(sort_by="created_at")]

    def runs_of_pipeline(
        self, pipeline_id: str, *, page_size: int | None = None, page_token: str | None = None
    ) -> dict[str, Any]:
        """One page of a pipeline's runs, newest first: {"runs", "next_page_token"}.

        KFP 2.17 has no run filter on the pipeline (`model/run.go`: a `pipeline_id` key is a
        400), so the namespace's runs are read newest first, PAGE_SIZE a call, and those
        whose `pipeline_version_reference` names this pipeline are kept; reading stops as
        soon as the page is full. `next_page_token` is the adapter's own: KFP's token of
        the page holding the next run to look at, and how many of that page's runs were
        looked at already. It is empty once every run has been looked at.
        """
        size = page_size or 100
        kfp_token, skip = _resume(page_token)
        found: list[dict[str, Any]] = []
        while True:
            answer = self._kfp.read(
                "list_runs",
                self._kfp.apis.runs.run_service_list_runs,
                page_size=PAGE_SIZE,
                page_token=kfp_token or None,
                sort_by="created_at desc",
                namespace=self._namespace,
            )
            runs = answer.get("runs") or []
            for index in range(skip, len(runs)):
                run = flatten_run(runs[index])
                if run["pipeline_id"] != pipeline_id:
                    continue
                if len(found) == size:  # one more on the page read: the next page starts here
                    return {"runs": found, "next_page_token": _resume_token(kfp_token, index)}
                found.append(run)
            kfp_token, skip = answer.get("next_page_token") or "", 0
            if not kfp_token:
                return {"runs": found, "next_page_token": ""}
            if len(found) == size:
                return {"runs": found, "next_page_token": _resume_token(kfp_token, 0)}

    def get_run(self, run_id: str, *, v1_pods: bool = False) -> dict[str, Any]:
        """One run with its parameters, error, state history and task states.

        `v1_pods`: a V1 run's tasks also name their pods, which takes the run's workflow:
        one more call, the run's pipeline version (a V1 version's `pipeline_spec` is the
        workflow, `server/api_converter.go` toApiPipelineVersion). Without the version
        (deleted since), the tasks name no pods.
        """
        answer = self._kfp.read(
            "get_run", self._kfp.apis.runs.run_service_get_run, run_id, subject=f"run {run_id!r}"
        )
        version = v1_version(answer) if v1_pods else None
        if version is None:
            return flatten_run(answer)
        try:
            found = self._kfp.read(
                "get_pipeline_version",
                self._kfp.apis.pipelines.pipeline_service_get_pipeline_version,
                *version,
                subject=f"version {version[1]!r} of pipeline {version[0]!r}",
            )
        except NotFound:
            return flatten_run(answer)
        spec = spec_of(found.get("pipeline_spec"))
        return flatten_run(answer, spec if is_workflow(spec) else None)

    def create_run(self, run: NewRun) -> dict[str, Any]:
        """Start a run of a pipeline version with these parameter values (a V1 pipeline's
        through the v1beta1 API, see NewRun)."""
        if run.template_type == "V1":
            answer = self._kfp.write_json(
                "create_run", RUNS_V1_PATH, run.body_v1(), subject=f"run {run.name!r}"
            )
            return flatten_run_v1(answer)
        answer = self._kfp.write(
            "create_run",
            self._kfp.apis.runs.run_service_create_run,
            run.body(),
            subject=f"run {run.name!r}",
        )
        return flatten_run(answer)

    def terminate_run(self, run_id: str) -> None:
        """Ask KFP to terminate a run."""
        self._kfp.write(
            "terminate_run",
            self._kfp.apis.runs.run_service_terminate_run,
            run_id,
            subject=f"run {run_id!r}",
        )

    def run_states(self, run_ids: Collection[str]) -> dict[str, str]:
        """run_id -> KFP state for the runs KFP knows; runs it does not know are absent.

        Uses list calls filtered with `run_id IN (...)`, RUN_IDS_PER_CALL ids a call: the
        number of calls grows with len(run_ids) / RUN_IDS_PER_CALL, not with len(run_ids).
        """
        ids = sorted({str(run_id) for run_id in run_ids if run_id})
        states: dict[str, str] = {}
        for start in range(0, len(ids), RUN_IDS_PER_CALL):
            chunk = ids[start : start + RUN_IDS_PER_CALL]
            wanted = set(chunk)
            for run in self._walk_runs(filter=filters.is_in("run_id", chunk)):
                if run.get("run_id") in wanted:
                    states[run["run_id"]] = str(run.get("state") or "RUNTIME_STATE_UNSPECIFIED")
        return states

    def task_log(self, run_id: str, node_id: str) -> str:
        """A pod's log text from KFP's `/apis/v1alpha1/runs/{run}/nodes/{node}/log`
        (`node`: the pod's name; a run's tasks name their pods in `tasks[].pods`)."""
        return self._kfp.read_text(
            "get_run_log",
            TASK_LOG_PATH,
            {"run_id": run_id, "node_id": node_id},
            subject=f"log of task {node_id!r} of run {run_id!r}",
        )

    def _walk_runs(self, **params: Any) -> Iterator[dict[str, Any]]:
        """Every run of the namespace KFP lists with these parameters, as KFP's JSON."""
        return self._kfp.walk(
            "list_runs",
            self._kfp.apis.runs.run_service_list_runs,
            "runs",
            namespace=self._namespace,
            **params,
        )

    # ------------------------------------------------------------------ recurring runs

    def all_recurring_runs(self) -> list[dict[str, Any]]:
        """Every recurring run in the namespace, oldest first."""
        recurring_runs = self._kfp.walk(
            "list_recurring_runs",
            self._kfp.apis.recurring_runs.recurring_run_service_list_recurring_runs,
            ("recurringRuns", "recurring_runs"),  # KFP uses the proto's JSON name here
            sort_by="created_at",
            namespace=self._namespace,
        )
        return [flatten_recurring_run(raw) for raw in recurring_runs]

    def get_recurring_run(self, recurring_run_id: str) -> dict[str, Any]:
        """One recurring run by id."""
        answer = self._kfp.read(
            "get_recurring_run",
            self._kfp.apis.recurring_runs.recurring_run_service_get_recurring_run,
            recurring_run_id,
            subject=f"recurring run {recurring_run_id!r}",
        )
        return flatten_recurring_run(answer)


def _resume_token(kfp_token: str, skip: int) -> str:
    """The adapter's page token of `runs_of_pipeline`: KFP's page token and a count."""
    text = json.dumps({"kfp": kfp_token, "skip": skip}, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii")


def _resume(token: str | None) -> tuple[str, int]:
    """(KFP's page token, runs of that page to skip) of an adapter page token."""
    if not token:
        return "", 0
    try:
        document = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
        kfp_token, skip = document["kfp"], document["skip"]
    except (ValueError, TypeError, KeyError, UnicodeError):
        raise BadRequest("page_token is not a token this endpoint gave") from None
    if not isinstance(kfp_token, str) or not isinstance(skip, int) or not 0 <= skip < PAGE_SIZE:
        raise BadRequest("page_token is not a token this endpoint gave")
    return kfp_token, skip
