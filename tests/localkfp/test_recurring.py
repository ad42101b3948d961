"""Recurring runs: the API through kfp.Client, and the scheduler's catch-up and concurrency."""

from __future__ import annotations

import time
import uuid

import kfp_server_api
import pytest
import requests

from kfadapter.localkfp.timefmt import now_us
from tests.localkfp.conftest import SPEC, HeldExecutor, client_for
from tests.support import wait_until

pytestmark = pytest.mark.e2e  # real servers and processes on free ports

S = 1_000_000


@pytest.fixture
def manual(make_server):
    """A server whose scheduler only ticks when the test says so, and whose runs are held."""
    return make_server(executor_factory=HeldExecutor, scheduler_interval=3600)


def _create(server, trigger: dict, **extra) -> dict:
    body = {
        "display_name": f"rr-{uuid.uuid4().hex[:6]}",
        "pipeline_spec": SPEC,
        "trigger": trigger,
        "mode": "ENABLE",
        "max_concurrency": "1",
        **extra,
    }
    response = requests.post(f"{server.url}/apis/v2beta1/recurringruns", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def _runs_of(server, recurring_run_id: str) -> list[dict]:
    body = requests.get(f"{server.url}/apis/v2beta1/runs", params={"page_size": 200}).json()
    return [r for r in body.get("runs", []) if r.get("recurring_run_id") == recurring_run_id]


def test_recurring_run_api_with_kfp_client(held_server, compiled) -> None:
    client = client_for(held_server)
    experiment = client.create_experiment(f"rr-{uuid.uuid4().hex[:6]}")
    created = client.create_recurring_run(
        experiment.experiment_id,
        "nightly",
        description="every night",
        cron_expression="0 0 2 * * *",
        max_concurrency=2,
        no_catchup=True,
        pipeline_package_path=str(compiled["add_subtract_multiply"]),
        params={"a": 1},
        enabled=False,
    )
    assert created.status == "DISABLED" and created.mode == "DISABLE"
    assert created.trigger.cron_schedule.cron == "0 0 2 * * *"
    assert created.max_concurrency == "2" and created.no_catchup is True  # int64: a string
    client.enable_recurring_run(created.recurring_run_id)
    got = client.get_recurring_run(created.recurring_run_id)
    assert got.status == "ENABLED" and got.runtime_config.parameters == {"a": 1}
    listed = client.list_recurring_runs(experiment_id=experiment.experiment_id)
    assert [r.recurring_run_id for r in listed.recurring_runs] == [created.recurring_run_id]
    client.disable_recurring_run(created.recurring_run_id)
    assert client.get_recurring_run(created.recurring_run_id).status == "DISABLED"
    client.delete_recurring_run(created.recurring_run_id)
    with pytest.raises(kfp_server_api.ApiException) as error:
        client.get_recurring_run(created.recurring_run_id)
    assert error.value.status == 404


@pytest.mark.parametrize(
    "extra",
    [
        {"trigger": {"cron_schedule": {"cron": "* * * *"}}},
        {"trigger": {"cron_schedule": {"cron": "0 0 0 * * 7"}}},
        {"trigger": {"cron_schedule": {"cron": "@every soon"}}},
        # beyond Go's int64 Duration: time.ParseDuration refuses it
        {"trigger": {"cron_schedule": {"cron": "@every 99999999999999h"}}},
        {"trigger": {"periodic_schedule": {"interval_second": "0"}}},
        {"max_concurrency": None},
        {"max_concurrency": "0"},
        {"max_concurrency": "11"},
        {"display_name": ""},
        {"pipeline_spec": None},
        {"mode": "SOMETIMES"},
        # mistyped values are refused, not read loosely ("false" is not true, 1.5 is not 1)
        {"no_catchup": "false"},
        {"max_concurrency": 1.5},
        {"max_concurrency": True},
        {"trigger": {"periodic_schedule": {"interval_second": 1.7}}},
        {"trigger": {"periodic_schedule": {"interval_second": True}}},
        {"trigger": {"periodic_schedule": {"interval_second": str(10**30)}}},
    ],
)
def test_bad_recurring_runs_are_refused(held_server, extra) -> None:
    """KFP's 400s (backend/src/apiserver/server/recurring_run_server.go,
    validateCreateRecurringRunRequest: max_concurrency 1-10, robfig cron, interval >= 1)."""
    url = f"{held_server.url}/apis/v2beta1/recurringruns"
    before = requests.get(url).json().get("total_size", 0)
    body = {
        "display_name": "x",
        "pipeline_spec": SPEC,
        "trigger": {"periodic_schedule": {"interval_second": "60"}},
        "max_concurrency": "1",
        **extra,
    }
    response = requests.post(url, json=body)
    assert response.status_code == 400, response.text
    assert requests.get(url).json().get("total_size", 0) == before


def test_a_broken_recurring_run_does_not_stop_the_others(manual) -> None:
    """A recurring run whose stored trigger cannot be read is skipped; the others still fire."""
    broken = _create(manual, {"periodic_schedule": {"interval_second": "10"}})
    manual.store.recurring_runs.update(broken["recurring_run_id"], trigger_spec="{cut short")
    healthy = _create(manual, {"periodic_schedule": {"interval_second": "10"}})
    start = manual.store.recurring_runs.get(healthy["recurring_run_id"])["created_at"]
    started = manual._scheduler.tick(start + 15 * S)
    assert [r["run_id"] for r in _runs_of(manual, healthy["recurring_run_id"])] == started
    assert len(started) == 1
    assert _runs_of(manual, broken["recurring_run_id"]) == []


def test_catch_up_honours_max_concurrency(manual) -> None:
    created = _create(manual, {"periodic_schedule": {"interval_second": "10"}}, max_concurrency="2")
    rr_id = created["recurring_run_id"]
    start = manual.store.recurring_runs.get(rr_id)["created_at"]
    scheduler = manual._scheduler
    assert scheduler.tick(start + 5 * S) == []
    first = scheduler.tick(start + 35 * S)  # three times are due, two may run at once
    assert len(first) == 2
    assert scheduler.tick(start + 36 * S) == []  # both still active
    manual._executor.finish(first[0], "SUCCEEDED")
    third = scheduler.tick(start + 36 * S)
    assert len(third) == 1
    runs = {r["run_id"]: r for r in _runs_of(manual, rr_id)}
    scheduled = sorted(r["scheduled_at"] for r in runs.values())
    assert len(scheduled) == 3 and len(set(scheduled)) == 3  # 10 s, 20 s, 30 s after creation
    from kfadapter.localkfp.recurring import fnv32a, workflow_name

    name = workflow_name(manual.store.recurring_runs.get(rr_id))
    expected = {f"{name}-{n}-{fnv32a(f'{name}-{n}')}" for n in (1, 2, 3)}
    assert {r["display_name"] for r in runs.values()} == expected


def test_no_catchup_starts_one_run_now(manual) -> None:
    """With no_catchup, a periodic schedule that missed its times fires once, at "now"
    (backend/src/crd/controller/scheduledworkflow/util/periodic_schedule.go)."""
    created = _create(
        manual,
        {"periodic_schedule": {"interval_second": "10"}},
        max_concurrency="5",
        no_catchup=True,
    )
    start = manual.store.recurring_runs.get(created["recurring_run_id"])["created_at"]
    assert len(manual._scheduler.tick(start + 95 * S)) == 1
    row = manual.store.recurring_runs.get(created["recurring_run_id"])
    now = start + 95 * S
    assert row["last_fire_at"] == now - now % S  # now, in whole seconds; not start + 90 s
    assert manual._scheduler.tick(now + 5 * S) == []  # the next one is due 10 s later


def test_start_and_end_times_bound_the_schedule(manual) -> None:
    from kfadapter.localkfp.timefmt import to_rfc3339

    now = now_us()
    created = _create(
        manual,
        {
            "periodic_schedule": {
                "interval_second": "10",
                "start_time": to_rfc3339(now + 100 * S),
                "end_time": to_rfc3339(now + 125 * S),
            }
        },
        max_concurrency="10",
    )
    assert manual._scheduler.tick(now + 50 * S) == []
    assert len(manual._scheduler.tick(now + 200 * S)) == 2  # +110 s and +120 s only
    assert len(_runs_of(manual, created["recurring_run_id"])) == 2


def test_a_disabled_recurring_run_starts_nothing(manual) -> None:
    created = _create(manual, {"periodic_schedule": {"interval_second": "1"}}, mode="DISABLE")
    assert manual._scheduler.tick(now_us() + 60 * S) == []
    assert _runs_of(manual, created["recurring_run_id"]) == []


def test_scheduler_thread_starts_real_runs_until_disabled(make_server, compiled) -> None:
    server = make_server(scheduler_interval=0.2, max_concurrent_runs=2)
    client = client_for(server)
    experiment = client.create_experiment("periodic")
    created = client.create_recurring_run(
        experiment.experiment_id,
        "every-second",
        interval_second=1,
        max_concurrency=1,
        pipeline_package_path=str(compiled["add_subtract_multiply"]),
    )
    runs = wait_until(
        lambda: _runs_of(server, created.recurring_run_id),
        30,
        step=0.1,
        details=lambda: "the scheduler started no run",
    )
    assert runs, "the scheduler started no run"
    client.disable_recurring_run(created.recurring_run_id)
    time.sleep(0.5)  # a tick in progress may still finish
    count = len(_runs_of(server, created.recurring_run_id))
    time.sleep(2.5)
    assert len(_runs_of(server, created.recurring_run_id)) == count
    run = client.get_run(runs[0]["run_id"])
    assert run.recurring_run_id == created.recurring_run_id


def test_defaults_are_kfps(held_server) -> None:
    """As KFP 2.17 (backend/src/apiserver/server/recurring_run_server.go and
    api_converter.go; template/template.go setDefaultServiceAccount): without `mode` a
    recurring run is disabled, its service account is pipeline-runner, robfig cron's 5-field
    form and @every are accepted as given, and a request without a trigger is a 500."""
    url = f"{held_server.url}/apis/v2beta1/recurringruns"
    body = {"display_name": "defaults", "pipeline_spec": SPEC, "max_concurrency": "1"}
    for cron in ("0 30 * * *", "@every 1h30m"):
        created = requests.post(url, json={**body, "trigger": {"cron_schedule": {"cron": cron}}})
        assert created.status_code == 200, created.text
        answer = created.json()
        assert answer["mode"] == "DISABLE" and answer["status"] == "DISABLED"
        assert answer["service_account"] == "pipeline-runner"
        assert answer["trigger"] == {"cron_schedule": {"cron": cron}}
    # Go's zero time, as Go clients send it, comes back with its four-digit year
    zero = {"cron": "0 30 * * *", "start_time": "0001-01-01T00:00:00Z"}
    created = requests.post(url, json={**body, "trigger": {"cron_schedule": zero}})
    assert created.status_code == 200, created.text
    assert created.json()["trigger"]["cron_schedule"]["start_time"] == "0001-01-01T00:00:00Z"
    missing = requests.post(url, json={**body, "max_concurrency": None, "trigger": {}})
    assert missing.status_code == 400
    assert "Support 1-10. Received 0" in missing.json()["message"]
    no_trigger = requests.post(url, json=body)
    assert no_trigger.status_code == 500, no_trigger.text
    assert set(no_trigger.json()) >= {"code", "message"} and no_trigger.json()["code"] == 13


def test_runs_are_named_as_kfps_scheduled_workflow_names_them(manual) -> None:
    """A run of a recurring run is named <swf>-<n>-<fnv32a of "<swf>-<n>">, where <swf> is
    the display name cut to [a-z0-9-] and 25 characters plus Kubernetes' 5 random ones
    (backend/src/apiserver/template/template.go toSWFCRDResourceGeneratedName;
    backend/src/crd/controller/scheduledworkflow/util/scheduled_workflow.go); it runs as
    pipeline-runner."""
    import re

    from kfadapter.localkfp.recurring import fnv32a

    created = _create(
        manual,
        {"periodic_schedule": {"interval_second": "10"}},
        display_name="Nightly Training_Job of the QoE model!",
    )
    start = manual.store.recurring_runs.get(created["recurring_run_id"])["created_at"]
    assert len(manual._scheduler.tick(start + 10 * S)) == 1
    (run,) = _runs_of(manual, created["recurring_run_id"])
    match = re.fullmatch(
        r"(nightlytrainingjoboftheqo[bcdfghjklmnpqrstvwxz2456789]{5})-1-(\d+)", run["display_name"]
    )
    assert match, run["display_name"]
    assert int(match.group(2)) == fnv32a(f"{match.group(1)}-1")
    assert run["service_account"] == "pipeline-runner"


def test_only_a_pipeline_id_runs_the_newest_version_of_each_trigger(manual) -> None:
    """A recurring run naming only a pipeline runs the pipeline's newest version at each
    trigger, not the one newest at creation (KFP 2.17's "always use latest version")."""
    from tests.localkfp.conftest import upload_spec

    pipeline = upload_spec(manual, f"latest-{uuid.uuid4().hex[:6]}")
    first = requests.get(
        f"{manual.url}/apis/v2beta1/pipelines/{pipeline['pipeline_id']}/versions"
    ).json()["pipeline_versions"][0]["pipeline_version_id"]
    body = {
        "display_name": "latest",
        "pipeline_version_reference": {"pipeline_id": pipeline["pipeline_id"]},
        "trigger": {"periodic_schedule": {"interval_second": "10"}},
        "mode": "ENABLE",
        "max_concurrency": "5",
    }
    created = requests.post(f"{manual.url}/apis/v2beta1/recurringruns", json=body)
    assert created.status_code == 200, created.text
    recurring = created.json()
    assert recurring["pipeline_version_reference"] == {"pipeline_id": pipeline["pipeline_id"]}
    start = manual.store.recurring_runs.get(recurring["recurring_run_id"])["created_at"]
    (run_1,) = manual._scheduler.tick(start + 10 * S)
    second = upload_spec(manual, "v2", pipeline_id=pipeline["pipeline_id"])
    (run_2,) = manual._scheduler.tick(start + 20 * S)
    runs = {r["run_id"]: r for r in _runs_of(manual, recurring["recurring_run_id"])}
    versions = [
        runs[r]["pipeline_version_reference"]["pipeline_version_id"] for r in (run_1, run_2)
    ]
    assert versions == [first, second["pipeline_version_id"]]
