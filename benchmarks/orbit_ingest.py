"""Orbit bulk ingest vs a plain sqlite3 executemany of the same rows.

    python benchmarks/orbit_ingest.py [N]      (default 1,000,000 events)

Writes a JSONL file of N mixed events (runs moving queued -> running -> succeeded/failed, job
figures, check results, metric points, notes; every event with an id), ingests it with
`agentops orbit ingest`'s library call into a fresh workspace (validation, state machine, derived
tables, anomaly detection), then inserts the same rows with one `executemany` into an identical
`events` table, and prints both rates.
"""

from __future__ import annotations

import json
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path


def make_events(n: int, seed: int = 7, pipelines: int = 50):
    rnd = random.Random(seed)
    i = 0
    run = 0
    base = 1_764_000_000
    while i < n:
        run += 1
        p = f"pipe{run % pipelines}"
        rid = f"r{run}"
        day = f"2026-{1 + run % 12:02d}-{1 + run % 28:02d}"
        for task in ("extract", "load"):
            for state in ("queued", "running", "failed" if rnd.random() < 0.001 else "succeeded"):
                i += 1
                yield {"kind": "run", "id": f"e{i}", "ts": base + i, "pipeline": p, "run_id": rid, "task": task,
                       "state": state, "logical_date": day}
            i += 1
            yield {"kind": "job", "id": f"e{i}", "ts": base + i, "pipeline": p, "run_id": rid, "task": task,
                   "rows_in": 1000 + rnd.randint(0, 50), "rows_out": 990 + rnd.randint(0, 50),
                   "bytes": 65536 + rnd.randint(0, 4096), "duration_s": 10 + rnd.random()}
        i += 1
        yield {"kind": "check", "id": f"e{i}", "ts": base + i, "pipeline": p, "run_id": rid, "dataset": "orders",
               "check": "not_null:order_id", "passed": rnd.random() > 0.01, "severity": "warn", "observed": 0,
               "threshold": 0}
        i += 1
        yield {"kind": "metric", "id": f"e{i}", "ts": base + i, "pipeline": p, "dataset": "orders",
               "name": "null_rate", "value": 0.01 + rnd.random() / 1000}
        i += 1
        yield {"kind": "note", "id": f"e{i}", "ts": base + i, "text": f"run {rid} done", "pipeline": p}


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    from datetime import datetime, timezone

    from agentops.orbit import Orbit
    from agentops.orbit.ingest import ingest_file
    from agentops.workspace import Workspace, init_workspace

    tmp = Path(tempfile.mkdtemp(prefix="orbit-bench-"))
    src = tmp / "events.jsonl"
    with open(src, "w") as f:
        for k, ev in enumerate(make_events(n)):
            if k >= n:
                break
            ev["ts"] = datetime.fromtimestamp(ev["ts"], timezone.utc).isoformat()
            f.write(json.dumps(ev) + "\n")
    init_workspace(tmp / "ws")
    ws = Workspace(tmp / "ws")
    with Orbit.open(ws) as orbit:
        t0 = time.perf_counter()
        report = ingest_file(orbit, src)
        orbit_s = time.perf_counter() - t0
        rows = orbit.db.conn.execute("SELECT id, ts, kind, pipeline, run_id, agent, data FROM events "
                                     "ORDER BY seq").fetchall()
    print(f"orbit ingest: {report}")
    print(f"orbit ingest: {n:,} events in {orbit_s:.2f} s = {n / orbit_s:,.0f} events/s")

    from agentops.store import open_db

    db = open_db(tmp / "plain.db")
    conn = db.conn
    t0 = time.perf_counter()
    with conn:
        conn.executemany("INSERT INTO events (id, ts, kind, pipeline, run_id, agent, data) VALUES (?,?,?,?,?,?,?)", rows)
    plain_s = time.perf_counter() - t0
    conn.close()
    print(f"plain executemany: {len(rows):,} rows in {plain_s:.2f} s = {len(rows) / plain_s:,.0f} rows/s")
    print(f"orbit / plain = {plain_s / orbit_s:.0%}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
