"""KfConnect: the adapter's one way to Kubeflow Pipelines.

This is the only module that imports the KFP SDK (`kfp_server_api`, the generated
v2beta1 client that `kfp.Client` is built on). Every call:

- carries the credentials from `kfadapter.auth.KfpAuth`, the request id being served
  (`X-Request-ID`) and a time-out (`KFP_TIMEOUT`);
- is counted and timed by `kfadapter.observability.kfp_call`;
- has its errors mapped once, here: KFP 400 -> BadRequest, 404 -> NotFound,
  409 -> Conflict, any other KFP error -> KfpError (502), no connection -> KfpUnavailable
  (503), no answer in time -> KfpTimeout (504);
- is retried, when it only reads, up to `KFP_READ_RETRIES` times on connection errors.
  Writes are never retried (except once after a Dex re-login: KFP did not process them).

Answers are returned as plain JSON-ready dicts with ISO-8601 dates (see the `flatten_*`
functions), never SDK objects.

Why not `kfp.Client` itself: its constructor asks KFP's healthz up to 5 times with 5 s
sleeps when no namespace is set (the adapter must start while KFP is down), it reads and
writes `~/.config/kfp/context.json`, prints links to stdout, and its methods take no
time-out. The generated client underneath gives the same calls with those under control.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3

from kfadapter.arguments import declared_parameters, pipeline_tasks, spec_of
from kfadapter.auth import KfpAuth, header
from kfadapter.errors import (
    AdapterError,
    BadRequest,
    Conflict,
    KfpError,
    KfpTimeout,
    KfpUnavailable,
    NotFound,
)
from kfadapter.observability import current_request_id, kfp_call
from kfadapter.settings import Settings

log = logging.getLogger(__name__)

# KFP caps page_size at 200 (backend/src/apiserver/list/list.go): walks use whole pages.
PAGE_SIZE = 200
# Run ids per `run_id IN (...)` list call: keeps the query string a few kB.
RUN_IDS_PER_CALL = 100
# Pause before retrying a read after a connection error (doubles each attempt).
RETRY_PAUSE = 0.2
# The longest KFP error text passed on to clients.
MAX_MESSAGE = 1000


@dataclass(frozen=True)
class _Apis:
    """The generated KFP service clients, sharing one HTTP connection pool."""

    api_client: Any
    healthz: Any
    pipelines: Any
    upload: Any
    experiments: Any
    runs: Any
    recurring_runs: Any


class KfConnect:
    """Calls KFP for the adapter and returns plain dicts. Thread-safe; builds its client lazily."""

    def __init__(self, settings: Settings, auth: KfpAuth | None = None) -> None:
        self.settings = settings
        self.auth = auth or KfpAuth(settings)
        self._lock = threading.Lock()
        self._apis: _Apis | None = None
        self._timeout = (settings.kfp_timeout, settings.kfp_timeout)

    # ------------------------------------------------------------------ health

    def healthz(self) -> dict[str, Any]:
        """KFP's healthz answer (raises when KFP is unreachable or failing)."""
        return self._read("healthz", self._api().healthz.healthz_service_get_healthz)

    def readiness(self) -> tuple[bool, str]:
        """(ready, reason): whether KFP answers its healthz, and why not."""
        try:
            self.healthz()
        except AdapterError as error:
            return False, error.message
        return True, f"KFP at {self.settings.kfp_endpoint} answers its healthz"

    # ------------------------------------------------------------------ pipelines

    def list_pipelines(
        self,
        *,
        page_size: int | None = None,
        page_token: str | None = None,
        sort_by: str | None = None,
        filter: str | None = None,
    ) -> dict[str, Any]:
        """One page of pipelines as KFP gives it: {"pipelines", "next_page_token", "total_size"}."""
        answer = self._read(
            "list_pipelines",
            self._api().pipelines.pipeline_service_list_pipelines,
            page_size=page_size,
            page_token=page_token,
            sort_by=sort_by,
            filter=filter,
        )
        return _page(answer, "pipelines", flatten_pipeline)

    def all_pipelines(self, *, filter: str | None = None) -> list[dict[str, Any]]:
        """Every pipeline (walking KFP's pages), oldest first."""
        return list(
            self._walk(
                "list_pipelines",
                self._api().pipelines.pipeline_service_list_pipelines,
                "pipelines",
                flatten_pipeline,
                sort_by="created_at",
                filter=filter,
            )
        )

    def find_pipeline(self, name: str) -> dict[str, Any] | None:
        """The pipeline whose display name is `name`, or None."""
        matches = self.all_pipelines(filter=_equals_filter("display_name", name))
        exact = [p for p in matches if p["display_name"] == name]
        return exact[0] if exact else None

    def get_pipeline(self, pipeline_id: str) -> dict[str, Any]:
        """One pipeline by id."""
        answer = self._read(
            "get_pipeline",
            self._api().pipelines.pipeline_service_get_pipeline,
            pipeline_id,
            subject=f"pipeline {pipeline_id!r}",
        )
        return flatten_pipeline(answer)

    def resolve_pipeline(self, id_or_name: str) -> dict[str, Any]:
        """A pipeline by id, else by display name; NotFound naming it when neither matches."""
        if _looks_like_id(id_or_name):
            try:
                return self.get_pipeline(id_or_name)
            except (NotFound, BadRequest):
                pass
        pipeline = self.find_pipeline(id_or_name)
        if pipeline is None:
            raise NotFound(f"pipeline {id_or_name!r} not found (no pipeline has this id or name)")
        return pipeline

    def pipeline_details(self, pipeline: dict[str, Any]) -> dict[str, Any]:
        """A pipeline (as `resolve_pipeline` gives it) with its newest version's parameters,
        `arguments` and version count."""
        answer = self._newest_version_page(pipeline["pipeline_id"])
        versions = [flatten_version(v) for v in answer.get("pipeline_versions") or []]
        newest = versions[0] if versions else None
        parameters = newest["parameters"] if newest else []
        return {
            **pipeline,
            "id": pipeline["pipeline_id"],
            "name": pipeline["display_name"],
            "arguments": {p["name"]: p["default"] for p in parameters},
            "parameters": parameters,
            "default_version": _version_summary(newest),
            "versions_count": int(answer.get("total_size") or len(versions)),
        }

    def delete_pipeline(self, pipeline_id: str) -> None:
        """Delete a pipeline together with all its versions."""
        self._write(
            "delete_pipeline",
            self._api().pipelines.pipeline_service_delete_pipeline,
            pipeline_id,
            cascade=True,
            subject=f"pipeline {pipeline_id!r}",
        )

    def list_versions(self, pipeline_id: str) -> list[dict[str, Any]]:
        """Every version of a pipeline, oldest first, with parameters and tasks."""
        return list(
            self._walk(
                "list_pipeline_versions",
                self._api().pipelines.pipeline_service_list_pipeline_versions,
                "pipeline_versions",
                flatten_version,
                pipeline_id,
                sort_by="created_at",
                subject=f"pipeline {pipeline_id!r}",
            )
        )

    def delete_version(self, pipeline_id: str, version_id: str) -> None:
        """Delete one pipeline version."""
        self._write(
            "delete_pipeline_version",
            self._api().pipelines.pipeline_service_delete_pipeline_version,
            pipeline_id,
            version_id,
            subject=f"version {version_id!r} of pipeline {pipeline_id!r}",
        )

    def upload_pipeline(
        self,
        name: str,
        package: bytes,
        *,
        description: str | None = None,
        version_name: str | None = None,
    ) -> dict[str, Any]:
        """Upload a compiled pipeline: a new name creates the pipeline, a known one a new version.

        A new version is named `version_name`, else the next free whole number after 1
        ("2", "3", ...), as the older adapter did. The package is written to a private
        temporary directory under a fixed name whose suffix matches its content (KFP picks
        the format from it) and removed afterwards.
        Returns {"name", "id", "version_id", "version_name"}.
        """
        existing = self.find_pipeline(name)
        if existing is None and version_name not in (None, name):
            raise BadRequest(
                f"pipeline {name!r} does not exist yet: its first version is named {name!r} "
                "by KFP; version_name applies to later uploads"
            )
        with _package_file(package) as path:
            if existing is None:
                pipeline = self._write(
                    "upload_pipeline",
                    self._api().upload.upload_pipeline,
                    str(path),
                    name=name,
                    description=description or None,
                    subject=f"pipeline {name!r}",
                )
                pipeline_id = pipeline["pipeline_id"]
                return _upload_answer(name, pipeline_id, self._newest_version(pipeline_id))
            pipeline_id = existing["pipeline_id"]
            versions = self.list_versions(pipeline_id)
            taken = {v["display_name"] for v in versions} | {v["name"] for v in versions}
            if version_name is not None and version_name in taken:
                raise Conflict(f"pipeline {name!r} already has a version named {version_name!r}")
            new_name = version_name or _next_version_name(taken)
            version = self._write(
                "upload_pipeline_version",
                self._api().upload.upload_pipeline_version,
                str(path),
                name=new_name,
                pipelineid=pipeline_id,
                description=description or None,
                subject=f"pipeline {name!r}",
            )
            return _upload_answer(name, pipeline_id, flatten_version(version))

    def _newest_version(self, pipeline_id: str) -> dict[str, Any] | None:
        """The most recently created version of a pipeline, or None."""
        versions = self._newest_version_page(pipeline_id).get("pipeline_versions") or []
        return flatten_version(versions[0]) if versions else None

    def _newest_version_page(self, pipeline_id: str) -> dict[str, Any]:
        """KFP's answer listing a pipeline's versions newest first, one to the page."""
        return self._read(
            "list_pipeline_versions",
            self._api().pipelines.pipeline_service_list_pipeline_versions,
            pipeline_id,
            page_size=1,
            sort_by="created_at desc",
            subject=f"pipeline {pipeline_id!r}",
        )

    def find_version(self, pipeline_id: str, name: str | None) -> dict[str, Any] | None:
        """The newest version of a pipeline with this display name (or name, or id), the
        newest version of all when `name` is None; None when none fits."""
        versions = self.list_versions(pipeline_id)
        if name is None:
            return versions[-1] if versions else None
        for version in reversed(versions):
            if name in (version["display_name"], version["name"], version["pipeline_version_id"]):
                return version
        return None

    # ------------------------------------------------------------------ experiments

    def all_experiments(self) -> list[dict[str, Any]]:
        """Every experiment in the namespace, oldest first."""
        return list(
            self._walk(
                "list_experiments",
                self._api().experiments.experiment_service_list_experiments,
                "experiments",
                flatten_experiment,
                sort_by="created_at",
                namespace=self.settings.namespace,
            )
        )

    def find_experiment(self, name: str) -> dict[str, Any] | None:
        """The experiment with this display name, or None."""
        answer = self._read(
            "list_experiments",
            self._api().experiments.experiment_service_list_experiments,
            filter=_equals_filter("display_name", name),
            page_size=PAGE_SIZE,
            namespace=self.settings.namespace,
        )
        for experiment in answer.get("experiments") or []:
            if experiment.get("display_name") == name:
                return flatten_experiment(experiment)
        return None

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
        if self.settings.namespace:
            body["namespace"] = self.settings.namespace
        answer = self._write(
            "create_experiment",
            self._api().experiments.experiment_service_create_experiment,
            body,
            subject=f"experiment {name!r}",
        )
        return flatten_experiment(answer)

    # ------------------------------------------------------------------ runs

    def list_runs(
        self,
        *,
        page_size: int | None = None,
        page_token: str | None = None,
        sort_by: str | None = None,
        filter: str | None = None,
    ) -> dict[str, Any]:
        """One page of runs in the namespace: {"runs", "next_page_token", "total_size"}."""
        answer = self._read(
            "list_runs",
            self._api().runs.run_service_list_runs,
            page_size=page_size,
            page_token=page_token,
            sort_by=sort_by,
            filter=filter,
            namespace=self.settings.namespace,
        )
        return _page(answer, "runs", flatten_run)

    def all_runs(self) -> list[dict[str, Any]]:
        """Every run in the namespace (walking pages of PAGE_SIZE), oldest first."""
        return list(
            self._walk(
                "list_runs",
                self._api().runs.run_service_list_runs,
                "runs",
                flatten_run,
                sort_by="created_at",
                namespace=self.settings.namespace,
            )
        )

    def runs_of_pipeline(
        self, pipeline_id: str, *, page_size: int | None = None, page_token: str | None = None
    ) -> dict[str, Any]:
        """One page of a pipeline's runs, newest first."""
        return self.list_runs(
            page_size=page_size or 100,
            page_token=page_token,
            sort_by="created_at desc",
            filter=_equals_filter("pipeline_id", pipeline_id),
        )

    def get_run(self, run_id: str) -> dict[str, Any]:
        """One run with its parameters, error, state history and task states."""
        answer = self._read(
            "get_run", self._api().runs.run_service_get_run, run_id, subject=f"run {run_id!r}"
        )
        return flatten_run(answer)

    def create_run(
        self,
        *,
        name: str,
        experiment_id: str,
        pipeline_id: str,
        version_id: str,
        parameters: dict[str, Any],
        description: str = "",
    ) -> dict[str, Any]:
        """Start a run of a pipeline version with these parameter values."""
        body = {
            "display_name": name,
            "description": description,
            "experiment_id": experiment_id,
            "pipeline_version_reference": {
                "pipeline_id": pipeline_id,
                "pipeline_version_id": version_id,
            },
            "runtime_config": {"parameters": parameters},
        }
        answer = self._write(
            "create_run", self._api().runs.run_service_create_run, body, subject=f"run {name!r}"
        )
        return flatten_run(answer)

    def terminate_run(self, run_id: str) -> None:
        """Ask KFP to terminate a run."""
        self._write(
            "terminate_run",
            self._api().runs.run_service_terminate_run,
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
            for run in self._walk(
                "list_runs",
                self._api().runs.run_service_list_runs,
                "runs",
                lambda raw: raw,
                filter=_in_filter("run_id", chunk),
                namespace=self.settings.namespace,
            ):
                run_id = run.get("run_id")
                if run_id in wanted:
                    states[run_id] = str(run.get("state") or "RUNTIME_STATE_UNSPECIFIED")
        return states

    def run_logs(self, run_id: str, *, task: str | None = None) -> list[dict[str, Any]]:
        """The log of each task of a run (or of the task with this name or id).

        KFP serves logs by node id: a task's pod name on a cluster, its task id on the
        embedded server; both are tried. A task whose log KFP does not have gets
        `"log": null` and the reason in `error`.
        """
        run = self.get_run(run_id)
        tasks = run["tasks"]
        if task is not None:
            tasks = [t for t in tasks if task in (t["name"], t["task_id"])]
            if not tasks:
                raise NotFound(f"run {run_id!r} has no task {task!r}")
        logs = []
        for entry in tasks:
            node_ids = [*entry["pods"], entry["task_id"]]
            text, error = None, "KFP has no log for this task"
            for node_id in (n for n in node_ids if n):
                try:
                    text, error = self.task_log(run_id, node_id), None
                    break
                except (NotFound, BadRequest) as failure:
                    error = failure.details.get("kfp_message") or failure.message
            logs.append(
                {
                    "task_id": entry["task_id"],
                    "name": entry["name"],
                    "state": entry["state"],
                    "log": text,
                    "error": error,
                }
            )
        return logs

    def task_log(self, run_id: str, node_id: str) -> str:
        """A task's log text from KFP's `/apis/v1alpha1/runs/{run}/nodes/{node}/log`."""
        subject = f"log of task {node_id!r} of run {run_id!r}"
        _refuse_dot_segments((run_id, node_id), subject)

        def fetch(**options: Any) -> Any:
            return self._api().api_client.call_api(
                "/apis/v1alpha1/runs/{run_id}/nodes/{node_id}/log",
                "GET",
                path_params={"run_id": run_id, "node_id": node_id},
                header_params={"Accept": "text/plain, application/json"},
                auth_settings=["Bearer"],
                _return_http_data_only=True,
                **options,
            )

        return self._call(
            "get_run_log",
            fetch,
            read=True,
            subject=subject,
            parse=_text_body,
        )

    # ------------------------------------------------------------------ recurring runs

    def all_recurring_runs(self) -> list[dict[str, Any]]:
        """Every recurring run in the namespace, oldest first."""
        return list(
            self._walk(
                "list_recurring_runs",
                self._api().recurring_runs.recurring_run_service_list_recurring_runs,
                ("recurringRuns", "recurring_runs"),  # KFP uses the proto's JSON name here
                flatten_recurring_run,
                sort_by="created_at",
                namespace=self.settings.namespace,
            )
        )

    def get_recurring_run(self, recurring_run_id: str) -> dict[str, Any]:
        """One recurring run by id."""
        answer = self._read(
            "get_recurring_run",
            self._api().recurring_runs.recurring_run_service_get_recurring_run,
            recurring_run_id,
            subject=f"recurring run {recurring_run_id!r}",
        )
        return flatten_recurring_run(answer)

    # ------------------------------------------------------------------ plumbing

    def _api(self) -> _Apis:
        """The generated service clients, built on first use (no KFP call is made)."""
        if self._apis is None:
            with self._lock:
                if self._apis is None:
                    self._apis = _build_apis(self.settings, self.auth)
        return self._apis

    def _read(self, operation: str, method: Callable[..., Any], *args: Any, **params: Any) -> Any:
        """A KFP call that only reads: retried on connection errors."""
        return self._sdk_call(operation, method, args, params, read=True)

    def _write(self, operation: str, method: Callable[..., Any], *args: Any, **params: Any) -> Any:
        """A KFP call that changes something: never retried blindly."""
        return self._sdk_call(operation, method, args, params, read=False)

    def _sdk_call(
        self,
        operation: str,
        method: Callable[..., Any],
        args: tuple[Any, ...],
        params: dict[str, Any],
        *,
        read: bool,
    ) -> Any:
        """Call a generated SDK method with path values `args` and query/body `params`
        (`subject`, if given, names what the call is about in errors)."""
        subject = params.pop("subject", None)
        _refuse_dot_segments(args, subject or operation)
        return self._call(
            operation,
            lambda **options: method(*args, **_present(params), **options),
            read=read,
            subject=subject,
        )

    def _walk(
        self,
        operation: str,
        method: Callable[..., Any],
        items_key: str | tuple[str, ...],
        flatten: Callable[[dict[str, Any]], dict[str, Any]],
        *args: Any,
        **params: Any,
    ) -> Iterator[dict[str, Any]]:
        """Every item of a KFP list (under `items_key`), page after page of PAGE_SIZE."""
        keys = (items_key,) if isinstance(items_key, str) else items_key
        token: str | None = None
        seen_tokens: set[str] = set()
        while True:
            answer = self._read(
                operation, method, *args, page_size=PAGE_SIZE, page_token=token, **params
            )
            for key in keys:
                if answer.get(key):
                    yield from (flatten(item) for item in answer[key])
                    break
            token = answer.get("next_page_token") or None
            if token is None:
                return
            if token in seen_tokens:
                raise KfpError(
                    f"KFP returned the same page token twice while listing ({operation})"
                )
            seen_tokens.add(token)

    def _call(
        self,
        operation: str,
        call: Callable[..., Any],
        *,
        read: bool,
        subject: str | None = None,
        parse: Callable[[Any], Any] | None = None,
    ) -> Any:
        """Run one KFP call with time-out, metrics, error mapping and (for reads) retries."""
        attempts = 1 + (self.settings.kfp_read_retries if read else 0)
        for attempt in range(attempts):
            try:
                with kfp_call(operation):
                    response = self._invoke(call, operation, subject)
                    return (parse or _json_body)(response)
            except KfpUnavailable as error:
                if attempt + 1 >= attempts:
                    raise
                log.warning(
                    "KFP %s failed (%s); retry %d of %d",
                    operation,
                    error.message,
                    attempt + 1,
                    attempts - 1,
                )
                time.sleep(RETRY_PAUSE * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _invoke(self, call: Callable[..., Any], operation: str, subject: str | None) -> Any:
        """Make the SDK call and turn whatever goes wrong into the adapter's typed errors."""
        from kfp_server_api.exceptions import ApiException, ApiValueError

        endpoint = self.settings.kfp_endpoint
        try:
            return call(_preload_content=False, _request_timeout=self._timeout)
        except ApiException as error:
            raise _http_error(error, operation, subject) from None
        except ApiValueError as error:
            raise BadRequest(f"{subject or operation}: {error}") from None
        except urllib3.exceptions.ReadTimeoutError:
            raise KfpTimeout(
                f"KFP at {endpoint} did not answer {operation} within "
                f"{self.settings.kfp_timeout:g} s"
            ) from None
        except urllib3.exceptions.HTTPError as error:
            raise KfpUnavailable(
                f"KFP at {endpoint} is unreachable ({operation}): {_reason(error)}"
            ) from None
        except OSError as error:
            raise KfpUnavailable(
                f"KFP at {endpoint} is unreachable ({operation}): {error}"
            ) from None


# ---------------------------------------------------------------------- SDK set-up


class _NoRedirectPoolManager(urllib3.PoolManager):
    """A connection pool that never follows redirects: a redirect to a login page is an answer."""

    def urlopen(self, method: str, url: str, redirect: bool = True, **kw: Any) -> Any:
        return super().urlopen(method, url, redirect=False, **kw)


def _build_apis(settings: Settings, auth: KfpAuth) -> _Apis:
    """Create the generated client with auth headers, request ids and no redirects or retries."""
    import kfp_server_api
    from kfp_server_api import rest

    class _RestClient(rest.RESTClientObject):
        """Adds credentials and the request id; logs in again when a Dex session expired."""

        def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            headers = dict(kwargs.pop("headers", None) or {})
            sent = self._with_identity(headers)
            try:
                return super().request(method, url, *args, headers=sent, **kwargs)
            except rest.ApiException as error:
                if not auth.is_login_challenge(error.status or 0, error.headers):
                    raise
                log.info("KFP asked the adapter to log in again (HTTP %s)", error.status)
                auth.login(stale_cookie=sent.get("Cookie", ""))
                return super().request(
                    method, url, *args, headers=self._with_identity(headers), **kwargs
                )

        @staticmethod
        def _with_identity(headers: dict[str, str]) -> dict[str, str]:
            sent = {**headers, **auth.headers()}
            request_id = current_request_id()
            if request_id:
                sent["X-Request-ID"] = request_id
            return sent

    configuration = kfp_server_api.Configuration(host=settings.kfp_endpoint)
    configuration.retries = False
    configuration.connection_pool_maxsize = 32
    api_client = kfp_server_api.ApiClient(configuration)
    rest_client = _RestClient(configuration)
    rest_client.pool_manager = _NoRedirectPoolManager(
        num_pools=4, **rest_client.pool_manager.connection_pool_kw
    )
    api_client.rest_client = rest_client
    api_client.user_agent = "kfadapter"
    return _Apis(
        api_client=api_client,
        healthz=kfp_server_api.HealthzServiceApi(api_client),
        pipelines=kfp_server_api.PipelineServiceApi(api_client),
        upload=kfp_server_api.PipelineUploadServiceApi(api_client),
        experiments=kfp_server_api.ExperimentServiceApi(api_client),
        runs=kfp_server_api.RunServiceApi(api_client),
        recurring_runs=kfp_server_api.RecurringRunServiceApi(api_client),
    )


# ---------------------------------------------------------------------- error mapping


def _http_error(error: Any, operation: str, subject: str | None) -> AdapterError:
    """The adapter error for a KFP HTTP error answer."""
    status = int(error.status or 0)
    message = _kfp_message(error.body) or (error.reason or "").strip() or f"HTTP {status}"
    what = subject or operation
    if status == 0:
        return KfpUnavailable(f"KFP call {operation} failed: {message}")
    if status == 404:
        return NotFound(f"{what} not found", kfp_message=message)
    if status == 409:
        return Conflict(f"{what}: {message}", kfp_message=message)
    if status == 400:
        return BadRequest(f"KFP rejected {what}: {message}", kfp_message=message)
    if 300 <= status < 400:
        location = header(error.headers, "Location") or "?"
        return KfpError(
            f"KFP redirected {operation} to {location}: authentication is probably required "
            "(set KFP_TOKEN, KFP_TOKEN_FILE, KFP_COOKIE or KFP_USERNAME/KFP_PASSWORD)",
            kfp_status=status,
        )
    if status in (401, 403):
        return KfpError(
            f"KFP refused {operation} (HTTP {status}): {message}; check the adapter's KFP "
            "credentials",
            kfp_status=status,
        )
    return KfpError(f"KFP failed {operation} (HTTP {status}): {message}", kfp_status=status)


def _kfp_message(body: Any) -> str:
    """The message of KFP's JSON error body ({"error", "code", "message"}), else its text."""
    if body is None:
        return ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if isinstance(document, dict):
        for key in ("message", "error"):
            if isinstance(document.get(key), str) and document[key].strip():
                return document[key].strip()[:MAX_MESSAGE]
    if "<html" in text[:500].lower():
        return "KFP answered with an HTML page"
    return text.strip()[:MAX_MESSAGE]


def _reason(error: Exception) -> str:
    """A short reason for a urllib3 connection error."""
    reason = getattr(error, "reason", None) or error
    text = str(reason)
    if "Connection refused" in text:
        return "connection refused"
    return text[:300]


def _json_body(response: Any) -> dict[str, Any]:
    """The JSON object of a successful KFP answer."""
    try:
        raw = response.data
    finally:
        response.release_conn()
    if not raw or not raw.strip():
        return {}
    try:
        document = json.loads(raw)
    except ValueError:
        raise KfpError("KFP answered with something that is not JSON") from None
    if not isinstance(document, dict):
        raise KfpError("KFP answered with JSON that is not an object")
    return document


def _text_body(response: Any) -> str:
    """The text of a successful KFP answer (a log)."""
    try:
        raw = response.data
    finally:
        response.release_conn()
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw or "")


def _present(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters that have a value (the SDK sends None as an empty string)."""
    return {key: value for key, value in params.items() if value is not None}


def _page(
    answer: dict[str, Any], items_key: str, flatten: Callable[[dict[str, Any]], dict[str, Any]]
) -> dict[str, Any]:
    """One page of a KFP list as {items_key, "next_page_token", "total_size"}, flattened."""
    return {
        items_key: [flatten(item) for item in answer.get(items_key) or []],
        "next_page_token": answer.get("next_page_token") or "",
        "total_size": int(answer.get("total_size") or 0),
    }


# ---------------------------------------------------------------------- filters


def _equals_filter(key: str, value: str) -> str:
    """KFP's filter JSON for `key == value`."""
    return json.dumps({"predicates": [{"key": key, "operation": "EQUALS", "string_value": value}]})


def _in_filter(key: str, values: Collection[str]) -> str:
    """KFP's filter JSON for `key IN values`."""
    return json.dumps(
        {"predicates": [{"key": key, "operation": "IN", "string_values": {"values": list(values)}}]}
    )


def _refuse_dot_segments(path_values: tuple[Any, ...], subject: str) -> None:
    """NotFound for an id of "." or "..": in KFP's URL it would name another route.

    The generated client quotes path values but leaves dots alone, and urllib3 removes
    dot segments, so `get_run(".")` would GET KFP's list of runs. No KFP id is a dot.
    """
    if any(isinstance(value, str) and value in (".", "..") for value in path_values):
        raise NotFound(f"{subject} not found")


def _looks_like_id(text: str) -> bool:
    """Whether a path segment could be a KFP id (a UUID) rather than a display name."""
    stripped = text.replace("-", "")
    return (
        len(text) == 36 and len(stripped) == 32 and all(c in "0123456789abcdef" for c in stripped)
    )


# ---------------------------------------------------------------------- uploads


class _package_file:
    """A private temporary file holding an uploaded package, named by its content type."""

    def __init__(self, package: bytes) -> None:
        self._package = package
        self._directory: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> Path:
        self._directory = tempfile.TemporaryDirectory(prefix="kfadapter-upload-")
        path = Path(self._directory.name) / f"pipeline{package_suffix(self._package)}"
        path.write_bytes(self._package)
        return path

    def __exit__(self, *exc: object) -> None:
        if self._directory is not None:
            self._directory.cleanup()


def package_suffix(package: bytes) -> str:
    """The file suffix KFP expects for a package: .zip, .tar.gz, .json or .yaml."""
    if package.startswith(b"PK\x03\x04"):
        return ".zip"
    if package.startswith(b"\x1f\x8b"):
        return ".tar.gz"
    if package.lstrip()[:1] == b"{":
        return ".json"
    return ".yaml"


def _next_version_name(taken: Collection[str]) -> str:
    """The smallest whole number >= 2 not already used as a version name."""
    number = 2
    while str(number) in taken:
        number += 1
    return str(number)


def _upload_answer(name: str, pipeline_id: str, version: dict[str, Any] | None) -> dict[str, Any]:
    """The answer to an upload: {"name", "id", "version_id", "version_name"}."""
    return {
        "name": name,
        "id": pipeline_id,
        "version_id": version["pipeline_version_id"] if version else None,
        "version_name": version["display_name"] if version else None,
    }


def _version_summary(version: dict[str, Any] | None) -> dict[str, Any] | None:
    """{"id", "name", "created_at"} of a version, or None."""
    if version is None:
        return None
    return {
        "id": version["pipeline_version_id"],
        "name": version["display_name"],
        "created_at": version["created_at"],
    }


# ---------------------------------------------------------------------- flattening


def flatten_pipeline(raw: dict[str, Any]) -> dict[str, Any]:
    """A KFP pipeline as {"pipeline_id", "display_name", "name", "description", ...}."""
    return {
        "pipeline_id": raw.get("pipeline_id") or "",
        "display_name": raw.get("display_name") or raw.get("name") or "",
        "name": raw.get("name") or raw.get("display_name") or "",
        "description": raw.get("description") or "",
        "created_at": iso(raw.get("created_at")),
        "namespace": raw.get("namespace") or "",
        "error": _error_text(raw.get("error")),
    }


def flatten_version(raw: dict[str, Any]) -> dict[str, Any]:
    """A pipeline version with its declared parameters and its task list."""
    spec = spec_of(raw.get("pipeline_spec"))
    package_url = raw.get("package_url")
    return {
        "pipeline_version_id": raw.get("pipeline_version_id") or "",
        "id": raw.get("pipeline_version_id") or "",
        "pipeline_id": raw.get("pipeline_id") or "",
        "display_name": raw.get("display_name") or raw.get("name") or "",
        "name": raw.get("name") or raw.get("display_name") or "",
        "description": raw.get("description") or "",
        "created_at": iso(raw.get("created_at")),
        "parameters": declared_parameters(spec),
        "tasks": pipeline_tasks(spec),
        "package_url": package_url.get("pipeline_url") if isinstance(package_url, dict) else None,
        "code_source_url": raw.get("code_source_url") or None,
        "error": _error_text(raw.get("error")),
    }


def flatten_experiment(raw: dict[str, Any]) -> dict[str, Any]:
    """An experiment as {"experiment_id", "id", "name", "description", ...}."""
    return {
        "experiment_id": raw.get("experiment_id") or "",
        "id": raw.get("experiment_id") or "",
        "name": raw.get("display_name") or "",
        "display_name": raw.get("display_name") or "",
        "description": raw.get("description") or "",
        "created_at": iso(raw.get("created_at")),
        "last_run_created_at": iso(raw.get("last_run_created_at")),
        "namespace": raw.get("namespace") or "",
        "storage_state": raw.get("storage_state") or "",
    }


def flatten_run(raw: dict[str, Any]) -> dict[str, Any]:
    """A run: ids, name, state, experiment, version, times, parameters, error, tasks."""
    reference = raw.get("pipeline_version_reference") or {}
    runtime_config = raw.get("runtime_config") or {}
    details = raw.get("run_details") or {}
    spec = spec_of(raw.get("pipeline_spec")) if raw.get("pipeline_spec") else {}
    return {
        "run_id": raw.get("run_id") or "",
        "display_name": raw.get("display_name") or "",
        "name": raw.get("display_name") or "",
        "description": raw.get("description") or "",
        "state": raw.get("state") or "RUNTIME_STATE_UNSPECIFIED",
        "storage_state": raw.get("storage_state") or "",
        "experiment_id": raw.get("experiment_id") or "",
        "pipeline_id": reference.get("pipeline_id") or "",
        "pipeline_version_id": reference.get("pipeline_version_id")
        or raw.get("pipeline_version_id")
        or "",
        "pipeline_spec_name": (spec.get("pipelineInfo") or {}).get("name") or "",
        "recurring_run_id": raw.get("recurring_run_id") or "",
        "created_at": iso(raw.get("created_at")),
        "scheduled_at": iso(raw.get("scheduled_at")),
        "finished_at": iso(raw.get("finished_at")),
        "parameters": runtime_config.get("parameters") or {},
        "error": _error_text(raw.get("error")),
        "state_history": [
            {"state": entry.get("state") or "", "update_time": iso(entry.get("update_time"))}
            for entry in raw.get("state_history") or []
        ],
        "tasks": [_flatten_task(task) for task in details.get("task_details") or []],
    }


def _flatten_task(raw: dict[str, Any]) -> dict[str, Any]:
    """One task of a run: id, name, state, times, error, pods."""
    return {
        "task_id": raw.get("task_id") or "",
        "name": raw.get("display_name") or "",
        "state": raw.get("state") or "",
        "created_at": iso(raw.get("create_time")),
        "started_at": iso(raw.get("start_time")),
        "finished_at": iso(raw.get("end_time")),
        "error": _error_text(raw.get("error")),
        "pods": [c.get("pod_name") for c in raw.get("child_tasks") or [] if c.get("pod_name")],
    }


def flatten_recurring_run(raw: dict[str, Any]) -> dict[str, Any]:
    """A recurring run: ids, name, status, trigger, concurrency, pipeline, parameters, times."""
    reference = raw.get("pipeline_version_reference") or {}
    trigger = raw.get("trigger") or {}
    cron = trigger.get("cron_schedule") or {}
    periodic = trigger.get("periodic_schedule") or {}
    schedule = cron or periodic
    return {
        "recurring_run_id": raw.get("recurring_run_id") or "",
        "id": raw.get("recurring_run_id") or "",
        "name": raw.get("display_name") or "",
        "display_name": raw.get("display_name") or "",
        "description": raw.get("description") or "",
        "status": raw.get("status") or "",
        "mode": raw.get("mode") or "",
        "experiment_id": raw.get("experiment_id") or "",
        "pipeline_id": reference.get("pipeline_id") or "",
        "pipeline_version_id": reference.get("pipeline_version_id") or "",
        "parameters": (raw.get("runtime_config") or {}).get("parameters") or {},
        "trigger": {
            "cron": cron.get("cron") or None,
            "interval_second": _int_or_none(periodic.get("interval_second")),
            "start_time": iso(schedule.get("start_time")),
            "end_time": iso(schedule.get("end_time")),
        },
        "max_concurrency": _int_or_none(raw.get("max_concurrency")),
        "no_catchup": bool(raw.get("no_catchup")),
        "namespace": raw.get("namespace") or "",
        "created_at": iso(raw.get("created_at")),
        "updated_at": iso(raw.get("updated_at")),
        "error": _error_text(raw.get("error")),
    }


def iso(value: Any) -> str | None:
    """An RFC 3339 / ISO-8601 date from KFP as ISO-8601 text; None when unset."""
    if not value or not isinstance(value, str):
        return None
    if value.startswith("1970-01-01T00:00:00"):
        return None  # KFP's "never" (zero timestamp)
    return value


def _int_or_none(value: Any) -> int | None:
    """KFP sends int64 as strings: an int, or None."""
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _error_text(error: Any) -> str | None:
    """The message of a KFP error status ({"code", "message"}), or None."""
    if not error:
        return None
    if isinstance(error, dict):
        return error.get("message") or (json.dumps(error) if error.get("code") else None)
    return str(error)
