"""Task environments over HTTP: runs on the embedded KFP server with the unmodified kfp.Client.

Each task runs in an environment holding what its component's pip commands ask for (as
compiled by kfp 2.17: kfp/dsl/component_factory.py at 2.17.0,
``_get_packages_to_install_command``), plus its image's mapped packages, and the server's own
environment never changes. The packages are tiny wheels built here and served by a local index;
only the test of another kfp version downloads (from PyPI) and it skips when PyPI is out of
reach.
"""

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import requests
import yaml

from kfadapter.localkfp.argo_nodes import executor_pod_name
from kfadapter.localkfp.execution import TaskOptions
from kfadapter.localkfp.server import LocalKfpServer
from tests.localkfp.conftest import client_for
from tests.localkfp.processes import live_group_members, wait_group_gone, worker_pid
from tests.localkfp.wheels import PackageIndex, add_to_index, build_wheel, package_index
from tests.support import wait_until

pytestmark = pytest.mark.e2e  # real servers, index and processes on free ports

IMAGE = "traininghost/pipelineimage:latest"
FINAL = {"SUCCEEDED", "FAILED", "CANCELED"}


def check_version(module: str, expected: str) -> str:
    """Fails unless ``module`` imports and has VERSION ``expected``."""
    import importlib

    found = getattr(importlib.import_module(module), "VERSION", None)
    if found != expected:
        raise ValueError(f"{module} has version {found}, expected {expected}")
    return found


def check_absent(module: str) -> str:
    """Fails if ``module`` can be imported."""
    import importlib.util

    if importlib.util.find_spec(module) is not None:
        raise RuntimeError(f"{module} is importable")
    return "absent"


def check_kfp(expected: str) -> str:
    """Fails unless the task's kfp is version ``expected``."""
    import importlib.metadata

    found = importlib.metadata.version("kfp")
    if found != expected:
        raise ValueError(f"kfp is {found}, expected {expected}")
    return found


def component(function, **options):
    from kfp import dsl

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return dsl.component(function, **options)


def compile_pipeline(path: Path, build) -> Path:
    """Compile the pipeline ``build()`` returns to ``path``."""
    from kfp import compiler

    compiler.Compiler().compile(build(), str(path))
    return path


def installing_pipeline(path: Path, name: str, requirement: str, index_url: str) -> Path:
    """A one-task pipeline, compiled to ``path``, whose task installs ``requirement`` from
    the index and checks that its module imports with that version."""
    from kfp import dsl

    module, _, version = requirement.partition("==")

    def build():
        check = component(
            check_version, packages_to_install=[requirement], pip_index_urls=[index_url]
        )

        @dsl.pipeline(name=name)
        def pipeline():
            check(module=module, expected=version)

        return pipeline

    return compile_pipeline(path, build)


def server_freeze() -> str:
    return subprocess.run(
        [sys.executable, "-m", "pip", "freeze"], capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    root = tmp_path_factory.mktemp("index")
    built = tmp_path_factory.mktemp("wheels")
    for name in ("tinypkg", "sharedpkg", "killedpkg", "imagepkg"):
        add_to_index(root, build_wheel(built, name, "1.0.0"))
    with package_index(root) as served:
        yield served


@pytest.fixture(scope="module")
def server(tmp_path_factory, index: PackageIndex):
    """A server whose runs really execute, with an image mapping and its own cache."""
    requirements = tmp_path_factory.mktemp("image") / "pipelineimage.txt"
    requirements.write_text(f"--index-url {index.url}\nimagepkg==1.0.0\n")
    data_dir = tmp_path_factory.mktemp("local-kfp-envs")
    options = TaskOptions(env_cache=data_dir / "env-cache", image_packages={IMAGE: requirements})
    running = LocalKfpServer(data_dir, port=0, max_concurrent_runs=2, task_options=options)
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(server):
    return client_for(server)


@pytest.fixture(scope="module")
def freeze_before():
    return server_freeze()


def env_cache(server: LocalKfpServer) -> Path:
    return server.task_options.env_cache


def environments_with(server: LocalKfpServer, package: str) -> list[Path]:
    """Published environments whose steps name ``package``."""
    found = []
    for marker in (env_cache(server) / "envs").glob("*/kfadapter-environment.json"):
        if package in json.dumps(json.loads(marker.read_text())["steps"]):
            found.append(marker.parent)
    return found


def submit(client, path: Path, arguments: dict | None = None) -> str:
    return client.create_run_from_pipeline_package(  # every task executes (no task cache)
        str(path), arguments=arguments or {}, enable_caching=False
    ).run_id


def wait(client, run_id: str, timeout: float = 180.0):
    return wait_until(
        lambda: (run := client.get_run(run_id)).state in FINAL and run,
        timeout,
        details=lambda: f"run {run_id} is {client.get_run(run_id).state}",
    )


def test_packages_to_install_are_the_tasks_own(client, server, index, tmp_path, freeze_before):
    from kfp import dsl

    def with_package():
        check = component(
            check_version, packages_to_install=["tinypkg==1.0.0"], pip_index_urls=[index.url]
        )

        @dsl.pipeline(name="with-package")
        def pipeline():
            check(module="tinypkg", expected="1.0.0")

        return pipeline

    def without_package():
        absent = component(check_absent)

        @dsl.pipeline(name="without-package")
        def pipeline():
            absent(module="tinypkg").set_display_name("tinypkg")
            absent(module="flask").set_display_name("flask")

        return pipeline

    first = wait(client, submit(client, compile_pipeline(tmp_path / "a.yaml", with_package)))
    assert first.state == "SUCCEEDED", first.error
    later = wait(client, submit(client, compile_pipeline(tmp_path / "b.yaml", without_package)))
    assert later.state == "SUCCEEDED", later.error
    assert server_freeze() == freeze_before


def test_two_runs_needing_a_new_environment_at_once_build_it_once(
    client, server, index, tmp_path, freeze_before
):
    path = installing_pipeline(tmp_path / "shared.yaml", "shared", "sharedpkg==1.0.0", index.url)
    run_ids = [submit(client, path), submit(client, path)]
    runs = [wait(client, run_id) for run_id in run_ids]
    assert [run.state for run in runs] == ["SUCCEEDED", "SUCCEEDED"], [r.error for r in runs]
    assert index.count("/simple/sharedpkg/") == 1  # one resolution: one build
    assert len(environments_with(server, "sharedpkg")) == 1
    assert server_freeze() == freeze_before


def test_a_killed_build_leaves_nothing_a_later_run_uses(client, server, index, tmp_path):
    path = installing_pipeline(tmp_path / "killed.yaml", "killed", "killedpkg==1.0.0", index.url)
    index.stall(r"killedpkg-1\.0\.0-py3-none-any\.whl")
    try:
        run_id = submit(client, path)
        wait_until(lambda: index.requested("killedpkg-1.0.0-py3-none-any.whl"), 120)
        building = env_cache(server) / "building"
        assert len(list(building.iterdir())) == 1
        worker = worker_pid(server.data_dir / "runs" / run_id)
        installers = [
            pid
            for pid in live_group_members(worker)
            if b"install" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        assert installers, "the installer runs in the run's process group"
        os.killpg(worker, signal.SIGKILL)  # the worker and the installer it started
        assert wait_group_gone(worker)
        killed_run = wait(client, run_id)
        assert killed_run.state == "FAILED"
    finally:
        index.release()
    assert environments_with(server, "killedpkg") == []
    later = wait(client, submit(client, path))
    assert later.state == "SUCCEEDED", later.error
    assert list(building.iterdir()) == []
    assert len(environments_with(server, "killedpkg")) == 1


def test_an_unavailable_package_fails_the_run_naming_it(
    client, server, index, tmp_path, freeze_before
):
    """The task fails at once and its log (its executor pod's) names the package and the
    index; a failed v2 run carries no run error or task error on KFP 2.17."""
    path = installing_pipeline(tmp_path / "missing.yaml", "missing", "nosuchpkg==1.0", index.url)
    run = wait(client, submit(client, path))
    assert run.state == "FAILED"
    assert run.error is None  # KFP fills no run error (kfp-fidelity.md row 3): the log says why
    (task,) = [t for t in run.run_details.task_details if t.display_name == "check-version"]
    assert task.state == "FAILED"
    pod = executor_pod_name(task.child_tasks[0].pod_name)
    log = requests.get(f"{server.url}/apis/v1alpha1/runs/{run.run_id}/nodes/{pod}/log", timeout=30)
    assert log.status_code == 200
    assert "'nosuchpkg==1.0'" in log.text and index.url in log.text
    assert server_freeze() == freeze_before


def test_an_image_mapping_provides_its_packages(client, tmp_path):
    from kfp import dsl

    def imaged():
        in_image = component(check_version, base_image=IMAGE)
        elsewhere = component(check_absent, base_image="python:3.11")

        @dsl.pipeline(name="imaged")
        def pipeline():
            in_image(module="imagepkg", expected="1.0.0")
            elsewhere(module="imagepkg")

        return pipeline

    run = wait(client, submit(client, compile_pipeline(tmp_path / "imaged.yaml", imaged)))
    assert run.state == "SUCCEEDED", run.error


def pypi_reachable() -> bool:
    try:
        return requests.get("https://pypi.org/simple/kfp/", timeout=10).ok
    except requests.RequestException:
        return False


def test_a_pipeline_pinning_another_kfp_succeeds_and_the_server_is_unchanged(
    client, tmp_path, freeze_before
):
    """Downloads kfp 2.14.6 from PyPI. The spec is as kfp 2.14.6 compiles it: its pin with
    ``--no-deps`` (the default wrapper, kfp/dsl/component_factory.py)."""
    if not pypi_reachable():
        pytest.skip("needs PyPI (https://pypi.org) to download kfp 2.14.6; it is out of reach")
    from kfp import dsl

    def pinned():
        check = component(check_kfp)

        @dsl.pipeline(name="pinned")
        def pipeline():
            check(expected="2.14.6")

        return pipeline

    path = compile_pipeline(tmp_path / "pinned.yaml", pinned)
    spec = yaml.safe_load(path.read_text())
    container = spec["deploymentSpec"]["executors"]["exec-check-kfp"]["container"]
    assert "'kfp==2.17.0' '--no-deps'" in container["command"][2]
    container["command"][2] = container["command"][2].replace("kfp==2.17.0", "kfp==2.14.6")
    path.write_text(yaml.safe_dump(spec))
    started = time.monotonic()
    run = wait(client, submit(client, path), timeout=300)
    assert run.state == "SUCCEEDED", (run.error, time.monotonic() - started)
    assert server_freeze() == freeze_before
