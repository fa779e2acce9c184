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


def test_a_flat_series_scores_in_material_changes_not_billions(ws):
    """Issue 14 follow-up 3: a flat series has MAD 0; the spread is floored at its material change
    (max(min_relative_change x |median|, the metric's absolute minimum)) / threshold, so z counts
    material changes (a move must exceed one to alarm)."""
    def z(values, s=S):
        history, days = values[:-1], [0] * (len(values) - 1)
        f = detect_series(history, days, values[-1], 0, s)
        return f.zscore if f else None

    assert z([100.0] * 10 + [111.0]) == pytest.approx(3.3)
    assert z([100.0] * 10 + [150.0]) == pytest.approx(15.0)
    assert z([100.0] * 10 + [110.0]) is None and z([100.0] * 10 + [90.5]) is None  # 10% is not material
    assert z([10.0, 9.0] * 5 + [11.0]) is None and z([10.0] * 10 + [8.0]) == pytest.approx(-6.0)  # whole numbers: 1
    nulls = settings_for(ws.config.orbit, "p", "d", "null_fraction:c")
    assert nulls.min_absolute_change == 0.01 and settings_for(ws.config.orbit, "p", "d", "mean:c").min_absolute_change == 0
    assert z([0.0] * 10 + [0.3], nulls) == pytest.approx(90.0)  # was 300,000,000
    assert z([0.0] * 10 + [0.005], nulls) is None                # one null in 200: under the material change
    # flat at 0 with no absolute minimum: the value is the scale, threshold / min_relative_change
    assert z([0.0] * 10 + [7.5]) == pytest.approx(30.0) and z([0.0] * 10 + [-1e-3]) == pytest.approx(-30.0)
    assert z([0.0] * 10 + [7.0]) == pytest.approx(21.0)  # whole numbers: the material change is 1
    # a noisy series still scores against its MAD
    assert abs(z(noisy(20) + [3000.0])) < 1000


def test_anomalies_of_one_run_are_one_alert_listing_them(ws):
    """Issue 14 follow-up 1: the anomalies one batch finds in one dataset and run (a profile) are one
    alert, worst first in the subject, each in the body; another dataset or run is another alert."""
    from agentops.orbit.events import MetricEvent

    def profile(run, day, rows, nulls, dataset="raw.orders"):
        return [MetricEvent(kind="metric", pipeline="orders", dataset=dataset, name=n, value=v, run_id=run,
                            ts=f"{day}T06:00:00+00:00")
                for n, v in (("row_count", rows), ("null_fraction:customer_id", nulls), ("distinct:order_id", rows))]

    with Orbit.open(ws) as orbit:
        for i in range(8):
            day = f"2026-01-{i + 1:02d}"
            orbit.log_many(profile(f"r{i}", day, 1000 + i % 3, 0.0) + profile(f"r{i}", day, 1000 + i % 3, 0.0, "other"))
        assert orbit.alerts() == []
        report = orbit.log_many(profile("r8", "2026-01-09", 100, 0.3) + profile("r8", "2026-01-09", 10, 0.0, "other"))
        assert report.anomalies == 5 and report.alerts == 2
        alerts = orbit.alerts()
        events = [e for e in orbit.events(kind="anomaly") if e["dataset"] == "raw.orders"]
    assert {e["run_id"] for e in events} == {"r8"}
    by_key = {a["key"]: a for a in alerts}
    assert set(by_key) == {"anomaly: orders.raw.orders run r8", "anomaly: orders.other run r8"}
    one = by_key["anomaly: orders.raw.orders run r8"]
    assert one["subject"] == "[orbit] anomaly: orders.raw.orders null_fraction:customer_id spike (0.3, expected 0) and 2 more"
    assert one["cause"] == "anomaly" and one["run_id"] == "r8"
    body = one["body"]
    assert body.index("null_fraction:customer_id = 0.3") < body.index("row_count = 100") and "distinct:order_id = 100" in body
    assert by_key["anomaly: orders.other run r8"]["subject"].endswith("drop (10, expected 1001) and 1 more")


@pytest.mark.parametrize("metric", ["row_count", "null_fraction:c", "mean:c", "duration_s"])
def test_scoring_any_series_never_crashes_and_never_flags_an_immaterial_move(ws, metric):
    """Property: for any finite history and value, scoring returns nothing or a finite |z| >= the
    threshold (at most 1e9), and never flags a move no larger than the material change."""
    from hypothesis import given, settings as hsettings, strategies as st

    s = settings_for(ws.config.orbit, "p", "d", metric)
    finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)

    @hsettings(max_examples=300, deadline=None)
    @given(st.lists(finite | st.sampled_from([0.0, 1.0, 100.0]), min_size=S.min_points, max_size=30), finite)
    def check(history, value):
        f = detect_series(history, [0] * len(history), value, 0, s)
        window = history[-s.window:]
        center = sorted(window)[len(window) // 2] if len(window) % 2 else None
        if f is None:
            return
        assert s.threshold <= abs(f.zscore) <= 1e9 and f.zscore == f.zscore
        if center is not None:
            whole = all(x % 1 == 0 for x in window) and value % 1 == 0
            material = max(s.min_relative_change * abs(center), s.min_absolute_change, 1.0 if whole else 0.0)
            assert abs(value - center) > material

    check()
