"""The `quality` benchmark case (issue 14): `agentops quality run` on a generated Parquet dataset
(10,000,000 rows at full scale) with every check type and the profile, against ONE hand-written
DuckDB query computing the same figures over the same file, in the same run. Target: <= 1.5x.

The data is made by DuckDB itself (`COPY (SELECT ... FROM range(N)) TO ... (FORMAT parquet)`), so
generating it is bounded in time and memory (streamed, no Python rows).
"""

from __future__ import annotations

import shutil
import statistics
import sys
import time
from pathlib import Path

COLUMNS = ("id", "customer_id", "status", "amount", "ts")
STATUSES = ("placed", "paid", "shipped", "delivered", "returned")

SPEC = """name: bench
owner: data-engineer
schedule: "@daily"
sources:
  - {name: raw.events, kind: file, format: parquet, location: {path: data/events/*.parquet}}
stages:
  - {name: s, kind: transform, inputs: [raw.events], outputs: [o]}
quality:
  - {dataset: raw.events, check: not_null, column: id}
  - {dataset: raw.events, check: unique, column: id}
  - {dataset: raw.events, check: unique, columns: [id, status]}
  - {dataset: raw.events, check: row_count, min: 1}
  - {dataset: raw.events, check: freshness, column: ts, max_age: 3650d}
  - {dataset: raw.events, check: accepted_values, column: status, values: [placed, paid, shipped, delivered, returned]}
  - {dataset: raw.events, check: range, column: amount, min: 0, max: 100000}
  - {dataset: raw.events, check: schema, columns: [id, customer_id, status, amount, ts], types: {id: BIGINT}}
  - {dataset: raw.events, check: sql, name: negative, query: "SELECT id, amount FROM {dataset} WHERE amount < 0"}
  - {dataset: raw.events, check: anomaly, metric: row_count}
"""

# the same figures, by hand: the profile (count, approx distinct, min, max, mean per column), the
# column checks, and the sql check's count, in one statement
HAND = """
SELECT COUNT(*),
  COUNT(id), approx_count_distinct(id), MIN(id), MAX(id), AVG(CAST(id AS DOUBLE)),
  COUNT(customer_id), approx_count_distinct(customer_id), MIN(customer_id), MAX(customer_id),
  AVG(CAST(customer_id AS DOUBLE)),
  COUNT(status), approx_count_distinct(status),
  COUNT(amount), approx_count_distinct(amount), MIN(amount), MAX(amount), AVG(CAST(amount AS DOUBLE)),
  COUNT(ts), approx_count_distinct(ts), MIN(ts), MAX(ts),
  COUNT(id) - COUNT(DISTINCT id),
  SUM(CASE WHEN id IS NOT NULL AND status IS NOT NULL THEN 1 ELSE 0 END)
    - COUNT(DISTINCT (id, status)) FILTER (WHERE id IS NOT NULL AND status IS NOT NULL),
  SUM(CASE WHEN status IS NOT NULL AND status NOT IN ('placed', 'paid', 'shipped', 'delivered', 'returned')
      THEN 1 ELSE 0 END),
  SUM(CASE WHEN amount < 0 OR amount > 100000 THEN 1 ELSE 0 END),
  COUNT(*) FILTER (WHERE amount < 0)
FROM read_parquet(?)
"""


def generate(path: Path, rows: int) -> float:
    import duckdb

    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    con = duckdb.connect()
    con.execute("SET memory_limit = '1GB'")
    con.execute(f"""COPY (
        SELECT range AS id,
               CASE WHEN range % 97 = 0 THEN NULL ELSE range % 100003 END AS customer_id,
               ['placed', 'paid', 'shipped', 'delivered', 'returned'][1 + range % 5] AS status,
               CAST((range * 7919) % 1000000 AS DOUBLE) / 100 AS amount,
               TIMESTAMP '2026-01-01' + INTERVAL (range % 31536000) SECOND AS ts
        FROM range({int(rows)})) TO '{path}' (FORMAT parquet, ROW_GROUP_SIZE 122880)""")
    con.close()
    return time.perf_counter() - t0


def case_quality(tmp: Path, scale: dict, repeat: int, new_workspace, Row) -> list:
    rows = scale["quality"]
    root = new_workspace(tmp, "quality")
    data = root / "data" / "events" / "part-0.parquet"
    gen_s = generate(data, rows)
    (root / ".agent/data/pipelines/bench.yaml").write_text(SPEC)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import duckdb

    from agentops.data import quality
    from agentops.workspace import Workspace

    ws = Workspace(root)
    quality.run(ws, "bench")  # warm-up: imports, the Orbit store's first open, the file cache
    ours, hand = [], []
    for _ in range(max(1, repeat)):
        # interleaved, so both see the same machine load and the same file cache
        t0 = time.perf_counter()
        report = quality.run(ws, "bench")
        ours.append(time.perf_counter() - t0)
        bad = [r for r in report.results if r.status != "passed"]
        assert not bad, bad
        t0 = time.perf_counter()
        con = duckdb.connect()
        figures = con.execute(HAND, [str(data)]).fetchone()
        con.close()
        hand.append(time.perf_counter() - t0)
        assert figures[0] == rows
    ours_m, hand_m = statistics.median(ours), statistics.median(hand)
    ratio = ours_m / hand_m
    size = data.stat().st_size / 1e6
    shutil.rmtree(root, ignore_errors=True)
    n_checks = len(report.results)
    return [Row("quality", f"quality run: {n_checks} checks + profile, {rows:,}-row Parquet", ours_m, "s",
                "<= 1.5x one hand-written DuckDB query", ratio <= 1.5, baseline=hand_m,
                baseline_what="hand-written query", ratio=ratio,
                note=f"Parquet {size:.0f} MB generated by DuckDB in {gen_s:.1f} s; quality run "
                     f"{', '.join(f'{x:.2f}' for x in ours)} s vs hand {', '.join(f'{x:.2f}' for x in hand)} s",
                samples=ours)]
