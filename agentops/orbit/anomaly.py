"""Anomaly detection on numeric series: a robust rolling z-score with weekly seasonality.

A point is compared with the `window` points before it in its series (metric events keyed by
pipeline, dataset and name; job figures rows_out, bytes and duration_s keyed by pipeline and task):

- no alarm before `min_points` points of history;
- expected = their median; z = (value - median) / spread, the spread being 1.4826 x MAD (the
  median absolute deviation scaled to a normal distribution's standard deviation). Median and MAD
  ignore a few outliers in the window, so one bad day does not hide the next (a mean and standard
  deviation would be pulled by it);
- a move no larger than the series' *material change* never alarms: material = the larger of
  `min_relative_change` x |median| and the metric's absolute minimum (`min_duration_change_s` on a
  job's `duration_s`: a stage of a few milliseconds that takes twice as long is scheduler noise;
  `min_null_fraction_change` on a profile's `null_fraction:COL`; none on the others), and at least
  1 when the window and the value are whole numbers (a count, the max of a 1-10 quantity column:
  a move of one is not material);
- the spread is floored at material / `threshold`, so on a flat series (MAD 0) a move of exactly
  the material change would score z = threshold: z counts material changes (z = 30: ten of them),
  not 1e-9ths. A series flat at 0 with no absolute minimum scores threshold / min_relative_change
  (30 by default) for any move off 0;
- a point logged with `watch: false` (a growing key's min, mean and max: `data.quality`) joins its
  series without being scored;
- `direction` spike only alarms above, drop only below, both either way; alarm when |z| >= threshold.
- No squares or sums are computed, so no value a metric may hold (any finite float) overflows.

Seasonality: when the series is daily (one point per calendar day, by the event's `ts`) and its
history holds at least `min_points` earlier points on the same weekday (within the last
7 x window points), the point is compared with those same-weekday points instead (method
"seasonal"): a Monday peak is normal when earlier Mondays peaked too, and a Monday that fails to
peak is a drop. A young series (fewer same-weekday points) uses the plain rolling window.

Settings: `[orbit.anomaly]` defaults, overridden per `pipeline`, `pipeline.metric` or
`pipeline.dataset.metric` in `[orbit.anomaly_overrides]` (the most specific wins; an override only
changes the keys it sets).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Sequence


@dataclass(frozen=True)
class Settings:
    window: int = 14
    min_points: int = 4
    threshold: float = 3.0
    direction: str = "both"
    min_relative_change: float = 0.1
    min_absolute_change: float = 0.0  # the metric's absolute minimum move (see settings_for)

    @property
    def lookback(self) -> int:
        """Points of history kept per series (enough for `window` same-weekday points)."""
        return self.window * 7


@dataclass(frozen=True)
class Finding:
    value: float
    expected: float
    zscore: float
    direction: str  # spike | drop
    method: str     # rolling | seasonal


def day_of(ts: str) -> int:
    """The proleptic day ordinal of an ISO timestamp (its weekday is ordinal % 7)."""
    try:
        return date.fromisoformat(ts[:10]).toordinal()
    except ValueError:
        return 0


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    mid = n // 2
    return ordered[mid] if n % 2 else ordered[mid - 1] / 2 + ordered[mid] / 2  # halves first: no overflow


def _score(values: Sequence[float], value: float, s: Settings, method: str) -> Finding | None:
    center = _median(values)
    diff = value - center
    if diff == 0 or diff != diff:
        return None
    material = max(s.min_relative_change * abs(center), s.min_absolute_change)
    if material < 1 and value % 1 == 0 and all(x % 1 == 0 for x in values):
        material = 1.0  # whole numbers (counts, an integer column's max): a move of one is not material
    if abs(diff) <= material:
        return None
    if not material:  # flat at 0, no absolute minimum: the value itself is the only scale there is
        material = max(s.min_relative_change, 0.01) * abs(value)
    spread = max(1.4826 * _median([abs(x - center) for x in values]), material / s.threshold)
    if not spread:  # subnormal values: no scale to measure a move by
        return None
    z = diff / spread
    if z != z or abs(z) < s.threshold:  # NaN: inf / inf, only from values near the float limit
        return None
    direction = "spike" if z > 0 else "drop"
    if s.direction != "both" and s.direction != direction:
        return None
    z = max(min(z, 1e9), -1e9)
    return Finding(value, center, z, direction, method)


def detect_series(values: list[float], days: list[int], value: float, day: int, s: Settings) -> Finding | None:
    """Score `value` (on day ordinal `day`) against a history kept as two parallel lists (values,
    day ordinals), oldest first: the batch writer keeps each series this way."""
    n = len(values)
    if n < s.min_points:
        return None
    if n >= s.min_points * 7 and day and days[-1] < day:
        recent_days = days[-7:]
        if len(set(recent_days)) == len(recent_days) and recent_days[0]:
            weekday = day % 7
            lookback = s.lookback
            same = [v for v, d in zip(values[-lookback:], days[-lookback:]) if d % 7 == weekday][-s.window:]
            if len(same) >= s.min_points:
                return _score(same, value, s, "seasonal")
    return _score(values[-s.window:], value, s, "rolling")


def settings_for(orbit_settings, pipeline: str, dataset: str | None, name: str) -> Settings:
    """Resolve the settings of one series from `ws.config.orbit` (defaults + overrides; see
    `agentops.settings`: each override is a dict of the fields it sets)."""
    if orbit_settings is None:
        return Settings()
    base = orbit_settings.anomaly
    merged = {k: getattr(base, k) for k in ("window", "min_points", "threshold", "direction", "min_relative_change",
                                            "min_duration_change_s", "min_null_fraction_change")}
    overrides = orbit_settings.anomaly_overrides or {}
    keys = [pipeline, f"{pipeline}.{name}"]
    if dataset:
        keys.append(f"{pipeline}.{dataset}.{name}")
    for key in keys:
        merged.update(overrides.get(key) or {})  # an override holds only the fields it sets
    duration, nulls = merged.pop("min_duration_change_s"), merged.pop("min_null_fraction_change")
    floor = duration if name == "duration_s" else nulls if name.startswith("null_fraction:") else 0.0
    return Settings(**merged, min_absolute_change=floor)
