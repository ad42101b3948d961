"""KF_NAMESPACE end to end: experiments and runs live in the configured KFP namespace.

CONTRACT.md: the Helm chart sets `KF_NAMESPACE` ("the KFP namespace for experiments and
runs"). An adapter with a namespace creates its experiments (Default included) there, so
its runs land there too, and lists only what that namespace holds; pipelines stay shared.
(Without a namespace, single-user KFP lists every namespace.)
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kfadapter.app import create_app
from kfadapter.serving import ServerThread
from kfadapter.settings import Settings
from tests.adapter_support import Adapter, unique, wait_for_state

pytestmark = pytest.mark.e2e  # real servers and processes on free ports


@pytest.fixture(scope="module")
def namespaced(kfp_proxy, tmp_path_factory) -> Iterator[Adapter]:
    """The adapter configured with a namespace of its own (tracking off)."""
    settings = Settings(
        kfp_endpoint=kfp_proxy.url + "/pipeline",
        namespace=unique("ns"),
        data_dir=tmp_path_factory.mktemp("namespaced"),
        tracking_enabled=False,
        kfp_timeout=30.0,
    )
    app = create_app(settings)
    server = ServerThread(app).start()
    yield Adapter(server.url, app, settings, kfp_proxy)
    server.stop()


def test_experiments_are_created_and_listed_in_the_namespace(namespaced, adapter, kfp_client):
    namespace = namespaced.settings.namespace
    name = unique("ns-exp")
    created = namespaced.post("/experiments", json={"name": name})
    assert created.status_code == 201, created.text
    assert kfp_client.get_experiment(created.json()["id"]).namespace == namespace
    assert namespaced.get("/experiments").json()[name] == created.json()["id"]
    assert namespaced.get(f"/experiments/{name}").json()["id"] == created.json()["id"]
    # An experiment of another namespace is not listed, nor found by name.
    elsewhere = unique("elsewhere")
    kfp_client.create_experiment(elsewhere, namespace=unique("other-ns"))
    assert elsewhere in adapter.get("/experiments").json()  # KFP without a namespace: all
    assert elsewhere not in namespaced.get("/experiments").json()
    assert namespaced.get(f"/experiments/{elsewhere}").status_code == 404


def test_training_runs_start_in_the_namespace(namespaced, adapter, uploaded, kfp_client):
    namespace = namespaced.settings.namespace
    pipeline = uploaded["always_fails"]  # uploaded without a namespace: pipelines are shared
    job = unique("ns-job")
    answer = namespaced.post(
        f"/trainingjobs/{job}/execution",
        json={
            "pipeline_name": pipeline,
            "pipeline_version": pipeline,
            "experiment_name": "Default",
            "arguments": {"reason": "namespaced"},
        },
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["run_status"] == "scheduled"
    experiment = kfp_client.get_experiment(body["experiment_id"])
    assert (experiment.display_name, experiment.namespace) == ("Default", namespace)
    assert kfp_client.get_run(body["run_id"]).experiment_id == body["experiment_id"]
    wait_for_state(namespaced, body["run_id"])
    # The namespace's runs are listed; runs of the shared namespace are not.
    shared = adapter.post(
        f"/trainingjobs/{unique('shared-job')}/execution",
        json={"pipeline_name": pipeline, "arguments": {"reason": "shared"}},
    ).json()["run_id"]
    listed = {r["run_id"] for r in namespaced.get("/runs").json().values()}
    assert body["run_id"] in listed and shared not in listed
    wait_for_state(adapter, shared)
