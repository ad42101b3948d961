"""Recurring runs: KFP's RecurringRunService, and the runs their triggers start."""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Any

from kfadapter.localkfp import query as q
from kfadapter.localkfp import validation as v
from kfadapter.localkfp import views
from kfadapter.localkfp.apierrors import ApiError
from kfadapter.localkfp.experiments import ExperimentService
from kfadapter.localkfp.fields import RECURRING_RUNS
from kfadapter.localkfp.runs import DEFAULT_SERVICE_ACCOUNT, RunService
from kfadapter.localkfp.sources import SYSTEM, Sources
from kfadapter.localkfp.storage import RecurringRunStore, dumps, loads
from kfadapter.localkfp.triggers import Trigger, parse_trigger

log = logging.getLogger(__name__)

_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' generateName characters


class RecurringRunService:
    """Recurring runs: stored with their trigger; the scheduler asks them to fire."""

    def __init__(
        self,
        store: RecurringRunStore,
        runs: RunService,
        experiments: ExperimentService,
        sources: Sources = SYSTEM,
    ) -> None:
        self._store = store
        self._runs = runs
        self._experiments = experiments
        self.sources = sources

    def create_recurring_run(self, body: Any) -> dict[str, Any]:
        """POST /recurringruns."""
        body = v.json_object(body, "recurring_run")
        name = v.name(v.text(body, "display_name", "recurring_run"), "Recurring run")
        no_catchup = v.optional_bool(body, "no_catchup", "recurring_run")
        mode = v.recurring_mode(body)
        service_account = v.text(body, "service_account", "recurring_run")
        experiment = self._experiments.for_new_run(v.text(body, "experiment_id", "recurring_run"))
        source = self._runs.resolve_source(body, "recurring_run")
        runtime_config = v.runtime_config(body, "recurring_run")
        if not source.is_v1:  # a V1 pipeline's runs take no runtime_config.parameters
            v.pipeline_parameters(source.ir, runtime_config.get("parameters", {}))
        max_concurrency = v.max_concurrency(body.get("max_concurrency"))
        # KFP validates the request first and fails on a missing trigger only when it makes
        # the scheduled workflow (a 500), so the trigger is read last.
        _trigger, shown = parse_trigger(body.get("trigger"))
        now = self.sources.clock()
        row = {
            "id": self.sources.new_id(),
            "display_name": name,
            "description": v.text(body, "description", "recurring_run"),
            "namespace": experiment["namespace"],
            "experiment_id": experiment["id"],
            "pipeline_id": source.pipeline_id,
            # only a pipeline_id: each trigger runs the newest version at that time
            "pipeline_version_id": source.pipeline_version_id if _names_version(body) else "",
            "pipeline_spec": source.pipeline_spec,
            "runtime_config": dumps(runtime_config) if runtime_config else None,
            "service_account": service_account or DEFAULT_SERVICE_ACCOUNT,
            "max_concurrency": max_concurrency,
            "no_catchup": 1 if no_catchup else 0,
            "trigger_spec": dumps({"shown": shown, "request": body.get("trigger")}),
            "status": "ENABLED" if mode == "ENABLE" else "DISABLED",
            "created_at": now,
            "updated_at": now,
            "last_fire_at": 0,
            "fire_count": 0,
            "enabled_at": now,
        }
        self._store.insert(row)
        return views.recurring_run_json(row)

    def get_recurring_run(self, recurring_run_id: str) -> dict[str, Any]:
        """GET /recurringruns/{id}."""
        return views.recurring_run_json(self._store.existing(recurring_run_id))

    def list_recurring_runs(self, args: dict[str, Any]) -> dict[str, Any]:
        """GET /recurringruns?experiment_id= (the list key is `recurringRuns`): an unknown
        experiment is a 404, a namespace limits nothing (`server/job_server.go`, listJobs)."""
        experiment_id = args.get("experiment_id", "")
        if experiment_id:
            self._experiments.experiment_row(experiment_id)
        scope = {"experiment_id": experiment_id, "namespace": v.single_user_namespace("")}
        query = q.from_args(RECURRING_RUNS, args, scope)
        return views.page("recurringRuns", views.recurring_run_json, self._store.list(query))

    def set_recurring_enabled(self, recurring_run_id: str, enabled: bool) -> dict[str, Any]:
        """POST /recurringruns/{id}:enable or :disable."""
        row = self._store.existing(recurring_run_id)
        now = self.sources.clock()
        fields: dict[str, Any] = {
            "status": "ENABLED" if enabled else "DISABLED",
            "updated_at": now,
        }
        if enabled and row["status"] != "ENABLED":
            fields["enabled_at"] = now
        self._store.update(recurring_run_id, **fields)
        return {}

    def delete_recurring_run(self, recurring_run_id: str) -> dict[str, Any]:
        """DELETE /recurringruns/{id} (the runs it started remain)."""
        self._store.existing(recurring_run_id)
        self._store.delete(recurring_run_id)
        return {}

    # -- what the scheduler uses -------------------------------------------------------

    def enabled_recurring_runs(self) -> list[dict[str, Any]]:
        """Every enabled recurring run, as stored."""
        return self._store.enabled()

    def active_runs_of(self, recurring_run_id: str) -> int:
        """How many runs of the recurring run have not reached a final state."""
        return self._runs.active_runs_of(recurring_run_id)

    @staticmethod
    def trigger_of(row: dict[str, Any]) -> Trigger:
        """The Trigger of a stored recurring run."""
        trigger, _shown = parse_trigger(loads(row["trigger_spec"])["request"])
        return trigger

    def fire_recurring_run(self, row: dict[str, Any], scheduled_us: int) -> str | None:
        """Start one run of a recurring run for the given schedule time; its id, or None."""
        index = row["fire_count"] + 1
        resource_id = f"{workflow_name(row)}-{index}"
        body: dict[str, Any] = {
            # as KFP's scheduled workflow names its runs (`NextResourceName`)
            "display_name": f"{resource_id}-{fnv32a(resource_id)}",
            "description": row["description"],
            "experiment_id": row["experiment_id"],
            "service_account": row["service_account"] or DEFAULT_SERVICE_ACCOUNT,
        }
        if row["pipeline_id"] or row["pipeline_version_id"]:
            reference = {"pipeline_id": row["pipeline_id"]}
            if row["pipeline_version_id"]:
                reference["pipeline_version_id"] = row["pipeline_version_id"]
            body["pipeline_version_reference"] = reference
        else:
            body["pipeline_spec"] = loads(row["pipeline_spec"])
        runtime_config = loads(row["runtime_config"])
        if runtime_config:
            body["runtime_config"] = runtime_config
        self._store.update(row["id"], last_fire_at=scheduled_us, fire_count=index)
        try:
            run = self._runs.create_run(body, recurring_run_id=row["id"], scheduled_us=scheduled_us)
        except ApiError as error:
            log.warning("recurring run %s could not start a run: %s", row["id"], error.message)
            return None
        return run["run_id"]


def _names_version(body: dict[str, Any]) -> bool:
    """Whether a recurring-run body names a pipeline version (not only a pipeline)."""
    reference = body.get("pipeline_version_reference")
    return not isinstance(reference, dict) or bool(reference.get("pipeline_version_id"))


def workflow_name(row: dict[str, Any]) -> str:
    """The name of the recurring run's scheduled workflow, as Kubernetes generates it from
    KFP's GenerateName (`template/template.go`, toSWFCRDResourceGeneratedName): the display
    name in lower case without other characters than [a-z0-9-], at most 25 of them ("job-"
    when none is left), then 5 random characters (here drawn from the recurring run's id)."""
    prefix = re.sub(r"[^a-z0-9-]+", "", row["display_name"].lower()) or "job-"
    digest = hashlib.sha256(row["id"].encode()).digest()
    suffix = "".join(_NAME_ALPHABET[byte % len(_NAME_ALPHABET)] for byte in digest[:5])
    return prefix[:25] + suffix


def fnv32a(text: str) -> int:
    """The 32-bit FNV-1a hash of the text's UTF-8 bytes."""
    value = 0x811C9DC5
    for byte in text.encode():
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value
