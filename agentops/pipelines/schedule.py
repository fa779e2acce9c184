"""Cron schedules (five fields, or @hourly/@daily/@weekly/@monthly/@yearly): validate and enumerate.

A tiny parser of our own (no croniter dependency): a backfill only needs "every fire time in
[start, end)", which is fast when computed a day at a time from the hour and minute sets.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Iterator

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = {m: i + 1 for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())}
_DAYS = {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())}
_FIELDS = (("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day of month", 1, 31, {}),
           ("month", 1, 12, _MONTHS), ("day of week", 0, 7, _DAYS))


_CYCLE_DAYS = 146_097  # 400 Gregorian years: a whole number of weeks, so the calendar repeats


class CronError(ValueError):
    pass


def _value(text: str, lo: int, hi: int, names: dict, what: str) -> int:
    t = text.lower()
    if t in names:
        return names[t]
    if not t.isdigit():
        raise CronError(f"{what}: '{text}' is not a number")
    v = int(t)
    if not lo <= v <= hi:
        raise CronError(f"{what}: {v} is outside {lo}-{hi}")
    return v


def _field(text: str, lo: int, hi: int, names: dict, what: str) -> tuple[frozenset[int], bool]:
    """The set of values a field allows, and whether it was `*` (unrestricted)."""
    values: set[int] = set()
    star = False
    for part in text.split(","):
        if not part:
            raise CronError(f"{what}: empty list item in '{text}'")
        rng, _, step_s = part.partition("/")
        step = 1
        if step_s:
            if not step_s.isdigit() or int(step_s) == 0:
                raise CronError(f"{what}: step '{step_s}' must be a positive number")
            step = int(step_s)
        if rng == "*":
            a, b = lo, hi
            star = star or not step_s
        elif "-" in rng:
            a_s, _, b_s = rng.partition("-")
            a, b = _value(a_s, lo, hi, names, what), _value(b_s, lo, hi, names, what)
            if a > b:
                raise CronError(f"{what}: range '{rng}' runs backwards")
        else:
            a = _value(rng, lo, hi, names, what)
            b = hi if step_s else a
        values.update(range(a, b + 1, step))
    return frozenset(values), star


@dataclass(frozen=True)
class Cron:
    expr: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    dom_star: bool
    dow_star: bool

    @classmethod
    def parse(cls, expr: str) -> "Cron":
        text = ALIASES.get(expr.strip().lower(), expr.strip())
        parts = text.split()
        if len(parts) != 5:
            raise CronError(f"'{expr}' needs 5 fields (minute hour day-of-month month day-of-week) "
                            f"or one of {', '.join(sorted(ALIASES))}")
        sets = [_field(p, lo, hi, names, what) for p, (what, lo, hi, names) in zip(parts, _FIELDS)]
        weekdays = frozenset(d % 7 for d in sets[4][0])
        return cls(expr, tuple(sorted(sets[0][0])), tuple(sorted(sets[1][0])), sets[2][0], sets[3][0],
                   weekdays, sets[2][1], sets[4][1])

    @property
    def daily_or_coarser(self) -> bool:
        """At most one fire a day: partitions are named by date alone."""
        return len(self.minutes) == 1 and len(self.hours) == 1

    def day_matches(self, d: date) -> bool:
        if d.month not in self.months:
            return False
        dom = d.day in self.days
        dow = (d.isoweekday() % 7) in self.weekdays
        if self.dom_star or self.dow_star:  # cron: when both are restricted, either matches
            return dom and dow
        return dom or dow

    def times(self, start: datetime, end: datetime) -> Iterator[datetime]:
        """Every fire time t with start <= t <= end (naive datetimes, read as UTC)."""
        for o in range(start.date().toordinal(), end.date().toordinal() + 1):  # ordinals: no overflow at 9999-12-31
            day = date.fromordinal(o)
            if self.day_matches(day):
                base = datetime(day.year, day.month, day.day)
                for h in self.hours:
                    for m in self.minutes:
                        t = base.replace(hour=h, minute=m)
                        if start <= t <= end:
                            yield t

    def count(self, start: date, end: date) -> int:
        """How many fire times the whole days start..end hold, without listing them: the calendar
        (month days and weekdays) repeats every 400 years, so a long range costs one cycle at most."""
        def matching_days(first: int, last: int) -> int:
            return sum(1 for o in range(first, last + 1) if self.day_matches(date.fromordinal(o)))

        first, last = start.toordinal(), end.toordinal()
        cycles, rest = divmod(last - first + 1, _CYCLE_DAYS)
        days = cycles * matching_days(first, first + _CYCLE_DAYS - 1) if cycles else 0
        days += matching_days(last - rest + 1, last)
        return days * len(self.hours) * len(self.minutes)


def partition_key(cron: Cron, t: datetime) -> str:
    return t.date().isoformat() if cron.daily_or_coarser else t.strftime("%Y-%m-%dT%H:%M")


def normalize_logical_date(cron: Cron | None, value: str) -> str:
    """An Orbit `logical_date` ("2026-11-25", "2026-11-25T02:00:00+00:00") as a partition key."""
    v = str(value).strip().replace(" ", "T")
    if cron is None or cron.daily_or_coarser or len(v) < 16:
        return v[:10]
    return v[:16]
