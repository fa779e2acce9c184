"""The runner honours reservations: `pipeline run` and `backfill --run` refuse to write a dataset
another agent holds exclusively, before anything runs (SPEC §13)."""

from __future__ import annotations

import sys

from agentops import reservations as rs
from agentops.orbit import Orbit
from tests.conftest import run_agentops
from tests.pipeline_helpers import write_spec

PY = sys.executable
WRITE_A = ("import duckdb, json, os, pathlib\n"
           "pathlib.Path(os.environ['MARKER']).write_text('ran')\n"
           "p = json.loads(os.environ['AGENTOPS_DATASETS'])['outputs']['raw.a']['path']\n"
           "duckdb.sql(f\"COPY (SELECT range AS x FROM range(3)) TO '{p}' (FORMAT parquet)\")\n")


def _pipeline(ws):
    script = ws.root / "scripts" / "a.py"
    script.parent.mkdir()
    script.write_text(WRITE_A)
    write_spec(ws, "p", "name: p\nowner: data-engineer\nschedule: '@daily'\nstages:\n"
                        f"  - {{name: a, kind: extract, inputs: [ref.lookup], outputs: [raw.a], "
                        f"command: [{PY}, scripts/a.py]}}\n")


def _runs(ws):
    with Orbit.open(ws) as orbit:
        return orbit.runs(pipeline="p", limit=None)


def test_the_runner_refuses_a_reserved_dataset(ws):
    _pipeline(ws)
    marker = ws.root / "ran.txt"
    env = {"MARKER": str(marker)}
    rs.reserve(ws, "database-engineer", ["dataset:raw.*"], reason="rebuilding raw tables")
    r = run_agentops("pipeline", "run", "p", "--partition", "2026-03-01", "--as", "data-engineer", env=env)
    assert r.returncode == 6, r.stdout + r.stderr
    assert "dataset:raw.a" in r.stderr and "database-engineer" in r.stderr and "rebuilding raw tables" in r.stderr
    assert not marker.exists() and _runs(ws) == []  # stopped before it started
    r = run_agentops("pipeline", "backfill", "p", "--start", "2026-03-01", "--end", "2026-03-02", "--run",
                     env={**env, "AGENTOPS_AGENT": "data-engineer"})
    assert r.returncode == 6 and "database-engineer" in r.stderr
    assert not marker.exists() and _runs(ws) == []
    # a read of a dataset held exclusively only warns; the override runs and is logged
    rs.reserve(ws, "devops", ["dataset:ref.lookup"], reason="reloading")
    r = run_agentops("pipeline", "run", "p", "--partition", "2026-03-01", "--as", "data-engineer",
                     "--ignore-reservations", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert marker.exists()
    assert "ignored reservation" in r.stderr and "reads dataset:ref.lookup" in r.stderr
    with Orbit.open(ws) as orbit:
        over = [e for e in orbit.events(kind="reservation", limit=None) if e["action"] == "overridden"]
    assert over and over[0]["agent"] == "data-engineer" and "raw.a" in over[0]["target"]
    # the holder itself runs it
    marker.unlink()
    r = run_agentops("pipeline", "run", "p", "--partition", "2026-03-02", "--as", "database-engineer", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert marker.exists()
