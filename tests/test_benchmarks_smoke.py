"""The benchmark suite runs end to end (`benchmarks/run.py --quick`): one table, and the JSON.
Never a timing assertion here: speed is measured by `make bench`, not tested."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO


def test_quick_benchmark_run_prints_the_table_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick", "--json", str(out)],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["case", "figure", "value", "same-run", "baseline", "ratio", "target", "result"]
    cases = {line.split()[0] for line in lines[2:] if line.strip() and not line.startswith(("notes:", " "))}
    assert cases == {"routing", "latency", "orbit", "reads", "startup", "memory", "pipelines", "quality"}
    data = json.loads(out.read_text())
    assert data["quick"] is True and not data["errors"]
    assert data["machine"]["nproc"] >= 1 and data["machine"]["python"]
    rows = {(row["case"], row["metric"]): row for row in data["rows"]}
    assert len(rows) == 19  # startup: --help, mail send (no daemon, daemon running) and five other commands
    for row in rows.values():
        assert row["value"] > 0 and row["target"] and isinstance(row["ok"], bool)
    routing = next(row for row in data["rows"] if row["case"] == "routing")
    assert routing["baseline"] > 0 and routing["ratio"] > 0


def test_unknown_case_is_an_error():
    r = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run.py"), "--only", "nope"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "unknown case" in r.stderr


def test_quick_runner_benchmark_runs_both_sides_and_checks_they_made_the_same_tables(tmp_path):
    out = tmp_path / "runs.json"
    r = subprocess.run([sys.executable, str(REPO / "benchmarks" / "runs.py"), "--quick", "--json", str(out)],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["chain"]["stages"] == 10 and data["chain"]["shell_s"] > 0
    b = data["backfill"]
    # the runner and the hand-written SQL (run as a process of its own, and in this process) ended
    # with the same rows per table and partition, or the benchmark would have failed
    assert b["table_rows"]["staging.events"] > 0 and b["table_rows"]["mart.by_country"] > 0
    for key in ("runner_s", "direct_s", "library_s", "direct_inproc_s"):
        assert b[key] > 0
    assert "process:" in r.stdout and "in-process:" in r.stdout
