"""Benchmarks of the pipeline runner (issue 15 point 10).

    python benchmarks/runs.py [--quick] [--airflow PATH_TO_airflow] [--json PATH]

chain     A 100-stage chain of trivial commands (`true`). The runner's overhead per stage is its
          wall time (library `execute`, and the whole `agentops pipeline run` process) minus a
          plain shell script running the same 100 commands, divided by 100. Target <= 15 ms.
          With --airflow (or AGENTOPS_AIRFLOW_BIN), the same DAG rendered and run by
          `airflow dags test` in the same run, and the ratio to the embedded runner.
backfill  A 30-partition backfill (`pipeline backfill --run`) of a 5-stage SQL pipeline over
          1,000,000 generated rows, vs the same five SELECTs run by hand in one DuckDB connection
          (`direct_sql.py`), partition by partition, producing the same tables and Parquet files:
          each intermediate table keeps every partition, the run's partition replaced by DELETE +
          INSERT in one transaction (as the runner must: "a partitioned output replaces only the
          run's partition"); the benchmark checks both end with the same rows per table and
          partition. Target <= 1.5x, measured two ways, each like for like: the `agentops` process
          against the SQL as a Python script of its own (a process that imports only duckdb), and
          the runner called as a library in this process (as the MCP server runs it) against the
          SQL in this process. Also shown: the first baseline, which CREATE OR REPLACEd each
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
sys.path.insert(0, str(HERE))

from direct_sql import SQL_STAGES, direct, direct_replace, is_table  # noqa: E402


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


def _same_tables(ws: Path) -> dict:
    """Row counts per table and per partition, the runner's against the like-for-like baseline's;
    raises when they differ (a baseline doing different work measures nothing)."""
    import duckdb

    con = duckdb.connect()
    con.execute(f"ATTACH '{ws / '.agent/data/warehouse.duckdb'}' AS runner (READ_ONLY)")
    con.execute(f"ATTACH '{ws / 'direct.duckdb'}' AS direct (READ_ONLY)")
    counts = {}
    for _name, _inputs, output, _sql in SQL_STAGES:
        if is_table(output):
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


def _backfill_workspace(tmp: Path, name: str, data: Path) -> Path:
    ws = tmp / name
    _init(ws)
    (ws / ".agent/data/pipelines/events.yaml").write_text(_backfill_spec())
    shutil.copytree(data / "input", ws / "input")
    return ws


def _runner_library(ws: Path, days: list[str], parallel: int) -> float:
    """The same backfill through the library, in this (warm) process, as the MCP server's
    `pipeline_run` runs the runner: find the spec, plan, execute."""
    from agentops.pipelines import find_spec, runner
    from agentops.pipelines.backfill import plan_backfill
    from agentops.workspace import find_workspace

    t = time.perf_counter()
    w = find_workspace(ws)
    spec = find_spec(w, "events")
    bp = plan_backfill(w, spec, days[0], days[-1], "none", states=runner.backfill_states(w, spec))
    result = runner.execute(w, runner.plan_backfill_run(w, spec, bp, parallel))
    took = time.perf_counter() - t
    if not result.ok:
        raise RuntimeError(f"backfill failed: {[(x.partition, x.task, x.error) for x in result.tasks if x.error]}")
    return took


def bench_backfill(rows: int, days_n: int, repeat: int, parallel: int) -> dict:
    """Per repeat, on fresh workspaces: the `agentops pipeline backfill --run` process against the
    baseline's SQL run as a process of its own (`direct_sql.py`: the interpreter, `import duckdb`,
    the SQL), then the runner called as a library in this process against the baseline's SQL in
    this process, then the first baseline. Each runner's tables are checked against its baseline's."""
    from agentops.pipelines import find_spec, runner  # noqa: F401 - the library side starts warm
    from agentops.pipelines.duckdb_session import CHECKPOINT_THRESHOLD

    days = [(date(2026, 1, 1) + timedelta(days=i)).isoformat() for i in range(days_n)]
    f: dict[str, list[float]] = {k: [] for k in ("runner", "direct", "library", "direct_inproc", "replace")}
    with tempfile.TemporaryDirectory(prefix="agentops-bench-backfill-") as tmp:
        data = Path(tmp) / "data"
        _make_events(data, days, rows)
        for r in range(repeat):
            ws = _backfill_workspace(Path(tmp), f"ws{r}", data)
            t = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "agentops", "pipeline", "backfill", "events", "--start",
                                   days[0], "--end", days[-1], "--run", "--max-parallel", str(parallel)],
                                  env=_env(ws), capture_output=True, text=True)
            f["runner"].append(time.perf_counter() - t)
            if done.returncode != 0:
                raise RuntimeError("backfill failed: " + done.stderr[-3000:])
            t = time.perf_counter()
            subprocess.run([sys.executable, str(HERE / "direct_sql.py"), str(ws), CHECKPOINT_THRESHOLD, *days],
                           check=True, capture_output=True)
            f["direct"].append(time.perf_counter() - t)
            counts = _same_tables(ws)
            ws = _backfill_workspace(Path(tmp), f"lib{r}", data)
            f["library"].append(_runner_library(ws, days, parallel))
            f["direct_inproc"].append(direct(ws, days, CHECKPOINT_THRESHOLD))
            _same_tables(ws)
            f["replace"].append(direct_replace(ws, days))
    m = {k: statistics.median(v) for k, v in f.items()}
    return {"rows": rows, "partitions": days_n, "stages": len(SQL_STAGES), "repeats": repeat,
            "runner_s": m["runner"], "direct_s": m["direct"], "ratio": m["runner"] / m["direct"],
            "library_s": m["library"], "direct_inproc_s": m["direct_inproc"],
            "ratio_library": m["library"] / m["direct_inproc"], "ratio_process_vs_inproc": m["runner"] / m["direct_inproc"],
            "direct_replace_s": m["replace"], "ratio_replace": m["runner"] / m["replace"], "table_rows": counts,
            **{f"{k}_all_s": v for k, v in f.items()}}


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
              f"{b['repeats']} (target <= 1.5x; same tables: every partition kept, each replaced in a transaction):\n"
              f"           process: `agentops pipeline backfill --run` {b['runner_s']:.2f}s vs the same SQL as a "
              f"DuckDB script {b['direct_s']:.2f}s = {b['ratio']:.2f}x\n"
              f"           in-process: the runner as a library {b['library_s']:.2f}s vs the same SQL "
              f"{b['direct_inproc_s']:.2f}s = {b['ratio_library']:.2f}x\n"
              f"           the runner's process vs the SQL in-process: {b['ratio_process_vs_inproc']:.2f}x; vs the "
              f"first baseline (intermediates replaced whole, last day only, {b['direct_replace_s']:.2f}s): "
              f"{b['ratio_replace']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
