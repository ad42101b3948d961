"""The Kubernetes manifests under deploy/, rendered as an operator would and read back.

Every kustomization (the base and each overlay) is rendered with `kubectl kustomize`, the
Helm chart with `helm template` (and `helm lint --strict`), and each object is validated
offline against the Kubernetes JSON schemas of kubernetes-validate (strict: unknown fields
are errors). The assertions then read the rendered objects, so a drift of the manifests
from what issue 12 asks (or from the adapter's own settings) fails here.

The AIMLFW names come from o-ran-sc/aiml-fw-aimlfw-dep: helm/kfadapter/templates/
{deployment,service,configmap}.yaml, aimlfw-common/Common-Template/helm/aimlfw-common/
templates/{_kfadapter,_tm,_namespace}.tpl (port 5001, namespace traininghost,
tm.traininghost:32002) and helm/tm/templates/{deployment,configmap}.yaml (the TM's
PS_USER/PS_IP/PS_PORT and Secret tm-db-postgresql, key postgres-password).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from kfadapter.settings import Settings

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
CHART = DEPLOY / "helm" / "kfadapter"
OVERLAYS = sorted(p.parent.name for p in (DEPLOY / "overlays").glob("*/kustomization.yaml"))
KUSTOMIZATIONS = ["base", *(f"overlays/{name}" for name in OVERLAYS)]
HELM = "helm/kfadapter"
RENDERINGS = [*KUSTOMIZATIONS, HELM]
# The oldest Kubernetes the AIMLFW recipes install that we check against, and the newest
# schemas kubernetes-validate carries.
KUBERNETES_VERSIONS = ("1.28.0", kubernetes_validate.latest_version())
KINDS = {"ConfigMap", "Deployment", "PodDisruptionBudget", "Service"}
# helm/kfadapter/templates/configmap.yaml of aiml-fw-aimlfw-dep, with its helpers resolved.
AIMLFW_CHART_CONFIG = {
    "KUBEFLOW_HOST": "ml-pipeline-ui.kubeflow",
    "KUBEFLOW_PORT": "80",
    "KF_NAMESPACE": "ric",
    "KF_ADAPTER_PORT": "5001",
    "TRAININGMGR_HOST": "tm.traininghost",
    "TRAININGMGR_PORT": "32002",
    "PYTHONUNBUFFERED": "0",
}
AIMLFW_DATABASE = {
    "PS_USER": "postgres",
    "PS_IP": "tm-db-postgresql.traininghost",
    "PS_PORT": "5432",
    "KFADAPTER_DATABASE_NAME": "kfadapter",
}
# Variables read by Python itself rather than by the adapter's settings.
PYTHON_VARIABLES = {"PYTHONUNBUFFERED"}


def _tool(name: str, script: str) -> str:
    """The path of a command-line tool, on PATH or in this virtual environment."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.prefix) / "bin"))
    if not found:
        pytest.fail(f"{name} is missing: run {script} (it installs what the tests need)")
    return found


def _run(*command: str) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stderr}"
    return done.stdout


def _render(name: str) -> list[dict[str, Any]]:
    if name == HELM:
        helm = _tool("helm", "scripts/k8s-tools.sh")
        _run(helm, "lint", "--strict", str(CHART))
        text = _run(helm, "template", "kfadapter", str(CHART))
    else:
        kubectl = _tool("kubectl", "scripts/system-packages.sh (or scripts/k8s-tools.sh)")
        text = _run(kubectl, "kustomize", str(DEPLOY / name))
    return [doc for doc in yaml.safe_load_all(text) if doc]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    """Each rendering's objects, rendered once for the module."""
    return {name: _render(name) for name in RENDERINGS}


def _one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = (o for o in objects if o["kind"] == kind)
    return found


def _container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = _one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def _settings(objects: list[dict[str, Any]]) -> Settings:
    """The adapter's settings as a pod would read them: the image's ENV, the ConfigMap
    and the container's env, in that order.

    Values from Secrets are stand-ins; Settings.from_env validates every other value."""
    container = _container(objects)
    (source,) = container["envFrom"]
    config = _one(objects, "ConfigMap")
    assert source["configMapRef"]["name"] == config["metadata"]["name"]
    environ = {**_dockerfile_environment(), **config["data"]}
    for variable in container.get("env", []):
        environ[variable["name"]] = variable.get("value", "secret-from-the-cluster")
    return Settings.from_env(environ)


@pytest.mark.parametrize("name", RENDERINGS)
def test_every_object_is_valid_for_kubernetes(rendered, name):
    """kubernetes-validate's bundled schemas, strict, for the oldest and newest versions."""
    objects = rendered[name]
    assert {o["kind"] for o in objects} == KINDS
    for obj in objects:
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                pytest.fail(f"{name}: {obj['kind']} {obj['metadata']['name']}: {error}")


@pytest.mark.parametrize("name", RENDERINGS)
def test_two_replicas_with_probes_on_the_container_port(rendered, name):
    objects = rendered[name]
    deployment = _one(objects, "Deployment")
    container = _container(objects)
    settings = _settings(objects)
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    (port,) = container["ports"]
    assert port["containerPort"] == settings.adapter_port
    assert settings.bind_address == f"0.0.0.0:{port['containerPort']}"
    probes = {
        kind: container[kind]["httpGet"]
        for kind in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert probes["readinessProbe"]["path"] == "/readiness"
    assert probes["livenessProbe"]["path"] == "/liveness"
    assert probes["startupProbe"]["path"] == "/liveness"
    for probe in probes.values():
        assert probe["port"] in (port["name"], port["containerPort"])
    # The readiness check waits for KFP and the database, each up to its time-out.
    readiness = container["readinessProbe"]["timeoutSeconds"]
    assert readiness > settings.kfp_timeout + settings.database_timeout


@pytest.mark.parametrize("name", RENDERINGS)
def test_requests_and_limits(rendered, name):
    resources = _container(rendered[name])["resources"]
    for bound in ("requests", "limits"):
        assert set(resources[bound]) == {"cpu", "memory"}


@pytest.mark.parametrize("name", RENDERINGS)
def test_grace_period_covers_the_graceful_shutdown(rendered, name):
    """terminationGracePeriodSeconds > preStop pause + gunicorn's graceful timeout,
    the timeout as the adapter reads it (the ConfigMap's value, else the code's default)."""
    objects = rendered[name]
    pod = _one(objects, "Deployment")["spec"]["template"]["spec"]
    pause = _container(objects)["lifecycle"]["preStop"]["exec"]["command"]
    assert pause[0] == "sleep"
    graceful = _settings(objects).graceful_timeout
    assert graceful >= Settings().graceful_timeout
    assert pod["terminationGracePeriodSeconds"] > int(pause[1]) + graceful


@pytest.mark.parametrize("name", RENDERINGS)
def test_non_root_with_a_read_only_root_and_writable_scratch_dirs(rendered, name):
    """Every directory the process writes is an emptyDir: /tmp (uploads), /dev/shm
    (gunicorn's heartbeat files, the Prometheus multiprocess dir: gunicorn_conf.py) and
    KFADAPTER_DATA_DIR; the uid is the Dockerfile's USER."""
    objects = rendered[name]
    pod = _one(objects, "Deployment")["spec"]["template"]["spec"]
    container = _container(objects)
    security = container["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsUser"] == _dockerfile_uid() != 0
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    data_dir = _dockerfile_environment()["KFADAPTER_DATA_DIR"]
    assert _settings(objects).data_dir == Path(data_dir)
    assert set(mounts) == {"/tmp", "/dev/shm", data_dir}
    assert all("emptyDir" in volume for volume in mounts.values())
    # No KFADAPTER_SERVICE_HOST or KFADAPTER_PORT from the Service named kfadapter.
    assert pod["enableServiceLinks"] is False


@pytest.mark.parametrize("name", RENDERINGS)
def test_pdb_and_service_select_the_deployments_pods(rendered, name):
    objects = rendered[name]
    deployment = _one(objects, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selectors = [
        deployment["spec"]["selector"]["matchLabels"],
        _one(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        _one(objects, "Service")["spec"]["selector"],
    ]
    for selector in selectors:
        assert selector and selector.items() <= pod_labels.items()
    assert _one(objects, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    (port,) = _one(objects, "Service")["spec"]["ports"]
    (container_port,) = _container(objects)["ports"]
    assert port["targetPort"] in (container_port["name"], container_port["containerPort"])


@pytest.mark.parametrize("name", RENDERINGS)
def test_the_database_password_comes_from_a_secret(rendered, name):
    """PostgreSQL (SQLite cannot be shared by replicas), the password never in the
    ConfigMap."""
    objects = rendered[name]
    env = {v["name"]: v for v in _container(objects).get("env", [])}
    assert set(env["PS_PASSWORD"]["valueFrom"]["secretKeyRef"]) == {"name", "key"}
    assert "PS_PASSWORD" not in _one(objects, "ConfigMap")["data"]
    assert _settings(objects).database_url.startswith("postgresql://")


@pytest.mark.parametrize("name", RENDERINGS)
def test_every_configmap_variable_is_one_the_adapter_reads(rendered, name):
    """A misspelt variable would be ignored silently: each must be named in settings.py."""
    source = (REPO / "kfadapter" / "settings.py").read_text()
    for variable in _one(rendered[name], "ConfigMap")["data"]:
        assert variable in PYTHON_VARIABLES or f'"{variable}"' in source, variable


@pytest.mark.parametrize("name", ["overlays/aimlfw", HELM])
def test_aimlfw_names(rendered, name):
    """The framework chart's Service, namespace, port and ConfigMap variables, and the
    TM's PostgreSQL with its Secret."""
    objects = rendered[name]
    assert {o["metadata"]["namespace"] for o in objects} == {"traininghost"}
    service = _one(objects, "Service")
    assert service["metadata"]["name"] == "kfadapter"
    (port,) = service["spec"]["ports"]
    assert port["port"] == 5001
    config = _one(objects, "ConfigMap")
    assert config["metadata"]["name"] == "kfadapter-configmap"
    assert config["data"].items() >= {**AIMLFW_CHART_CONFIG, **AIMLFW_DATABASE}.items()
    env = {v["name"]: v for v in _container(objects)["env"]}
    assert env["PS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "tm-db-postgresql",
        "key": "postgres-password",
    }
    settings = _settings(objects)
    assert settings.database_url == (
        "postgresql://postgres:secret-from-the-cluster@tm-db-postgresql.traininghost:5432/kfadapter"
    )
    assert settings.notify_url == "http://tm.traininghost:32002/trainingjob/pipelineNotification"


def test_helm_chart_renders_what_the_aimlfw_overlay_does(rendered):
    """One set of manifests in two formats: every object's spec (and ConfigMap data) is
    the same; only labels and the chart's config checksum annotation differ."""

    def comparable(objects: list[dict[str, Any]]) -> dict[tuple[str, str], Any]:
        result = {}
        for obj in objects:
            body = {k: v for k, v in obj.items() if k not in ("metadata", "apiVersion")}
            if obj["kind"] == "Deployment":
                body["spec"]["template"]["metadata"].pop("annotations", None)
            key = (obj["kind"], obj["metadata"]["name"])
            result[key] = (obj["apiVersion"], obj["metadata"]["namespace"], body)
        return result

    assert comparable(rendered[HELM]) == comparable(rendered["overlays/aimlfw"])


def _dockerfile_uid() -> int:
    (uid,) = re.findall(r"^USER\s+(\d+)\s*$", (REPO / "Dockerfile").read_text(), re.M)
    assert f"--uid {uid} " in (REPO / "Dockerfile").read_text()
    return int(uid)


def _dockerfile_environment() -> dict[str, str]:
    """The image's ENV instructions (NAME=value forms, continuation lines joined)."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    environ: dict[str, str] = {}
    for instruction in re.findall(r"^ENV\s+(.+)$", text, re.M):
        environ.update(pair.split("=", 1) for pair in instruction.split())
    return environ
