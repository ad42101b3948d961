"""Fuzz both servers with schemathesis (run by hand, a few minutes; never in CI).

    .venv/bin/python -m benchmarks.fuzz              # both servers, 50 examples an operation
    .venv/bin/python -m benchmarks.fuzz --only kfp --examples 100 --seed 7 --workers 4

Starts the embedded KFP server on a free port with a fresh data dir, seeds it over its
HTTP API with the unmodified kfp.Client (pipelines with versions, an experiment, a run
that succeeded and one that failed, really executed with kfp.local, and a recurring run),
then runs `st run` (schemathesis' CLI, every phase: examples, coverage, fuzzing,
stateful) against KFP's own description, `shared/kfp-api/kfp_api_v2beta1.swagger.json`.
Then it does the same with a second fresh server, serves the adapter (run tracking on)
against it and runs `st run` against the adapter's `/openapi.json`. The seeded ids and
names are handed to schemathesis as dictionaries that path, query and body parameters
draw from half of the time, so that cases reach past 404s; DELETE operations draw from
resources seeded to be deleted. Runs created while fuzzing are accepted and held PENDING
(executing them is not what is fuzzed here and would cost a core); the seeded runs
really execute.

What counts as a failure (the checks below, run on every answer; schemathesis shrinks a
failing case and prints a curl line that reproduces it):
- any error answer (4xx, 5xx) that is not a JSON object with a message (KFP's
  `{"code", "message", "details"}`, its upload endpoints' `{"error_message"}`, the
  adapter's `{"status", "message"}`), or that holds a traceback or HTML;
- on the embedded server, a 5xx that KFP 2.17 does not give: KFP answers 500 with gRPC
  code 13 for some requests (`shared/kfp-fidelity.md`, "Error codes") and 501/12 for an
  unimplemented method; any other 5xx, and the server's answer to an unexpected
  exception, are defects. Each 500/13 seen is listed at the end for a reader to check;
- on the embedded server, an answer whose content type or JSON is not what KFP's
  swagger describes for it;
- on the adapter, any 5xx (it must answer a client's bad input with a 4xx, and KFP is
  up), and answers that leave its own OpenAPI description (status code, content type,
  schema);
- anything the servers log at ERROR while they are fuzzed (an unexpected exception, a
  recurring-run scheduler tick or a tracking poll that failed).

Every run first shows that these checks can fail: `--self-check` (done before fuzzing,
or alone) serves a stand-in that answers each kind of bad error (HTML, a traceback,
text, no message, 503, the unexpected-exception answer) and of good one, and expects
exactly the bad ones to be failed.

Exit status 0 when neither server had a failure. Reports (schemathesis' NDJSON and JUnit)
go to --report-dir.
"""

from __future__ import annotations

import argparse
import base64
import collections
import contextlib
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import schemathesis

REPO = Path(__file__).resolve().parent.parent
KFP_SWAGGER = REPO.parent / "shared" / "kfp-api" / "kfp_api_v2beta1.swagger.json"
# What the embedded server answers to an exception it did not expect (kfadapter/localkfp/app.py).
KFP_UNEXPECTED = "internal error of the local KFP server"
# 5xx answers KFP 2.17 itself gives: (HTTP status, gRPC code).
KFP_SERVER_ERRORS = {(500, 13), (501, 12)}
# Fields whose description in KFP's swagger starts so are required input.
REQUIRED = re.compile(r"(Required input|Input\. Required)")
SOURCE_REQUIRED = {
    "v2beta1Run": ["pipeline_version_reference"],
    "v2beta1RecurringRun": ["pipeline_version_reference"],
}
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|<!doctype|<html", re.IGNORECASE)

# ---------------------------------------------------------------------- checks
# Registered when schemathesis imports this module (SCHEMATHESIS_HOOKS=benchmarks.fuzz).


def _error_body(response: Any) -> dict[str, Any]:
    """The JSON object of an error answer; AssertionError saying what is wrong with it."""
    mimetype = response.headers.get("content-type", [""])[0].split(";")[0].strip()
    text = response.text_lossy()
    assert not TRACEBACK.search(text), f"{response.status_code} answer holds a traceback or HTML"
    assert mimetype == "application/json", (
        f"{response.status_code} answer is {mimetype or 'untyped'}, not application/json"
    )
    try:
        body = json.loads(text)
    except ValueError:
        raise AssertionError(f"{response.status_code} answer is not JSON: {text[:200]!r}") from None
    assert isinstance(body, dict), f"{response.status_code} answer is not a JSON object"
    assert isinstance(body.get("message", body.get("error_message")), str), (
        f"{response.status_code} answer has no message: {text[:200]}"
    )
    return body


@schemathesis.check
def json_error_body(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx and 5xx is a JSON object with a message, with no traceback or HTML."""
    if response.status_code < 400:
        return True  # schemathesis: True means "does not apply"
    _error_body(response)
    return None


@schemathesis.check
def kfp_server_errors(ctx: Any, response: Any, case: Any) -> bool | None:
    """A 5xx only as KFP 2.17 gives one (500/13, 501/12; 500 from the upload endpoints,
    whose bodies carry no code), never the answer to an unexpected exception."""
    if response.status_code < 500:
        return True
    body = _error_body(response)
    message = body.get("message", body.get("error_message", ""))
    assert KFP_UNEXPECTED not in message, (
        f"{response.status_code}: the server failed on an unexpected exception (see its log)"
    )
    if "code" not in body and "error_message" in body:  # the upload endpoints' shape
        assert response.status_code == 500, f"{response.status_code}: KFP gives no such answer"
        return None
    code = body.get("code")
    assert (response.status_code, code) in KFP_SERVER_ERRORS, (
        f"{response.status_code} with gRPC code {code}: KFP gives no such answer: {message}"
    )
    return None


# ---------------------------------------------------------------------- seeding


@dataclass
class Seeds:
    """Ids and names of what was created before fuzzing: dictionary name -> values."""

    values: dict[str, list[str]] = field(default_factory=lambda: collections.defaultdict(list))

    def add(self, name: str, *values: str) -> None:
        self.values[name].extend(values)


class SeedingExecutor:
    """The real RunExecutor for the seeded runs; runs submitted after `hold()` stay PENDING."""

    def __init__(
        self, data_dir: Path, max_concurrent_runs: int, on_update: Callable[..., None]
    ) -> None:
        from kfadapter.localkfp.executor import RunExecutor

        self._real = RunExecutor(data_dir, max_concurrent_runs, on_update)
        self._holding = False
        self.held: set[str] = set()

    def hold(self) -> None:
        """From now on, accept runs without executing them."""
        self._holding = True

    def submit(
        self, run_id: str, pipeline_spec: dict, parameters: dict[str, Any], *, retry: bool = False
    ) -> None:
        if self._holding:
            self.held.add(run_id)
        else:
            self._real.submit(run_id, pipeline_spec, parameters, retry=retry)

    def terminate(self, run_id: str) -> bool:
        if run_id in self.held:
            self.held.discard(run_id)
            return False
        return self._real.terminate(run_id)

    def log_path(self, run_id: str, node_id: str) -> Path | None:
        return self._real.log_path(run_id, node_id)

    def shutdown(self) -> None:
        self._real.shutdown()


def _wait_final(client: Any, run_id: str, timeout: float = 300) -> str:
    """Wait until the run reaches a final state; that state."""
    deadline = time.monotonic() + timeout
    while True:
        state = client.get_run(run_id).state
        if state in ("SUCCEEDED", "FAILED", "CANCELED", "SKIPPED"):
            return state
        if time.monotonic() > deadline:
            raise RuntimeError(f"seeded run {run_id} still {state} after {timeout} s")
        time.sleep(0.5)


def seed_kfp(url: str, workdir: Path, executor: SeedingExecutor) -> Seeds:
    """Pipelines, versions, experiments, runs and recurring runs, over KFP's HTTP API."""
    import kfp

    from tests.pipelines import compile_pipeline

    seeds = Seeds()
    client = kfp.Client(host=url)
    packages = {
        name: compile_pipeline(name, workdir)
        for name in ("add_subtract_multiply", "always_fails", "qoe_training")
    }
    with contextlib.redirect_stdout(sys.stderr):  # kfp.Client prints links
        asm = client.upload_pipeline(str(packages["add_subtract_multiply"]), "fuzz-asm")
        second = client.upload_pipeline_version(
            str(packages["add_subtract_multiply"]), "fuzz-asm-v2", pipeline_id=asm.pipeline_id
        )
        fails = client.upload_pipeline(str(packages["always_fails"]), "fuzz-fails")
        qoe = client.upload_pipeline(str(packages["qoe_training"]), "fuzz-qoe")
        experiment = client.create_experiment("fuzz-experiment")
        versions = {
            pipeline.pipeline_id: client.list_pipeline_versions(
                pipeline.pipeline_id
            ).pipeline_versions
            for pipeline in (asm, fails, qoe)
        }
        first = {pid: found[-1] for pid, found in versions.items()}
        succeeded = client.run_pipeline(
            experiment_id=experiment.experiment_id,
            job_name="fuzz-succeeded",
            pipeline_id=asm.pipeline_id,
            version_id=first[asm.pipeline_id].pipeline_version_id,
        )
        failed = client.run_pipeline(
            experiment_id=experiment.experiment_id,
            job_name="fuzz-failed",
            pipeline_id=fails.pipeline_id,
            version_id=first[fails.pipeline_id].pipeline_version_id,
        )
        for run in (succeeded, failed):
            _wait_final(client, run.run_id)
        executor.hold()
        recurring = client.create_recurring_run(
            experiment_id=experiment.experiment_id,
            job_name="fuzz-recurring",
            cron_expression="0 0 0 * * *",
            pipeline_id=asm.pipeline_id,
            version_id=second.pipeline_version_id,
            enabled=False,
        )
        # What DELETE operations draw from, so that the resources above last longer (cases
        # may still delete them: schemathesis reuses ids it saw in answers).
        for n in range(3):
            doomed = client.upload_pipeline(
                str(packages["add_subtract_multiply"]), f"fuzz-doomed-{n}"
            )
            doomed_version = client.list_pipeline_versions(doomed.pipeline_id).pipeline_versions[0]
            doomed_experiment = client.create_experiment(f"fuzz-doomed-{n}")
            doomed_run = client.run_pipeline(
                experiment_id=doomed_experiment.experiment_id,
                job_name=f"fuzz-doomed-{n}",
                pipeline_id=doomed.pipeline_id,
                version_id=doomed_version.pipeline_version_id,
            )
            doomed_recurring = client.create_recurring_run(
                experiment_id=doomed_experiment.experiment_id,
                job_name=f"fuzz-doomed-{n}",
                cron_expression="0 0 0 * * *",
                pipeline_id=doomed.pipeline_id,
                version_id=doomed_version.pipeline_version_id,
                enabled=False,
            )
            seeds.add("doomed_pipeline_ids", doomed.pipeline_id)
            seeds.add("doomed_version_ids", doomed_version.pipeline_version_id)
            seeds.add("doomed_experiment_ids", doomed_experiment.experiment_id)
            seeds.add("doomed_run_ids", doomed_run.run_id)
            seeds.add("doomed_recurring_run_ids", doomed_recurring.recurring_run_id)
            seeds.add("doomed_names", f"fuzz-doomed-{n}")
    seeds.add("pipeline_ids", asm.pipeline_id, fails.pipeline_id, qoe.pipeline_id)
    seeds.add(
        "version_ids",
        *(v.pipeline_version_id for found in versions.values() for v in found),
    )
    seeds.add("experiment_ids", experiment.experiment_id)
    seeds.add("run_ids", succeeded.run_id, failed.run_id)
    seeds.add("recurring_run_ids", recurring.recurring_run_id)
    seeds.add("pipeline_names", "fuzz-asm", "fuzz-fails", "fuzz-qoe")
    seeds.add("version_names", "fuzz-asm-v2", "fuzz-asm")
    seeds.add("experiment_names", "fuzz-experiment", "Default")
    seeds.add("new_names", *(f"fuzz-new-{n}" for n in range(5)))
    seeds.add("new_display_names", "Fuzz run", "fuzz-new", "ünïcode ✓")
    seeds.add("max_concurrency", "1", "10")
    seeds.add("crons", "0 0 0 * * *", "*/5 * * * *", "@every 1h")
    return seeds


# ---------------------------------------------------------------------- configuration


def _toml_value(value: Any) -> str:
    return json.dumps(value)  # TOML basic strings, arrays and numbers are JSON's


def write_config(
    path: Path,
    seeds: Seeds,
    bindings: dict[str, str],
    doomed: dict[str, str],
    checks: list[str],
    examples: int,
) -> Path:
    """A schemathesis.toml: the checks to run, dictionaries of seeded values, and which
    parameters draw from them (half of the time); DELETE operations draw from `doomed`."""
    lines = [f"generation.max-examples = {examples}", "request-timeout = 60"]
    lines += ["cache.enabled = false", ""]  # each run on its own: no crashes replayed
    lines += ["[checks]", "enabled = false"]
    lines += [f"{name}.enabled = true" for name in checks]
    lines.append("")
    for name, values in seeds.values.items():
        lines += [f"[dictionaries.{name}]", f"values = {_toml_value(values)}", ""]

    def binding_lines(table: dict[str, str]) -> list[str]:
        return [
            f'"{key}" = {{ dictionary = "{dictionary}", probability = 0.5 }}'
            for key, dictionary in table.items()
        ]

    lines += ["[parameters]", *binding_lines(bindings), ""]
    lines += ["[[operations]]", 'include-method = "DELETE"', "[operations.parameters]"]
    lines += binding_lines({**bindings, **doomed})
    path.write_text("\n".join(lines) + "\n")
    return path


KFP_BINDINGS = {
    "path.pipeline_id": "pipeline_ids",
    "path.pipeline_version_id": "version_ids",
    "path.experiment_id": "experiment_ids",
    "path.run_id": "run_ids",
    "path.recurring_run_id": "recurring_run_ids",
    "path.name": "pipeline_names",
    "query.pipelineid": "pipeline_ids",
    "query.experiment_id": "experiment_ids",
    "body.pipeline_id": "pipeline_ids",
    "body.experiment_id": "experiment_ids",
    "body.pipeline_version_reference.pipeline_id": "pipeline_ids",
    "body.pipeline_version_reference.pipeline_version_id": "version_ids",
    "body.pipeline_version_id": "version_ids",
    # Names and fields that KFP requires, so that creations get past their checks.
    "body.display_name": "new_display_names",
    "body.name": "new_names",
    "body.pipeline.name": "new_names",
    "body.pipeline.display_name": "new_display_names",
    "body.pipeline_version.name": "new_names",
    "body.pipeline_version.display_name": "new_display_names",
    "body.max_concurrency": "max_concurrency",
    "body.trigger.cron_schedule.cron": "crons",
    "query.name": "new_names",
}
KFP_DOOMED = {
    "path.pipeline_id": "doomed_pipeline_ids",
    "path.pipeline_version_id": "doomed_version_ids",
    "path.experiment_id": "doomed_experiment_ids",
    "path.run_id": "doomed_run_ids",
    "path.recurring_run_id": "doomed_recurring_run_ids",
}
ADAPTER_BINDINGS = {
    "path.id_or_name": "pipeline_refs",
    "path.version": "version_refs",
    "path.name": "names",
    "path.run_id": "run_ids",
    "path.recurring_run_id": "recurring_run_ids",
    "path.trainingjob_id": "trainingjob_ids",
    "body.pipeline_name": "pipeline_names",
    "body.pipeline_version": "version_names",
    "body.experiment_name": "experiment_names",
}
ADAPTER_DOOMED = {
    "path.id_or_name": "doomed_pipeline_refs",
    "path.version": "doomed_version_ids",
    "path.run_id": "doomed_run_ids",
}


def kfp_spec(target: Path) -> Path:
    """KFP's swagger as schemathesis can use it: path templates with dotted names
    (`{pipeline.pipeline_id}`, which Python's str.format reads as attribute access)
    renamed to the plain field (`{pipeline_id}`), the URLs being the same; and no
    security requirement, as a single-user KFP (and the server here) asks for none.
    Request bodies are described more tightly than the answers (`request_schema`), so
    that valid cases are valid for KFP and reach past its body checks."""
    spec = json.loads(KFP_SWAGGER.read_text())
    definitions = spec["definitions"]
    renamed: dict[str, dict[str, Any]] = {}
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path":
                    parameter["name"] = parameter["name"].rsplit(".", 1)[-1]
                elif parameter["in"] == "body":
                    parameter["schema"] = request_schema(parameter["schema"], definitions)
        renamed.setdefault(re.sub(r"\{[a-z_]+\.([a-z_]+)\}", r"{\1}", path), {}).update(operations)
    spec["paths"] = renamed
    spec.pop("security", None)
    spec.pop("securityDefinitions", None)
    target.write_text(json.dumps(spec))
    return target


def request_schema(schema: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    """A request body's schema as KFP's protojson reads it: every message closed
    (`additionalProperties: false`: unknown fields are refused), a field's `null` allowed
    (it means "not set"; not so a map's or a list's values), the fields KFP's descriptions
    call required made `required`, and a run's version reference too (the source the
    seeds can satisfy).
    A referenced definition gets a `<name>_request` copy; answers keep the original."""
    ref = schema.get("$ref")
    if ref:
        name = ref.rsplit("/", 1)[-1]
        copy_name = f"{name}_request"
        if copy_name not in definitions:
            definitions[copy_name] = {}  # placed first: definitions may refer to themselves
            definitions[copy_name] = request_schema(definitions[name], definitions)
            for field_name in SOURCE_REQUIRED.get(name, []):
                definitions[copy_name].setdefault("required", []).append(field_name)
        return {**schema, "$ref": f"#/definitions/{copy_name}"}
    tightened = dict(schema)
    if "properties" in schema:
        tightened["properties"] = {  # protojson takes a field's null as "not set"
            key: {**request_schema(value, definitions), "x-nullable": True}
            for key, value in schema["properties"].items()
        }
        tightened.setdefault("additionalProperties", False)
        required = [
            key
            for key, value in schema["properties"].items()
            if REQUIRED.match(value.get("description", ""))
        ]
        if required:
            tightened["required"] = required
    if isinstance(schema.get("items"), dict):
        tightened["items"] = request_schema(schema["items"], definitions)
    if isinstance(schema.get("additionalProperties"), dict) and schema["additionalProperties"]:
        tightened["additionalProperties"] = request_schema(
            schema["additionalProperties"], definitions
        )
    return tightened


# ---------------------------------------------------------------------- running


@dataclass
class Outcome:
    """What one `st run` did, read from its NDJSON report."""

    name: str
    exit_code: int
    cases: int = 0
    statuses: collections.Counter = field(default_factory=collections.Counter)
    failures: int = 0
    server_errors: collections.Counter = field(default_factory=collections.Counter)
    examples: dict[str, str] = field(default_factory=dict)
    logged_errors: collections.Counter = field(default_factory=collections.Counter)
    failed_operations: set[str] = field(default_factory=set)

    @property
    def clean(self) -> bool:
        """No failed check, and nothing logged at ERROR by the servers."""
        return self.exit_code == 0 and self.failures == 0 and not self.logged_errors


class ErrorLog(logging.Handler):
    """Collects what the servers (loggers `kfadapter.*`) log at ERROR or above: an
    unexpected exception, a scheduler tick that failed, a poll that failed."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: collections.Counter = collections.Counter()

    def emit(self, record: logging.LogRecord) -> None:
        text = f"{record.name}: {record.getMessage()}"
        if record.exc_info and record.exc_info[1] is not None:
            text += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
        self.records[text[:300]] += 1

    def take(self) -> collections.Counter:
        """The records so far; then start again."""
        taken, self.records = self.records, collections.Counter()
        return taken


def run_schemathesis(
    name: str,
    location: str,
    url: str,
    config: Path,
    args: argparse.Namespace,
    options: tuple[str, ...] = (),
) -> Outcome:
    """`st run` (with `options`) in a child process with this module's checks; its outcome."""
    report_dir = args.report_dir
    report = report_dir / f"{name}.ndjson"
    command = [
        str(Path(sys.executable).with_name("st")),
        "--config-file",
        str(config),
        "run",
        location,
        "--url",
        url,
        "--seed",
        str(args.seed),
        "--workers",
        str(args.workers),
        "--report",
        "ndjson,junit",
        "--report-ndjson-path",
        str(report),
        "--report-junit-path",
        str(report_dir / f"{name}.junit.xml"),
        "--continue-on-failure",
        "--warnings",
        "off",
        *options,
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "benchmarks.fuzz", "PYTHONPATH": str(REPO)}
    print("$", " ".join(command), file=sys.stderr, flush=True)
    log = report_dir / f"{name}.log"
    with open(log, "w") as output:
        finished = subprocess.run(command, cwd=config.parent, env=env, stdout=output, stderr=output)
    print(f"schemathesis output: {log}", file=sys.stderr)
    outcome = Outcome(name, finished.returncode)
    read_report(report, outcome)
    return outcome


def read_report(report: Path, outcome: Outcome) -> None:
    """Count cases, statuses, failed checks and 5xx answers in an NDJSON report."""
    with open(report) as lines:
        for line in lines:
            finished = json.loads(line).get("ScenarioFinished")
            if not finished:
                continue
            recorder = finished["recorder"]
            for case_id, interaction in recorder.get("interactions", {}).items():
                response = interaction.get("response")
                if response is None:
                    continue
                outcome.cases += 1
                status = response["status_code"]
                outcome.statuses[status] += 1
                if status >= 500:
                    case = recorder["cases"][case_id]["value"]
                    _count_server_error(outcome, f"{case['method']} {case['path']}", response)
            for results in recorder.get("checks", {}).values():
                failed = sum(1 for r in results if r["status"] == "failure")
                outcome.failures += failed
                if failed:
                    outcome.failed_operations.add(recorder["label"])


def _count_server_error(outcome: Outcome, operation: str, response: dict[str, Any]) -> None:
    """Count a 5xx by operation, status and gRPC code, keeping its first message."""
    content = base64.b64decode((response.get("content") or {}).get("$base64", ""))
    try:
        body = json.loads(content)
        code, message = body.get("code"), body.get("message", body.get("error_message"))
    except (ValueError, AttributeError):
        code, message = None, content.decode("utf-8", "replace")
    status = response["status_code"]
    if (status, code) == (501, 12):  # a method the path does not have (KFP: Unimplemented)
        operation = "a method its path does not have"
    key = f"{operation} -> {status}/{code}"
    outcome.server_errors[key] += 1
    outcome.examples.setdefault(key, str(message)[:140])


def report(outcome: Outcome) -> None:
    """Print one server's figures."""
    statuses = ", ".join(f"{s}: {n}" for s, n in sorted(outcome.statuses.items()))
    print(f"\n== {outcome.name}: {outcome.cases} cases ({statuses})")
    print(f"   failed checks: {outcome.failures}; schemathesis exit code {outcome.exit_code}")
    if outcome.server_errors:
        print("   5xx answers (operation -> status/gRPC code x count: first message):")
    for key, count in sorted(outcome.server_errors.items()):
        print(f"   {key} x{count}: {outcome.examples[key]}")
    print(f"   logged at ERROR by the servers: {sum(outcome.logged_errors.values())}")
    for text, count in sorted(outcome.logged_errors.items()):
        print(f"   x{count}: {text}")


@contextlib.contextmanager
def serve_kfp(data_dir: Path) -> Iterator[tuple[Any, SeedingExecutor]]:
    """The embedded KFP server on a free port; its executor."""
    from kfadapter.localkfp.server import LocalKfpServer

    made: list[SeedingExecutor] = []

    def factory(*args: Any) -> SeedingExecutor:
        made.append(SeedingExecutor(*args))
        return made[0]

    server = LocalKfpServer(
        data_dir, host="127.0.0.1", port=0, max_concurrent_runs=1, executor_factory=factory
    )
    server.start()
    try:
        yield server, made[0]
    finally:
        server.stop()


@contextlib.contextmanager
def serve_adapter(kfp_url: str, data_dir: Path) -> Iterator[str]:
    """The adapter (run tracking on; the TM a port nobody listens on) on a free port."""
    from kfadapter.app import create_app
    from kfadapter.serving import ServerThread
    from kfadapter.settings import Settings
    from tests.support import free_port

    settings = Settings(
        kfp_endpoint=kfp_url + "/pipeline",
        data_dir=data_dir,
        kfp_timeout=30.0,
        tracking_enabled=True,
        trainingmgr_host="127.0.0.1",
        trainingmgr_port=free_port(),
        poll_interval=1.0,
        notify_timeout=0.5,
    )
    app = create_app(settings)
    server = ServerThread(app).start()
    try:
        yield server.url
    finally:
        server.stop()
        tracker = app.extensions["kfadapter"].tracker
        if tracker is not None:
            tracker.stop()


def seed_adapter(url: str, seeds: Seeds) -> Seeds:
    """The adapter's dictionaries: names and ids it finds, and a tracked training job."""
    import requests

    answer = requests.post(
        f"{url}/trainingjobs/fuzz-job/execution",
        json={
            "pipeline_name": "fuzz-qoe",
            "experiment_name": "fuzz-experiment",
            "arguments": {"featurepath": "f", "epochs": "1", "modelname": "m", "modelversion": "1"},
        },
        timeout=60,
    )
    answer.raise_for_status()
    found = Seeds()
    found.add("pipeline_refs", *seeds.values["pipeline_names"], *seeds.values["pipeline_ids"])
    found.add("version_refs", *seeds.values["version_names"], *seeds.values["version_ids"])
    found.add("names", *seeds.values["pipeline_names"], *seeds.values["experiment_names"])
    found.add("run_ids", *seeds.values["run_ids"], answer.json()["run_id"])
    for key in ("recurring_run_ids", "pipeline_names", "version_names", "experiment_names"):
        found.add(key, *seeds.values[key])
    found.add("trainingjob_ids", "fuzz-job")
    found.add("doomed_pipeline_refs", *seeds.values["doomed_names"])
    found.add("doomed_version_ids", *seeds.values["doomed_version_ids"])
    found.add("doomed_run_ids", *seeds.values["doomed_run_ids"])
    return found


KFP_CHECKS = [
    "json_error_body",
    "kfp_server_errors",
    "content_type_conformance",
    "response_schema_conformance",
]
ADAPTER_CHECKS = [
    "json_error_body",
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
]


def fuzz_kfp(workdir: Path, args: argparse.Namespace) -> Outcome:
    """Seed a fresh embedded KFP server and fuzz it with KFP's swagger."""
    with serve_kfp(workdir / "local-kfp") as (server, executor):
        seeds = seed_kfp(server.url, workdir, executor)
        config = write_config(
            workdir / "kfp.toml",
            seeds,
            KFP_BINDINGS,
            KFP_DOOMED,
            KFP_CHECKS + args.extra_check,
            args.examples,
        )
        spec = str(kfp_spec(workdir / "kfp_api_v2beta1.swagger.json"))
        return run_schemathesis("kfp", spec, server.url, config, args)


def fuzz_adapter(workdir: Path, args: argparse.Namespace) -> Outcome:
    """Seed a fresh embedded KFP server, serve the adapter on it, fuzz the adapter with
    its own /openapi.json."""
    with serve_kfp(workdir / "local-kfp") as (server, executor):
        seeds = seed_kfp(server.url, workdir, executor)
        with serve_adapter(server.url, workdir / "adapter") as url:
            config = write_config(
                workdir / "adapter.toml",
                seed_adapter(url, seeds),
                ADAPTER_BINDINGS,
                ADAPTER_DOOMED,
                ADAPTER_CHECKS + args.extra_check,
                args.examples,
            )
            return run_schemathesis("adapter", f"{url}/openapi.json", url, config, args)


# What the self check's stand-in server answers, and whether the checks must fail it.
SELF_CHECK_ANSWERS: dict[str, tuple[int, str, str, bool]] = {
    "/html-500": (500, "text/html", "<html><body>Internal Server Error</body></html>", True),
    "/unexpected-500": (
        500,
        "application/json",
        json.dumps({"code": 13, "message": f"{KFP_UNEXPECTED}; see its log", "details": []}),
        True,
    ),
    "/unavailable-503": (503, "application/json", json.dumps({"code": 14, "message": "x"}), True),
    "/traceback-400": (400, "text/plain", "Traceback (most recent call last):\n  ...", True),
    "/text-404": (404, "text/plain", "not found", True),
    "/no-message-400": (400, "application/json", json.dumps({"code": 3}), True),
    "/kfp-500": (500, "application/json", json.dumps({"code": 13, "message": "m"}), False),
    "/kfp-501": (501, "application/json", json.dumps({"code": 12, "message": "m"}), False),
    "/upload-500": (500, "application/json", json.dumps({"error_message": "m"}), False),
    "/kfp-404": (404, "application/json", json.dumps({"code": 5, "message": "m"}), False),
}


def self_check(args: argparse.Namespace) -> int:
    """Run the embedded server's checks against a stand-in that answers each kind of bad
    (and good) error once, and tell whether each was judged as it must be."""
    from flask import Flask, Response

    from kfadapter.serving import ServerThread

    app = Flask("fuzz-self-check")
    for path, (status, mimetype, body, _) in SELF_CHECK_ANSWERS.items():
        app.add_url_rule(
            path,
            path,
            lambda status=status, mimetype=mimetype, body=body: Response(
                body, status, mimetype=mimetype
            ),
        )
    spec = {
        "swagger": "2.0",
        "info": {"title": "self check", "version": "1"},
        "paths": {
            path: {"get": {"responses": {"200": {"description": "-"}}}}
            for path in SELF_CHECK_ANSWERS
        },
    }
    workdir = Path(tempfile.mkdtemp(prefix="kfadapter-fuzz-self-check-"))
    (workdir / "spec.json").write_text(json.dumps(spec))
    checks = ["json_error_body", "kfp_server_errors"]
    config = write_config(workdir / "self.toml", Seeds(), {}, {}, checks, 1)
    server = ServerThread(app).start()
    try:
        outcome = run_schemathesis(
            "self-check",
            str(workdir / "spec.json"),
            server.url,
            config,
            args,
            ("--phases", "fuzzing"),
        )
    finally:
        server.stop()
    wrong = [
        path
        for path, (*_, must_fail) in SELF_CHECK_ANSWERS.items()
        if (f"GET {path}" in outcome.failed_operations) != must_fail
    ]
    print(
        f"self check: {len(SELF_CHECK_ANSWERS) - len(wrong)} of {len(SELF_CHECK_ANSWERS)} "
        "stand-in answers judged as they must be"
    )
    for path in wrong:
        must = "fail" if SELF_CHECK_ANSWERS[path][3] else "pass"
        print(f"   WRONG: GET {path} must {must}")
    return 1 if wrong else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=50, help="cases an operation a phase")
    parser.add_argument("--seed", type=int, default=1, help="schemathesis' random seed")
    parser.add_argument("--only", choices=("kfp", "adapter"), help="fuzz one server only")
    parser.add_argument("--workers", type=int, default=1, help="schemathesis' workers")
    parser.add_argument(
        "--extra-check",
        action="append",
        default=[],
        metavar="NAME",
        help="another schemathesis check for both servers (exploring; e.g. "
        "negative_data_rejection: schema-violating requests must be refused)",
    )
    parser.add_argument("--report-dir", type=Path, help="default: a new temporary directory")
    parser.add_argument(
        "--self-check",
        action="store_true",
        help="only show that the checks fail the answers they must (a stand-in server; "
        "every run does this first)",
    )
    args = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log line per case
    workdir = Path(tempfile.mkdtemp(prefix="kfadapter-fuzz-"))
    args.report_dir = args.report_dir or workdir / "reports"
    args.report_dir.mkdir(parents=True, exist_ok=True)
    wrong = self_check(args)  # first show that the checks fail what they must
    if wrong or args.self_check:
        return wrong
    outcomes = []
    logged = ErrorLog()
    logging.getLogger("kfadapter").addHandler(logged)
    for name, fuzz in (("kfp", fuzz_kfp), ("adapter", fuzz_adapter)):
        if args.only in (None, name):
            (workdir / name).mkdir()
            outcome = fuzz(workdir / name, args)
            outcome.logged_errors = logged.take()
            outcomes.append(outcome)
    for outcome in outcomes:
        report(outcome)
    print(f"\nreports: {args.report_dir}")
    return 0 if all(outcome.clean for outcome in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
