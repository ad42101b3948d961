"""Unit tests of recurring-run triggers: KFP cron (seconds first) and periodic schedules."""

from __future__ import annotations

import pytest

from kfadapter.localkfp.apierrors import ApiError
from kfadapter.localkfp.timefmt import parse_rfc3339
from kfadapter.localkfp.triggers import parse_trigger

S = 1_000_000


def _t(text: str) -> int:
    return parse_rfc3339(text, "t")


def test_cron_has_seconds_first() -> None:
    trigger, shown = parse_trigger({"cron_schedule": {"cron": "*/10 * * * * *"}})
    assert shown == {"cron_schedule": {"cron": "*/10 * * * * *"}}
    assert trigger.next_after(_t("2024-01-01T00:00:01Z")) == _t("2024-01-01T00:00:10Z")
    weekdays, _ = parse_trigger({"cron_schedule": {"cron": "0 0 9 ? * 2-6"}})
    assert weekdays.next_after(_t("2024-01-01T00:00:00Z")) == _t("2024-01-02T09:00:00Z")


def test_periodic_interval_start_and_end() -> None:
    trigger, shown = parse_trigger(
        {
            "periodic_schedule": {
                "interval_second": "60",
                "start_time": "2024-01-01T00:00:00Z",
                "end_time": "2024-01-01T00:03:00Z",
            }
        }
    )
    assert shown["periodic_schedule"]["interval_second"] == "60"
    start = _t("2024-01-01T00:00:00Z")
    assert trigger.next_after(0) == start + 60 * S
    assert trigger.next_after(start + 90 * S) == start + 150 * S
    assert trigger.next_after(start + 180 * S) is None
    assert trigger.latest_due(start, start + 170 * S) == start + 120 * S
    assert trigger.latest_due(start, start + 30 * S) is None


def test_cron_latest_due_skips_missed_times() -> None:
    trigger, _ = parse_trigger({"cronSchedule": {"cron": "0 * * * * *"}})
    base = _t("2024-01-01T00:00:30Z")
    assert trigger.latest_due(base, _t("2024-01-01T00:05:10Z")) == _t("2024-01-01T00:05:00Z")


@pytest.mark.parametrize(
    "raw",
    [
        None,
        {},
        {"cron_schedule": {"cron": "* * * * *"}},
        {"cron_schedule": {"cron": "61 * * * * *"}},
        {"cron_schedule": {}},
        {"periodic_schedule": {"interval_second": "0"}},
        {"periodic_schedule": {"interval_second": "soon"}},
        {"cron_schedule": {"cron": "0 * * * * *"}, "periodic_schedule": {"interval_second": 1}},
        {"periodic_schedule": {"interval_second": 5, "start_time": "yesterday"}},
        {
            "periodic_schedule": {
                "interval_second": 5,
                "start_time": "2024-01-02T00:00:00Z",
                "end_time": "2024-01-01T00:00:00Z",
            }
        },
    ],
)
def test_bad_triggers_are_bad_requests(raw) -> None:
    with pytest.raises(ApiError) as error:
        parse_trigger(raw)
    assert error.value.status == 400
