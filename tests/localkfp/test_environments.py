"""Per-task environments and their cache (kfadapter/localkfp/environments/).

The commands are those kfp 2.17 compiles for lightweight components
(kfp/dsl/component_factory.py at 2.17.0: ``_get_packages_to_install_command``,
``make_pip_install_command``, ``make_index_url_options``,
``_install_python_packages_script_template``).
The packages installed are tiny wheels built in the test and served by a local index; no test
here needs the network.
"""

import hashlib
import importlib.metadata
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
import zipfile
from base64 import urlsafe_b64encode
from collections.abc import Sequence
from pathlib import Path

import pytest

from kfadapter.localkfp import environments
from kfadapter.localkfp.environments import (
    MARKER,
    EnvironmentBuildError,
    InstallStep,
    TaskEnvironments,
    parse_image_packages,
    parse_size,
    parse_task_command,
)
from tests.localkfp.wheels import (
    PackageIndex,
    add_to_index,
    build_wheel,
    closed_port_url,
    package_index,
)

KFP_PIN = "kfp==2.17.0"
RUN = subprocess.run  # the tests' own processes, not counted by InstallerCalls


def report_module(module: str) -> str:
    """The component used throughout: imports a module and returns what it says."""
    import importlib
    import sys

    loaded = importlib.import_module(module)
    return f"{getattr(loaded, 'VERSION', '')}|{sys.prefix}"


def component_command(
    packages: Sequence[str] = (),
    index_urls: Sequence[str] | None = None,
    kfp_package_path: str | None = None,
    use_venv: bool = False,
) -> list[str]:
    """The command and args kfp 2.17 gives a lightweight component (placeholders unresolved)."""
    from kfp import dsl

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        component = dsl.component(
            report_module,
            packages_to_install=list(packages) or None,
            pip_index_urls=list(index_urls) if index_urls else None,
            kfp_package_path=kfp_package_path,
            use_venv=use_venv,
        )
    container = component.component_spec.implementation.container
    return list(container.command) + list(container.args)


def run_task(prepared, module: str, workdir: Path) -> subprocess.CompletedProcess:
    """Run a prepared report_module task as kfp.local would, with its executor input."""
    workdir.mkdir(parents=True, exist_ok=True)
    executor_input = {
        "inputs": {"parameterValues": {"module": module}},
        "outputs": {
            "parameters": {"Output": {"outputFile": str(workdir / "output")}},
            "outputFile": str(workdir / "executor_output.json"),
        },
    }
    command = [json.dumps(executor_input) if word == "{{$}}" else word for word in prepared.command]
    # cwd: a directory of the task's own, as a container's; `python -m` puts it on sys.path.
    return RUN(
        command,
        env={**os.environ, **prepared.env},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=workdir,
    )


def task_output(workdir: Path) -> str:
    output = json.loads((workdir / "executor_output.json").read_text())
    return output["parameterValues"]["Output"]


class InstallerCalls:
    """Counts the installer processes TaskEnvironments starts (the real ones still run)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[list[str]] = []
        real_run = subprocess.run

        def counting_run(arguments, *args, **kwargs):
            self.calls.append(list(arguments))
            return real_run(arguments, *args, **kwargs)

        monkeypatch.setattr(subprocess, "run", counting_run)


@pytest.fixture(scope="module")
def index_root(tmp_path_factory) -> Path:
    """A simple index with tinypkg 0.1.0 and 0.2.0, otherpkg, thirdpkg and needsdep (which
    depends on tinypkg)."""
    root = tmp_path_factory.mktemp("index")
    built = tmp_path_factory.mktemp("wheels")
    for wheel in (
        build_wheel(built, "tinypkg", "0.1.0"),
        build_wheel(built, "tinypkg", "0.2.0"),
        build_wheel(built, "otherpkg", "1.0.0"),
        build_wheel(built, "thirdpkg", "1.0.0"),
        build_wheel(built, "needsdep", "1.0.0", dependencies=("tinypkg==0.1.0",)),
    ):
        add_to_index(root, wheel)
    return root


@pytest.fixture
def index(index_root: Path):
    with package_index(index_root) as served:
        yield served


# -- reading kfp's wrapper (no processes) ------------------------------------------------------


def test_plain_component_installs_only_its_kfp_pin_with_no_deps():
    task = parse_task_command(component_command())
    assert task.steps == (
        InstallStep(
            requirements=(KFP_PIN, 'typing-extensions>=3.7.4,<5; python_version<"3.9"'),
            no_deps=True,
        ),
    )
    assert task.program[:2] == ["sh", "-ec"]
    assert "kfp.dsl.executor_main" in task.program[2]
    assert "pip" not in task.program[2]
    assert task.program[-4:] == [
        "--executor_input",
        "{{$}}",
        "--function_to_execute",
        "report_module",
    ]


def test_packages_and_indexes_are_kept_for_each_install():
    urls = ["http://127.0.0.1:1/simple", "https://example.org/simple"]
    task = parse_task_command(component_command(["tinypkg==0.1.0", "otherpkg"], urls))
    user, kfp_step = task.steps
    assert user.requirements == ("tinypkg==0.1.0", "otherpkg")
    assert not user.no_deps
    assert user.index_url == urls[0]
    assert user.extra_index_urls == (urls[1],)
    assert user.trusted_hosts == tuple(urls)
    assert kfp_step.requirements[0] == KFP_PIN and kfp_step.no_deps
    assert kfp_step.index_url == urls[0]
    assert user.indexes() == urls


def test_another_kfp_pin_is_installed_with_its_dependencies():
    (step,) = parse_task_command(component_command(kfp_package_path="kfp==2.14.6")).steps
    assert step == InstallStep(requirements=("kfp==2.14.6",))


def test_use_venv_lines_are_dropped_since_the_task_has_its_environment():
    task = parse_task_command(component_command(["tinypkg"], use_venv=True))
    assert [step.requirements[0] for step in task.steps] == ["tinypkg", KFP_PIN]
    assert "venv" not in task.program[2]


def test_commands_that_are_not_the_wrapper_run_unchanged():
    for command in (
        ["sh", "-c", 'if true; then\n  rm -rf /x\nfi\npip install x && "$0" "$@"', "python3"],
        ["echo", "hello"],
        ["sh", "-c", 'echo hi && pip install x && "$0" "$@"', "python3", "-V"],
        ["sh", "-c", 'python3 -m pip install x | tee log && "$0" "$@"', "python3"],
        ["sh", "-c", "python3 -m pip install x", "python3"],
    ):
        assert parse_task_command(command) == environments.TaskCommand(program=command)


def test_a_pip_option_that_cannot_be_honoured_is_an_error():
    command = ["sh", "-c", 'python3 -m pip install -r /req.txt && "$0" "$@"', "python3"]
    with pytest.raises(EnvironmentBuildError, match="-r"):
        parse_task_command(command)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("5GiB", 5 * 1024**3),
        ("800MB", 800 * 10**6),
        ("2G", 2 * 10**9),
        ("1048576", 1048576),
        ("1.5 Gi", 3 * 1024**3 // 2),
        ("10kib", 10240),
    ],
)
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "five", "5 parsecs", "0", "-1G", "1e9"])
def test_parse_size_rejects_what_is_not_a_size(text):
    with pytest.raises(ValueError, match="invalid size"):
        parse_size(text)


def test_parse_image_packages(tmp_path):
    requirements = tmp_path / "image.txt"
    requirements.write_text("tinypkg\n")
    (tmp_path / "x.txt").write_text("otherpkg\n")
    assert parse_image_packages([f"traininghost/pipelineimage:latest={requirements}"]) == {
        "traininghost/pipelineimage:latest": requirements.resolve()
    }
    with pytest.raises(ValueError, match="'no-equals'"):
        parse_image_packages(["no-equals"])
    with pytest.raises(ValueError, match="no such file"):
        parse_image_packages([f"img={tmp_path / 'missing.txt'}"])
    with pytest.raises(ValueError, match="mapped twice"):
        parse_image_packages([f"img={requirements}", f"img={tmp_path}/../{tmp_path.name}/x.txt"])


def test_the_key_follows_the_content(tmp_path):
    requirements = tmp_path / "image.txt"
    requirements.write_text("tinypkg\n")
    cache = TaskEnvironments(tmp_path / "cache", 10**9, image_packages={"img": requirements})
    plain = list(parse_task_command(component_command()).steps)
    image_step = InstallStep(requirements_file=requirements, image="img")
    first = cache.key([image_step, *plain])
    assert cache.key([image_step, *plain]) == first
    assert cache.key(plain) != first
    assert cache.key([InstallStep(requirements=("tinypkg",)), *plain]) != cache.key(plain)
    requirements.write_text("tinypkg\notherpkg\n")
    os.utime(requirements, ns=(1, 1))
    assert cache.key([image_step, *plain]) != first


# -- building and reusing environments ---------------------------------------------------------


@pytest.mark.e2e
def test_an_environment_is_built_once_then_reused_without_installing(
    tmp_path, index: PackageIndex, monkeypatch
):
    cache = TaskEnvironments(tmp_path / "cache", 10**9)
    command = component_command(["tinypkg==0.1.0"], [index.url])
    installer = InstallerCalls(monkeypatch)
    with cache.prepare("python:3.11", command) as prepared:
        result = run_task(prepared, "tinypkg", tmp_path / "first")
    assert result.returncode == 0, result.stderr
    assert task_output(tmp_path / "first") == f"0.1.0|{prepared.environment}"
    assert len(installer.calls) >= 2  # the venv, then the installs
    installer.calls.clear()
    with cache.prepare("python:3.11", command) as again:
        result = run_task(again, "tinypkg", tmp_path / "second")
    assert again.environment == prepared.environment
    assert installer.calls == []
    assert result.returncode == 0, result.stderr
    assert cache.environments() == [prepared.environment]


@pytest.mark.e2e
def test_the_environment_holds_only_what_the_component_asks_for(tmp_path, index: PackageIndex):
    """No server package (flask, kfadapter) is importable, no server path is on sys.path, and a
    component without packages_to_install does not see another component's packages."""
    cache = TaskEnvironments(tmp_path / "cache", 10**9)
    with cache.prepare("python:3.11", component_command(["tinypkg"], [index.url])) as with_pkg:
        assert run_task(with_pkg, "tinypkg", tmp_path / "a").returncode == 0
    probe = "import sys, json; print(json.dumps(sys.path))"
    with cache.prepare("python:3.11", component_command()) as plain:
        assert plain.environment != with_pkg.environment
        for module in ("tinypkg", "flask", "kfadapter"):
            result = run_task(plain, module, tmp_path / module)
            assert result.returncode != 0
            assert f"No module named '{module}'" in result.stderr
        paths = json.loads(
            RUN(
                ["python3", "-c", probe],
                env={**os.environ, **plain.env},
                capture_output=True,
                text=True,
                check=True,
                cwd=tmp_path,
            ).stdout
        )
    server_site = {p for p in sys.path if p.endswith("site-packages")}
    assert not server_site & set(paths)
    assert [p for p in paths if p.endswith("site-packages")] == [
        str(
            plain.environment
            / "lib"
            / f"python{sys.version_info[0]}.{sys.version_info[1]}"
            / "site-packages"
        )
    ]
    assert os.path.dirname(sys.executable) not in plain.env["PATH"].split(os.pathsep)
    # installed files are the environment's own, not hardlinks into uv's cache: a task
    # rewriting one changes no other environment
    site = with_pkg.environment / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    installed = [path for path in (site / "site-packages").rglob("*.py") if path.is_file()]
    assert installed and all(path.stat().st_nlink == 1 for path in installed)


@pytest.mark.e2e
def test_the_servers_kfp_pin_needs_no_network(tmp_path):
    """kfp==2.17.0 comes from a wheel of the installed kfp even when the only index refuses
    connections; the component then runs kfp's executor in that environment."""
    cache = TaskEnvironments(tmp_path / "cache", 10**9)
    command = component_command(index_urls=[closed_port_url()])
    with cache.prepare("python:3.11", command) as prepared:
        result = run_task(prepared, "json", tmp_path / "task")
    assert result.returncode == 0, result.stderr
    assert task_output(tmp_path / "task") == f"|{prepared.environment}"
    wheel = next((tmp_path / "cache" / "wheels").glob("kfp-2.17.0-*.whl"))
    freeze = RUN(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(prepared.environment / "bin" / "python"),
            "freeze",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert freeze.strip() == f"kfp @ {wheel.as_uri()}"
    installed = importlib.metadata.distribution("kfp")
    with zipfile.ZipFile(wheel) as archive:
        record = archive.read("kfp-2.17.0.dist-info/RECORD").decode().splitlines()
        for line in record[:-1]:
            name, digest, size = line.rsplit(",", 2)
            content = archive.read(name)
            assert (
                digest
                == "sha256="
                + urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
            )
            assert int(size) == len(content)
    listed = {
        path.as_posix() for path in installed.files if path.hash and not str(path).startswith("..")
    }
    installer_files = {"kfp-2.17.0.dist-info/INSTALLER", "kfp-2.17.0.dist-info/REQUESTED"}
    in_wheel = {line.rsplit(",", 2)[0] for line in record}
    assert in_wheel == (listed - installer_files) | {"kfp-2.17.0.dist-info/RECORD"}


@pytest.mark.e2e
def test_image_mapping_adds_its_packages(tmp_path, index: PackageIndex):
    """The image's packages come first; a command that is not kfp's wrapper (a container
    component) gets only them; an unmapped image gets none."""
    requirements = tmp_path / "pipelineimage.txt"
    requirements.write_text(f"--index-url {index.url}\notherpkg==1.0.0\n")
    image = "traininghost/pipelineimage:latest"
    cache = TaskEnvironments(tmp_path / "cache", 10**9, image_packages={image: requirements})
    command = component_command(["tinypkg"], [index.url])
    with cache.prepare(image, command) as prepared:
        assert run_task(prepared, "otherpkg", tmp_path / "a").returncode == 0
        assert run_task(prepared, "tinypkg", tmp_path / "b").returncode == 0
    script = ["python3", "-c", "import otherpkg; print(otherpkg.VERSION)"]
    with cache.prepare(image, script) as container:
        assert container.command == script
        result = RUN(script, env={**os.environ, **container.env}, capture_output=True, text=True)
        assert result.stdout.strip() == "1.0.0", result.stderr
    with cache.prepare("python:3.11", script) as unmapped:
        result = RUN(script, env={**os.environ, **unmapped.env}, capture_output=True, text=True)
        assert "No module named 'otherpkg'" in result.stderr
    broken = tmp_path / "broken.txt"
    broken.write_text(f"--index-url {index.url}\nmissingimagepkg==1.0\n")
    cache = TaskEnvironments(tmp_path / "cache", 10**9, image_packages={image: broken})
    with pytest.raises(EnvironmentBuildError) as failed, cache.prepare(image, script):
        pass
    assert f"'missingimagepkg==1.0' (the packages of image '{image}', {broken})" in str(
        failed.value
    )
    assert f"index tried: {index.url}" in str(failed.value)


@pytest.mark.e2e
def test_an_unavailable_package_fails_at_once_naming_it_and_the_index(
    tmp_path, index: PackageIndex
):
    cache = TaskEnvironments(tmp_path / "cache", 10**9, install_timeout=60)
    with (
        pytest.raises(EnvironmentBuildError) as missing,
        cache.prepare("python:3.11", component_command(["nosuchpkg==1.0"], [index.url])),
    ):
        pass
    assert "'nosuchpkg==1.0'" in str(missing.value)
    assert f"index tried: {index.url}" in str(missing.value)
    refused = closed_port_url()
    with (
        pytest.raises(EnvironmentBuildError) as unreachable,
        cache.prepare("python:3.11", component_command(["tinypkg"], [refused])),
    ):
        pass
    assert "'tinypkg'" in str(unreachable.value) and refused in str(unreachable.value)
    assert cache.environments() == []
    assert list((tmp_path / "cache" / "building").iterdir()) == []
    assert len(list((tmp_path / "cache" / "locks").iterdir())) == 1  # the first went
    with cache.prepare("python:3.11", component_command()) as good:
        pass  # the next build removes the lock files of environments that do not exist
    assert list((tmp_path / "cache" / "locks").iterdir()) == [
        tmp_path / "cache" / "locks" / f"{good.environment.name}.lock"
    ]


@pytest.mark.e2e
def test_an_install_that_hangs_stops_at_the_install_timeout(tmp_path, index: PackageIndex):
    index.stall(r"/simple/tinypkg/")
    cache = TaskEnvironments(tmp_path / "cache", 10**9, install_timeout=3)
    with (
        pytest.raises(EnvironmentBuildError, match="install time-out") as hung,
        cache.prepare("python:3.11", component_command(["tinypkg"], [index.url])),
    ):
        pass
    assert "'tinypkg'" in str(hung.value) and index.url in str(hung.value)
    assert cache.environments() == []


@pytest.mark.e2e
def test_a_built_environment_works_when_the_index_is_gone(tmp_path, index_root):
    """Rebuilt after eviction with its index down, from uv's cache (uv's --offline)."""
    cache = TaskEnvironments(tmp_path / "cache", 10**9)
    with package_index(index_root) as served:
        command = component_command(["needsdep"], [served.url])
        with cache.prepare("python:3.11", command) as prepared:
            assert run_task(prepared, "needsdep", tmp_path / "a").returncode == 0
    (prepared.environment / MARKER).unlink()  # as if evicted
    with cache.prepare("python:3.11", command) as rebuilt:
        result = run_task(rebuilt, "tinypkg", tmp_path / "b")
    assert result.returncode == 0, result.stderr
    assert task_output(tmp_path / "b").startswith("0.1.0|")


CHILD = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from kfadapter.localkfp.environments import TaskEnvironments
    cache_dir, command_file, start_at = sys.argv[1], sys.argv[2], float(sys.argv[3])
    command = json.loads(Path(command_file).read_text())
    cache = TaskEnvironments(Path(cache_dir), 10**9)
    time.sleep(max(0.0, start_at - time.time()))
    with cache.prepare("python:3.11", command) as prepared:
        print(prepared.environment, flush=True)
        time.sleep(float(sys.argv[4]) if len(sys.argv) > 4 else 0)
    """
)


def start_child(tmp_path: Path, command: list[str], start_at: float, hold: float = 0):
    command_file = tmp_path / f"command-{time.monotonic_ns()}.json"
    command_file.write_text(json.dumps(command))
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD,
            str(tmp_path / "cache"),
            str(command_file),
            str(start_at),
            str(hold),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        cwd=Path(__file__).resolve().parents[2],
    )


@pytest.mark.e2e
def test_two_processes_asking_for_the_same_new_environment_build_it_once(
    tmp_path, index: PackageIndex
):
    command = component_command(["tinypkg==0.2.0"], [index.url])
    start_at = time.time() + 2.0  # both importing first, then asking at the same moment
    children = [start_child(tmp_path, command, start_at) for _ in range(2)]
    outputs = [child.communicate(timeout=120) for child in children]
    assert [child.returncode for child in children] == [0, 0], outputs
    environments_used = {stdout.strip() for stdout, _ in outputs}
    assert len(environments_used) == 1
    assert index.count("/simple/tinypkg/") == 1  # one resolution: one build
    cache = TaskEnvironments(tmp_path / "cache", 10**9)
    assert [str(path) for path in cache.environments()] == list(environments_used)


@pytest.mark.e2e
def test_a_build_killed_halfway_is_never_used(tmp_path, index: PackageIndex):
    index.stall(r"tinypkg-0\.1\.0-py3-none-any\.whl")
    command = component_command(["tinypkg==0.1.0"], [index.url])
    child = start_child(tmp_path, command, time.time())
    building = tmp_path / "cache" / "building"
    deadline = time.monotonic() + 60
    while not index.requested("tinypkg-0.1.0-py3-none-any.whl"):
        assert time.monotonic() < deadline, "the build never reached the download"
        time.sleep(0.05)
    assert len(list(building.iterdir())) == 1
    os.killpg(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    index.release()
    cache = TaskEnvironments(tmp_path / "cache", 10**9)
    assert cache.environments() == []
    with cache.prepare("python:3.11", command) as prepared:
        result = run_task(prepared, "tinypkg", tmp_path / "task")
    assert result.returncode == 0, result.stderr
    assert list(building.iterdir()) == []
    assert json.loads((prepared.environment / MARKER).read_text())["key"] == (
        prepared.environment.name
    )


@pytest.mark.e2e
def test_eviction_keeps_the_bound_and_spares_environments_in_use(tmp_path, index: PackageIndex):
    def command(package: str) -> list[str]:
        return component_command([package], [index.url])

    probe = TaskEnvironments(tmp_path / "probe", 10**9)
    with probe.prepare("python:3.11", command("tinypkg")) as sized:
        size = json.loads((sized.environment / MARKER).read_text())["size"]
    cache = TaskEnvironments(tmp_path / "cache", int(size * 2.5))  # room for two
    with cache.prepare("python:3.11", command("tinypkg")) as held:
        with cache.prepare("python:3.11", command("otherpkg")) as second:
            pass
        time.sleep(0.01)
        with cache.prepare("python:3.11", command("thirdpkg")) as third:
            pass
        # tinypkg's is the oldest but in use: otherpkg's goes instead.
        assert cache.environments() == sorted([held.environment, third.environment])
        assert not second.environment.exists()
    time.sleep(0.01)
    with cache.prepare("python:3.11", command("otherpkg")):
        pass
    # Now nothing is held and tinypkg's is the least recently used.
    remaining = cache.environments()
    assert held.environment not in remaining and third.environment in remaining
    assert len(remaining) == 2
    assert list((tmp_path / "cache" / "trash").iterdir()) == []


@pytest.mark.e2e
@pytest.mark.parametrize("how", ["option", "variable"])
def test_pip_is_the_fallback_installer(tmp_path, index: PackageIndex, monkeypatch, how):
    if how == "option":
        cache = TaskEnvironments(tmp_path / "cache", 10**9, installer="pip")
    else:
        monkeypatch.setenv(environments.INSTALLER_VARIABLE, "pip")
        cache = TaskEnvironments(tmp_path / "cache", 10**9)
    assert cache.installer.startswith("pip-")
    installer = InstallerCalls(monkeypatch)
    with cache.prepare("python:3.11", component_command(["needsdep"], [index.url])) as prepared:
        result = run_task(prepared, "tinypkg", tmp_path / "task")
    assert result.returncode == 0, result.stderr
    assert task_output(tmp_path / "task") == f"0.1.0|{prepared.environment}"
    assert all("uv" not in Path(call[0]).name for call in installer.calls)
    script = (prepared.environment / "bin" / "kfp").read_text()  # built elsewhere, then moved
    assert f"{prepared.environment}/bin/python" in script and "building" not in script
    with (
        pytest.raises(EnvironmentBuildError, match="'nosuchpkg'.*index tried: " + index.url),
        cache.prepare("python:3.11", component_command(["nosuchpkg"], [index.url])),
    ):
        pass


@pytest.mark.e2e
def test_an_environment_in_use_outlives_the_bound_and_uv_downloads_are_trimmed(
    tmp_path, index: PackageIndex
):
    cache = TaskEnvironments(tmp_path / "cache", 1)  # nothing fits
    command = component_command(["tinypkg==0.2.0"], [index.url])
    with cache.prepare("python:3.11", command) as prepared:
        assert cache.environments() == [prepared.environment]
        downloads = [p.name for p in (tmp_path / "cache" / "uv").rglob("*") if "tinypkg" in p.name]
        assert downloads == []  # emptied, since the downloads alone exceed the bound
        result = run_task(prepared, "tinypkg", tmp_path / "task")
        assert result.returncode == 0, result.stderr
        assert task_output(tmp_path / "task").startswith("0.2.0|")
    with cache.prepare("python:3.11", component_command(["otherpkg"], [index.url])) as other:
        pass
    assert cache.environments() == [other.environment]


@pytest.mark.e2e
def test_tasks_of_one_run_asking_at_once_in_threads_share_one_build(
    tmp_path, index: PackageIndex, monkeypatch
):
    """The worker runs independent tasks in threads: each opens the lock file on its own, so
    they exclude each other as processes do."""
    import concurrent.futures

    cache = TaskEnvironments(tmp_path / "cache", 10**9)
    command = component_command(["otherpkg==1.0.0"], [index.url])
    installer = InstallerCalls(monkeypatch)

    def prepare_and_run(number: int) -> Path:
        with cache.prepare("python:3.11", command) as prepared:
            result = run_task(prepared, "otherpkg", tmp_path / f"task-{number}")
            assert result.returncode == 0, result.stderr
            return prepared.environment

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        used = set(pool.map(prepare_and_run, range(4)))
    assert len(used) == 1
    assert [call[1] for call in installer.calls] == ["venv", "pip", "pip"]  # otherpkg, kfp


@pytest.mark.e2e
def test_tasks_waiting_for_an_environment_that_failed_do_not_build_it_again(
    tmp_path, index: PackageIndex, monkeypatch
):
    """Four tasks of one run (a ParallelFor, say) need a package that cannot be had: the
    first build fails and the tasks that waited for it fail with its error at once,
    instead of each trying the same install again."""
    import concurrent.futures

    cache = TaskEnvironments(tmp_path / "cache", 10**9, install_timeout=60)
    command = component_command(["nosuchpkg==1.0"], [index.url])
    installer = InstallerCalls(monkeypatch)

    def prepare(_: int) -> str:
        with pytest.raises(EnvironmentBuildError) as failed, cache.prepare("python:3.11", command):
            pass
        return str(failed.value)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        errors = list(pool.map(prepare, range(4)))
    assert all("'nosuchpkg==1.0'" in error for error in errors)
    assert len({error for error in errors}) == 1
    builds = [call for call in installer.calls if call[1] == "venv"]
    assert len(builds) == 1


def test_a_build_request_gives_way_once_another_process_has_published_it(tmp_path):
    """A task that found no environment asks for the exclusive lock to build it; if another
    process built it meanwhile and its task holds the shared lock (for as long as the task
    runs), the request must not wait for that task: it uses the published environment."""
    import fcntl
    import threading

    from kfadapter.localkfp.environments import cache

    directory, lock_file = tmp_path / "envs" / "key", tmp_path / "key.lock"
    directory.mkdir(parents=True)
    lock_file.touch()
    in_use = os.open(lock_file, os.O_RDWR)
    fcntl.flock(in_use, fcntl.LOCK_SH)  # another process's task, running
    request = os.open(lock_file, os.O_RDWR)
    answer: list[bool] = []
    asking = threading.Thread(
        target=lambda: answer.append(cache._lock_to_build(request, directory))
    )
    asking.start()
    time.sleep(0.3)
    assert not answer  # waits while nothing is published
    (directory / cache.MARKER).write_text("{}")
    asking.join(timeout=5)
    assert answer == [False]
    fcntl.flock(in_use, fcntl.LOCK_UN)
    assert cache._lock_to_build(request, directory)  # free: the lock is taken
    os.close(in_use)
    os.close(request)
