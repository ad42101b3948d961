"""The `kfadapter` command: help, settings validation, `local-kfp` and `dev` as real processes."""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from kfadapter.cli import main
from tests.support import KFADAPTER, PYTHON, Process, adapter_env, wait_until


@pytest.fixture
def clean_env(tmp_path) -> dict[str, str]:
    """The environment without any adapter setting, data kept under tmp_path."""
    return adapter_env(KFADAPTER_DATA_DIR=str(tmp_path / "adapter-data"))


@pytest.mark.e2e
def test_help_lists_subcommands_and_is_fast():
    result = subprocess.run(
        [*KFADAPTER, "--help"], capture_output=True, text=True, timeout=30, check=True
    )
    for command in ("dev", "serve", "local-kfp"):
        assert command in result.stdout
    probe = (
        "import sys\nfrom kfadapter.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('kfp' in sys.modules, 'flask' in sys.modules)"
    )
    imported = subprocess.run([PYTHON, "-c", probe], capture_output=True, text=True, timeout=30)
    assert imported.stdout.strip().splitlines()[-1] == "False False"


@pytest.mark.e2e
def test_console_script_and_module_agree():
    script = Path(PYTHON).with_name("kfadapter")
    by_module = subprocess.run([*KFADAPTER, "serve", "--help"], capture_output=True, text=True)
    assert by_module.returncode == 0 and "KFADAPTER_WORKERS" in by_module.stdout
    if script.exists():  # installed with `pip install -e .`
        by_script = subprocess.run([str(script), "serve", "--help"], capture_output=True, text=True)
        assert by_script.stdout == by_module.stdout


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("kfadapter 0.")


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "usage: kfadapter" in capsys.readouterr().out


def test_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["frobnicate"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("variable", "raw", "expected"),
    [
        ("KF_ADAPTER_PORT", "abc", "KF_ADAPTER_PORT must be a whole number"),
        ("KFADAPTER_WORKERS", "0", "KFADAPTER_WORKERS must be between 1 and 64"),
        ("KFADAPTER_LOG_FORMAT", "xml", "KFADAPTER_LOG_FORMAT must be 'text' or 'json'"),
        ("KFADAPTER_LOG_LEVEL", "loud", "KFADAPTER_LOG_LEVEL must be one of DEBUG, INFO"),
    ],
)
def test_serve_rejects_bad_settings_with_exit_code_2(
    monkeypatch, capsys, clean_env, variable, raw, expected
):
    monkeypatch.setattr(os, "environ", dict(clean_env))
    monkeypatch.setenv(variable, raw)
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert expected in err and err.startswith("kfadapter: invalid setting:")


@pytest.mark.e2e
def test_serve_bad_setting_as_a_real_process(clean_env):
    env = {**clean_env, "KFADAPTER_THREADS": "lots"}
    result = subprocess.run(
        [*KFADAPTER, "serve"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "KFADAPTER_THREADS must be a whole number, got 'lots'" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_check_reports_bind_address(monkeypatch, capsys, clean_env):
    monkeypatch.setattr(os, "environ", {**clean_env, "KF_ADAPTER_PORT": "5123"})
    assert main(["serve", "--check"]) == 0
    assert "0.0.0.0:5123" in capsys.readouterr().out
    assert main(["serve", "--check", "--bind", "127.0.0.1:7000"]) == 0
    assert "127.0.0.1:7000" in capsys.readouterr().out
    assert main(["serve", "--check", "--workers", "0"]) == 2
    assert "--workers must be >= 1" in capsys.readouterr().err
    assert main(["serve", "--check", "--threads", "257"]) == 2
    assert "--threads must be <= 256" in capsys.readouterr().err


@pytest.mark.e2e
def test_local_kfp_subcommand_serves_the_kfp_api(tmp_path, clean_env):
    process = Process(
        [*KFADAPTER, "local-kfp", "--port", "0", "--data-dir", str(tmp_path / "kfp")],
        env=clean_env,
    )
    try:
        line = process.wait_for_line("local KFP server: http://")
        url = line.split("local KFP server:", 1)[1].strip()
        health = requests.get(f"{url}/apis/v2beta1/healthz", timeout=10)
        assert health.status_code == 200
        ui_line = process.wait_for_line("web UI:")
        assert ui_line.split("web UI:", 1)[1].strip() == f"{url}/"
        page = requests.get(f"{url}/", timeout=10)
        assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
        assert process.terminate() == 0
    finally:
        process.kill()


@pytest.mark.e2e
def test_local_kfp_prints_the_ui_address_that_logs_in_with_its_token(tmp_path, clean_env):
    process = Process(
        [
            *KFADAPTER,
            "local-kfp",
            "--port",
            "0",
            "--data-dir",
            str(tmp_path / "kfp"),
            "--auth-token",
            "t0k/en",
        ],
        env=clean_env,
    )
    try:
        line = process.wait_for_line("web UI:")
        address = line.split("web UI:", 1)[1].strip()
        assert address.endswith("/?token=t0k%2Fen"), address
        browser = requests.Session()  # as a browser: follows the redirect, keeps the cookie
        page = browser.get(address, timeout=10)
        assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
        assert "token" not in page.url
        base = address.split("?", 1)[0]
        assert browser.get(f"{base}apis/v2beta1/runs", timeout=10).status_code == 200
        assert requests.get(f"{base}apis/v2beta1/runs", timeout=10).status_code == 401
        assert process.terminate() == 0
    finally:
        process.kill()


@pytest.mark.e2e
def test_local_kfp_help_is_its_own():
    result = subprocess.run(
        [*KFADAPTER, "local-kfp", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    assert "kfadapter local-kfp" in result.stdout and "--max-concurrent-runs" in result.stdout


def start_dev(data_dir: Path, env: dict[str, str], cwd: Path) -> tuple[Process, str]:
    """`kfadapter dev` on free ports keeping its data in data_dir; and the adapter's URL
    once it prints it (the process is killed if it never does)."""
    process = Process(
        [*KFADAPTER, "dev", "--port", "0", "--kfp-port", "0", "--data-dir", str(data_dir)],
        env=env,
        cwd=cwd,
    )
    try:
        line = process.wait_for_line("kfadapter adapter:", timeout=120)
    except BaseException:
        process.kill()
        raise
    return process, line.split("adapter:", 1)[1].strip()


@pytest.fixture
def dev_process(tmp_path, clean_env) -> Iterator[tuple[Process, str, Path]]:
    """`kfadapter dev` on free ports with its data dir under tmp_path."""
    data_dir = tmp_path / "dev-data"
    process, url = start_dev(data_dir, clean_env, tmp_path)
    try:
        yield process, url, data_dir
    finally:
        process.kill()


@pytest.mark.e2e
def test_dev_serves_adapter_with_sample_pipeline(dev_process):
    process, url, data_dir = dev_process
    process.wait_for_line("Ctrl-C stops both servers")
    text = "".join(process.output)
    assert f"curl {url}/pipelines" in text and f"{url}/docs" in text
    ui_address = re.search(r"KFP web UI: +(\S+)", text)
    assert ui_address is not None, text
    page = requests.get(ui_address.group(1), timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    listed = requests.get(f"{url}/pipelines", timeout=30)
    assert listed.status_code == 200
    names = [pipeline["display_name"] for pipeline in listed.json()["pipelines"]]
    assert names.count("add_subtract_multiply") == 1
    assert requests.get(f"{url}/liveness", timeout=10).text == "Okay"

    # The training-job call the banner suggests starts a run that succeeds.
    suggested = re.search(r"-d '(\{.*\})'", text)
    assert suggested is not None, text
    started = requests.post(
        f"{url}/trainingjobs/job1/execution", json=json.loads(suggested.group(1)), timeout=60
    )
    assert started.status_code == 200, started.text
    assert started.json()["run_status"] == "scheduled"
    run_id = started.json()["run_id"]

    def final_state() -> str | None:
        state = requests.get(f"{url}/runs/{run_id}", timeout=30).json()["run_status"]
        return state if state in ("SUCCEEDED", "FAILED", "CANCELED", "SKIPPED") else None

    state = wait_until(final_state, timeout=180, step=0.3)
    assert state == "SUCCEEDED"
    assert requests.get(f"{url}/trainingjobs/job1", timeout=30).json()["run_id"] == run_id

    # dev turns on the embedded server's local extras: a failed run's error says why
    wrong = json.loads(suggested.group(1))
    wrong["arguments"]["expected"] = "44"
    failed = requests.post(f"{url}/trainingjobs/job2/execution", json=wrong, timeout=60).json()
    run_id = failed["run_id"]
    assert wait_until(final_state, timeout=180, step=0.3) == "FAILED"
    assert "expected 44" in requests.get(f"{url}/runs/{run_id}", timeout=30).json()["error"]

    assert process.terminate() == 0
    assert (data_dir / "local-kfp").is_dir()


@pytest.mark.e2e
def test_dev_restart_does_not_register_the_sample_twice(tmp_path, clean_env):
    for _ in range(2):
        process, url = start_dev(tmp_path / "dev-data", clean_env, tmp_path)
        try:
            pipelines = requests.get(f"{url}/pipelines", timeout=30).json()["pipelines"]
            names = [pipeline["display_name"] for pipeline in pipelines]
            assert names.count("add_subtract_multiply") == 1
            versions = requests.get(f"{url}/pipelines/add_subtract_multiply/versions", timeout=30)
            assert len(versions.json()["versions_list"]) == 1
            assert process.terminate() == 0
        finally:
            process.kill()


@pytest.mark.e2e
def test_dev_with_a_busy_port_fails_with_a_message(tmp_path, clean_env):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        result = subprocess.run(
            [*KFADAPTER, "dev", "--port", port, "--kfp-port", "0", "--data-dir", str(tmp_path)],
            env=clean_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 1
    assert "in use" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("command", "store", "said"),
    [
        (["local-kfp", "--port", "0"], "kfp.sqlite3", "cannot start: the local KFP store"),
        (["dev", "--no-sample"], "local-kfp/kfp.sqlite3", "cannot start the KFP server"),
        (["dev", "--no-sample"], "adapter/tracking.sqlite3", "cannot start run tracking"),
    ],
)
def test_a_store_of_a_newer_release_stops_the_start_with_a_message(
    tmp_path, clean_env, command, store, said
):
    """A data dir written by a newer kfadapter is refused (no silent downgrade), in words."""
    newer = tmp_path / store
    newer.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(newer) as db:
        db.execute("PRAGMA user_version=99")
    ports = ["--port", "0", "--kfp-port", "0"] if command[0] == "dev" else []
    result = subprocess.run(
        [*KFADAPTER, *command, *ports, "--data-dir", str(tmp_path)],
        env=clean_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert said in result.stderr and "schema version 99" in result.stderr
    assert "Traceback" not in result.stderr
    with sqlite3.connect(newer) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 99


def test_serve_with_a_malformed_database_url_is_a_usage_error(monkeypatch, capsys, clean_env):
    url = "postgresql://kf:secret@db:5432"
    monkeypatch.setattr(os, "environ", {**clean_env, "KFADAPTER_DATABASE_URL": url})
    assert main(["serve", "--check"]) == 2
    err = capsys.readouterr().err
    assert "invalid setting: KFADAPTER_DATABASE_URL must name a database" in err
    assert "secret" not in err


def test_migrate_store_needs_a_postgresql_target(monkeypatch, capsys, clean_env):
    monkeypatch.setattr(os, "environ", dict(clean_env))
    assert main(["migrate-store"]) == 2
    assert "must name the PostgreSQL database to copy into" in capsys.readouterr().err


def test_serve_starts_while_the_database_cannot_be_reached_yet(monkeypatch, capsys, clean_env):
    from tests.support import free_port

    url = f"postgresql://kf:secret@127.0.0.1:{free_port()}/kfadapter"
    monkeypatch.setattr(os, "environ", {**clean_env, "KFADAPTER_DATABASE_URL": url})
    assert main(["serve", "--check"]) == 0
    captured = capsys.readouterr()
    assert "settings are valid" in captured.out
    assert "warning: the tracking database postgresql://kf:***@127.0.0.1:" in captured.err
    assert "starting anyway" in captured.err and "secret" not in captured.err
