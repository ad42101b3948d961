"""Unit tests of recurring-run triggers: robfig/cron v1.2.0 expressions (as KFP parses them in
backend/src/apiserver/server/recurring_run_server.go) and periodic schedules."""

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
    # no_catchup: a missed periodic time fires at "now", in whole seconds (KFP's
    # crd/controller/scheduledworkflow/util/periodic_schedule.go)
    assert trigger.latest_due(start, start + 170 * S + 400) == start + 170 * S
    assert trigger.latest_due(start, start + 30 * S) is None


def test_cron_latest_due_skips_missed_times() -> None:
    trigger, _ = parse_trigger({"cronSchedule": {"cron": "0 * * * * *"}})
    base = _t("2024-01-01T00:00:30Z")
    assert trigger.latest_due(base, _t("2024-01-01T00:05:10Z")) == _t("2024-01-01T00:05:00Z")


@pytest.mark.parametrize(
    ("cron", "after", "fires"),
    [
        # 5 fields: robfig's seconds-first form without the day of week
        ("0 * * * *", "2024-01-01T00:00:00Z", "2024-01-01T00:01:00Z"),
        ("30 15 10 * *", "2024-01-01T00:00:00Z", "2024-01-01T10:15:30Z"),
        ("@every 1h30m", "2024-01-01T00:00:00Z", "2024-01-01T01:30:00Z"),
        ("@every 500ms", "2024-01-01T00:00:00Z", "2024-01-01T00:00:01Z"),
        ("@hourly", "2024-01-01T00:10:00Z", "2024-01-01T01:00:00Z"),
        ("0 0 0 1 jan-mar/2 *", "2024-01-01T00:00:00Z", "2024-03-01T00:00:00Z"),
        # a starred day of month: the day must match the day of week too
        ("0 0 0 */2 * mon", "2024-01-01T00:00:00Z", "2024-01-15T00:00:00Z"),
        # neither starred: either matches
        ("0 0 0 5 * mon", "2024-01-01T00:00:00Z", "2024-01-05T00:00:00Z"),
        # a start time: the first time strictly after it
        ("0 0 * * * *", "2024-01-01T05:00:00Z", "2024-01-01T06:00:00Z"),
    ],
)
def test_cron_reads_as_robfig_cron_v1_2_0(cron: str, after: str, fires: str) -> None:
    """KFP parses cron with robfig/cron v1.2.0's cron.Parse (5 or 6 fields, seconds first,
    descriptors and @every; backend/src/apiserver/server/recurring_run_server.go)."""
    trigger, _ = parse_trigger({"cron_schedule": {"cron": cron}})
    assert trigger.next_after(_t(after)) == _t(fires)


def test_a_cron_that_matches_no_time_never_fires() -> None:
    """robfig accepts "31 February"; its Next finds no time (within five years)."""
    trigger, _ = parse_trigger({"cron_schedule": {"cron": "0 0 0 31 2 *"}})
    assert trigger.next_after(_t("2024-01-01T00:00:00Z")) is None


def test_no_trigger_is_an_internal_error() -> None:
    """KFP accepts the request and fails making the scheduled workflow: 500
    (backend/src/apiserver/template/template.go, modelToCRDTrigger)."""
    for raw in (None, {}):
        with pytest.raises(ApiError) as error:
            parse_trigger(raw)
        assert error.value.status == 500


@pytest.mark.parametrize(
    "raw",
    [
        [],
        {"cron_schedule": {"cron": "* * * *"}},
        {"cron_schedule": {"cron": "* * * * * * *"}},
        {"cron_schedule": {"cron": "61 * * * * *"}},
        {"cron_schedule": {"cron": "0 0 0 * * 7"}},
        {"cron_schedule": {"cron": "@every 5"}},
        {"cron_schedule": {"cron": "@Daily"}},
        {"cron_schedule": {"cron": "1/0 * * * * *"}},
        # beyond Go's int64 Duration (about 2562047h): time.ParseDuration refuses it
        {"cron_schedule": {"cron": "@every 99999999999999h"}},
        {"cron_schedule": {}},
        {"periodic_schedule": {"interval_second": "0"}},
        {"periodic_schedule": {"interval_second": "soon"}},
        {"cron_schedule": {"cron": "0 * * * * *"}, "periodic_schedule": {"interval_second": 1}},
        {"periodic_schedule": {"interval_second": 5, "start_time": "yesterday"}},
    ],
)
def test_bad_triggers_are_bad_requests(raw) -> None:
    with pytest.raises(ApiError) as error:
        parse_trigger(raw)
    assert error.value.status == 400


def test_a_trigger_starting_at_go_zero_time_is_shown_with_a_four_digit_year() -> None:
    """Go clients send `0001-01-01T00:00:00Z`; KFP writes it back with the year padded
    (RFC 3339), where strftime's %Y on Linux would write `1-01-01...`."""
    _, shown = parse_trigger(
        {"cron_schedule": {"cron": "0 * * * * *", "start_time": "0001-01-01T00:00:00Z"}}
    )
    assert shown["cron_schedule"]["start_time"] == "0001-01-01T00:00:00Z"
