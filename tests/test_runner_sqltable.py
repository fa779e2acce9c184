"""`sql:` stages whose output is a table on a SQLite or PostgreSQL connection (issue 15 point 1): the
SELECT runs in that database in its dialect, the result replaces the run's partition (or the whole
table) in one transaction of that database, the parameters are the driver's, the checks run on the
table after the stage, and a spec whose such stage reads anything else is refused when it loads.
SQLite on a real file; PostgreSQL on a throwaway cluster (test_data_postgres's fixture)."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest
from hypothesis import given, settings, strategies as st

from agentops.orbit import Orbit
from agentops.pipelines import find_spec
from agentops.pipelines.runner import execute, plan_run
from agentops.workspace import Workspace, init_workspace
from conftest import run_agentops
from pipeline_helpers import write_spec
from tests.test_data_postgres import DSN_ENV, pg_dsn  # noqa: F401 - the module's cluster fixture

HOSTILE = "x'); DROP TABLE orders; --"

SPEC = """\
name: shop
owner: data-engineer
schedule: '@daily'
sources:
  - {name: orders, kind: database, format: table, location: {connection: app, table: orders}}
stages:
  - name: daily
    kind: load
    inputs: [orders]
    outputs: [mart.daily]
    retries: 0
    timeout: TIMEOUT
    sql: >
      SELECT order_date, count(*) AS orders, sum(amount) AS revenue, $start AS day_start, $end AS day_end
      FROM orders WHERE order_date >= $start AND order_date < $end GROUP BY order_date
  - name: labels
    kind: load
    inputs: [orders]
    outputs: [mart.labels]
    retries: 0
    sql: SELECT $partition AS label, $start AS s, '$partition' AS literal, 'LIKE 100%' AS pct,
         count(*) AS n FROM orders
datasets:
  mart.daily: {location: {connection: app, table: DAILY}}
  mart.labels: {location: {connection: app, table: LABELS}}
destinations:
  - name: mart.daily
    format: table
    partitioning: {by: time, column: order_date, granularity: day}
quality:
  - {dataset: mart.daily, check: not_null, column: order_date}
  - {dataset: mart.daily, check: range, column: revenue, min: 0}
"""


def _spec(daily="daily", labels="labels", timeout="1h") -> str:
    return SPEC.replace("DAILY", daily).replace("LABELS", labels).replace("TIMEOUT", timeout)


def _job(ws, task: str) -> dict:
    with Orbit.open(ws) as orbit:
        rows = orbit.db.conn.execute("SELECT data FROM events WHERE kind = 'job' AND json_extract(data, '$.task') = ? "
                                     "ORDER BY seq", (task,)).fetchall()
    return json.loads(rows[-1][0])


def _checks(ws, dataset: str) -> dict:
    with Orbit.open(ws) as orbit:
        rows = orbit.db.conn.execute('SELECT "check", status FROM checks WHERE dataset = ?', (dataset,)).fetchall()
    return dict(rows)


def _run(ws, partition: str, stages=None):
    return execute(ws, plan_run(ws, find_spec(ws, "shop"), partitions=[partition], stages=stages, rerun=True),
                   sleep=lambda s: None)


# --- SQLite ---------------------------------------------------------------------------------------------
@pytest.fixture
def lite(ws):
    db = ws.root / "app.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE orders (order_id INTEGER, order_date TEXT, amount REAL)")
    conn.executemany("INSERT INTO orders VALUES (?, ?, ?)",
                     [(i, f"2026-03-0{1 + i % 3}", float(i)) for i in range(30)])
    conn.commit()
    conn.close()
    ws.config_path.write_text(ws.config_path.read_text() + '\n[connections.app]\nkind = "sqlite"\npath = "app.db"\n')
    ws.refresh()
    write_spec(ws, "shop", _spec())
    return db


def _rows(db, sql: str) -> list:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_sqlite_output_replaces_only_the_runs_partition(ws, lite):
    for day in ("2026-03-01", "2026-03-02"):
        result = _run(ws, day, ["daily"])
        assert result.ok, [t.as_dict() for t in result.tasks]
    assert _rows(lite, "SELECT order_date, orders, revenue, day_start, day_end FROM daily ORDER BY 1") == [
        ("2026-03-01", 10, 135.0, "2026-03-01", "2026-03-02"), ("2026-03-02", 10, 145.0, "2026-03-02", "2026-03-03")]
    job = _job(ws, "daily")
    assert job["rows_in"] == 30 and job["rows_out"] == 1
    assert _checks(ws, "mart.daily") == {"not_null:order_date": "passed", "range:revenue": "passed"}
    # new data for 03-01 only; 03-01 rerun: its row is replaced, 03-02's stays as it was
    conn = sqlite3.connect(lite)
    conn.execute("INSERT INTO orders VALUES (100, '2026-03-01', 1000.0)")
    conn.execute("UPDATE orders SET amount = amount + 1 WHERE order_date = '2026-03-02'")
    conn.commit()
    conn.close()
    assert _run(ws, "2026-03-01", ["daily"]).ok
    assert _rows(lite, "SELECT order_date, orders, revenue FROM daily ORDER BY 1") == [
        ("2026-03-01", 11, 1135.0), ("2026-03-02", 10, 145.0)]


def test_sqlite_a_failing_stage_leaves_the_table_as_it_was(ws, lite):
    assert _run(ws, "2026-03-01", ["daily"]).ok
    # a table someone made with a constraint: the insert fails after the partition's delete
    conn = sqlite3.connect(lite)
    conn.execute("CREATE TABLE daily2 (order_date TEXT, orders INTEGER, revenue REAL CHECK (revenue < 500), "
                 "day_start TEXT, day_end TEXT)")
    conn.execute("INSERT INTO daily2 VALUES ('2026-03-01', 1, 1.0, 'a', 'b'), ('2026-03-02', 2, 2.0, 'c', 'd')")
    conn.execute("UPDATE orders SET amount = 999 WHERE order_id = 0")
    conn.commit()
    conn.close()
    write_spec(ws, "shop", _spec(daily="daily2"))
    result = _run(ws, "2026-03-01", ["daily"])
    (task,) = result.tasks
    assert task.state == "failed" and task.error.startswith("sql: CHECK constraint failed"), task.error
    assert _rows(lite, "SELECT * FROM daily2 ORDER BY 1") == [("2026-03-01", 1, 1.0, "a", "b"),
                                                              ("2026-03-02", 2, 2.0, "c", "d")]
    # a SELECT that does not run: failed at once, the table untouched
    write_spec(ws, "shop", _spec().replace("sum(amount)", "sum(no_such_column)"))
    before = _rows(lite, "SELECT * FROM daily")
    (task,) = _run(ws, "2026-03-01", ["daily"]).tasks
    assert task.state == "failed" and task.attempts == 1 and "no_such_column" in task.error
    assert _rows(lite, "SELECT * FROM daily") == before
    # a partitioned output whose SELECT lacks the partition column is refused, not emptied
    write_spec(ws, "shop", _spec().replace("SELECT order_date, count(*)", "SELECT count(*)")
               .replace("GROUP BY order_date", ""))
    (task,) = _run(ws, "2026-03-01", ["daily"]).tasks
    assert task.state == "failed" and "partitioned by order_date" in task.error
    assert _rows(lite, "SELECT * FROM daily") == before


def test_sqlite_parameters_are_data(ws, lite):
    result = _run(ws, HOSTILE, ["labels"])
    assert result.ok, [t.as_dict() for t in result.tasks]
    assert _rows(lite, "SELECT label, s, literal, pct, n FROM labels") == [
        (HOSTILE, HOSTILE, "$partition", "LIKE 100%", 30)]
    assert _rows(lite, "SELECT count(*) FROM orders") == [(30,)]
    # an unpartitioned output is replaced whole, every run
    assert _run(ws, "2026-03-01", ["labels"]).ok
    assert _rows(lite, "SELECT label FROM labels") == [("2026-03-01",)]


def test_sqlite_output_in_openlineage(ws, lite):
    ws.config_path.write_text(ws.config_path.read_text() + '\n[orbit.openlineage]\ntransport = "file"\n'
                              'path = "lineage.jsonl"\n')
    ws.refresh()
    assert _run(ws, "2026-03-01", ["daily"]).ok
    events = [json.loads(x) for x in (ws.root / "lineage.jsonl").read_text().splitlines()]
    done = next(e for e in events if e["job"]["name"] == "shop.daily" and e["eventType"] == "COMPLETE")
    (out,) = done["outputs"]
    assert (out["namespace"], out["name"]) == ("sqlite:app", "daily")
    assert {f["name"]: f["type"] for f in out["facets"]["schema"]["fields"]} == {
        "order_date": "TEXT", "orders": "INTEGER", "revenue": "REAL", "day_start": "TEXT", "day_end": "TEXT"}
    assert out["outputFacets"]["outputStatistics"]["rowCount"] == 1
    assert [(i["namespace"], i["name"]) for i in done["inputs"]] == [("sqlite:app", "orders")]
    assert "dialect" not in done["job"]["facets"]["sql"]  # SQLite's, not DuckDB's


def test_a_table_output_stage_reading_elsewhere_is_refused_at_load(ws, lite):
    text = _spec().replace("inputs: [orders]\n    outputs: [mart.labels]", "inputs: [orders, files]\n    "
                           "outputs: [mart.labels]").replace(
        "stages:\n", "  - {name: files, kind: file, format: csv, location: {path: in/x.csv}}\nstages:\n")
    write_spec(ws, "shop", text)
    r = run_agentops("pipeline", "check", "shop")
    assert r.returncode == 1
    (line,) = [x for x in r.stdout.splitlines() if "stages[1].inputs[1]" in x]
    assert re.match(r"^\.agent/data/pipelines/shop.yaml:\d+: stages\[1\].inputs\[1\]: ", line), line
    assert ("stages[1].inputs[1]: stage 'labels' writes mart.labels to sqlite table app:labels, so its sql: runs "
            "in that database and reads only its tables; input 'files' is in/x.csv: give 'files' a location "
            "{connection: app, table: ...}, or write mart.labels to DuckDB or files") in line
    # the runner refuses it too (a spec run without checking it first)
    (task,) = _run(ws, "2026-03-01", ["labels"]).tasks
    assert task.state == "failed" and "input 'files' is in/x.csv" in task.error


CMD_SCRIPT = """\
import json, os, sys
import duckdb
out = json.loads(os.environ["AGENTOPS_DATASETS"])["outputs"]["mart.cmd"]
con = duckdb.connect()
con.execute("CREATE TABLE t AS SELECT CAST(? AS DATE) AS order_date, CAST(? AS BIGINT) AS n, "
            "CAST(1.25 AS DECIMAL(10,2)) AS amount, ? AS note, [1, 2] AS tags",
            [os.environ["AGENTOPS_PARTITION"], int(sys.argv[1]), "it's; DROP TABLE orders; --"])
con.execute("COPY t TO '" + out["path"].replace("'", "''") + "' (FORMAT parquet)")
"""


def _cmd_spec(ws, n: int, table: str) -> None:
    import sys

    script = ws.root / "cmd.py"
    script.write_text(CMD_SCRIPT)
    write_spec(ws, "shop", _spec().replace("stages:\n", "stages:\n  - {name: cmd, kind: load, outputs: [mart.cmd], "
                                           f"retries: 0, command: [{sys.executable}, {script}, '{n}']}}\n")
               .replace("datasets:\n", f"datasets:\n  mart.cmd: {{location: {{connection: app, table: {table}}}}}\n")
               .replace("destinations:\n", "destinations:\n  - {name: mart.cmd, format: table, partitioning: "
                                            "{by: time, column: order_date}}\n"))


def test_sqlite_command_stage_output_is_loaded_into_its_table(ws, lite):
    _cmd_spec(ws, 1, "cmd")
    assert _run(ws, "2026-03-01", ["cmd"]).ok
    assert _run(ws, "2026-03-02", ["cmd"]).ok
    _cmd_spec(ws, 7, "cmd")
    assert _run(ws, "2026-03-01", ["cmd"]).ok
    assert _rows(lite, "SELECT order_date, n, amount, note, tags FROM cmd ORDER BY 1") == [
        ("2026-03-01", 7, 1.25, "it's; DROP TABLE orders; --", "[1, 2]"),
        ("2026-03-02", 1, 1.25, "it's; DROP TABLE orders; --", "[1, 2]")]
    assert _rows(lite, "SELECT count(*) FROM orders") == [(30,)]


# --- PostgreSQL -----------------------------------------------------------------------------------------
@pytest.fixture
def pg(_workspace_env, pg_dsn, monkeypatch):  # noqa: F811 - the fixture imported above
    import psycopg

    monkeypatch.setenv(DSN_ENV, pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS shop CASCADE")
        conn.execute("DROP TABLE IF EXISTS orders")
        conn.execute("CREATE TABLE orders (order_id bigint, order_date date, amount numeric(10,2))")
        conn.execute("INSERT INTO orders SELECT g, DATE '2026-03-01' + (g % 3), g FROM generate_series(0, 29) g")
    init_workspace(_workspace_env)
    ws = Workspace(_workspace_env)
    ws.config_path.write_text(ws.config_path.read_text() +
                              f'\n[connections.app]\nkind = "postgres"\ndsn_env = "{DSN_ENV}"\n')
    ws.refresh()
    write_spec(ws, "shop", _spec(daily="shop.daily", labels="shop.labels")
               .replace("$start AS day_start, $end AS day_end", "$start::text AS day_start, $end::text AS day_end")
               .replace("order_date >= $start AND order_date < $end", "order_date >= $start::date AND "
                        "order_date < $end::date AND $$not $partition$$ <> ''"))
    return ws, pg_dsn


def _pg(dsn, sql: str) -> list:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(sql).fetchall()


def test_postgres_output_replaces_only_the_runs_partition(pg):
    from datetime import date
    from decimal import Decimal

    ws, dsn = pg
    for day in ("2026-03-01", "2026-03-02"):
        result = _run(ws, day, ["daily"])
        assert result.ok, [t.as_dict() for t in result.tasks]
    assert _pg(dsn, "SELECT order_date, orders, revenue, day_start, day_end FROM shop.daily ORDER BY 1") == [
        (date(2026, 3, 1), 10, Decimal("135.00"), "2026-03-01", "2026-03-02"),
        (date(2026, 3, 2), 10, Decimal("145.00"), "2026-03-02", "2026-03-03")]
    assert _pg(dsn, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'shop.daily'::regclass "
                    "AND attname = 'order_date'") == [("date",)]
    job = _job(ws, "daily")
    assert job["rows_in"] == 30 and job["rows_out"] == 1
    assert _checks(ws, "mart.daily") == {"not_null:order_date": "passed", "range:revenue": "passed"}
    _pg(dsn, "INSERT INTO orders VALUES (100, '2026-03-01', 1000) RETURNING 1")
    _pg(dsn, "UPDATE orders SET amount = amount + 1 WHERE order_date = '2026-03-02' RETURNING 1")
    assert _run(ws, "2026-03-01", ["daily"]).ok
    assert _pg(dsn, "SELECT order_date, orders, revenue FROM shop.daily ORDER BY 1") == [
        (date(2026, 3, 1), 11, Decimal("1135.00")), (date(2026, 3, 2), 10, Decimal("145.00"))]


def test_postgres_a_failing_stage_leaves_the_table_as_it_was(pg):
    import psycopg

    ws, dsn = pg
    assert _run(ws, "2026-03-01", ["daily"]).ok
    assert _run(ws, "2026-03-02", ["daily"]).ok
    before = _pg(dsn, "SELECT * FROM shop.daily ORDER BY 1")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE shop.daily ADD CONSTRAINT small CHECK (revenue < 500)")
        conn.execute("UPDATE orders SET amount = 999 WHERE order_id = 0")
    (task,) = _run(ws, "2026-03-01", ["daily"]).tasks  # the delete ran, then the insert failed: rolled back
    assert task.state == "failed" and "violates check constraint" in task.error, task.error
    assert _pg(dsn, "SELECT * FROM shop.daily ORDER BY 1") == before
    write_spec(ws, "shop", (ws.pipelines_dir / "shop.yaml").read_text().replace("sum(amount)", "sum(no_such)"))
    (task,) = _run(ws, "2026-03-01", ["daily"]).tasks
    assert task.state == "failed" and task.attempts == 1 and 'column "no_such" does not exist' in task.error
    assert _pg(dsn, "SELECT * FROM shop.daily ORDER BY 1") == before
    # the stage's timeout bounds the statement
    write_spec(ws, "shop", (ws.pipelines_dir / "shop.yaml").read_text().replace("sum(no_such)", "sum(amount)")
               .replace("timeout: 1h", "timeout: 1s").replace("FROM orders WHERE", "FROM orders, pg_sleep(5) WHERE"))
    (task,) = _run(ws, "2026-03-01", ["daily"]).tasks
    assert task.state == "failed" and "statement timeout" in task.error
    assert _pg(dsn, "SELECT * FROM shop.daily ORDER BY 1") == before


def test_postgres_parameters_are_data(pg):
    ws, dsn = pg
    result = _run(ws, HOSTILE, ["labels"])
    assert result.ok, [t.as_dict() for t in result.tasks]
    assert _pg(dsn, "SELECT label, s, literal, pct, n FROM shop.labels") == [
        (HOSTILE, HOSTILE, "$partition", "LIKE 100%", 30)]
    assert _pg(dsn, "SELECT count(*) FROM orders") == [(30,)]
    assert _run(ws, "2026-03-01", ["labels"]).ok
    assert _pg(dsn, "SELECT label FROM shop.labels") == [("2026-03-01",)]


def test_postgres_command_stage_output_is_loaded_into_its_table(pg):
    from datetime import date
    from decimal import Decimal

    ws, dsn = pg
    _cmd_spec(ws, 1, "shop.cmd")
    assert _run(ws, "2026-03-01", ["cmd"]).ok
    assert _run(ws, "2026-03-02", ["cmd"]).ok
    _cmd_spec(ws, 7, "shop.cmd")
    assert _run(ws, "2026-03-01", ["cmd"]).ok
    assert _pg(dsn, "SELECT order_date, n, amount, note, tags FROM shop.cmd ORDER BY 1") == [
        (date(2026, 3, 1), 7, Decimal("1.25"), "it's; DROP TABLE orders; --", "[1, 2]"),
        (date(2026, 3, 2), 1, Decimal("1.25"), "it's; DROP TABLE orders; --", "[1, 2]")]
    assert _pg(dsn, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = "
                    "'shop.cmd'::regclass AND attnum > 0 ORDER BY attnum") == [
        ("date",), ("bigint",), ("numeric(10,2)",), ("text",), ("text",)]


def test_postgres_down_is_retried_and_an_unset_dsn_is_not(ws, monkeypatch, tmp_path):
    ws.config_path.write_text(ws.config_path.read_text() + '\n[connections.app]\nkind = "postgres"\n'
                              'dsn_env = "SQLOL_TEST_DSN"\n')
    ws.refresh()
    write_spec(ws, "shop", _spec().replace("retries: 0", "retries: 1"))
    monkeypatch.setenv("SQLOL_TEST_DSN", f"host={tmp_path} port=1 user=nobody dbname=x connect_timeout=2")
    (task,) = _run(ws, "2026-03-01", ["labels"]).tasks
    assert task.state == "failed" and task.attempts == 2 and task.error.startswith("cannot connect to Postgres")
    monkeypatch.delenv("SQLOL_TEST_DSN")
    (task,) = _run(ws, "2026-03-01", ["labels"]).tasks
    assert task.state == "failed" and task.attempts == 1 and "SQLOL_TEST_DSN is not set" in task.error


def test_postgres_placeholders_skip_literals_comments_and_dollar_quotes():
    from agentops.pipelines.sqltable import pg_placeholders

    sql = ("SELECT $partition, '$start 5%', \"$end\", $$ $watermark % $$, $q$ $end $q$ -- $start %\n"
           "/* $end */ 7 % 2, $end")
    assert pg_placeholders(sql) == (
        "SELECT %(partition)s, '$start 5%%', \"$end\", $$ $watermark %% $$, $q$ $end $q$ -- $start %%\n"
        "/* $end */ 7 %% 2, %(end)s")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="$%'\"-*/\n ab_", max_size=40)
       | st.lists(st.sampled_from(["$partition", "$end", "$$", "$q$", "'", '"', "--", "/*", "*/", "%", "\n", " x"]),
                  max_size=12).map("".join))
def test_pg_placeholders_only_double_percent_signs_and_name_parameters(text):
    from agentops.pipelines.sqltable import pg_placeholders

    out = pg_placeholders(text)
    back = re.sub(r"%%|%\((partition|start|end|watermark)\)s",
                  lambda m: "%" if m.group(0) == "%%" else "$" + m.group(1), out)
    assert back == text
    assert re.fullmatch(r"(?:[^%]|%%|%\((?:partition|start|end|watermark)\)s)*", out, re.S)
