"""Anomaly detection on synthetic series, and its events/alerts."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from agentops.orbit import Orbit
from agentops.orbit.anomaly import Settings, day_of, detect_series, settings_for

S = Settings()
START = date(2026, 1, 5)  # a Monday


def scan(values, s=S, daily=True):
    """Indexes flagged when the series is fed point by point."""
    history, days, found = [], [], []
    for i, v in enumerate(values):
        day = (START + timedelta(days=i)).toordinal() if daily else 0
        f = detect_series(history, days, v, day, s)
        if f:
            found.append((i, f.direction, f.method))
        history.append(v)
        days.append(day)
    return found


def noisy(n, base=1000.0, amp=0.02):
    return [base * (1 + amp * ((i * 7919) % 11 - 5) / 5) for i in range(n)]


def test_spike_and_drop_are_found():
    values = noisy(30)
    values[20] = 3000
    assert [(i, d) for i, d, _ in scan(values)] == [(20, "spike")]
    values = noisy(30)
    values[25] = 200
    assert [(i, d) for i, d, _ in scan(values)] == [(25, "drop")]


def test_flat_series_does_not_alarm_on_noise_but_on_a_jump():
    assert scan([100.0] * 20 + [100.5, 99.5, 101]) == []
    assert scan([100.0] * 10 + [150.0])[0][:2] == (10, "spike")


def test_short_series_never_alarms():
    assert scan([1.0, 1.0, 1.0, 1000.0]) == []


def test_direction_setting():
    up, down = noisy(20) + [5000.0], noisy(20) + [10.0]
    assert [d for _, d, _ in scan(up, Settings(direction="spike"))] == ["spike"]
    assert scan(down, Settings(direction="spike")) == []
    assert [d for _, d, _ in scan(down, Settings(direction="drop"))] == ["drop"]
    assert scan(up, Settings(direction="drop")) == []


def test_weekly_seasonal_series_monday_peak_is_normal_and_a_missing_peak_is_a_drop():
    values = [3000.0 if (START + timedelta(days=i)).weekday() == 0 else 1000.0 for i in range(10 * 7)]
    values = [v * (1 + 0.01 * ((i * 31) % 5 - 2)) for i, v in enumerate(values)]
    flagged = scan(values)
    # only the early Mondays, before there are min_points Mondays of history, may alarm
    assert all(i < 5 * 7 for i, _, _ in flagged)
    late = values[:]
    late[9 * 7] = 1000.0  # the 10th Monday does not peak
    assert (9 * 7, "drop", "seasonal") in scan(late)
    # and the same Monday peak in a series that never peaked before is a spike
    plain = [1000.0] * 63 + [3000.0]
    assert scan(plain)[-1][:2] == (63, "spike")


def test_settings_overrides(ws):
    from agentops.config import AnomalySettings, Config, OrbitSettings
    from agentops.settings import from_data, to_data

    orbit_settings = from_data(to_data(Config(orbit=OrbitSettings(anomaly=AnomalySettings(threshold=2.5),
                                   anomaly_overrides={"orders": AnomalySettings(window=7),
                                                      "orders.row_count": AnomalySettings(threshold=5),
                                                      "orders.raw.row_count": AnomalySettings(min_points=6)})))).orbit
    s = settings_for(orbit_settings, "orders", "raw", "row_count")
    assert (s.window, s.threshold, s.min_points) == (7, 5, 6)
    assert settings_for(orbit_settings, "other", None, "x").threshold == 2.5


def test_metric_series_writes_anomaly_event_and_alert(ws):
    with Orbit.open(ws) as orbit:
        days = [(START + timedelta(days=i)).isoformat() for i in range(9)]
        for d, v in zip(days, [100, 102, 98, 101, 99, 100, 103, 97]):
            assert not orbit.log({"kind": "metric", "pipeline": "orders", "dataset": "orders", "name": "row_count",
                                  "value": v, "ts": d}).derived
        r = orbit.log({"kind": "metric", "pipeline": "orders", "dataset": "orders", "name": "row_count", "value": 900,
                       "ts": days[-1]})
        assert r.derived[0]["kind"] == "anomaly"
        a = orbit.anomalies()[0]
        assert (a["metric"], a["value"], a["direction"]) == ("row_count", 900, "spike")
        assert a["expected"] == pytest.approx(100)
        assert orbit.events(kind="anomaly")[0]["zscore"] > 3
        # job figures are series too
        for i in range(6):
            orbit.log({"kind": "job", "pipeline": "orders", "task": "load", "rows_out": 1000 + i, "duration_s": 60})
        r = orbit.log({"kind": "job", "pipeline": "orders", "task": "load", "rows_out": 10, "duration_s": 61})
        assert [d["metric"] for d in r.derived if d["kind"] == "anomaly"] == ["rows_out"]


def test_one_outlier_does_not_hide_the_next_one():
    """Two anomalies a few points apart are both flagged (a mean and std would be inflated by the
    first for the next `window` points and miss the second)."""
    values = noisy(30)
    values[20], values[23] = 5000.0, 4000.0
    assert [(i, d) for i, d, _ in scan(values)] == [(20, "spike"), (23, "spike")]
    values = noisy(30)
    values[18], values[21] = 100.0, 5000.0
    assert [(i, d) for i, d, _ in scan(values)] == [(18, "drop"), (21, "spike")]
    # and in daily seasonal history: one Monday without its peak, then the next one without it
    weekly = [3000.0 if (START + timedelta(days=i)).weekday() == 0 else 1000.0 for i in range(12 * 7)]
    weekly[9 * 7] = weekly[10 * 7] = 1000.0
    flagged = [(i, d) for i, d, m in scan(weekly) if i >= 5 * 7]
    assert flagged == [(9 * 7, "drop"), (10 * 7, "drop")]


def test_values_at_the_float_limit_neither_overflow_nor_poison_the_series(ws):
    big = [1.7e308, -1.7e308, 1.7e308, -1.7e308, 1e308]
    scan(noisy(10) + big + noisy(10))  # no OverflowError
    with Orbit.open(ws) as orbit:
        for i, v in enumerate(noisy(6) + big):
            orbit.log({"kind": "metric", "pipeline": "p", "name": "m", "value": v, "ts": f"2026-01-{i + 1:02d}"})
        r = orbit.log({"kind": "metric", "pipeline": "p", "name": "m", "value": 1000, "ts": "2026-01-20"})
        assert r.seq is not None


def test_day_of():
    assert day_of("2026-01-05T10:00:00+00:00") % 7 == START.toordinal() % 7
    assert day_of("garbage") == 0


def test_job_durations_ignore_moves_under_a_second_but_not_longer_ones(ws):
    """Trivial stages take milliseconds; doubling that is scheduler noise, not an anomaly."""
    with Orbit.open(ws) as orbit:
        for i, d in enumerate([0.010, 0.011, 0.010, 0.012, 0.010, 0.011]):
            orbit.log({"kind": "job", "pipeline": "p", "task": "t", "run_id": f"r{i}", "duration_s": d})
        quiet = orbit.log({"kind": "job", "pipeline": "p", "task": "t", "run_id": "r-noise", "duration_s": 0.05})
        assert not [d for d in quiet.derived if d["kind"] == "anomaly"]
        loud = orbit.log({"kind": "job", "pipeline": "p", "task": "t", "run_id": "r-slow", "duration_s": 30.0})
        assert [d["metric"] for d in loud.derived if d["kind"] == "anomaly"] == ["duration_s"]
        assert settings_for(ws.config.orbit, "p", None, "duration_s").min_absolute_change == 1.0
        assert settings_for(ws.config.orbit, "p", None, "rows_out").min_absolute_change == 0.0
