"""The web UI in a real headless browser: Debian's chromium driven by playwright, against the
embedded server on a free port, pipelines uploaded and runs started with the unmodified
kfp.Client, whose printed links open the pages.

KFP 2.17's UI (`frontend/src/components/Router.tsx`) routes `#/pipelines`,
`#/pipelines/details/:pid[/version/:vid]`, `#/experiments`, `#/experiments/details/:eid`,
`#/runs`, `#/runs/details/:rid` and `#/recurringruns`; kfp.Client prints
`<host>/#/runs/details/<id>` (`sdk/python/kfp/client/client.py`, `_get_url_prefix`).
Metrics and artifacts shown come from what the tasks wrote (the extension routes,
run_outputs.py). A screenshot of each page goes to test-artifacts/ui/ (KFADAPTER_TEST_ARTIFACTS
moves it).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from kfadapter.localkfp.server import LocalKfpServer
from tests.localkfp import ui_pipelines
from tests.localkfp.conftest import HeldExecutor, client_for
from tests.pipelines import V1_DIRECTORY, compile_pipeline

pytestmark = [pytest.mark.e2e, pytest.mark.ui]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO = Path(__file__).parents[2]
SCREENSHOTS = Path(os.environ.get("KFADAPTER_TEST_ARTIFACTS", REPO / "test-artifacts")) / "ui"
WAIT_MS = 60_000  # a task's first run builds its environment
TOKEN = "ui-test-token"


def _testid(name: str) -> str:
    return f"[data-testid={name}]"


def _node(task: str, state: str | None = None) -> str:
    selector = f"[data-testid=graph-node][data-task={task}]"
    return f"{selector}[data-state={state}]" if state else selector


# -- browser and servers ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One chromium for the module, with a fresh profile."""
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/system-packages.sh to install chromium")
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="kfadapter-ui-chromium-")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1400, "height": 900},
            accept_downloads=True,
        )
        yield context
        context.close()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser) -> Iterator[Any]:
    """A new tab (cookies are the module's: log-in tests use their own servers' hosts)."""
    tab = browser.new_page()
    tab.set_default_timeout(WAIT_MS)
    yield tab
    tab.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LocalKfpServer]:
    """The module's server: runs really execute."""
    with LocalKfpServer(tmp_path_factory.mktemp("ui-kfp"), port=0) as started:
        yield started


@pytest.fixture(scope="module")
def kfp_client(server):
    return client_for(server)


@pytest.fixture(scope="module")
def packages(tmp_path_factory) -> dict[str, str]:
    """The compiled pipelines the tests upload or run, by name."""
    from kfp import compiler

    directory = tmp_path_factory.mktemp("ui-pipelines")
    paths = {
        name: str(compile_pipeline(name, directory))
        for name in ("add_subtract_multiply", "always_fails")
    }
    for name, function in (
        ("waits_for_a_file", ui_pipelines.waits_for_a_file),
        ("writes_metrics", ui_pipelines.writes_metrics),
    ):
        paths[name] = str(directory / f"{name}.yaml")
        compiler.Compiler().compile(function, paths[name])
    return paths


def _screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _printed_link(capsys, label: str) -> str:
    """The link kfp.Client printed as '<label>: <url>'."""
    printed = capsys.readouterr().out
    match = re.search(rf"{label}: (\S+)", printed)
    assert match, printed
    return match.group(1)


def _start(kfp_client, capsys, package: str, **arguments: Any) -> tuple[str, str]:
    """A run started as a user starts one; its id and the link kfp.Client printed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        result = kfp_client.create_run_from_pipeline_package(
            package, arguments=arguments, enable_caching=False
        )
    return result.run_id, _printed_link(capsys, "Run details")


def _wait(kfp_client, run_id: str) -> str:
    run = kfp_client.wait_for_run_completion(run_id, timeout=240)
    return str(run.state)


# -- runs ---------------------------------------------------------------------------------------


def test_the_printed_link_opens_the_finished_run_with_its_graph_and_task_logs(
    server, kfp_client, packages, page, capsys
) -> None:
    run_id, link = _start(
        kfp_client, capsys, packages["add_subtract_multiply"], a=7, b=2, expected=45
    )
    assert link == f"{server.url}/#/runs/details/{run_id}"
    assert _wait(kfp_client, run_id) == "SUCCEEDED"
    page.goto(link)
    page.wait_for_selector(_testid("page-run-details"))
    page.wait_for_selector(f"{_testid('run-state')}:has-text('SUCCEEDED')")
    for task in ("add", "subtract", "multiply", "check-equals"):
        page.wait_for_selector(_node(task, "SUCCEEDED"))
    assert page.locator("[data-testid=graph-node]").count() == 4
    page.click(_node("multiply"))
    panel = page.locator(_testid("task-panel"))
    panel.wait_for()
    log = panel.locator(_testid("task-log"))
    log.filter(has_text="executor output").wait_for()  # KFP's executor wrote its outputs
    assert "45" in panel.locator(_testid("task-outputs")).inner_text()  # (7+2)*(7-2)
    assert "9" in panel.locator(_testid("task-inputs")).inner_text()
    _screenshot(page, "run-details")


def test_a_running_run_updates_without_a_reload(
    server, kfp_client, packages, page, capsys, tmp_path
) -> None:
    release = tmp_path / "go"
    run_id, link = _start(kfp_client, capsys, packages["waits_for_a_file"], path=str(release))
    page.goto(link)
    page.wait_for_selector(_node("wait-for-file", "RUNNING"))
    page.evaluate("window.__not_reloaded = true")
    page.click(_node("wait-for-file"))
    page.locator(_testid("task-log")).filter(has_text="waiting for").wait_for()  # followed
    _screenshot(page, "run-details-running")
    release.write_text("released")
    page.wait_for_selector(_node("wait-for-file", "SUCCEEDED"))
    page.wait_for_selector(f"{_testid('run-state')}:has-text('SUCCEEDED')")
    assert page.evaluate("window.__not_reloaded") is True
    assert "released" in page.locator(_testid("task-outputs")).inner_text()
    assert _wait(kfp_client, run_id) == "SUCCEEDED"


def test_a_failed_run_shows_the_task_that_failed_and_its_error(
    server, kfp_client, packages, page, capsys
) -> None:
    run_id, link = _start(
        kfp_client, capsys, packages["always_fails"], reason="the UI must show this"
    )
    assert _wait(kfp_client, run_id) == "FAILED"
    page.goto(link)
    page.wait_for_selector(f"{_testid('run-state')}:has-text('FAILED')")
    page.click(_node("fail", "FAILED"))
    error = page.locator(_testid("task-error"))
    error.filter(has_text="the UI must show this").wait_for()
    _screenshot(page, "run-details-failed")


def test_metrics_a_confusion_matrix_and_artifacts_of_a_run(
    server, kfp_client, packages, page, capsys
) -> None:
    run_id, link = _start(kfp_client, capsys, packages["writes_metrics"])
    assert _wait(kfp_client, run_id) == "SUCCEEDED"
    page.goto(link)
    table = page.locator(_testid("metrics-table"))
    table.filter(has_text="accuracy").wait_for()
    assert "0.9" in table.inner_text() and "loss" in table.inner_text()
    matrix = page.locator(_testid("confusion-matrix"))
    matrix.filter(has_text="dog").wait_for()
    assert "8" in matrix.inner_text() and "cat" in matrix.inner_text()
    page.locator(_testid("roc-curve")).first.wait_for()
    artifacts = page.locator("tr", has_text="system.Model")  # the run's artifacts table
    link_to_model = artifacts.locator(_testid("artifact-link")).first
    with page.expect_download() as download:
        link_to_model.click()
    assert Path(download.value.path()).read_text() == "model weights"
    _screenshot(page, "run-details-metrics")


def test_terminate_retry_and_archive_buttons(
    server, kfp_client, packages, page, capsys, tmp_path
) -> None:
    page.on("dialog", lambda dialog: dialog.accept())
    release = tmp_path / "never"
    run_id, link = _start(kfp_client, capsys, packages["waits_for_a_file"], path=str(release))
    page.goto(link)
    page.wait_for_selector(_node("wait-for-file", "RUNNING"))
    page.click(_testid("terminate-run"))
    page.wait_for_selector(f"{_testid('run-state')}:has-text('FAILED')")
    release.write_text("second attempt")
    page.click(_testid("retry-run"))
    page.wait_for_selector(f"{_testid('run-state')}:has-text('SUCCEEDED')")
    page.click(_testid("archive-run"))
    _eventually(lambda: kfp_client.get_run(run_id).storage_state == "ARCHIVED")


def _eventually(check, timeout: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.2)


def test_runs_list_links_to_a_run(server, kfp_client, packages, page, capsys) -> None:
    run_id, _ = _start(kfp_client, capsys, packages["add_subtract_multiply"])
    page.goto(f"{server.url}/#/runs")
    page.wait_for_selector(_testid("page-runs"))
    row = page.locator(f"[data-testid=run-row][data-run-id='{run_id}']")
    row.wait_for()
    _screenshot(page, "runs")
    row.locator("a").first.click()
    page.wait_for_selector(_testid("page-run-details"))
    assert run_id in page.url
    assert _wait(kfp_client, run_id) == "SUCCEEDED"


def test_the_extension_names_the_nodes_and_pods_of_the_runs_task_details(
    server, kfp_client, tmp_path
) -> None:
    """Each ended task's task_id is its entry in the run's task details, node_id that
    entry's Argo node id (as its parent's child_tasks name it), and a container task's
    pod_name an executor pod the v1alpha1 log route serves (loop iterations included)."""
    from kfp import compiler

    from kfadapter.localkfp import argo_nodes
    from tests.localkfp.dsl_pipelines import printed_loop

    package = tmp_path / "printed_loop.yaml"
    compiler.Compiler().compile(printed_loop, str(package))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        run = kfp_client.create_run_from_pipeline_package(
            str(package), arguments={"items": [7, 8]}, enable_caching=False
        )
    assert _wait(kfp_client, run.run_id) == "SUCCEEDED"
    details = requests.get(f"{server.url}/apis/v2beta1/runs/{run.run_id}", timeout=10).json()
    nodes = {d["task_id"]: d for d in details["run_details"]["task_details"]}
    tasks = requests.get(f"{server.url}/apis/local/v1/runs/{run.run_id}/tasks", timeout=10).json()[
        "tasks"
    ]
    shouts = [t for t in tasks if t["name"] == "shout"]
    assert sorted(t["path"][-1] for t in shouts) == ["iteration-0", "iteration-1"]
    assert {(t["name"], t["kind"]) for t in tasks} == {
        ("shout", "container"),
        ("iteration-0", "dag"),
        ("iteration-1", "dag"),
        ("for-loop-1", "dag"),
        ("total", "container"),
    }
    pods = argo_nodes.executor_pod_names(nodes.values())
    children = {child["pod_name"] for d in nodes.values() for child in d.get("child_tasks", [])}
    for task in tasks:
        entry = nodes[task["task_id"]]
        assert entry["state"] == task["state"] == "SUCCEEDED"
        if not task["name"].startswith("iteration-"):  # Argo: iteration-iterations(i:i)
            assert entry["display_name"] == task["name"], task
        assert task["node_id"] in children
        assert (task["pod_name"] in pods) == (task["kind"] == "container"), task
    for task in shouts:
        log = requests.get(
            f"{server.url}/apis/v1alpha1/runs/{run.run_id}/nodes/{task['pod_name']}/log",
            timeout=10,
        )
        item = task["inputs"]["parameters"]["item"]
        assert log.status_code == 200 and f"iteration item {item}" in log.text


def test_an_unknown_run_shows_the_api_error(server, page) -> None:
    page.goto(f"{server.url}/#/runs/details/no-such-run")
    page.locator(_testid("api-error")).filter(has_text="no-such-run").wait_for()


# -- pipelines, experiments, recurring runs -----------------------------------------------------


def test_pipeline_details_show_the_graph_and_start_a_run(
    server, kfp_client, packages, page, capsys
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        pipeline = kfp_client.upload_pipeline(
            packages["add_subtract_multiply"], "ui-sample", description="the UI's sample"
        )
    link = _printed_link(capsys, "Pipeline details")
    assert link == f"{server.url}/#/pipelines/details/{pipeline.pipeline_id}"
    page.goto(f"{server.url}/#/pipelines")
    page.locator(f"{_testid('pipeline-row')}:has-text('ui-sample')").wait_for()
    _screenshot(page, "pipelines")
    page.goto(link)
    page.wait_for_selector(_testid("page-pipeline-details"))
    for task in ("add", "subtract", "multiply", "check-equals"):
        page.wait_for_selector(_node(task))
    form = page.locator(_testid("create-run-form"))
    for name, value in (("a", "6"), ("b", "4"), ("expected", "20")):
        form.locator(f"[name={name}]").fill(value)
    _screenshot(page, "pipeline-details")
    form.locator(_testid("create-run-submit")).click()
    page.wait_for_selector(_testid("page-run-details"))
    page.wait_for_selector(f"{_testid('run-state')}:has-text('SUCCEEDED')", timeout=120_000)
    run_id = page.url.rsplit("/", 1)[-1]
    run = kfp_client.get_run(run_id)
    assert run.runtime_config.parameters == {"a": 6, "b": 4, "expected": 20}


def test_a_v1_pipeline_shows_its_graph_and_parameters_and_its_form_starts_a_v1_run(
    server, kfp_client, page, capsys
) -> None:
    """A KFP v1 pipeline (kfp 1.8's Argo Workflow, template type V1): its page draws the
    entrypoint DAG's tasks and their dependencies (KFP's `frontend/src/lib/StaticGraphParser.ts`)
    and lists `spec.arguments.parameters` as strings with their defaults. Its form starts a
    v1beta1 run with `pipeline_spec.parameters` (`frontend/src/pages/NewRun.tsx`), since KFP
    does not apply v2beta1 `runtime_config.parameters` to a V1 run (`server/api_converter.go`
    `toModelRun`): the values reach the tasks, which the final task checks (the defaults would
    pass it too, so its log is read). The run page colours the Argo nodes of `task_details`
    (`WorkflowParser.ts` reads the same nodes from the workflow's status) and shows a task's
    log by its pod name (`common/util/workflow.go` `RetrievePodName`); a failed run opens on
    its failed task."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        pipeline = kfp_client.upload_pipeline(
            str(V1_DIRECTORY / "add_subtract_multiply.yaml"), "ui-v1-sample"
        )
    link = _printed_link(capsys, "Pipeline details")
    page.goto(link)
    page.wait_for_selector(_testid("page-pipeline-details"))
    for task in ("add", "subtract", "multiply", "check-equals"):
        page.wait_for_selector(_node(task))
    assert page.locator("[data-testid=graph-node]").count() == 4
    assert page.locator(_testid("template-type")).inner_text() == "V1"
    params = page.locator(_testid("pipeline-params"))
    for name, default in (("a", "5.0"), ("b", "3.0"), ("expected", "16.0")):
        row = params.locator(f"[data-param={name}]").inner_text()
        assert "STRING" in row and default in row, row
    _screenshot(page, "pipeline-details-v1")

    def start(values: dict[str, str]) -> str:
        page.goto(link)
        form = page.locator(_testid("create-run-form"))
        for name, value in values.items():
            form.locator(f"[name={name}]").fill(value)
        form.locator(_testid("create-run-submit")).click()
        page.wait_for_url(re.compile(r".*#/runs/details/[^/?]+"))
        page.wait_for_selector(_testid("page-run-details"))
        return page.url.split("#/runs/details/", 1)[1].split("?", 1)[0]

    run_id = start({"a": "7", "b": "2", "expected": "45"})
    page.wait_for_selector(f"{_testid('run-state')}:has-text('SUCCEEDED')")
    for task in ("add", "subtract", "multiply", "check-equals"):
        page.wait_for_selector(_node(task, "SUCCEEDED"))
    assert page.locator("[data-testid=graph-node]").count() == 4
    run = kfp_client.get_run(run_id)
    assert run.pipeline_version_reference.pipeline_id == pipeline.pipeline_id
    assert run.runtime_config.parameters == {"a": "7", "b": "2", "expected": "45"}
    page.click(_node("check-equals"))
    panel = page.locator(_testid("task-panel"))
    panel.locator(_testid("task-log")).filter(has_text="checked: 45.0 == 45.0").wait_for()
    page.click(_node("multiply"))
    page.locator(f"{_testid('task-panel')}[data-task=multiply]").wait_for()
    assert "45.0" in panel.locator(_testid("task-outputs")).inner_text()  # (7+2)*(7-2)
    _screenshot(page, "run-details-v1")

    start({"a": "7", "b": "2", "expected": "44"})
    page.wait_for_selector(f"{_testid('run-state')}:has-text('FAILED')")
    page.wait_for_selector(_node("check-equals", "FAILED"))
    failed = page.locator(f"{_testid('task-panel')}[data-task=check-equals]")
    failed.locator(_testid("task-error")).filter(has_text="expected 44.0, got 45.0").wait_for()
    failed.locator(_testid("task-log")).filter(has_text="ValueError").wait_for()
    _screenshot(page, "run-details-v1-failed")


def test_experiments_list_and_details(server, kfp_client, packages, page, capsys) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        experiment = kfp_client.create_experiment("ui-experiment")
    link = _printed_link(capsys, "Experiment details")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        run = kfp_client.create_run_from_pipeline_package(
            packages["add_subtract_multiply"],
            arguments={},
            experiment_name="ui-experiment",
            run_name="run-in-experiment",
            enable_caching=False,
        )
    page.goto(f"{server.url}/#/experiments")
    page.locator(f"{_testid('experiment-row')}:has-text('ui-experiment')").wait_for()
    _screenshot(page, "experiments")
    page.goto(link)
    page.wait_for_selector(_testid("page-experiment-details"))
    page.locator(f"[data-testid=run-row][data-run-id='{run.run_id}']").wait_for()
    _screenshot(page, "experiment-details")
    assert experiment.experiment_id in page.url
    assert _wait(kfp_client, run.run_id) == "SUCCEEDED"


def test_recurring_runs_are_enabled_and_disabled_from_the_list(
    server, kfp_client, packages, page
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        experiment = kfp_client.create_experiment("ui-recurring")
        recurring = kfp_client.create_recurring_run(
            experiment_id=experiment.experiment_id,
            job_name="ui-nightly",
            cron_expression="0 0 3 * * *",
            pipeline_package_path=packages["add_subtract_multiply"],
            enabled=True,
        )
    page.goto(f"{server.url}/#/recurringruns")
    page.wait_for_selector(_testid("page-recurring-runs"))
    row = page.locator(f"{_testid('recurring-run-row')}:has-text('ui-nightly')")
    row.wait_for()
    _screenshot(page, "recurring-runs")

    def status() -> str:
        return str(kfp_client.get_recurring_run(recurring.recurring_run_id).status)

    assert status() == "ENABLED"
    row.locator(_testid("toggle-recurring-run")).click()
    _eventually(lambda: status() == "DISABLED")
    row.locator(_testid("toggle-recurring-run")).click()
    _eventually(lambda: status() == "ENABLED")


# -- logins -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def token_server(tmp_path_factory) -> Iterator[LocalKfpServer]:
    with LocalKfpServer(
        tmp_path_factory.mktemp("ui-token"), port=0, auth_token=TOKEN, executor_factory=HeldExecutor
    ) as started:
        yield started


@pytest.fixture(scope="module")
def dex_server(tmp_path_factory) -> Iterator[LocalKfpServer]:
    with LocalKfpServer(
        tmp_path_factory.mktemp("ui-dex"),
        port=0,
        dex_user="user@example.com",
        dex_password="12341234",
        executor_factory=HeldExecutor,
    ) as started:
        yield started


def test_under_a_token_the_browser_logs_in_with_the_form_then_pages_load(
    token_server, browser
) -> None:
    client = client_for(token_server, existing_token=TOKEN)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        client.create_experiment("behind-a-token")
    tab = browser.new_page()
    tab.set_default_timeout(WAIT_MS)
    try:
        tab.goto(f"{token_server.url}/#/experiments")
        tab.wait_for_selector("input[name=token]")
        assert "/login" in tab.url
        _screenshot(tab, "token-login")
        tab.fill("input[name=token]", "wrong")
        tab.click("#submit-token")
        tab.locator("text=Invalid token").wait_for()
        tab.fill("input[name=token]", TOKEN)
        tab.click("#submit-token")
        tab.wait_for_selector(_testid("page-experiments"))
        assert tab.url == f"{token_server.url}/#/experiments"
        tab.locator(f"{_testid('experiment-row')}:has-text('behind-a-token')").wait_for()
        cookies = {c["name"]: c for c in browser.cookies(token_server.url)}
        port = token_server.url.rsplit(":", 1)[1]
        session = cookies[f"local_kfp_ui_session-{port}"]
        assert session["httpOnly"] and session["sameSite"] == "Strict"
        assert session["value"] != TOKEN
        # the API outside the browser still needs the header
        assert requests.get(f"{token_server.url}/apis/v2beta1/runs", timeout=10).status_code == 401
    finally:
        tab.close()


def test_under_a_token_the_token_in_the_url_logs_in(token_server, browser) -> None:
    browser.clear_cookies()
    tab = browser.new_page()
    tab.set_default_timeout(WAIT_MS)
    try:
        tab.goto(f"{token_server.url}/pipeline/?token={TOKEN}#/pipelines")
        tab.wait_for_selector(_testid("page-pipelines"))
        assert "token" not in tab.url
    finally:
        tab.close()


def test_under_dex_the_browser_is_sent_to_the_login_then_pages_load(dex_server, browser) -> None:
    tab = browser.new_page()
    tab.set_default_timeout(WAIT_MS)
    try:
        tab.goto(f"{dex_server.url}/#/runs")
        tab.wait_for_selector("input[name=login]")
        assert "/dex/auth/local/login" in tab.url
        tab.fill("input[name=login]", "user@example.com")
        tab.fill("input[name=password]", "12341234")
        tab.click("#submit-login")
        tab.wait_for_selector(_testid("page-runs"))
        assert tab.url == f"{dex_server.url}/#/runs"
        _screenshot(tab, "dex-runs")
        tab.goto(f"{dex_server.url}/#/experiments")
        tab.locator(f"{_testid('experiment-row')}:has-text('Default')").wait_for()
    finally:
        tab.close()
