"""`sql:` stages on DuckDB (SPEC §12): inputs as relations under their own names, parameters bound,
a partitioned Parquet output and a warehouse table replaced only for the run's partition,
watermarks advanced on success, `backfill --run`, and a runner SIGKILLed at random instants."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from agentops.orbit import Orbit
from agentops.pipelines import find_spec
from agentops.pipelines.runner import execute, plan_run
from conftest import run_agentops
from pipeline_helpers import write_spec

SPEC = """\
name: shop
owner: data-engineer
schedule: '@daily'
sources:
  - name: orders_api
    kind: api
    format: json
    incremental: {strategy: watermark, column: updated_at}
    location: {path: "input/orders/*.json", format: ndjson}
  - name: customers_csv
    kind: file
    format: csv
    location: {path: input/customers.csv}
stages:
  - name: clean
    kind: transform
    inputs: [orders_api]
    outputs: [staging.orders]
    sql: >
      SELECT order_id, customer_id, CAST(amount AS DOUBLE) AS amount, CAST(order_date AS DATE) AS order_date
      FROM orders_api WHERE CAST(order_date AS DATE) = CAST($partition AS DATE)
  - name: enrich
    kind: transform
    inputs: [staging.orders, customers_csv]
    outputs: [fact.orders]
    sql: >
      SELECT o.order_id, o.amount, o.order_date, c.country FROM staging.orders o
      JOIN customers_csv c USING (customer_id) ORDER BY o.order_id
  - name: daily
    kind: load
    inputs: [fact.orders]
    outputs: [mart.daily]
    sql: SELECT order_date, count(*) AS orders, sum(amount) AS revenue, $start AS day_start, $end AS day_end
         FROM fact.orders GROUP BY order_date
datasets:
  fact.orders: {location: {path: "out/fact/order_date={partition}/*.parquet"}}
destinations:
  - name: mart.daily
    format: table
    partitioning: {by: time, column: order_date, granularity: day}
quality:
  - {dataset: fact.orders, check: not_null, column: order_id}
"""


def make_data(root: Path, days: list[str], per_day: int = 50, seed: int = 7) -> None:
    rnd = random.Random(seed)
    (root / "input" / "orders").mkdir(parents=True, exist_ok=True)
    with open(root / "input" / "customers.csv", "w") as f:
        f.write("customer_id,country\n" + "".join(f"{i},{rnd.choice(['DE', 'FR', 'US'])}\n" for i in range(20)))
    n = 0
    for day in days:
        with open(root / "input" / "orders" / f"{day}.json", "w") as f:
            for _ in range(per_day):
                n += 1
                f.write(json.dumps({"order_id": n, "customer_id": rnd.randrange(20), "amount": rnd.randrange(1, 500),
                                    "order_date": day, "updated_at": f"{day}T{rnd.randrange(24):02d}:00:00"}) + "\n")


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((root / "out").rglob("*")) if p.is_file()}


def _warehouse(ws, sql):
    con = duckdb.connect(str(ws.data_dir / "warehouse.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


HAS_QUALITY = importlib.util.find_spec("agentops.data.quality") is not None  # the data package's checks
def _successes(ws) -> int:
    import sqlite3

    if not ws.db_path.exists():
        return 0
    conn = sqlite3.connect(f"file:{ws.db_path}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute("SELECT count(*) FROM runs WHERE pipeline = 'shop' AND task != '' "
                            "AND state = 'succeeded'").fetchone()[0]
    except sqlite3.Error:
        return 0
    finally:
        conn.close()


DAYS = ["2026-03-01", "2026-03-02", "2026-03-03"]


def test_sql_stages_materialise_partitions(ws):
    write_spec(ws, "shop", SPEC)
    make_data(ws.root, DAYS)
    spec = find_spec(ws, "shop")
    result = execute(ws, plan_run(ws, spec, partitions=["2026-03-02"]))
    assert result.ok, [t.as_dict() for t in result.tasks]
    files = sorted(p.relative_to(ws.root).as_posix() for p in (ws.root / "out").rglob("*.parquet"))
    assert files == ["out/fact/order_date=2026-03-02/part-0.parquet"]
    assert duckdb.connect().execute(f"SELECT count(*) FROM '{ws.root}/out/fact/*/*.parquet'").fetchone() == (50,)
    assert _warehouse(ws, "SELECT order_date::VARCHAR, orders, day_start, day_end FROM mart.daily") == [
        ("2026-03-02", 50, "2026-03-02", "2026-03-03")]
    # the intermediate table holds the partition, tagged
    assert _warehouse(ws, "SELECT agentops_partition, count(*) FROM staging.orders GROUP BY 1") == [("2026-03-02", 50)]
    with Orbit.open(ws) as orbit:
        jobs = {j["task"]: j for j in orbit.jobs(pipeline="shop")}
        checks = orbit.checks(pipeline="shop")
        marks = orbit.events(kind="watermark", pipeline="shop")
    assert jobs["clean"]["rows_in"] == 150 and jobs["clean"]["rows_out"] == 50
    assert jobs["clean"]["bytes"] is None  # loaded straight from the query: no file written
    assert jobs["enrich"]["rows_in"] == 70 and jobs["enrich"]["rows_out"] == 50 and jobs["enrich"]["bytes"] > 0
    if HAS_QUALITY:
        assert [(c["dataset"], c["check"], c["passed"]) for c in checks] == [("fact.orders", "not_null:order_id", 1)]
    assert len(marks) == 1 and marks[0]["source"] == "orders_api" and marks[0]["value"].startswith("2026-03-03")
    # another day adds its partition; a re-run of the first replaces only its own
    assert execute(ws, plan_run(ws, spec, partitions=["2026-03-01"])).ok
    before = _digest(ws.root)
    assert execute(ws, plan_run(ws, spec, partitions=["2026-03-02"], rerun=True)).ok
    assert _digest(ws.root) == before
    assert _warehouse(ws, "SELECT order_date::VARCHAR, orders FROM mart.daily ORDER BY 1") == [
        ("2026-03-01", 50), ("2026-03-02", 50)]
    assert _warehouse(ws, "SELECT count(*) FROM staging.orders") == [(100,)]
    # rows in: as the run loaded the intermediate partition above (not counted again), or counted when
    # the stage runs alone
    result = execute(ws, plan_run(ws, spec, partitions=["2026-03-01"], stages=["enrich"], rerun=True))
    assert [(t.task, t.rows_in) for t in result.tasks] == [("enrich", 70)]


SELF = """\
name: tally
owner: data-engineer
schedule: '@daily'
sources:
  - {name: src, kind: file, format: csv, location: {path: input/src.csv}}
external: [staging.tally_view]
stages:
  - name: tally
    kind: transform
    inputs: [%s]
    outputs: [staging.tally]
    sql: SELECT $partition AS day, (SELECT count(*) FROM src) AS n, (SELECT count(*) FROM %s) AS before
"""


@pytest.mark.parametrize("reads", ["by_name", "through_a_view"])
def test_a_query_reading_the_table_it_replaces_sees_it_as_it_was(ws, reads):
    # the partition's rows are replaced (DELETE + INSERT in one transaction) after the query ran: a
    # query naming the table it writes, or reading it through a warehouse view, sees the old rows
    (ws.root / "input").mkdir()
    (ws.root / "input/src.csv").write_text("x\n1\n2\n")
    con = duckdb.connect(str(ws.data_dir / "warehouse.duckdb"))
    con.execute("CREATE SCHEMA staging; CREATE TABLE staging.tally (day VARCHAR, n BIGINT, before BIGINT, "
                "agentops_partition VARCHAR); CREATE VIEW staging.tally_view AS SELECT * FROM staging.tally "
                "WHERE agentops_partition = '2026-03-01'")
    con.close()
    if reads == "by_name":
        text = SELF % ("src", "agentops_warehouse.staging.tally WHERE agentops_partition = $partition")
    else:
        text = SELF % ("src, staging.tally_view", "staging.tally_view")
    write_spec(ws, "tally", text)
    spec = find_spec(ws, "tally")
    for _ in range(3):
        result = execute(ws, plan_run(ws, spec, partitions=["2026-03-01"], rerun=True))
        assert result.ok, [t.as_dict() for t in result.tasks]
    assert _warehouse(ws, "SELECT day, n, before, agentops_partition FROM staging.tally") == [
        ("2026-03-01", 2, 1, "2026-03-01")]


def test_a_bad_query_fails_at_once_and_a_check_failure_stops_downstream(ws):
    write_spec(ws, "shop", SPEC.replace("CAST(amount AS DOUBLE)", "CAST(amountt AS DOUBLE)"))
    make_data(ws.root, DAYS)
    result = execute(ws, plan_run(ws, find_spec(ws, "shop"), partitions=["2026-03-01"]))
    by = {t.task: t for t in result.tasks}
    assert by["clean"].state == "failed" and by["clean"].attempts == 1 and "amountt" in by["clean"].error
    assert by["enrich"].state == "upstream_failed" and by["daily"].state == "upstream_failed"
    assert not (ws.root / "out").exists()
    # an error-severity check failing on enrich's output stops daily
    if not HAS_QUALITY:
        return
    write_spec(ws, "shop", SPEC.replace("check: not_null, column: order_id", "check: range, column: amount, max: 10"))
    result = execute(ws, plan_run(ws, find_spec(ws, "shop"), partitions=["2026-03-02"]))
    by = {t.task: t for t in result.tasks}
    assert by["enrich"].state == "failed" and "range:amount" in by["enrich"].error
    assert by["daily"].state == "upstream_failed"


def test_backfill_run_executes_the_planned_partitions(ws):
    write_spec(ws, "shop", SPEC)
    make_data(ws.root, DAYS)
    r = run_agentops("pipeline", "backfill", "shop", "--start", DAYS[0], "--end", DAYS[-1], "--run", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [x["state"] for x in out["runs"]] == ["succeeded"] * 3
    assert _warehouse(ws, "SELECT count(*) FROM mart.daily") == [(3,)]
    with Orbit.open(ws) as orbit:
        runs = orbit.runs(pipeline="shop", tasks=False, limit=None)
    assert {(x["run_id"], x["run_type"], x["state"]) for x in runs} == {
        (f"backfill__{d}", "backfill", "succeeded") for d in DAYS}
    # again: nothing to do; --reprocess completed runs all again
    r = run_agentops("pipeline", "backfill", "shop", "--start", DAYS[0], "--end", DAYS[-1], "--run", "--json")
    assert r.returncode == 0 and [(t["partition"], t["task"], t["state"], t["error"])
                                  for t in json.loads(r.stdout)["tasks"]] == [
        (d, t, "skipped", "nothing to do") for d in DAYS
        for t in ("clean", "enrich", "daily")]
    r = run_agentops("pipeline", "backfill", "shop", "--start", DAYS[0], "--end", DAYS[0], "--run",
                     "--reprocess", "completed", "--json")
    assert r.returncode == 0 and [t["state"] for t in json.loads(r.stdout)["tasks"]] == ["succeeded"] * 3


@pytest.mark.stress
def test_sigkill_at_random_instants_then_restart_gives_identical_outputs(ws, tmp_path):
    days = [f"2026-03-{d:02d}" for d in range(1, 11)]
    # the reference: an uninterrupted backfill in another workspace
    ref = tmp_path / "ref"
    ref_env = {**os.environ, "AGENTOPS_WORKSPACE": str(ref)}
    subprocess.run([sys.executable, "-m", "agentops", "init", str(ref)], env=ref_env, check=True, capture_output=True)
    for root in (ref, ws.root):
        (root / ".agent/data/pipelines").mkdir(parents=True, exist_ok=True)
        (root / ".agent/data/pipelines/shop.yaml").write_text(SPEC)
        make_data(root, days)
    cmd = [sys.executable, "-m", "agentops", "pipeline", "backfill", "shop", "--start", days[0], "--end", days[-1],
           "--run", "--max-parallel", "2"]
    done = subprocess.run(cmd, env=ref_env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    expected = _digest(ref)
    assert len(expected) == 10
    env = {**os.environ, "AGENTOPS_WORKSPACE": str(ws.root)}
    rnd = random.Random(11)
    progress = []
    for i in range(5):
        before = _successes(ws)
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while _successes(ws) <= before and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)  # it is running: its first task succeeded
        time.sleep(rnd.uniform(0, 0.4))  # then a random instant
        p.send_signal(signal.SIGKILL)
        p.wait()
        progress.append(_successes(ws))
    assert any(0 < n < 30 for n in progress), progress  # killed with work in hand
    final = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr
    assert _digest(ws.root) == expected
    assert _warehouse(ws, "SELECT count(*), sum(orders) FROM mart.daily") == [(10, 500)]
    for table in ("staging.orders", "mart.daily"):  # the warehouse tables hold what the uninterrupted run's do
        assert _warehouse(ws, f"SELECT * FROM {table} ORDER BY ALL") == _warehouse(
            type(ws)(ref), f"SELECT * FROM {table} ORDER BY ALL")
    with Orbit.open(ws) as orbit:
        events = orbit.events(kind="run", pipeline="shop", limit=None)
    wins = [(e["run_id"], e.get("task")) for e in events if e["state"] == "succeeded" and e.get("task")]
    assert len(wins) == len(set(wins)) == 30  # one success per task per partition
    assert not any((ws.run_dir / "staging").iterdir())


VERIFY = """\
name: verified
owner: data-engineer
schedule: '@daily'
sources:
  - {name: src, kind: file, format: csv, location: {path: input/src.csv}}
stages:
  - {name: make, kind: transform, inputs: [src], outputs: [staging.made], sql: "SELECT x FROM src"}
  - {name: verify, kind: quality, inputs: [staging.made]}
  - {name: publish, kind: load, inputs: [staging.made], outputs: [mart.made], depends_on: [verify],
     sql: "SELECT x FROM staging.made"}
quality:
  - {dataset: staging.made, check: not_null, column: x}
"""


@pytest.mark.skipif(not HAS_QUALITY, reason="the data package's checks")
def test_a_quality_stage_does_not_measure_again_what_passed_its_checks_in_the_run(ws):
    # make's output is checked right after it; verify (a quality stage on it) reuses that in the same
    # run instead of measuring it again (its metrics would be recorded twice), and runs them itself when
    # make ran in another run
    (ws.root / "input").mkdir()
    (ws.root / "input/src.csv").write_text("x\n1\n2\n")
    write_spec(ws, "verified", VERIFY)
    spec = find_spec(ws, "verified")
    result = execute(ws, plan_run(ws, spec, partitions=["2026-03-01"]))
    assert result.ok, [t.as_dict() for t in result.tasks]
    with Orbit.open(ws) as orbit:
        assert len(orbit.events(kind="check", pipeline="verified", limit=None)) == 1
    result = execute(ws, plan_run(ws, spec, partitions=["2026-03-01"], stages=["verify"], rerun=True))
    assert result.ok
    with Orbit.open(ws) as orbit:
        assert len(orbit.events(kind="check", pipeline="verified", limit=None)) == 2
    # a failing check still stops what depends on it, from the quality stage run alone
    (ws.root / "input/src.csv").write_text("x\n1\n\n")
    assert not execute(ws, plan_run(ws, spec, partitions=["2026-03-02"], stages=["make"])).ok
    by = {t.task: t.state for t in execute(ws, plan_run(ws, spec, partitions=["2026-03-02"],
                                                         stages=["verify", "publish"])).tasks}
    assert by == {"verify": "failed", "publish": "upstream_failed"}
