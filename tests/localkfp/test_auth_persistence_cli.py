"""Access control (bearer token, Dex login), persistence across restarts, and the CLI."""

from __future__ import annotations

import os
import time
from pathlib import Path

import kfp_server_api
import pytest
import requests
import yaml

from kfadapter.localkfp.runs import RESTART_ERROR
from kfadapter.localkfp.services import KfpServices
from kfadapter.localkfp.storage import Store, dumps
from kfadapter.localkfp.timefmt import now_us
from tests.localkfp.conftest import SPEC, HeldExecutor, client_for, upload_spec
from tests.localkfp.processes import (
    DEADLINE_SECONDS,
    live_group_members,
    wait_group_gone,
    worker_pid,
)
from tests.support import PYTHON, Process, adapter_env, wait_until

pytestmark = pytest.mark.e2e  # real servers and processes on free ports


def test_bearer_token_is_required(make_server) -> None:
    server = make_server(auth_token="s3cret", executor_factory=HeldExecutor)
    for prefix in ("", "/pipeline"):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            response = requests.get(f"{server.url}{prefix}/apis/v2beta1/pipelines", headers=headers)
            assert response.status_code == 401
            assert response.json()["code"] == 16
    assert requests.get(f"{server.url}/apis/v2beta1/healthz").status_code == 200  # stays open
    with pytest.raises(kfp_server_api.ApiException) as error:
        client_for(server).list_pipelines()
    assert error.value.status == 401

    client = client_for(server, existing_token="s3cret")
    assert client.get_kfp_healthz().multi_user is False
    assert client.list_experiments().experiments[0].display_name == "Default"


def test_dex_login_flow_sets_the_session_cookie(make_server) -> None:
    server = make_server(dex_user="user@example.com", dex_password="12341234")
    api = f"{server.url}/pipeline/apis/v2beta1/experiments"

    first = requests.get(api, allow_redirects=False)
    assert first.status_code == 302 and "/dex/auth/local/login" in first.headers["Location"]

    # the adapter's generic login: GET following redirects, POST to where it ended
    session = requests.Session()
    form = session.get(api)
    assert (
        form.status_code == 200 and 'name="login"' in form.text and 'name="password"' in form.text
    )
    wrong = session.post(form.url, data={"login": "user@example.com", "password": "nope"})
    assert wrong.status_code == 401 and 'name="password"' in wrong.text
    assert "authservice_session" not in session.cookies

    done = session.post(form.url, data={"login": "user@example.com", "password": "12341234"})
    assert done.status_code == 200 and done.json()["experiments"][0]["display_name"] == "Default"
    assert done.history[0].status_code == 303
    cookie = session.cookies["authservice_session"]

    client = client_for(server, "/pipeline", cookies=f"authservice_session={cookie}")
    assert client.get_experiment(experiment_name="Default").display_name == "Default"
    client.create_experiment("visible only when logged in")
    assert client.list_experiments().total_size == 2
    # Without the cookie kfp.Client's HTTP library follows the redirect to the login page,
    # whose HTML it cannot read: it sees nothing (as against a real Kubeflow behind Dex).
    anonymous = client_for(server, "/pipeline").list_experiments()
    assert anonymous.experiments is None and anonymous.total_size is None
    forged = requests.get(api, cookies={"authservice_session": "forged"}, allow_redirects=False)
    assert forged.status_code == 302

    escape = requests.post(
        f"{server.url}/dex/auth/local/login?back=https://evil.example/",
        data={"login": "user@example.com", "password": "12341234"},
        allow_redirects=False,
    )
    assert escape.status_code == 303 and escape.headers["Location"] in ("/", f"{server.url}/")


def test_an_expired_dex_session_is_refused_and_a_fresh_login_works(make_server) -> None:
    ttl = 1.0
    server = make_server(
        dex_user="user@example.com",
        dex_password="12341234",
        dex_session_ttl=ttl,
        executor_factory=HeldExecutor,
    )
    api = f"{server.url}/pipeline/apis/v2beta1/experiments?page_size=5"
    login = f"{server.url}/dex/auth/local/login"

    def log_in() -> str:
        done = requests.post(
            login, data={"login": "user@example.com", "password": "12341234"}, allow_redirects=False
        )
        assert done.status_code == 303
        return done.cookies["authservice_session"]

    first = log_in()
    logged_in_at = time.monotonic()
    fresh = requests.get(api, cookies={"authservice_session": first}, allow_redirects=False)
    assert fresh.status_code == 200 and fresh.json()["experiments"][0]["display_name"] == "Default"

    time.sleep(max(0.0, logged_in_at + ttl + 0.05 - time.monotonic()))
    expired = requests.get(api, cookies={"authservice_session": first}, allow_redirects=False)
    assert expired.status_code == 302  # the same answer as without any cookie
    assert (
        expired.headers["Location"] == requests.get(api, allow_redirects=False).headers["Location"]
    )
    assert "/dex/auth/local/login?back=" in expired.headers["Location"]
    write = requests.post(
        api,
        json={"display_name": "late"},
        cookies={"authservice_session": first},
        allow_redirects=False,
    )
    assert write.status_code == 302

    second = log_in()
    assert second != first and server.auth.logins == 2
    again = requests.get(api, cookies={"authservice_session": second}, allow_redirects=False)
    assert again.status_code == 200 and again.json()["total_size"] == 1  # "late" was refused
    stale = requests.get(api, cookies={"authservice_session": first}, allow_redirects=False)
    assert stale.status_code == 302  # a new login does not revive the old session


def test_dex_session_ttl_needs_dex_and_a_positive_value(tmp_path) -> None:
    from kfadapter.localkfp.server import LocalKfpServer, main

    with pytest.raises(ValueError, match="positive"):
        LocalKfpServer(tmp_path, dex_user="u", dex_password="p", dex_session_ttl=0)
    with pytest.raises(ValueError, match="needs dex_user"):
        LocalKfpServer(tmp_path, dex_session_ttl=60)
    for argv in (
        ["--dex-session-ttl", "60"],
        ["--dex-user", "u", "--dex-password", "p", "--dex-session-ttl", "-1"],
        ["--dex-user", "u", "--dex-password", "p", "--dex-session-ttl", "soon"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2


def test_state_survives_a_restart_and_active_runs_are_failed(make_server, tmp_path) -> None:
    first = make_server(tmp_path, executor_factory=HeldExecutor)
    client = client_for(first)
    pipeline = upload_spec(first, "kept")
    experiment = client.create_experiment("kept-experiment")
    running = requests.post(
        f"{first.url}/apis/v2beta1/runs",
        json={
            "display_name": "in flight",
            "pipeline_spec": SPEC,
            "experiment_id": experiment.experiment_id,
        },
    ).json()
    finished = requests.post(
        f"{first.url}/apis/v2beta1/runs",
        json={"display_name": "done", "pipeline_spec": SPEC},
    ).json()
    first._executor.finish(finished["run_id"], "SUCCEEDED")
    first.stop()

    # local_extras: the run's error says why it failed (KFP gives no error text)
    second = make_server(tmp_path, executor_factory=HeldExecutor, local_extras=True)
    client = client_for(second)
    assert client.get_pipeline(pipeline["pipeline_id"]).display_name == "kept"
    assert client.get_experiment(experiment_name="kept-experiment").experiment_id == (
        experiment.experiment_id
    )
    interrupted = client.get_run(running["run_id"])
    assert interrupted.state == "FAILED" and "restart" in interrupted.error.message
    assert client.get_run(finished["run_id"]).state == "SUCCEEDED"
    assert (
        len(
            client.list_experiments(
                filter='{"predicates":[{"key":"name","operation":"EQUALS","string_value":"Default"}]}'
            ).experiments
        )
        == 1
    )


def _start_cli_server(data_dir: Path) -> tuple[Process, str]:
    """The local KFP server's command line in a child process on a free port: the process
    and the URL it printed."""
    process = Process(
        [
            PYTHON,
            "-c",
            "from kfadapter.localkfp.server import main; raise SystemExit(main())",
            "--port",
            "0",
            "--data-dir",
            str(data_dir),
        ],
        env=adapter_env(),
    )
    line = process.wait_for_line("local KFP server: ")
    assert line.startswith("local KFP server: http://127.0.0.1:"), line
    return process, line.split(": ", 1)[1].strip()


def test_runs_of_a_killed_server_are_stopped_and_failed_on_restart(
    make_server, compiled, tmp_path
) -> None:
    """SIGKILL the server mid-run: its run's processes end by themselves, the run ends FAILED."""
    data_dir = tmp_path / "data"
    process, url = _start_cli_server(data_dir)
    try:
        run = requests.post(
            f"{url}/apis/v2beta1/runs",
            json={
                "display_name": "outlives its server?",
                "pipeline_spec": yaml.safe_load(compiled["sleeps"].read_text()),
                "runtime_config": {"parameters": {"seconds": 600}},
            },
            timeout=10,
        ).json()
        pgid = os.getpgid(worker_pid(data_dir / "runs" / run["run_id"]))
        # until the task's own processes have started too
        wait_until(lambda: len(live_group_members(pgid)) >= 2, DEADLINE_SECONDS)
        assert len(live_group_members(pgid)) >= 2
        process.kill()
        assert wait_group_gone(pgid), "the run's processes outlived the killed server"
    finally:
        process.kill()

    restarted = make_server(data_dir, local_extras=True)  # to see the error text
    after = requests.get(f"{restarted.url}/apis/v2beta1/runs/{run['run_id']}").json()
    assert after["state"] == "FAILED"
    assert after["error"]["message"] == RESTART_ERROR


def test_fail_interrupted_runs_marks_running_tasks(tmp_path) -> None:
    store = Store(tmp_path / "kfp.sqlite3")
    services = KfpServices.over(store)
    experiment = services.experiments.default_experiment()
    with store.db.write() as conn:
        store.db.insert(
            conn,
            "runs",
            {
                "id": "r1",
                "experiment_id": experiment["id"],
                "display_name": "r",
                "created_at": now_us(),
                "state": "RUNNING",
                "task_details": dumps([{"task_id": "t", "state": "RUNNING"}]),
                "state_history": dumps([]),
            },
        )
    assert services.runs.fail_interrupted_runs() == 1
    row = store.runs.get("r1")
    assert row["state"] == "FAILED" and RESTART_ERROR in row["error"]
    assert '"FAILED"' in row["task_details"] and row["finished_at"] > 0
    assert services.runs.fail_interrupted_runs() == 0
    store.close()


def test_cli_prints_the_url_and_stops_on_sigterm(tmp_path) -> None:
    process, url = _start_cli_server(tmp_path / "data")
    try:
        assert not url.endswith(":0")
        assert requests.get(f"{url}/apis/v2beta1/healthz", timeout=5).status_code == 200
        assert process.terminate(timeout=20) == 0
    finally:
        process.kill()
    assert (tmp_path / "data" / "kfp.sqlite3").exists()


def test_cli_rejects_bad_options() -> None:
    from kfadapter.localkfp.server import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--max-concurrent-runs", "0"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        main(["--dex-user", "only-user"])
    started = time.monotonic()
    with pytest.raises(SystemExit):
        main(["--port", "not-a-port"])
    assert time.monotonic() - started < 5


def test_one_server_per_data_dir_and_a_busy_port_changes_nothing(make_server, tmp_path) -> None:
    from kfadapter.localkfp.server import DataDirInUse, LocalKfpServer

    first = make_server(tmp_path / "one", executor_factory=HeldExecutor)
    run = requests.post(
        f"{first.url}/apis/v2beta1/runs", json={"display_name": "active", "pipeline_spec": SPEC}
    ).json()
    with pytest.raises(DataDirInUse):
        LocalKfpServer(tmp_path / "one", port=0, executor_factory=HeldExecutor).start()
    busy = LocalKfpServer(tmp_path / "two", port=first._http.port, executor_factory=HeldExecutor)
    with pytest.raises(OSError):
        busy.start()
    assert requests.get(f"{first.url}/apis/v2beta1/runs/{run['run_id']}").json()["state"] == (
        "PENDING"
    )
    again = make_server(tmp_path / "two", executor_factory=HeldExecutor)  # the lock was freed
    assert requests.get(f"{again.url}/apis/v2beta1/healthz").status_code == 200
