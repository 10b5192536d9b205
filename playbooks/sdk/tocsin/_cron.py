"""5-field cron expressions for ``@playbook(trigger="schedule:<cron>")``.

Syntax (evaluated in UTC)::

    minute  hour  day-of-month  month  day-of-week
    0-59    0-23  1-31          1-12   0-7 (0 and 7 are Sunday)

Each field is a comma-separated list of items; an item is ``*``, a number
``n``, a range ``a-b``, or ``*`` / a range followed by a step (``*/15``,
``0-30/10``). Names (``mon``, ``jan``), ``?``, ``L``, ``W``, ``#`` and
``@daily``-style macros are not supported.

As in classic cron, when both day-of-month and day-of-week are restricted
(neither field starts with ``*``), a day matches if *either* field matches;
otherwise both must match.

:func:`parse_cron` validates an expression (raising :class:`ValueError` with
the offending field); :class:`CronSchedule` is the reference evaluator
(:meth:`~CronSchedule.matches`, :meth:`~CronSchedule.next_after`).
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

__all__ = ["CronSchedule", "parse_cron", "CRON_FIELDS"]

#: ``(name, minimum, maximum)`` of each field, in order.
CRON_FIELDS: tuple[tuple[str, int, int], ...] = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 7),
)

_NUMBER = re.compile(r"[0-9]+")
#: How far :meth:`CronSchedule.next_after` looks ahead (covers Feb 29 across
#: a non-leap century year).
_HORIZON_DAYS = 366 * 9


@dataclass(frozen=True)
class CronSchedule:
    """A parsed cron expression. ``weekdays`` uses 0-6 (Sunday = 0)."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    days_restricted: bool
    weekdays_restricted: bool

    def _day_matches(self, day: datetime) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = (day.weekday() + 1) % 7 in self.weekdays  # Python: Monday = 0
        if self.days_restricted and self.weekdays_restricted:
            return dom or dow
        return dom and dow

    def matches(self, when: datetime) -> bool:
        """Whether the schedule fires at ``when``'s minute (naive datetimes are taken as UTC)."""
        when = _utc(when)
        return when.minute in self.minutes and when.hour in self.hours and self._day_matches(when)

    def next_after(self, when: datetime) -> datetime | None:
        """The first firing time strictly after ``when`` (an aware UTC
        datetime), or ``None`` if there is none in the next years."""
        start = _utc(when).replace(second=0, microsecond=0) + timedelta(minutes=1)
        day = start.replace(hour=0, minute=0)
        for _ in range(_HORIZON_DAYS):
            if self._day_matches(day):
                first_day = day.date() == start.date()
                for hour in sorted(self.hours):
                    if first_day and hour < start.hour:
                        continue
                    for minute in sorted(self.minutes):
                        if first_day and hour == start.hour and minute < start.minute:
                            continue
                        return day.replace(hour=hour, minute=minute)
            day += timedelta(days=1)
        return None


def _utc(when: datetime) -> datetime:
    if when.tzinfo is None:
        return when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc)


def _parse_field(text: str, name: str, low: int, high: int) -> frozenset[int]:
    def fail(problem: str) -> ValueError:
        return ValueError(f"invalid cron {name} field {text!r}: {problem}")

    def number(token: str) -> int:
        if not _NUMBER.fullmatch(token):
            if token.isalpha():
                raise fail(f"names such as {token!r} are not supported; use numbers ({low}-{high})")
            raise fail(f"{token!r} is not a number")
        value = int(token)
        if not low <= value <= high:
            raise fail(f"value {value} is out of range {low}-{high}")
        return value

    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise fail("empty list item")
        base, slash, step_text = item.partition("/")
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = number(first), number(last)
            if start > end:
                raise fail(f"range {base!r} is reversed (write {end}-{start})")
        else:
            start = end = number(base)
            if slash:
                raise fail(
                    f"a step needs '*' or a range before it (e.g. '*/{step_text}' or '{base}-{high}/{step_text}')"
                )
        step = 1
        if slash:
            if not _NUMBER.fullmatch(step_text):
                raise fail(f"step {step_text!r} is not a positive number")
            step = int(step_text)
            if step == 0:
                raise fail("step must be at least 1")
            if step > high - low:
                raise fail(f"step {step} is larger than the field's range {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def parse_cron(expression: object) -> CronSchedule:
    """Parse and validate a 5-field cron expression (see the module docstring).

    :raises ValueError: naming the offending field and the problem.
    """
    if not isinstance(expression, str):
        raise ValueError(f"cron expression must be a string, got {type(expression).__name__}")
    fields = expression.split()
    if not fields:
        raise ValueError("empty cron expression; expected 5 fields: minute hour day-of-month month day-of-week")
    if fields[0].startswith("@"):
        raise ValueError(f"cron macros such as {fields[0]!r} are not supported; write the 5 fields (e.g. '0 0 * * *')")
    if len(fields) != 5:
        raise ValueError(
            f"cron expression {expression.strip()!r} has {len(fields)} field(s); expected 5: "
            "minute hour day-of-month month day-of-week"
        )
    minutes, hours, days, months, weekdays = (
        _parse_field(text, name, low, high) for text, (name, low, high) in zip(fields, CRON_FIELDS, strict=True)
    )
    schedule = CronSchedule(
        expression=" ".join(fields),
        minutes=minutes,
        hours=hours,
        days=days,
        months=months,
        weekdays=frozenset(d % 7 for d in weekdays),
        days_restricted=not fields[2].startswith("*"),
        weekdays_restricted=not fields[4].startswith("*"),
    )
    if schedule.days_restricted and not schedule.weekdays_restricted:
        # e.g. "0 0 31 2 *": the day never occurs in the selected months.
        longest = max(calendar.monthrange(2000, m)[1] for m in months)  # 2000 is a leap year
        if min(days) > longest:
            month_list = ",".join(str(m) for m in sorted(months))
            raise ValueError(
                f"cron expression {schedule.expression!r} never fires: day-of-month {fields[2]!r} "
                f"does not occur in month(s) {month_list}"
            )
    return schedule
