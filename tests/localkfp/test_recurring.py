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
        {"trigger": None},
        {"trigger": {"cron_schedule": {"cron": "* * * * *"}}},
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
        # triggers whose next time cannot be computed would fail every scheduler tick
        {"trigger": {"cron_schedule": {"cron": "0 0 0 31 2 *"}}},
        {
            "trigger": {
                "cron_schedule": {"cron": "0 0 0 * * *", "start_time": "9999-12-31T23:59:59Z"}
            }
        },
    ],
)
def test_bad_recurring_runs_are_refused(held_server, extra) -> None:
    url = f"{held_server.url}/apis/v2beta1/recurringruns"
    before = requests.get(url).json()["total_size"]
    body = {
        "display_name": "x",
        "pipeline_spec": SPEC,
        "trigger": {"periodic_schedule": {"interval_second": "60"}},
        **extra,
    }
    response = requests.post(url, json=body)
    assert response.status_code == 400, response.text
    assert requests.get(url).json()["total_size"] == before


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
    from kfadapter.localkfp.recurring import fnv32a

    name = created["display_name"]
    expected = {f"{name}-{n}-{fnv32a(f'{name}-{n}')}" for n in (1, 2, 3)}
    assert {r["display_name"] for r in runs.values()} == expected


def test_no_catchup_starts_only_the_latest_missed_time(manual) -> None:
    created = _create(
        manual,
        {"periodic_schedule": {"interval_second": "10"}},
        max_concurrency="5",
        no_catchup=True,
    )
    start = manual.store.recurring_runs.get(created["recurring_run_id"])["created_at"]
    assert len(manual._scheduler.tick(start + 95 * S)) == 1
    row = manual.store.recurring_runs.get(created["recurring_run_id"])
    assert row["last_fire_at"] == start + 90 * S


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
