"""What the embedded KFP server does: KFP v2beta1 operations on the store, answered as KFP's JSON.

The HTTP layer (app.py) only parses requests and calls these methods; every rule
about ids, names, states and defaults lives here.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from kfadapter.localkfp import query as q
from kfadapter.localkfp.apierrors import (
    ApiError,
    bad_request,
    conflict,
    not_found,
    parse_json_text,
)
from kfadapter.localkfp.packages import ir_of, normalize_spec, parse_package
from kfadapter.localkfp.store import (
    ACTIVE_STATES,
    DEFAULT_EXPERIMENT,
    EXPERIMENTS,
    FINAL_STATES,
    PIPELINES,
    RECURRING_RUNS,
    RUNS,
    VERSIONS,
    Store,
    dumps,
    loads,
    new_id,
)
from kfadapter.localkfp.timefmt import from_datetime, now_us, to_rfc3339
from kfadapter.localkfp.triggers import Trigger, parse_trigger

log = logging.getLogger(__name__)

MAX_NAME_LENGTH = 255
FAILED_PRECONDITION = 9
MAX_RECURRING_CONCURRENCY = 10


def _text(body: dict[str, Any], key: str, where: str) -> str:
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise bad_request(f"{where}.{key} must be a string, got {type(value).__name__}")
    return value


def _name(value: str, what: str) -> str:
    """A validated resource name: not blank, at most 255 characters."""
    if not value or not value.strip():
        raise bad_request(f"{what} name is empty; please specify a valid name")
    if len(value) > MAX_NAME_LENGTH:
        raise bad_request(f"{what} name is longer than {MAX_NAME_LENGTH} characters")
    if any(ord(char) < 32 for char in value):
        raise bad_request(f"{what} name contains control characters")
    return value


def _object(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_request(f"{what} must be a JSON object")
    return value


def _status(message: str, code: int = 2) -> dict[str, Any]:
    return {"code": code, "message": message, "details": []}


class KfpService:
    """KFP v2beta1 operations over a Store, with runs handed to a RunExecutor."""

    def __init__(self, store: Store, data_dir: Path | str | None = None) -> None:
        self.store = store
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self._executor: Any = None
        self._run_lock = threading.RLock()

    def attach_executor(self, executor: Any) -> None:
        """Use this executor (RunExecutor interface) for runs created from now on."""
        self._executor = executor

    # -- JSON views ------------------------------------------------------------------

    @staticmethod
    def pipeline_json(row: dict[str, Any]) -> dict[str, Any]:
        """A pipelines row as KFP's V2beta1Pipeline JSON."""
        result = {
            "pipeline_id": row["id"],
            "name": row["name"],
            "display_name": row["display_name"],
            "description": row["description"],
            "created_at": to_rfc3339(row["created_at"]),
            "namespace": row["namespace"],
        }
        tags = loads(row.get("tags"))
        if tags:
            result["tags"] = tags
        return result

    @staticmethod
    def version_json(row: dict[str, Any]) -> dict[str, Any]:
        """A pipeline_versions row as KFP's V2beta1PipelineVersion JSON."""
        result = {
            "pipeline_id": row["pipeline_id"],
            "pipeline_version_id": row["id"],
            "name": row["name"],
            "display_name": row["display_name"],
            "description": row["description"],
            "created_at": to_rfc3339(row["created_at"]),
            "pipeline_spec": loads(row["pipeline_spec"]),
        }
        if row.get("package_url"):
            result["package_url"] = {"pipeline_url": row["package_url"]}
        if row.get("code_source_url"):
            result["code_source_url"] = row["code_source_url"]
        tags = loads(row.get("tags"))
        if tags:
            result["tags"] = tags
        return result

    @staticmethod
    def experiment_json(row: dict[str, Any]) -> dict[str, Any]:
        """An experiments row as KFP's V2beta1Experiment JSON."""
        return {
            "experiment_id": row["id"],
            "display_name": row["display_name"],
            "description": row["description"],
            "created_at": to_rfc3339(row["created_at"]),
            "namespace": row["namespace"],
            "storage_state": row["storage_state"],
            "last_run_created_at": to_rfc3339(row["last_run_created_at"]),
        }

    @staticmethod
    def _source_json(row: dict[str, Any], result: dict[str, Any]) -> None:
        if row["pipeline_version_id"]:
            result["pipeline_version_reference"] = {
                "pipeline_id": row["pipeline_id"],
                "pipeline_version_id": row["pipeline_version_id"],
            }
        elif row["pipeline_spec"]:
            result["pipeline_spec"] = loads(row["pipeline_spec"])
        runtime_config = loads(row["runtime_config"])
        if runtime_config:
            result["runtime_config"] = runtime_config

    @classmethod
    def run_json(cls, row: dict[str, Any]) -> dict[str, Any]:
        """A runs row as KFP's V2beta1Run JSON (with run_details and state_history)."""
        result: dict[str, Any] = {
            "experiment_id": row["experiment_id"],
            "run_id": row["id"],
            "display_name": row["display_name"],
            "storage_state": row["storage_state"],
            "description": row["description"],
            "service_account": row["service_account"],
            "created_at": to_rfc3339(row["created_at"]),
            "scheduled_at": to_rfc3339(row["scheduled_at"]),
            "finished_at": to_rfc3339(row["finished_at"]),
            "state": row["state"],
        }
        cls._source_json(row, result)
        error = loads(row["error"])
        if error:
            result["error"] = _status(error.get("message", ""), error.get("code", 2))
        tasks = loads(row["task_details"])
        if tasks:
            result["run_details"] = {"task_details": tasks}
        if row["recurring_run_id"]:
            result["recurring_run_id"] = row["recurring_run_id"]
        history = []
        for entry in loads(row["state_history"]) or []:
            item = {"update_time": to_rfc3339(entry["update_time"]), "state": entry["state"]}
            if entry.get("error"):
                item["error"] = _status(entry["error"].get("message", ""))
            history.append(item)
        if history:
            result["state_history"] = history
        return result

    @classmethod
    def recurring_run_json(cls, row: dict[str, Any]) -> dict[str, Any]:
        """A recurring_runs row as KFP's V2beta1RecurringRun JSON."""
        enabled = row["status"] == "ENABLED"
        result: dict[str, Any] = {
            "recurring_run_id": row["id"],
            "display_name": row["display_name"],
            "description": row["description"],
            "service_account": row["service_account"],
            "max_concurrency": str(row["max_concurrency"]),
            "trigger": loads(row["trigger_spec"])["shown"],
            "mode": "ENABLE" if enabled else "DISABLE",
            "created_at": to_rfc3339(row["created_at"]),
            "updated_at": to_rfc3339(row["updated_at"]),
            "status": row["status"],
            "no_catchup": bool(row["no_catchup"]),
            "namespace": row["namespace"],
            "experiment_id": row["experiment_id"],
        }
        cls._source_json(row, result)
        return result

    # -- healthz ---------------------------------------------------------------------

    @staticmethod
    def healthz() -> dict[str, Any]:
        """KFP's GetHealthzResponse: a single-user deployment."""
        return {"multi_user": False, "pipeline_store": "database"}

    # -- lists -----------------------------------------------------------------------

    def _list(
        self, listable: q.Listable, args: dict[str, Any], scope: dict[str, str] | None = None
    ) -> tuple[list[dict[str, Any]], int, str]:
        query = q.build_query(
            listable,
            page_size=args.get("page_size"),
            page_token=args.get("page_token"),
            sort_by=args.get("sort_by"),
            filter_json=args.get("filter"),
            scope=scope,
        )
        return self.store.list(query)

    @staticmethod
    def _page(key: str, items: list[dict[str, Any]], total: int, token: str) -> dict[str, Any]:
        # Like KFP (proto3 JSON), an empty list is left out; total_size is always given.
        result: dict[str, Any] = {key: items} if items else {}
        result["total_size"] = total
        if token:
            result["next_page_token"] = token
        return result

    # -- pipelines -------------------------------------------------------------------

    def _pipeline_row(self, pipeline_id: str) -> dict[str, Any]:
        row = self.store.get("pipelines", pipeline_id)
        if row is None:
            raise not_found(f"Pipeline {pipeline_id} not found")
        return row

    def _new_pipeline_row(self, body: dict[str, Any]) -> dict[str, Any]:
        display_name = _text(body, "display_name", "pipeline")
        name = _text(body, "name", "pipeline") or display_name
        _name(name, "Pipeline")
        tags = body.get("tags")
        if tags is not None and not isinstance(tags, dict):
            raise bad_request("pipeline.tags must be an object of strings")
        return {
            "id": new_id(),
            "name": name,
            "display_name": display_name or name,
            "description": _text(body, "description", "pipeline"),
            "namespace": _text(body, "namespace", "pipeline"),
            "created_at": now_us(),
            "tags": dumps(tags) if tags else None,
        }

    def _new_version_row(
        self, pipeline: dict[str, Any], body: dict[str, Any], spec: dict[str, Any] | None
    ) -> dict[str, Any]:
        display_name = _text(body, "display_name", "pipeline_version")
        name = _text(body, "name", "pipeline_version") or display_name
        _name(name, "Pipeline version")
        package_url = ""
        raw_url = body.get("package_url")
        if isinstance(raw_url, dict):
            package_url = _text(raw_url, "pipeline_url", "pipeline_version.package_url")
        if spec is None:
            raw_spec = body.get("pipeline_spec")
            if raw_spec is not None:
                spec = normalize_spec(raw_spec, "pipeline_version.pipeline_spec")
            elif package_url:
                spec = self._fetch_package(package_url)
            else:
                raise bad_request(
                    "Pipeline version needs a pipeline_spec or a package_url.pipeline_url"
                )
        tags = body.get("tags")
        if tags is not None and not isinstance(tags, dict):
            raise bad_request("pipeline_version.tags must be an object of strings")
        return {
            "id": new_id(),
            "pipeline_id": pipeline["id"],
            "name": name,
            "display_name": display_name or name,
            "description": _text(body, "description", "pipeline_version"),
            "created_at": now_us(),
            "pipeline_spec": dumps(spec),
            "package_url": package_url,
            "code_source_url": _text(body, "code_source_url", "pipeline_version"),
            "tags": dumps(tags) if tags else None,
        }

    @staticmethod
    def _fetch_package(url: str) -> dict[str, Any]:
        """The spec behind a package_url (http/https only)."""
        if not url.startswith(("http://", "https://")):
            raise bad_request(f"package_url {url!r} must be an http(s) URL")
        import requests

        try:
            response = requests.get(url, timeout=10)
        except requests.RequestException as error:
            raise bad_request(f"Failed to download the package at {url}: {error}") from None
        if response.status_code != 200:
            raise bad_request(
                f"Failed to download the package at {url}: HTTP {response.status_code}"
            )
        return parse_package(response.content)

    def _insert_pipeline(
        self, pipeline: dict[str, Any], version: dict[str, Any] | None = None
    ) -> None:
        with self.store.write() as conn:
            clash = conn.execute(
                "SELECT 1 FROM pipelines WHERE namespace = ? AND name = ?",
                (pipeline["namespace"], pipeline["name"]),
            ).fetchone()
            if clash:
                raise conflict(
                    f"Failed to create a new pipeline. The name {pipeline['name']!r} already "
                    f"exists in namespace {pipeline['namespace']!r}. Please specify a new name"
                )
            self.store.insert(conn, "pipelines", pipeline)
            if version is not None:
                self.store.insert(conn, "pipeline_versions", version)

    def create_pipeline(self, body: Any) -> dict[str, Any]:
        """POST /pipelines: a pipeline without versions."""
        row = self._new_pipeline_row(_object(body, "pipeline"))
        self._insert_pipeline(row)
        return self.pipeline_json(row)

    def create_pipeline_and_version(self, body: Any) -> dict[str, Any]:
        """POST /pipelines/create: a pipeline and its first version at once."""
        body = _object(body, "request body")
        pipeline_body = _object(body.get("pipeline"), "pipeline")
        version_body = _object(body.get("pipeline_version"), "pipeline_version")
        if not pipeline_body:
            raise bad_request("request needs a pipeline")
        if not version_body:
            raise bad_request("request needs a pipeline_version")
        pipeline = self._new_pipeline_row(pipeline_body)
        if not version_body.get("name") and not version_body.get("display_name"):
            version_body = {**version_body, "name": pipeline["name"]}
        version = self._new_version_row(pipeline, version_body, None)
        self._insert_pipeline(pipeline, version)
        return self.pipeline_json(pipeline)

    def upload_pipeline(
        self,
        data: bytes,
        filename: str,
        name: str,
        display_name: str,
        description: str,
        namespace: str,
    ) -> dict[str, Any]:
        """POST /pipelines/upload: a pipeline and its first version from a package file."""
        spec = parse_package(data)
        name = name or display_name or _file_stem(filename)
        pipeline = self._new_pipeline_row(
            {
                "name": name,
                "display_name": display_name or name,
                "description": description,
                "namespace": namespace,
            }
        )
        version = self._new_version_row(
            pipeline,
            {"name": name, "display_name": display_name or name, "description": description},
            spec,
        )
        self._insert_pipeline(pipeline, version)
        return self.pipeline_json(pipeline)

    def get_pipeline(self, pipeline_id: str) -> dict[str, Any]:
        """GET /pipelines/{id}."""
        return self.pipeline_json(self._pipeline_row(pipeline_id))

    def get_pipeline_by_name(self, name: str, namespace: str) -> dict[str, Any]:
        """GET /pipelines/names/{name}?namespace=."""
        row = self.store.find("pipelines", namespace=namespace or "", name=name)
        if row is None:
            raise not_found(f"Pipeline with name {name!r} not found in namespace {namespace!r}")
        return self.pipeline_json(row)

    def list_pipelines(self, args: dict[str, Any]) -> dict[str, Any]:
        """GET /pipelines."""
        rows, total, token = self._list(PIPELINES, args, {"namespace": args.get("namespace", "")})
        return self._page("pipelines", [self.pipeline_json(r) for r in rows], total, token)

    def delete_pipeline(self, pipeline_id: str, cascade: bool) -> dict[str, Any]:
        """DELETE /pipelines/{id}: refused while versions remain unless cascade."""
        with self.store.write() as conn:
            if not conn.execute("SELECT 1 FROM pipelines WHERE id = ?", (pipeline_id,)).fetchone():
                raise not_found(f"Pipeline {pipeline_id} not found")
            versions = conn.execute(
                "SELECT COUNT(*) FROM pipeline_versions WHERE pipeline_id = ?", (pipeline_id,)
            ).fetchone()[0]
            if versions and not cascade:
                raise ApiError(
                    400,
                    f"Failed to delete pipeline {pipeline_id}: it has {versions} pipeline "
                    "version(s); delete them first or set cascade=true",
                    FAILED_PRECONDITION,
                )
            conn.execute("DELETE FROM pipeline_versions WHERE pipeline_id = ?", (pipeline_id,))
            conn.execute("DELETE FROM pipelines WHERE id = ?", (pipeline_id,))
        return {}

    def _mutable_fields(self, body: dict[str, Any], what: str) -> dict[str, Any]:
        """display_name and tags of a PATCH body (KFP's mutable fields)."""
        fields: dict[str, Any] = {}
        if body.get("display_name") is not None:
            fields["display_name"] = _name(_text(body, "display_name", what), what.capitalize())
        if body.get("tags") is not None:
            tags = body["tags"]
            if not isinstance(tags, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
            ):
                raise bad_request(f"{what}.tags must be an object of strings")
            fields["tags"] = dumps(tags) if tags else None
        if not fields:
            raise bad_request(f"nothing to update: {what} mutable fields are display_name, tags")
        return fields

    def update_pipeline(self, pipeline_id: str, body: Any) -> dict[str, Any]:
        """PATCH /pipelines/{id}: change display_name and/or tags."""
        body = _object(body, "pipeline")
        if body.get("pipeline_id") not in (None, "", pipeline_id):
            raise bad_request("pipeline.pipeline_id does not match the path")
        fields = self._mutable_fields(body, "pipeline")
        self._pipeline_row(pipeline_id)
        self.store.update("pipelines", pipeline_id, **fields)
        return self.get_pipeline(pipeline_id)

    def update_version(self, pipeline_id: str, version_id: str, body: Any) -> dict[str, Any]:
        """PATCH /pipelines/{pid}/versions/{vid}: change display_name and/or tags."""
        body = _object(body, "pipeline_version")
        if body.get("pipeline_version_id") not in (None, "", version_id):
            raise bad_request("pipeline_version.pipeline_version_id does not match the path")
        fields = self._mutable_fields(body, "pipeline_version")
        self._version_row(pipeline_id, version_id)
        self.store.update("pipeline_versions", version_id, **fields)
        return self.get_version(pipeline_id, version_id)

    # -- pipeline versions -------------------------------------------------------------

    def _insert_version(self, version: dict[str, Any]) -> None:
        with self.store.write() as conn:
            if not conn.execute(
                "SELECT 1 FROM pipelines WHERE id = ?", (version["pipeline_id"],)
            ).fetchone():
                raise not_found(f"Pipeline {version['pipeline_id']} not found")
            clash = conn.execute(
                "SELECT 1 FROM pipeline_versions WHERE pipeline_id = ? AND name = ?",
                (version["pipeline_id"], version["name"]),
            ).fetchone()
            if clash:
                raise conflict(
                    f"Failed to create a new pipeline version. The name {version['name']!r} "
                    f"already exists in pipeline {version['pipeline_id']}. "
                    "Please specify a new name"
                )
            self.store.insert(conn, "pipeline_versions", version)

    def create_version(self, pipeline_id: str, body: Any) -> dict[str, Any]:
        """POST /pipelines/{id}/versions."""
        pipeline = self._pipeline_row(pipeline_id)
        body = _object(body, "pipeline_version")
        if body.get("pipeline_id") not in (None, "", pipeline_id):
            raise bad_request("pipeline_version.pipeline_id does not match the path")
        version = self._new_version_row(pipeline, body, None)
        self._insert_version(version)
        return self.version_json(version)

    def upload_version(
        self,
        data: bytes,
        filename: str,
        pipeline_id: str,
        name: str,
        display_name: str,
        description: str,
    ) -> dict[str, Any]:
        """POST /pipelines/upload_version?pipelineid=."""
        if not pipeline_id:
            raise bad_request("Failed to create a pipeline version: pipelineid is missing")
        pipeline = self._pipeline_row(pipeline_id)
        spec = parse_package(data)
        name = name or display_name or _file_stem(filename)
        version = self._new_version_row(
            pipeline,
            {"name": name, "display_name": display_name or name, "description": description},
            spec,
        )
        self._insert_version(version)
        return self.version_json(version)

    def _version_row(self, pipeline_id: str, version_id: str) -> dict[str, Any]:
        row = self.store.get("pipeline_versions", version_id)
        if row is None or (pipeline_id and row["pipeline_id"] != pipeline_id):
            raise not_found(f"Pipeline version {version_id} not found in pipeline {pipeline_id}")
        return row

    def get_version(self, pipeline_id: str, version_id: str) -> dict[str, Any]:
        """GET /pipelines/{pid}/versions/{vid}."""
        return self.version_json(self._version_row(pipeline_id, version_id))

    def list_versions(self, pipeline_id: str, args: dict[str, Any]) -> dict[str, Any]:
        """GET /pipelines/{pid}/versions."""
        self._pipeline_row(pipeline_id)
        rows, total, token = self._list(VERSIONS, args, {"pipeline_id": pipeline_id})
        return self._page("pipeline_versions", [self.version_json(r) for r in rows], total, token)

    def delete_version(self, pipeline_id: str, version_id: str) -> dict[str, Any]:
        """DELETE /pipelines/{pid}/versions/{vid}."""
        self._version_row(pipeline_id, version_id)
        with self.store.write() as conn:
            conn.execute("DELETE FROM pipeline_versions WHERE id = ?", (version_id,))
        return {}

    def latest_version(self, pipeline_id: str) -> dict[str, Any] | None:
        """The newest version of a pipeline, or None."""
        with self.store.read() as conn:
            row = conn.execute(
                "SELECT * FROM pipeline_versions WHERE pipeline_id = ? "
                "ORDER BY created_at DESC, id DESC LIMIT 1",
                (pipeline_id,),
            ).fetchone()
        return dict(row) if row else None

    # -- experiments -------------------------------------------------------------------

    def _experiment_row(self, experiment_id: str) -> dict[str, Any]:
        row = self.store.get("experiments", experiment_id)
        if row is None:
            raise not_found(f"Experiment {experiment_id} not found")
        return row

    def create_experiment(self, body: Any) -> dict[str, Any]:
        """POST /experiments: names are unique per namespace (409)."""
        body = _object(body, "experiment")
        name = _name(_text(body, "display_name", "experiment"), "Experiment")
        row = {
            "id": new_id(),
            "display_name": name,
            "description": _text(body, "description", "experiment"),
            "namespace": _text(body, "namespace", "experiment"),
            "created_at": now_us(),
            "storage_state": "AVAILABLE",
            "last_run_created_at": 0,
        }
        with self.store.write() as conn:
            if conn.execute(
                "SELECT 1 FROM experiments WHERE namespace = ? AND display_name = ?",
                (row["namespace"], name),
            ).fetchone():
                raise conflict(
                    f"Failed to create a new experiment. The name {name!r} already exists in "
                    f"namespace {row['namespace']!r}. Please specify a new name"
                )
            self.store.insert(conn, "experiments", row)
        return self.experiment_json(row)

    def get_experiment(self, experiment_id: str) -> dict[str, Any]:
        """GET /experiments/{id}."""
        return self.experiment_json(self._experiment_row(experiment_id))

    def list_experiments(self, args: dict[str, Any]) -> dict[str, Any]:
        """GET /experiments."""
        rows, total, token = self._list(EXPERIMENTS, args, {"namespace": args.get("namespace", "")})
        return self._page("experiments", [self.experiment_json(r) for r in rows], total, token)

    def delete_experiment(self, experiment_id: str) -> dict[str, Any]:
        """DELETE /experiments/{id}: also deletes its recurring runs; its runs remain."""
        self._experiment_row(experiment_id)
        with self.store.write() as conn:
            conn.execute("DELETE FROM recurring_runs WHERE experiment_id = ?", (experiment_id,))
            conn.execute("DELETE FROM experiments WHERE id = ?", (experiment_id,))
        return {}

    def archive_experiment(self, experiment_id: str) -> dict[str, Any]:
        """POST /experiments/{id}:archive: archives its runs, disables its recurring runs."""
        self._experiment_row(experiment_id)
        now = now_us()
        with self.store.write() as conn:
            conn.execute(
                "UPDATE experiments SET storage_state = 'ARCHIVED' WHERE id = ?", (experiment_id,)
            )
            conn.execute(
                "UPDATE runs SET storage_state = 'ARCHIVED' WHERE experiment_id = ?",
                (experiment_id,),
            )
            conn.execute(
                "UPDATE recurring_runs SET status = 'DISABLED', updated_at = ? "
                "WHERE experiment_id = ?",
                (now, experiment_id),
            )
        return {}

    def unarchive_experiment(self, experiment_id: str) -> dict[str, Any]:
        """POST /experiments/{id}:unarchive (its runs stay archived, as in KFP)."""
        self._experiment_row(experiment_id)
        self.store.update("experiments", experiment_id, storage_state="AVAILABLE")
        return {}

    def _experiment_for(self, experiment_id: str) -> dict[str, Any]:
        """The experiment a new run goes to: the given one, else `Default`."""
        if not experiment_id:
            return self.store.ensure_default_experiment("")
        row = self.store.get("experiments", experiment_id)
        if row is None:
            raise not_found(f"Experiment {experiment_id} not found")
        if row["storage_state"] == "ARCHIVED":
            raise ApiError(
                400,
                f"Experiment {experiment_id} is archived; unarchive it to create runs in it",
                FAILED_PRECONDITION,
            )
        return row

    # -- runs -----------------------------------------------------------------------------

    def _resolve_source(self, body: dict[str, Any], what: str) -> dict[str, Any]:
        """pipeline_id, pipeline_version_id, stored inline spec and the IR to execute."""
        reference = body.get("pipeline_version_reference")
        inline = body.get("pipeline_spec")
        if reference and inline:
            raise bad_request(f"{what} needs either pipeline_version_reference or pipeline_spec")
        if reference:
            reference = _object(reference, f"{what}.pipeline_version_reference")
            pipeline_id = _text(reference, "pipeline_id", "pipeline_version_reference")
            version_id = _text(reference, "pipeline_version_id", "pipeline_version_reference")
            if version_id:
                version = self._version_row(pipeline_id, version_id)
            elif pipeline_id:
                self._pipeline_row(pipeline_id)
                version = self.latest_version(pipeline_id)
                if version is None:
                    raise bad_request(f"Pipeline {pipeline_id} has no versions to run")
            else:
                raise bad_request(
                    "pipeline_version_reference needs a pipeline_version_id (or a pipeline_id)"
                )
            return {
                "pipeline_id": version["pipeline_id"],
                "pipeline_version_id": version["id"],
                "pipeline_spec": None,
                "ir": ir_of(loads(version["pipeline_spec"])),
            }
        if inline:
            stored = normalize_spec(inline, f"{what}.pipeline_spec")
            return {
                "pipeline_id": "",
                "pipeline_version_id": "",
                "pipeline_spec": dumps(stored),
                "ir": ir_of(stored),
            }
        raise bad_request(f"{what} needs a pipeline_version_reference or a pipeline_spec")

    @staticmethod
    def _runtime_config(body: dict[str, Any], what: str) -> dict[str, Any]:
        config = _object(body.get("runtime_config"), f"{what}.runtime_config")
        parameters = config.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise bad_request(f"{what}.runtime_config.parameters must be an object")
        result: dict[str, Any] = {}
        if parameters:
            result["parameters"] = parameters
        root = config.get("pipeline_root")
        if root:
            if not isinstance(root, str):
                raise bad_request(f"{what}.runtime_config.pipeline_root must be a string")
            result["pipeline_root"] = root
        return result

    def create_run(
        self,
        body: Any,
        experiment_id: str = "",
        recurring_run_id: str = "",
        scheduled_us: int | None = None,
    ) -> dict[str, Any]:
        """POST /runs: store the run PENDING and hand it to the executor."""
        body = _object(body, "run")
        name = _name(_text(body, "display_name", "run"), "Run")
        experiment = self._experiment_for(_text(body, "experiment_id", "run") or experiment_id)
        source = self._resolve_source(body, "run")
        runtime_config = self._runtime_config(body, "run")
        now = now_us()
        row = {
            "id": new_id(),
            "experiment_id": experiment["id"],
            "namespace": experiment["namespace"],
            "display_name": name,
            "description": _text(body, "description", "run"),
            "storage_state": "AVAILABLE",
            "pipeline_id": source["pipeline_id"],
            "pipeline_version_id": source["pipeline_version_id"],
            "pipeline_spec": source["pipeline_spec"],
            "runtime_config": dumps(runtime_config) if runtime_config else None,
            "service_account": _text(body, "service_account", "run"),
            "created_at": now,
            "scheduled_at": scheduled_us or now,
            "finished_at": 0,
            "state": "PENDING",
            "error": None,
            "task_details": None,
            "state_history": dumps([{"update_time": now, "state": "PENDING"}]),
            "recurring_run_id": recurring_run_id,
        }
        with self.store.write() as conn:
            self.store.insert(conn, "runs", row)
            conn.execute(
                "UPDATE experiments SET last_run_created_at = ? WHERE id = ?",
                (now, experiment["id"]),
            )
        self._submit(row["id"], source["ir"], runtime_config.get("parameters", {}))
        return self.run_json(self.store.get("runs", row["id"]) or row)

    def _submit(self, run_id: str, ir: dict[str, Any], parameters: dict[str, Any]) -> None:
        if self._executor is None:
            self._finish(run_id, "FAILED", "no run executor is attached to this server")
            return
        try:
            self._executor.submit(run_id, ir, parameters)
        except Exception as error:  # the executor refused: the run fails, the call does not
            log.exception("executor refused run %s", run_id)
            self._finish(run_id, "FAILED", f"the run could not be started: {error}")

    def _finish(self, run_id: str, state: str, message: str | None) -> None:
        """End the run in a final state, with the error message if any."""
        with self._run_lock:
            self._enter_state(run_id, state, message, final=True)

    def _enter_state(
        self,
        run_id: str,
        state: str,
        message: str | None = None,
        *,
        final: bool = False,
        **columns: Any,
    ) -> None:
        """Set the run's state (and the other columns given), appending it to state_history;
        a final state also sets error and finished_at. Nothing when the run is gone."""
        now = now_us()
        if final:
            columns.update(error=dumps({"message": message}) if message else None, finished_at=now)
        with self.store.write() as conn:
            row = conn.execute("SELECT state_history FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                return
            history = loads(row["state_history"]) or []
            entry: dict[str, Any] = {"update_time": now, "state": state}
            if message:
                entry["error"] = {"message": message}
            history.append(entry)
            fields = {"state": state, **columns, "state_history": dumps(history)}
            assignments = ", ".join(f"{column} = ?" for column in fields)
            conn.execute(f"UPDATE runs SET {assignments} WHERE id = ?", [*fields.values(), run_id])

    def _run_row(self, run_id: str) -> dict[str, Any]:
        row = self.store.get("runs", run_id)
        if row is None:
            raise not_found(f"Run {run_id} not found")
        return row

    def get_run(self, run_id: str) -> dict[str, Any]:
        """GET /runs/{id}."""
        return self.run_json(self._run_row(run_id))

    def list_runs(self, args: dict[str, Any]) -> dict[str, Any]:
        """GET /runs?experiment_id=&namespace=."""
        scope = {
            "experiment_id": args.get("experiment_id", ""),
            "namespace": args.get("namespace", ""),
        }
        rows, total, token = self._list(RUNS, args, scope)
        return self._page("runs", [self.run_json(r) for r in rows], total, token)

    def terminate_run(self, run_id: str) -> dict[str, Any]:
        """POST /runs/{id}:terminate: CANCELING now, CANCELED when its processes are gone."""
        with self._run_lock:
            row = self._run_row(run_id)
            if row["state"] in FINAL_STATES:
                raise ApiError(
                    400,
                    f"Failed to terminate run {run_id}: it is already {row['state']}",
                    FAILED_PRECONDITION,
                )
            if row["state"] != "CANCELING":
                self._enter_state(run_id, "CANCELING")
        active = bool(self._executor is not None and self._executor.terminate(run_id))
        if not active:
            with self._run_lock:
                current = self.store.get("runs", run_id)
                if current is not None and current["state"] not in FINAL_STATES:
                    self._finish(run_id, "CANCELED", None)
        return {}

    def delete_run(self, run_id: str) -> dict[str, Any]:
        """DELETE /runs/{id}: an active run is killed first."""
        row = self._run_row(run_id)
        if row["state"] not in FINAL_STATES and self._executor is not None:
            self._executor.terminate(run_id)
        with self.store.write() as conn:
            conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        return {}

    def archive_run(self, run_id: str) -> dict[str, Any]:
        """POST /runs/{id}:archive."""
        self._run_row(run_id)
        self.store.update("runs", run_id, storage_state="ARCHIVED")
        return {}

    def unarchive_run(self, run_id: str) -> dict[str, Any]:
        """POST /runs/{id}:unarchive: refused while its experiment is archived."""
        row = self._run_row(run_id)
        experiment = self.store.get("experiments", row["experiment_id"])
        if experiment is not None and experiment["storage_state"] == "ARCHIVED":
            raise ApiError(
                400,
                f"Failed to unarchive run {run_id}: its experiment {experiment['id']} is archived",
                FAILED_PRECONDITION,
            )
        self.store.update("runs", run_id, storage_state="AVAILABLE")
        return {}

    def retry_run(self, run_id: str) -> dict[str, Any]:
        """POST /runs/{id}:retry: a FAILED run (or CANCELED one) executes again, same id."""
        with self._run_lock:
            row = self._run_row(run_id)
            if row["state"] not in ("FAILED", "CANCELED"):
                raise ApiError(
                    400,
                    f"Failed to retry run {run_id}: only a FAILED or CANCELED run can be "
                    f"retried, this one is {row['state']}",
                    FAILED_PRECONDITION,
                )
            if row["pipeline_version_id"]:
                version = self.store.get("pipeline_versions", row["pipeline_version_id"])
                if version is None:
                    raise ApiError(
                        400,
                        f"Failed to retry run {run_id}: its pipeline version "
                        f"{row['pipeline_version_id']} was deleted",
                        FAILED_PRECONDITION,
                    )
                ir = ir_of(loads(version["pipeline_spec"]))
            else:
                ir = ir_of(loads(row["pipeline_spec"]))
            self._enter_state(run_id, "PENDING", error=None, finished_at=0, task_details=None)
        parameters = (loads(row["runtime_config"]) or {}).get("parameters", {})
        self._submit(run_id, ir, parameters)
        return {}

    def apply_run_update(self, update: Any) -> None:
        """Persist a RunUpdate from the executor (state, task details, error, times)."""
        with self._run_lock, self.store.write() as conn:
            row = conn.execute(
                "SELECT state, state_history, finished_at, task_details FROM runs WHERE id = ?",
                (update.run_id,),
            ).fetchone()
            if row is None:
                return  # deleted meanwhile
            current = row["state"]
            state = update.state
            if current in FINAL_STATES:
                return  # already final: a late update does not reopen the run
            if current == "CANCELING" and state not in FINAL_STATES:
                state = "CANCELING"
            history = loads(row["state_history"]) or []
            error = {"message": update.error} if update.error else None
            if not history or history[-1]["state"] != state:
                entry: dict[str, Any] = {"update_time": now_us(), "state": state}
                if error and state == "FAILED":
                    entry["error"] = error
                history.append(entry)
            finished = row["finished_at"]
            if state in FINAL_STATES:
                finished = from_datetime(update.finished_at) or now_us()
            conn.execute(
                "UPDATE runs SET state = ?, task_details = ?, error = ?, finished_at = ?, "
                "state_history = ? WHERE id = ?",
                (
                    state,
                    # an update without task details keeps the ones already known
                    dumps(list(update.task_details))
                    if update.task_details
                    else row["task_details"],
                    dumps(error) if error else None,
                    finished,
                    dumps(history),
                    update.run_id,
                ),
            )

    def task_log(self, run_id: str, node_id: str) -> Path:
        """The file of a task's log: /apis/v1alpha1/runs/{run_id}/nodes/{node_id}/log."""
        self._run_row(run_id)
        path = self._executor.log_path(run_id, node_id) if self._executor is not None else None
        if path is None or not Path(path).is_file():
            raise not_found(f"No log for node {node_id!r} of run {run_id}")
        return Path(path)

    # -- recurring runs -----------------------------------------------------------------

    def _recurring_row(self, recurring_run_id: str) -> dict[str, Any]:
        row = self.store.get("recurring_runs", recurring_run_id)
        if row is None:
            raise not_found(f"Recurring run {recurring_run_id} not found")
        return row

    def create_recurring_run(self, body: Any) -> dict[str, Any]:
        """POST /recurringruns."""
        body = _object(body, "recurring_run")
        name = _name(_text(body, "display_name", "recurring_run"), "Recurring run")
        experiment = self._experiment_for(_text(body, "experiment_id", "recurring_run"))
        source = self._resolve_source(body, "recurring_run")
        runtime_config = self._runtime_config(body, "recurring_run")
        _trigger, shown = parse_trigger(body.get("trigger"))
        raw_concurrency = body.get("max_concurrency")
        max_concurrency = (
            1
            if raw_concurrency in (None, "")
            else q.parse_int64(raw_concurrency, "recurring_run.max_concurrency")
        )
        if not 1 <= max_concurrency <= MAX_RECURRING_CONCURRENCY:
            raise bad_request(
                "max_concurrency of a recurring run must be at least 1 and at most "
                f"{MAX_RECURRING_CONCURRENCY}, got {max_concurrency}"
            )
        no_catchup = body.get("no_catchup")
        if no_catchup is not None and not isinstance(no_catchup, bool):
            raise bad_request(f"recurring_run.no_catchup must be true or false, got {no_catchup!r}")
        mode = body.get("mode") or "ENABLE"
        if mode not in ("ENABLE", "DISABLE", "MODE_UNSPECIFIED"):
            raise bad_request(f"mode must be ENABLE or DISABLE, got {mode!r}")
        now = now_us()
        row = {
            "id": new_id(),
            "display_name": name,
            "description": _text(body, "description", "recurring_run"),
            "namespace": experiment["namespace"],
            "experiment_id": experiment["id"],
            "pipeline_id": source["pipeline_id"],
            "pipeline_version_id": source["pipeline_version_id"],
            "pipeline_spec": source["pipeline_spec"],
            "runtime_config": dumps(runtime_config) if runtime_config else None,
            "service_account": _text(body, "service_account", "recurring_run"),
            "max_concurrency": max_concurrency,
            "no_catchup": 1 if no_catchup else 0,
            "trigger_spec": dumps({"shown": shown, "request": body.get("trigger")}),
            "status": "DISABLED" if mode == "DISABLE" else "ENABLED",
            "created_at": now,
            "updated_at": now,
            "last_fire_at": 0,
            "fire_count": 0,
            "enabled_at": now,
        }
        with self.store.write() as conn:
            self.store.insert(conn, "recurring_runs", row)
        return self.recurring_run_json(row)

    def get_recurring_run(self, recurring_run_id: str) -> dict[str, Any]:
        """GET /recurringruns/{id}."""
        return self.recurring_run_json(self._recurring_row(recurring_run_id))

    def list_recurring_runs(self, args: dict[str, Any]) -> dict[str, Any]:
        """GET /recurringruns?experiment_id=&namespace= (the list key is `recurringRuns`)."""
        scope = {
            "experiment_id": args.get("experiment_id", ""),
            "namespace": args.get("namespace", ""),
        }
        rows, total, token = self._list(RECURRING_RUNS, args, scope)
        items = [self.recurring_run_json(r) for r in rows]
        return self._page("recurringRuns", items, total, token)

    def set_recurring_enabled(self, recurring_run_id: str, enabled: bool) -> dict[str, Any]:
        """POST /recurringruns/{id}:enable or :disable."""
        row = self._recurring_row(recurring_run_id)
        now = now_us()
        fields: dict[str, Any] = {
            "status": "ENABLED" if enabled else "DISABLED",
            "updated_at": now,
        }
        if enabled and row["status"] != "ENABLED":
            fields["enabled_at"] = now
        self.store.update("recurring_runs", recurring_run_id, **fields)
        return {}

    def delete_recurring_run(self, recurring_run_id: str) -> dict[str, Any]:
        """DELETE /recurringruns/{id} (the runs it started remain)."""
        self._recurring_row(recurring_run_id)
        with self.store.write() as conn:
            conn.execute("DELETE FROM recurring_runs WHERE id = ?", (recurring_run_id,))
        return {}

    def trigger_of(self, row: dict[str, Any]) -> Trigger:
        """The Trigger of a stored recurring run."""
        trigger, _shown = parse_trigger(loads(row["trigger_spec"])["request"])
        return trigger

    def fire_recurring_run(self, row: dict[str, Any], scheduled_us: int) -> str | None:
        """Start one run of a recurring run for the given schedule time; its id, or None."""
        index = row["fire_count"] + 1
        resource_id = f"{row['display_name']}-{index}"
        body: dict[str, Any] = {
            # KFP's scheduled workflow names its runs "<name>-<index>-<fnv32a(name-index)>"
            "display_name": f"{resource_id}-{_fnv32a(resource_id)}",
            "description": row["description"],
            "experiment_id": row["experiment_id"],
            "service_account": row["service_account"],
        }
        if row["pipeline_version_id"]:
            body["pipeline_version_reference"] = {
                "pipeline_id": row["pipeline_id"],
                "pipeline_version_id": row["pipeline_version_id"],
            }
        else:
            body["pipeline_spec"] = loads(row["pipeline_spec"])
        runtime_config = loads(row["runtime_config"])
        if runtime_config:
            body["runtime_config"] = runtime_config
        self.store.update("recurring_runs", row["id"], last_fire_at=scheduled_us, fire_count=index)
        try:
            run = self.create_run(body, recurring_run_id=row["id"], scheduled_us=scheduled_us)
        except ApiError as error:
            log.warning("recurring run %s could not start a run: %s", row["id"], error.message)
            return None
        return run["run_id"]


def _fnv32a(text: str) -> int:
    """The 32-bit FNV-1a hash of the text's UTF-8 bytes."""
    value = 0x811C9DC5
    for byte in text.encode():
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


def _file_stem(filename: str) -> str:
    """A pipeline name from an uploaded file name (KFP's fallback when no name is given)."""
    base = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    for suffix in (".tar.gz", ".tgz", ".zip", ".yaml", ".yml", ".json"):
        if base.lower().endswith(suffix):
            return base[: -len(suffix)]
    return base


def parse_json_body(raw: bytes) -> Any:
    """The JSON document of a request body; 400 when it is not JSON."""
    if not raw or not raw.strip():
        return {}
    return parse_json_text(raw, "request body")


__all__ = ["ACTIVE_STATES", "DEFAULT_EXPERIMENT", "KfpService", "parse_json_body"]
