"""Backfill plans: partitions x stages, reprocess semantics against Orbit, queuing, speed."""

from __future__ import annotations

import json

import pytest

from agentops.errors import ValidationError
from agentops.pipelines import find_spec
from agentops.pipelines.backfill import plan_backfill
from tests.pipeline_helpers import add_examples, chain_spec, write_spec

STAGES = ["extract_orders", "wait_for_cdc", "extract_order_items", "clean_orders", "enrich_orders", "check_orders",
          "load_fact_orders", "publish_daily_revenue"]


def seed(ws, events):
    from agentops.orbit import Orbit

    with Orbit.open(ws) as orbit:
        for ev in events:
            orbit.log({"kind": "run", "pipeline": "orders_daily", **ev}, send_alerts=False)


@pytest.fixture
def seeded(ws):
    add_examples(ws)
    seed(ws, [{"run_id": "scheduled__2026-03-01", "task": t, "state": "succeeded", "logical_date": "2026-03-01"}
              for t in STAGES])
    seed(ws, [{"run_id": "scheduled__2026-03-02", "task": "extract_orders", "state": "succeeded",
               "logical_date": "2026-03-02T02:00:00+00:00"},
              {"run_id": "scheduled__2026-03-02", "task": "clean_orders", "state": "failed",
               "logical_date": "2026-03-02T02:00:00+00:00"}])
    return ws


def todo(bp):
    out = {}
    for t in bp["tasks"]:
        out.setdefault(t["partition"], []).append(t["task"])
    return out


def test_partitions_and_order(seeded):
    bp = plan_backfill(seeded, find_spec(seeded, "orders_daily"), "2026-02-27", "2026-03-04")
    assert bp["partitions"] == ["2026-02-27", "2026-02-28", "2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04"]
    assert bp["states_from"] == "orbit"
    plan = todo(bp)
    assert plan["2026-02-27"] == STAGES and "2026-03-01" not in plan


def test_reprocess_none_failed_completed(seeded):
    spec = find_spec(seeded, "orders_daily")
    none = todo(plan_backfill(seeded, spec, "2026-03-01", "2026-03-02", "none"))
    assert "2026-03-01" not in none
    assert "clean_orders" not in none["2026-03-02"] and "extract_orders" not in none["2026-03-02"]
    failed = todo(plan_backfill(seeded, spec, "2026-03-01", "2026-03-02", "failed"))
    assert "2026-03-01" not in failed
    assert failed["2026-03-02"] == [s for s in STAGES if s != "extract_orders"]
    completed = todo(plan_backfill(seeded, spec, "2026-03-01", "2026-03-02", "completed"))
    assert completed == {"2026-03-01": STAGES, "2026-03-02": STAGES}


def test_queue_is_idempotent_and_visible_in_orbit(seeded, cli):
    from agentops.orbit import Orbit

    r = cli("pipeline", "backfill", "orders_daily", "--start", "2026-03-01", "--end", "2026-03-03",
            "--reprocess", "failed", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["queued"]["runs"] == 2 and out["queued"]["tasks"] == 7 + 8 and out["queued"]["rejected"] == []
    with Orbit.open(seeded) as orbit:
        runs = orbit.runs(pipeline="orders_daily", run_type="backfill", limit=None)
    assert len(runs) == 2 + 15 and {r["state"] for r in runs} == {"queued"}
    again = json.loads(cli("pipeline", "backfill", "orders_daily", "--start", "2026-03-01", "--end", "2026-03-03",
                           "--reprocess", "failed", "--json").output)
    assert again["tasks"] == [] and again["skipped"].get("in flight") == 15
    # a queued backfill that fails is queued again as its next attempt
    seed(seeded, [{"run_id": "backfill__2026-03-03", "task": "extract_orders", "state": "running", "run_type": "backfill",
                   "logical_date": "2026-03-03"},
                  {"run_id": "backfill__2026-03-03", "task": "extract_orders", "state": "failed", "run_type": "backfill",
                   "logical_date": "2026-03-03"}])
    third = json.loads(cli("pipeline", "backfill", "orders_daily", "--start", "2026-03-03", "--end", "2026-03-03",
                           "--reprocess", "failed", "--json").output)
    assert [t["task"] for t in third["tasks"]] == ["extract_orders"]
    assert third["queued"]["written"] == 1 and third["queued"]["rejected"] == []
    with Orbit.open(seeded) as orbit:
        row = orbit.run("orders_daily", "backfill__2026-03-03", "extract_orders")
    assert row["state"] == "queued" and row["attempt"] == 2


def test_dry_run_text_and_errors(seeded, cli):
    r = cli("pipeline", "backfill", "orders_daily", "--start", "2026-03-01", "--end", "2026-03-02", "--dry-run")
    assert r.exit_code == 0 and "2026-03-01  nothing to do" in r.output and "dry run: nothing queued" in r.output
    r = cli("pipeline", "backfill", "orders_daily", "--start", "2026-03-05", "--end", "2026-03-01", "--dry-run")
    assert r.exit_code == 2 and r.output.startswith("Error: --end: 2026-03-01 is before --start 2026-03-05")
    r = cli("pipeline", "backfill", "clickstream", "--start", "2026-03-01", "--end", "2026-03-02", "--dry-run")
    assert r.exit_code == 4 and "no schedule" in r.output
    with pytest.raises(ValidationError, match="reprocess"):
        plan_backfill(seeded, find_spec(seeded, "orders_daily"), "2026-03-01", "2026-03-01", "all")


def test_hourly_partitions(ws):
    write_spec(ws, "hourly", chain_spec(3, "hourly", "15 */6 * * *"))
    bp = plan_backfill(ws, find_spec(ws, "hourly"), "2026-01-01", "2026-01-02")
    assert bp["partitions"][:2] == ["2026-01-01T00:15", "2026-01-01T06:15"] and len(bp["partitions"]) == 8


def test_365_days_50_stages_dry_run_lists_every_task(ws):
    """Scale, not speed (benchmarks/run.py measures that)."""
    write_spec(ws, "fifty", chain_spec(50, "fifty"))
    spec = find_spec(ws, "fifty")
    bp = plan_backfill(ws, spec, "2025-01-01", "2025-12-31")
    assert len(bp["partitions"]) == 365 and len(bp["tasks"]) == 365 * 50


def test_huge_range_is_refused_before_listing_and_the_calendar_edge_works(seeded, cli):
    r = cli("pipeline", "backfill", "orders_daily", "--start", "0001-01-01", "--end", "9999-12-31", "--dry-run")
    assert r.exit_code == 4 and len(r.output.splitlines()) == 1
    assert r.output.startswith("Error: the backfill 0001-01-01..9999-12-31 would plan 3,652,059 partitions")
    assert "over the limit of 100,000" in r.output and "narrow the range" in r.output
    # the last days of the calendar plan (no overflow stepping past 9999-12-31), so do the first
    r = cli("pipeline", "backfill", "orders_daily", "--start", "9999-12-30", "--end", "9999-12-31", "--dry-run",
            "--json")
    assert r.exit_code == 0 and json.loads(r.output)["partitions"] == ["9999-12-30", "9999-12-31"]
    bp = plan_backfill(seeded, find_spec(seeded, "orders_daily"), "0001-01-01", "0001-01-02")
    assert bp["partitions"] == ["0001-01-01", "0001-01-02"]


def test_partition_count_matches_the_listed_fire_times():
    from datetime import date, datetime, time as dtime

    from agentops.pipelines.schedule import Cron

    for expr in ("0 2 * * *", "15 */6 * * *", "0 0 29 2 *", "0 0 13 * 5", "*/20 3 1-10 * mon-fri", "@weekly"):
        cron = Cron.parse(expr)
        for start, end in ((date(2024, 2, 27), date(2024, 3, 2)), (date(1999, 12, 25), date(2003, 1, 7))):
            listed = list(cron.times(datetime.combine(start, dtime.min), datetime.combine(end, dtime.max)))
            assert cron.count(start, end) == len(listed), expr
    # 1,000 years: whole 400-year cycles counted once and multiplied
    leap_mondays = Cron.parse("0 0 29 2 1")
    start, end = date(1600, 3, 5), date(2601, 7, 1)
    brute = sum(leap_mondays.day_matches(date.fromordinal(o)) for o in range(start.toordinal(), end.toordinal() + 1))
    assert leap_mondays.count(start, end) == brute
