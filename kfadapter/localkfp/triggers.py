"""Recurring-run triggers as KFP 2.17 fires them: robfig/cron expressions (`cronspec`) and
periodic schedules (`crd/controller/scheduledworkflow/util/{cron,periodic}_schedule.go`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from kfadapter.localkfp.apierrors import ApiError, bad_request
from kfadapter.localkfp.cronspec import CronError, CronSchedule, parse_cron
from kfadapter.localkfp.query import parse_int64
from kfadapter.localkfp.timefmt import parse_rfc3339, to_rfc3339

_US = 1_000_000


@lru_cache(maxsize=256)
def _schedule(expression: str) -> CronSchedule:
    return parse_cron(expression)


@dataclass(frozen=True)
class Trigger:
    """When a recurring run fires: a cron expression or a fixed interval, within start/end."""

    cron: str | None = None
    interval_us: int | None = None
    start_us: int | None = None
    end_us: int | None = None

    def next_after(self, after_us: int) -> int | None:
        """The first fire time strictly after after_us and after start; None past end (or
        when the expression matches no time)."""
        if self.start_us is not None and after_us < self.start_us:
            after_us = self.start_us
        if self.interval_us is not None:
            fire: int | None = after_us + self.interval_us
        else:
            assert self.cron is not None
            moment = datetime.fromtimestamp(after_us // _US, tz=UTC)
            nxt = _schedule(self.cron).next_after(moment)
            fire = None if nxt is None else int(nxt.timestamp()) * _US
        if fire is None or (self.end_us is not None and fire > self.end_us):
            return None
        return fire

    def latest_due(self, after_us: int, now_us: int) -> int | None:
        """The time to fire at without catching up (no_catchup), if one is due: for a
        periodic schedule, now (whole seconds); for cron, the last time in (after, now]."""
        first = self.next_after(after_us)
        if first is None or first > now_us:
            return None
        if self.interval_us is not None:
            now = now_us - now_us % _US
            return None if self.end_us is not None and now > self.end_us else now
        latest = first
        for _ in range(100_000):
            candidate = self.next_after(latest)
            if candidate is None or candidate > now_us:
                break
            latest = candidate
        return latest


def parse_trigger(raw: Any) -> tuple[Trigger, dict[str, Any]]:
    """The trigger of a recurring-run request and its JSON as KFP returns it; 400 if invalid."""
    if raw is not None and not isinstance(raw, dict):
        raise bad_request("recurring_run.trigger must be a JSON object")
    raw = raw or {}
    cron = raw.get("cron_schedule", raw.get("cronSchedule"))
    periodic = raw.get("periodic_schedule", raw.get("periodicSchedule"))
    if cron is not None and periodic is not None:
        raise bad_request("trigger takes one of cron_schedule and periodic_schedule, not both")
    if cron is None and periodic is None:
        # KFP accepts the request, then fails to make the scheduled workflow's trigger
        # (`template/template.go`, modelToCRDTrigger): an internal error
        raise ApiError(
            500,
            "Failed to create a recurring run: converting model trigger to crd trigger "
            "failed: the trigger has neither a cron_schedule nor a periodic_schedule",
        )
    schedule = cron if cron is not None else periodic
    if not isinstance(schedule, dict):
        raise bad_request("trigger schedule must be an object")
    start = schedule.get("start_time", schedule.get("startTime"))
    end = schedule.get("end_time", schedule.get("endTime"))
    start_us = parse_rfc3339(start, "start_time") if start else None
    end_us = parse_rfc3339(end, "end_time") if end else None
    shown: dict[str, Any] = {}
    if start_us is not None:
        shown["start_time"] = to_rfc3339(start_us)
    if end_us is not None:
        shown["end_time"] = to_rfc3339(end_us)
    if cron is not None:
        expression = schedule.get("cron")
        if not isinstance(expression, str):
            raise bad_request("cron_schedule.cron must be a string")
        try:
            _schedule(expression)
        except CronError as error:
            raise bad_request(
                "Schedule cron is not a supported format(https://godoc.org/github.com/robfig/cron)"
                f". Error: {error}"
            ) from None
        trigger = Trigger(cron=expression, start_us=start_us, end_us=end_us)
        return trigger, {"cron_schedule": {**shown, "cron": expression}}
    interval = schedule.get("interval_second", schedule.get("intervalSecond"))
    seconds = parse_int64(interval, "periodic_schedule.interval_second")
    if seconds < 1:
        raise bad_request(
            f"Found invalid period schedule interval {seconds}. Set at interval to least 1 second."
        )
    trigger = Trigger(interval_us=seconds * _US, start_us=start_us, end_us=end_us)
    return trigger, {"periodic_schedule": {**shown, "interval_second": str(seconds)}}
