"""Cron expressions as KFP 2.17 reads them: `cron.Parse` of robfig/cron v1.2.0.

KFP's API server validates a recurring run's cron with it (`server/recurring_run_server.go`)
and the scheduled-workflow controller computes fire times with it
(`crd/controller/scheduledworkflow/util/cron_schedule.go`). croniter computes the times;
this module gives it robfig's dialect:

- 6 fields `second minute hour day-of-month month day-of-week`, or 5 without the
  day-of-week (then `*`): `"0 * * * *"` fires at second 0 of every minute (croniter's
  `second_at_beginning`);
- day of week 0-6 only (croniter would take 7 for Sunday; robfig refuses it);
- when day-of-month or day-of-week starts with `*` or `?` (robfig's star bit), a day must
  match both, else either (croniter's `day_or`);
- `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly` and
  `@every <Go duration>` (at least a second, whole seconds, counted from the previous time).

Times are UTC; a schedule that matches nothing within five years never fires.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

_DESCRIPTORS = {
    "@yearly": "0 0 0 1 1 *",
    "@annually": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0",
    "@daily": "0 0 0 * * *",
    "@midnight": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}
_DURATION_PART = re.compile(r"(\d*\.?\d*)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_SEARCH_YEARS = 5
_MAX_DURATION_SECONDS = (2**63 - 1) / 1e9  # about 2562047 hours


class CronError(ValueError):
    """The expression is not one robfig/cron v1.2.0 parses; the message says why."""


@dataclass(frozen=True)
class CronSchedule:
    """A parsed expression (six robfig fields and whether a day field is starred), or an
    @every interval in seconds."""

    expression: str = ""
    days_either: bool = False
    every_seconds: int | None = None

    def next_after(self, moment: datetime) -> datetime | None:
        """The first time strictly after `moment` (UTC, whole seconds), or None."""
        moment = moment.astimezone(UTC).replace(microsecond=0)
        if self.every_seconds is not None:
            return moment + timedelta(seconds=self.every_seconds)
        times = croniter(
            self.expression,
            moment,
            ret_type=datetime,
            day_or=self.days_either,
            second_at_beginning=True,
            max_years_between_matches=_SEARCH_YEARS,
        )
        try:
            return times.get_next().astimezone(UTC)
        except CroniterBadDateError:
            return None


def parse_cron(spec: str) -> CronSchedule:
    """The schedule of a cron expression; CronError saying why it is refused."""
    if not spec:
        raise CronError("Empty spec string")
    if spec[0] == "@":
        if spec.startswith("@every "):
            return CronSchedule(every_seconds=_every_seconds(spec[len("@every ") :]))
        if spec not in _DESCRIPTORS:
            raise CronError(f"Unrecognized descriptor: {spec}")
        spec = _DESCRIPTORS[spec]
    fields = spec.split()
    if not 5 <= len(fields) <= 6:
        raise CronError(f"Expected 5 to 6 fields, found {len(fields)}: {spec}")
    if len(fields) == 5:
        fields.append("*")
    if any(int(number) > 6 for number in re.findall(r"\d+", fields[5])):
        raise CronError(f"End of range above maximum (6): {fields[5]}")
    expression = " ".join(fields)
    try:
        croniter(expression, second_at_beginning=True)
    except CroniterBadCronError as error:
        raise CronError(str(error)) from None
    starred = _starred(fields[3]) or _starred(fields[5])
    return CronSchedule(expression=expression, days_either=not starred)


def _starred(text: str) -> bool:
    """Whether a part of the field is `*` or `?` (robfig's star bit)."""
    return any(part.split("/")[0].split("-")[0] in ("*", "?") for part in text.split(","))


def _every_seconds(text: str) -> int:
    """Seconds of an @every duration (Go's time.ParseDuration): at least 1, truncated."""
    body = text[1:] if text[:1] in ("+", "-") else text
    negative = text[:1] == "-"
    if body == "0":
        return 1
    position, total = 0, 0.0
    while position < len(body) or not body:
        match = _DURATION_PART.match(body, position)
        if not match or match.group(1) in ("", "."):
            raise CronError(f"Failed to parse duration {text}: time: invalid duration {text!r}")
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if total > _MAX_DURATION_SECONDS:  # Go's Duration is int64 nanoseconds
        raise CronError(f"Failed to parse duration {text}: time: invalid duration {text!r}")
    return 1 if negative or total < 1 else int(total)
