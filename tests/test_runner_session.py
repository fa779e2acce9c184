"""The runner's DuckDB session (`agentops.pipelines.duckdb_session`): the warehouse stays attached
from stage to stage during a run, yet each stage sees only its own inputs, a `command:` stage can
still open the warehouse, another process holding it is waited for, and it is released when the
run ends. Real DuckDB files, real subprocesses."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import duckdb

from agentops.orbit import Orbit
from agentops.pipelines import duckdb_session, find_spec
from agentops.pipelines.runner import execute, plan_run
from pipeline_helpers import write_spec
from test_runner_sql import _warehouse as _query  # a query on the warehouse, read-only

SPEC = """\
name: sess
owner: data-engineer
schedule: '@daily'
sources:
  - {name: src, kind: file, format: csv, location: {path: input/src.csv}}
stages:
  - name: load
    kind: transform
    inputs: [src]
    outputs: [staging.items]
    sql: SELECT id, amount FROM src WHERE amount > 0
  - name: total
    kind: load
    inputs: [staging.items]
    outputs: [mart.total]
    sql: SELECT count(*) AS n, sum(amount) AS amount FROM staging.items
quality:
  - {dataset: staging.items, check: not_null, column: id}
"""


def _data(ws) -> None:
    (ws.root / "input").mkdir(exist_ok=True)
    (ws.root / "input/src.csv").write_text("id,amount\n1,10\n2,0\n3,5\n4,7\n")


def test_a_stage_sees_only_its_own_inputs_on_the_shared_session(ws):
    # `total` reads `src`, which the stage before it registered on the same session: not its input
    write_spec(ws, "sess", SPEC.replace("FROM staging.items", "FROM src"))
    _data(ws)
    result = execute(ws, plan_run(ws, find_spec(ws, "sess"), partitions=["2026-04-01"]))
    by = {t.task: t for t in result.tasks}
    assert by["load"].state == "succeeded"
    assert by["total"].state == "failed" and "src" in by["total"].error
    assert not duckdb_session.is_open()


def test_the_session_is_released_when_the_run_ends(ws):
    write_spec(ws, "sess", SPEC)
    _data(ws)
    for day in ("2026-04-01", "2026-04-02"):
        assert execute(ws, plan_run(ws, find_spec(ws, "sess"), partitions=[day])).ok
        assert not duckdb_session.is_open()
        # another process may write the warehouse at once (DuckDB lets one process hold it)
        subprocess.run([sys.executable, "-c", f"import duckdb; duckdb.connect({str(ws.data_dir / 'warehouse.duckdb')!r})"
                        ".execute('CREATE TABLE IF NOT EXISTS main.touched AS SELECT 1 AS x').close()"],
                       check=True, timeout=60)
    assert _query(ws, "SELECT agentops_partition, count(*) FROM staging.items GROUP BY 1 ORDER BY 1") == [
        ("2026-04-01", 3), ("2026-04-02", 3)]
    assert _query(ws, "SELECT agentops_partition, n, amount FROM mart.total ORDER BY 1") == [
        ("2026-04-01", 3, 22), ("2026-04-02", 3, 22)]
    with Orbit.open(ws) as orbit:
        checks = orbit.checks(pipeline="sess")
    assert [(c["dataset"], c["passed"]) for c in checks] == [("staging.items", 1)] * 2  # read on the session


def test_a_command_stage_can_open_the_warehouse_the_run_holds(ws, tmp_path):
    reader = tmp_path / "read_wh.py"
    reader.write_text(textwrap.dedent("""\
        import json, os, duckdb
        d = json.loads(os.environ["AGENTOPS_DATASETS"])
        con = duckdb.connect(d["inputs"]["staging.items"]["path"], read_only=True)
        n = con.execute("SELECT count(*) FROM staging.items").fetchone()[0]
        con.close()
        con = duckdb.connect()
        con.execute(f"COPY (SELECT {n} AS n) TO '{d['outputs']['out.count']['path']}' (FORMAT parquet)")
        """))
    spec = SPEC.replace("stages:\n", f"stages:\n  - {{name: count, kind: load, inputs: [staging.items], "
                                      f"outputs: [out.count], command: [{sys.executable}, {reader}], retries: 0}}\n")
    write_spec(ws, "sess", spec + 'datasets:\n  out.count: {location: {path: "out/count/{partition}.parquet"}}\n')
    _data(ws)
    result = execute(ws, plan_run(ws, find_spec(ws, "sess"), partitions=["2026-04-01"]))
    assert result.ok, [t.as_dict() for t in result.tasks]
    got = duckdb.connect().execute(f"SELECT n FROM '{ws.root}/out/count/2026-04-01.parquet'").fetchall()
    assert got == [(3,)]


def test_another_process_holding_the_warehouse_is_waited_for(ws, tmp_path):
    write_spec(ws, "sess", SPEC)
    _data(ws)
    ready = tmp_path / "ready"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""\
        import time, duckdb
        con = duckdb.connect({str(ws.data_dir / 'warehouse.duckdb')!r})
        con.execute("CREATE TABLE IF NOT EXISTS main.held AS SELECT 1 AS x")
        open({str(ready)!r}, "w").close()
        time.sleep(1.5)
        con.close()
        """)])
    try:
        while not ready.exists():
            assert holder.poll() is None, "the holder died"
            time.sleep(0.01)
        result = execute(ws, plan_run(ws, find_spec(ws, "sess"), partitions=["2026-04-01"]))
    finally:
        holder.wait(60)
    assert holder.returncode == 0
    assert result.ok, [t.as_dict() for t in result.tasks]
    assert [t.attempts for t in result.tasks] == [1, 1]  # waited, not failed and retried
    assert _query(ws, "SELECT n, amount FROM mart.total") == [(3, 22)]
