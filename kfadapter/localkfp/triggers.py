"""Recurring-run triggers: KFP's cron (6 fields, seconds first) and periodic schedules."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from croniter import CroniterError, croniter

from kfadapter.localkfp.apierrors import bad_request
from kfadapter.localkfp.query import parse_int64
from kfadapter.localkfp.timefmt import now_us, parse_rfc3339, to_rfc3339

_US = 1_000_000
_DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


def _cron_to_croniter(expression: str) -> str:
    """A croniter expression (seconds first) for a KFP/robfig cron expression."""
    text = expression.strip()
    if text.lower() in _DESCRIPTORS:
        return {
            "@yearly": "0 0 0 1 1 *",
            "@annually": "0 0 0 1 1 *",
            "@monthly": "0 0 0 1 * *",
            "@weekly": "0 0 0 * * 0",
            "@daily": "0 0 0 * * *",
            "@midnight": "0 0 0 * * *",
            "@hourly": "0 0 * * * *",
        }[text.lower()]
    fields = text.split()
    if len(fields) != 6:
        raise bad_request(
            f"Invalid cron expression {expression!r}: KFP cron has 6 fields "
            "(second minute hour day-of-month month day-of-week), e.g. '0 0 9 ? * 2-6'"
        )
    if not croniter.is_valid(" ".join(fields), second_at_beginning=True):
        raise bad_request(f"Invalid cron expression {expression!r}")
    return " ".join(fields)


@dataclass(frozen=True)
class Trigger:
    """When a recurring run fires: a cron expression or a fixed interval, within start/end."""

    cron: str | None = None
    interval_us: int | None = None
    start_us: int | None = None
    end_us: int | None = None

    def next_after(self, after_us: int) -> int | None:
        """The first fire time strictly after after_us (and not before start); None past end."""
        if self.start_us is not None and after_us < self.start_us:
            after_us = self.start_us - (1 if self.cron else 0)
        if self.interval_us is not None:
            fire = after_us + self.interval_us
        else:
            assert self.cron is not None
            base = datetime.fromtimestamp(after_us / _US, tz=UTC)
            nxt = croniter(self.cron, base, second_at_beginning=True).get_next(datetime)
            fire = int(nxt.timestamp()) * _US
        if self.end_us is not None and fire > self.end_us:
            return None
        return fire

    def latest_due(self, after_us: int, now_us: int) -> int | None:
        """The last fire time in (after_us, now_us], skipping missed ones (no_catchup)."""
        first = self.next_after(after_us)
        if first is None or first > now_us:
            return None
        if self.interval_us is not None:
            limit = now_us if self.end_us is None else min(now_us, self.end_us)
            return first + ((limit - first) // self.interval_us) * self.interval_us
        latest = first
        for _ in range(100_000):
            candidate = self.next_after(latest)
            if candidate is None or candidate > now_us:
                break
            latest = candidate
        return latest


def parse_trigger(raw: Any) -> tuple[Trigger, dict[str, Any]]:
    """The trigger of a recurring-run request and its JSON as KFP returns it; 400 if invalid."""
    if not isinstance(raw, dict):
        raise bad_request("recurring run needs a trigger with cron_schedule or periodic_schedule")
    cron = raw.get("cron_schedule", raw.get("cronSchedule"))
    periodic = raw.get("periodic_schedule", raw.get("periodicSchedule"))
    if (cron is None) == (periodic is None):
        raise bad_request("trigger needs exactly one of cron_schedule and periodic_schedule")
    schedule = cron if cron is not None else periodic
    if not isinstance(schedule, dict):
        raise bad_request("trigger schedule must be an object")
    start = schedule.get("start_time", schedule.get("startTime"))
    end = schedule.get("end_time", schedule.get("endTime"))
    start_us = parse_rfc3339(start, "start_time") if start else None
    end_us = parse_rfc3339(end, "end_time") if end else None
    if start_us is not None and end_us is not None and end_us < start_us:
        raise bad_request("trigger end_time is before its start_time")
    shown: dict[str, Any] = {}
    if start_us is not None:
        shown["start_time"] = to_rfc3339(start_us)
    if end_us is not None:
        shown["end_time"] = to_rfc3339(end_us)
    if cron is not None:
        expression = schedule.get("cron")
        if not isinstance(expression, str) or not expression.strip():
            raise bad_request("cron_schedule.cron is missing")
        trigger = Trigger(cron=_cron_to_croniter(expression), start_us=start_us, end_us=end_us)
        return _computable(trigger), {"cron_schedule": {**shown, "cron": expression}}
    interval = schedule.get("interval_second", schedule.get("intervalSecond"))
    seconds = parse_int64(interval, "periodic_schedule.interval_second")
    if seconds <= 0:
        raise bad_request("periodic_schedule.interval_second must be positive")
    trigger = Trigger(interval_us=seconds * _US, start_us=start_us, end_us=end_us)
    return _computable(trigger), {"periodic_schedule": {**shown, "interval_second": str(seconds)}}


def _computable(trigger: Trigger) -> Trigger:
    """The trigger, if its next fire time can be computed (else it would fail every tick)."""
    try:
        trigger.next_after(max(now_us(), trigger.start_us or 0))
    except (CroniterError, OverflowError, ValueError) as error:
        raise bad_request(f"trigger never fires: {error}") from None
    return trigger
