"""KF_NAMESPACE end to end, against a single-user KFP as the embedded server is.

CONTRACT.md: the Helm chart sets `KF_NAMESPACE` ("the KFP namespace for experiments and
runs"). The adapter sends that namespace on every experiment and run call, which is what a
multi-user KFP needs to place and list them. A single-user KFP 2.17 (the embedded server,
and a standalone deployment) replaces every namespace it is given with ""
(`resource/resource_manager.go` ReplaceNamespace): there the adapter must still work, with
its experiments and runs in KFP's one namespace. Multi-user KFP (profiles, per-namespace
Default experiments) is not emulated by the embedded server (docs/local-kfp.md).
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


def test_experiments_are_asked_for_in_the_namespace_and_work_single_user(
    namespaced, adapter, kfp_client
):
    namespace = namespaced.settings.namespace
    name = unique("ns-exp")
    mark = namespaced.proxy.mark()
    created = namespaced.post("/experiments", json={"name": name})
    assert created.status_code == 201, created.text
    # single-user KFP keeps the experiment in its one namespace ("", shown as absent)
    assert not kfp_client.get_experiment(created.json()["id"]).namespace
    assert namespaced.get("/experiments").json()[name] == created.json()["id"]
    assert namespaced.get(f"/experiments/{name}").json()["id"] == created.json()["id"]
    lists = [
        c.path
        for c in namespaced.proxy.since(mark)
        if c.method == "GET" and "/experiments?" in c.path
    ]
    assert lists and all(f"namespace={namespace}" in path for path in lists), lists
    # An experiment created for another namespace is in the same one namespace.
    elsewhere = unique("elsewhere")
    kfp_client.create_experiment(elsewhere, namespace=unique("other-ns"))
    assert elsewhere in adapter.get("/experiments").json()
    assert elsewhere in namespaced.get("/experiments").json()


def test_training_runs_start_with_the_namespace_single_user(
    namespaced, adapter, uploaded, kfp_client
):
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
    # single-user KFP has one Default experiment, whatever namespace is asked for
    assert experiment.display_name == "Default" and not experiment.namespace
    assert (
        experiment.experiment_id
        == kfp_client.get_experiment(experiment_name="Default").experiment_id
    )
    assert kfp_client.get_run(body["run_id"]).experiment_id == body["experiment_id"]
    wait_for_state(namespaced, body["run_id"])
    # Runs are listed with the namespace sent; single-user KFP lists every run.
    shared = adapter.post(
        f"/trainingjobs/{unique('shared-job')}/execution",
        json={"pipeline_name": pipeline, "arguments": {"reason": "shared"}},
    ).json()["run_id"]
    mark = namespaced.proxy.mark()
    listed = {r["run_id"] for r in namespaced.get("/runs").json().values()}
    assert body["run_id"] in listed and shared in listed
    run_lists = [
        c.path for c in namespaced.proxy.since(mark) if c.method == "GET" and "/runs?" in c.path
    ]
    assert run_lists and all(f"namespace={namespaced.settings.namespace}" in p for p in run_lists)
    wait_for_state(adapter, shared)
