"""Benchmarks of the pipeline runner (issue 15 point 10).

    python benchmarks/runs.py [--quick] [--airflow PATH_TO_airflow] [--json PATH]

chain     A 100-stage chain of trivial commands (`true`). The runner's overhead per stage is its
          wall time (library `execute`, and the whole `agentops pipeline run` process) minus a
          plain shell script running the same 100 commands, divided by 100. Target <= 15 ms.
          With --airflow (or AGENTOPS_AIRFLOW_BIN), the same DAG rendered and run by
          `airflow dags test` in the same run, and the ratio to the embedded runner.
backfill  A 30-partition backfill (`pipeline backfill --run`) of a 5-stage SQL pipeline over
          1,000,000 generated rows, vs the same five SELECTs run by hand in one DuckDB connection,
          partition by partition, producing the same tables and Parquet files: each intermediate
          table keeps every partition, the run's partition replaced by DELETE + INSERT in one
          transaction (as the runner must: "a partitioned output replaces only the run's
          partition"); the benchmark checks both end with the same rows per table and partition.
          Target <= 1.5x. Also shown: the first baseline, which CREATE OR REPLACEd each
          intermediate whole per partition (so it kept only the last day: less work).

Each figure is the median of several repeats (the machine is shared and noisy); --quick makes
everything small (it checks the benchmark runs, not the speed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))


def _env(ws: Path) -> dict:
    return {**os.environ, "AGENTOPS_WORKSPACE": str(ws), "PYTHONPATH": str(REPO)}


def _init(ws: Path) -> None:
    subprocess.run([sys.executable, "-m", "agentops", "init", str(ws)], env=_env(ws), check=True,
                   capture_output=True)


def _chain_spec(n: int) -> str:
    true = shutil.which("true") or "/bin/true"
    lines = ["name: chain", "owner: data-engineer", "schedule: '@daily'", "stages:"]
    for i in range(n):
        lines.append(f"  - {{name: s{i}, kind: transform, command: [{true}], retries: 0"
                     + (f", depends_on: [s{i - 1}]" if i else "") + "}")
    return "\n".join(lines) + "\n"


def bench_chain(n: int, repeat: int, airflow: str | None) -> dict:
    from agentops.pipelines import find_spec
    from agentops.pipelines.runner import execute, plan_run
    from agentops.workspace import Workspace

    true = shutil.which("true") or "/bin/true"
    out: dict = {"stages": n}
    with tempfile.TemporaryDirectory(prefix="agentops-bench-chain-") as tmp:
        ws_root = Path(tmp) / "ws"
        _init(ws_root)
        (ws_root / ".agent/data/pipelines/chain.yaml").write_text(_chain_spec(n))
        ws = Workspace(ws_root)
        spec = find_spec(ws, "chain")
        script = Path(tmp) / "chain.sh"
        script.write_text("#!/bin/sh\nset -e\n" + f"{true}\n" * n)
        script.chmod(0o755)
        shell, lib, proc = [], [], []
        for r in range(repeat):
            t = time.perf_counter()
            subprocess.run([str(script)], check=True)
            shell.append(time.perf_counter() - t)
            t = time.perf_counter()
            result = execute(ws, plan_run(ws, spec, partitions=[f"2026-01-{r * 2 + 1:02d}"]))
            lib.append(time.perf_counter() - t)
            assert result.ok, [x.as_dict() for x in result.tasks if x.state != "succeeded"][:3]
            t = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "agentops", "pipeline", "run", "chain", "--partition",
                                   f"2026-01-{r * 2 + 2:02d}"], env=_env(ws_root), capture_output=True, text=True)
            proc.append(time.perf_counter() - t)
            assert done.returncode == 0, done.stderr[-2000:]
        out.update(shell_s=statistics.median(shell), runner_s=statistics.median(lib),
                   process_s=statistics.median(proc))
        out["overhead_ms_per_stage"] = (out["runner_s"] - out["shell_s"]) / n * 1000
        out["process_overhead_ms_per_stage"] = (out["process_s"] - out["shell_s"]) / n * 1000
        if airflow:
            out.update(_airflow_chain(ws_root, spec, airflow, Path(tmp)))
            out["airflow_ratio"] = out["airflow_s"] / out["process_s"]
    return out


def _airflow_chain(ws_root: Path, spec, airflow: str, tmp: Path) -> dict:
    from agentops.pipelines.documents import render_pipeline
    from agentops.workspace import Workspace

    dags = tmp / "dags"
    render_pipeline(Workspace(ws_root), spec, "airflow_dag", dags)
    env = {**_env(ws_root), "AIRFLOW_HOME": str(tmp / "airflow"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__CORE__DAGS_FOLDER": str(dags)}
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    t = time.perf_counter()
    done = subprocess.run([airflow, "dags", "test", "chain", "2026-02-01"], env=env, capture_output=True, text=True)
    took = time.perf_counter() - t
    if done.returncode != 0:
        raise RuntimeError("airflow dags test failed: " + (done.stdout + done.stderr)[-2000:])
    return {"airflow_s": took}


# --- the SQL backfill ---------------------------------------------------------------------------------
SQL_STAGES = [
    ("clean", ["events_src"], "staging.events",
     "SELECT event_id, user_id, CAST(amount AS DOUBLE) AS amount, kind, CAST(day AS DATE) AS day "
     "FROM events_src WHERE amount >= 0"),
    ("enrich", ["staging.events", "users_src"], "staging.enriched",
     "SELECT e.*, u.country, u.segment FROM staging.events e JOIN users_src u USING (user_id)"),
    ("by_user", ["staging.enriched"], "mart.by_user",
     "SELECT day, user_id, country, count(*) AS events, sum(amount) AS amount FROM staging.enriched "
     "GROUP BY ALL ORDER BY user_id"),
    ("by_country", ["mart.by_user"], "mart.by_country",
     "SELECT day, country, sum(events) AS events, sum(amount) AS amount FROM mart.by_user GROUP BY ALL ORDER BY country"),
    ("top_users", ["mart.by_user"], "mart.top_users",
     "SELECT day, user_id, amount FROM mart.by_user ORDER BY amount DESC, user_id LIMIT 100"),
]


def _backfill_spec() -> str:
    lines = ["name: events", "owner: data-engineer", "schedule: '@daily'", "sources:",
             "  - {name: events_src, kind: file, format: parquet, location: {path: 'input/events/day={partition}/*.parquet'}}",
             "  - {name: users_src, kind: file, format: parquet, location: {path: input/users.parquet}}", "stages:"]
    for name, inputs, output, sql in SQL_STAGES:
        lines.append("  - " + json.dumps({"name": name, "kind": "transform", "inputs": inputs, "outputs": [output],
                                          "sql": sql, "retries": 0}))
    lines += ["datasets:",
              "  mart.by_country: {location: {path: 'out/by_country/day={partition}/*.parquet'}}",
              "  mart.top_users: {location: {path: 'out/top_users/day={partition}/*.parquet'}}"]
    return "\n".join(lines) + "\n"


def _make_events(root: Path, days: list[str], rows: int) -> None:
    import duckdb

    con = duckdb.connect()
    per = rows // len(days)
    (root / "input").mkdir(parents=True, exist_ok=True)
    con.execute(f"COPY (SELECT range AS user_id, (['DE','FR','US','JP'])[1 + range % 4] AS country, "
                f"(['a','b','c'])[1 + range % 3] AS segment FROM range(5000)) TO '{root}/input/users.parquet' (FORMAT parquet)")
    for i, day in enumerate(days):
        d = root / "input" / "events" / f"day={day}"
        d.mkdir(parents=True, exist_ok=True)
        con.execute(f"COPY (SELECT {i * per} + range AS event_id, hash(range * 7 + {i}) % 5000 AS user_id, "
                    f"(hash(range) % 10000) / 100.0 AS amount, (['view','buy','refund'])[1 + range % 3] AS kind "
                    f"FROM range({per})) TO '{d}/data.parquet' (FORMAT parquet)")
    con.close()


def _direct(root: Path, days: list[str]) -> float:
    """The like-for-like baseline: the same five SELECTs by hand in one DuckDB connection, doing
    the work the runner must do. Per partition, each intermediate (the two staging tables and
    mart.by_user) keeps every partition in one warehouse table (an `agentops_partition` column):
    the partition's rows are replaced by DELETE + INSERT in one transaction, and a later stage
    reads only the run's partition of it. The two marts are written as Parquet partition files.
    The warehouse is a file attached to an in-memory connection, with the runner's checkpoint
    threshold (same engine settings: the ratio measures the runner, not a setting)."""
    import duckdb

    from agentops.pipelines.duckdb_session import CHECKPOINT_THRESHOLD

    wh = root / "direct.duckdb"
    for f in (wh, Path(str(wh) + ".wal")):
        if f.exists():
            f.unlink()
    shutil.rmtree(root / "direct_out", ignore_errors=True)
    t = time.perf_counter()
    con = duckdb.connect()
    con.execute(f"SET checkpoint_threshold = '{CHECKPOINT_THRESHOLD}'")
    con.execute(f"ATTACH '{wh}' AS wh")
    con.execute("CREATE SCHEMA wh.staging; CREATE SCHEMA wh.mart; CREATE SCHEMA staging; CREATE SCHEMA mart")
    con.execute(f"CREATE VIEW users_src AS SELECT * FROM read_parquet('{root}/input/users.parquet')")
    created: set[str] = set()
    for day in days:
        con.execute(f"CREATE OR REPLACE VIEW events_src AS SELECT * FROM "
                    f"read_parquet('{root}/input/events/day={day}/*.parquet', hive_partitioning = true)")
        for name, inputs, output, sql in SQL_STAGES:
            for i in inputs:  # an intermediate input: the run's partition of its warehouse table
                if i in created:
                    con.execute(f"CREATE OR REPLACE VIEW {i} AS SELECT * EXCLUDE (agentops_partition) "
                                f"FROM wh.{i} WHERE agentops_partition = '{day}'")
            if output.startswith("staging.") or output == "mart.by_user":
                select = f"SELECT *, '{day}' AS agentops_partition FROM ({sql})"
                con.execute("BEGIN")
                if output not in created:
                    con.execute(f"CREATE TABLE wh.{output} AS {select}")
                    created.add(output)
                else:
                    con.execute(f"DELETE FROM wh.{output} WHERE agentops_partition = '{day}'")
                    con.execute(f"INSERT INTO wh.{output} {select}")
                con.execute("COMMIT")
            else:
                d = root / "direct_out" / output / f"day={day}"
                d.mkdir(parents=True, exist_ok=True)
                con.execute(f"COPY ({sql}) TO '{d}/part-0.parquet' (FORMAT parquet)")
    con.close()
    return time.perf_counter() - t


def _direct_replace(root: Path, days: list[str]) -> float:
    """The first baseline, kept for comparison: each intermediate is CREATE OR REPLACE'd whole per
    partition, so at the end it holds only the last day (less work than the runner does, which
    keeps every partition)."""
    import duckdb

    wh = root / "direct_replace.duckdb"
    if wh.exists():
        wh.unlink()
    t = time.perf_counter()
    con = duckdb.connect(str(wh))
    con.execute("CREATE SCHEMA IF NOT EXISTS staging; CREATE SCHEMA IF NOT EXISTS mart")
    con.execute(f"CREATE OR REPLACE VIEW users_src AS SELECT * FROM read_parquet('{root}/input/users.parquet')")
    for day in days:
        con.execute(f"CREATE OR REPLACE VIEW events_src AS SELECT * FROM "
                    f"read_parquet('{root}/input/events/day={day}/*.parquet', hive_partitioning = true)")
        for name, _inputs, output, sql in SQL_STAGES:
            if output.startswith("staging.") or output == "mart.by_user":
                con.execute(f"CREATE OR REPLACE TABLE {output} AS {sql}")
            else:
                d = root / "direct_replace_out" / output / f"day={day}"
                d.mkdir(parents=True, exist_ok=True)
                con.execute(f"COPY ({sql}) TO '{d}/part-0.parquet' (FORMAT parquet)")
    con.close()
    return time.perf_counter() - t


def _same_tables(ws: Path) -> dict:
    """Row counts per table and per partition, the runner's against the like-for-like baseline's;
    raises when they differ (a baseline doing different work measures nothing)."""
    import duckdb

    con = duckdb.connect()
    con.execute(f"ATTACH '{ws / '.agent/data/warehouse.duckdb'}' AS runner (READ_ONLY)")
    con.execute(f"ATTACH '{ws / 'direct.duckdb'}' AS direct (READ_ONLY)")
    counts = {}
    for _name, _inputs, output, _sql in SQL_STAGES:
        if output.startswith("staging.") or output == "mart.by_user":
            q = "SELECT agentops_partition, count(*) FROM {}.{} GROUP BY ALL ORDER BY ALL"
            got = [con.execute(q.format(db, output)).fetchall() for db in ("runner", "direct")]
        else:
            q = ("SELECT regexp_extract(filename, 'day=([^/]+)/', 1) AS day, count(*) FROM "
                 "read_parquet('{}/*/*.parquet', filename = true) GROUP BY ALL ORDER BY ALL")
            base = output.split(".")[1]
            got = [con.execute(q.format(ws / "out" / base)).fetchall(),
                   con.execute(q.format(ws / "direct_out" / output)).fetchall()]
        if got[0] != got[1]:
            raise RuntimeError(f"{output}: the runner and the baseline differ: {got[0][:5]} vs {got[1][:5]}")
        counts[output] = sum(n for _p, n in got[0])
    con.close()
    return counts


def bench_backfill(rows: int, days_n: int, repeat: int, parallel: int) -> dict:
    days = [(date(2026, 1, 1) + timedelta(days=i)).isoformat() for i in range(days_n)]
    runner, direct, replace = [], [], []
    with tempfile.TemporaryDirectory(prefix="agentops-bench-backfill-") as tmp:
        data = Path(tmp) / "data"
        _make_events(data, days, rows)
        for r in range(repeat):
            ws = Path(tmp) / f"ws{r}"
            _init(ws)
            (ws / ".agent/data/pipelines/events.yaml").write_text(_backfill_spec())
            shutil.copytree(data / "input", ws / "input")
            t = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "agentops", "pipeline", "backfill", "events", "--start",
                                   days[0], "--end", days[-1], "--run", "--max-parallel", str(parallel)],
                                  env=_env(ws), capture_output=True, text=True)
            runner.append(time.perf_counter() - t)
            if done.returncode != 0:
                raise RuntimeError("backfill failed: " + done.stderr[-3000:])
            direct.append(_direct(ws, days))
            counts = _same_tables(ws)
            replace.append(_direct_replace(ws, days))
    run, d, old = statistics.median(runner), statistics.median(direct), statistics.median(replace)
    return {"rows": rows, "partitions": days_n, "stages": len(SQL_STAGES), "repeats": repeat,
            "runner_s": run, "direct_s": d, "ratio": run / d, "direct_replace_s": old, "ratio_replace": run / old,
            "table_rows": counts, "runner_all_s": runner, "direct_all_s": direct, "direct_replace_all_s": replace}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: check the benchmark runs")
    ap.add_argument("--airflow", default=os.environ.get("AGENTOPS_AIRFLOW_BIN"), help="an `airflow` command")
    ap.add_argument("--only", default="chain,backfill", help="chain, backfill")
    ap.add_argument("--repeat", type=int, default=None)
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args()
    only = set(args.only.split(","))
    repeat = args.repeat or (1 if args.quick else 3)
    results: dict = {"quick": args.quick, "nproc": os.cpu_count()}
    if "chain" in only:
        results["chain"] = bench_chain(10 if args.quick else 100, repeat, args.airflow)
        c = results["chain"]
        print(f"chain      {c['stages']} trivial command stages: shell {c['shell_s']:.3f}s, runner {c['runner_s']:.3f}s "
              f"({c['overhead_ms_per_stage']:.1f} ms/stage over the shell; target <= 15), whole process "
              f"{c['process_s']:.3f}s ({c['process_overhead_ms_per_stage']:.1f} ms/stage)"
              + (f", airflow dags test {c['airflow_s']:.1f}s = {c['airflow_ratio']:.1f}x the runner process"
                 if "airflow_s" in c else ""))
    if "backfill" in only:
        results["backfill"] = bench_backfill(30_000 if args.quick else 1_000_000, 3 if args.quick else 30, repeat, 2)
        b = results["backfill"]
        print(f"backfill   {b['partitions']} partitions x {b['stages']} SQL stages over {b['rows']:,} rows, median of "
              f"{b['repeats']}: runner {b['runner_s']:.2f}s, DuckDB directly (same tables: every partition kept, "
              f"each replaced in a transaction) {b['direct_s']:.2f}s, ratio {b['ratio']:.2f}x (target <= 1.5); "
              f"first baseline (intermediates replaced whole, last day only) {b['direct_replace_s']:.2f}s, "
              f"ratio {b['ratio_replace']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
