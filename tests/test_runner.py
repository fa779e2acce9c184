"""The embedded runner (SPEC §12): command and manual stages, Orbit records, retries and timeouts,
locks, and arguments that stay arguments. Real subprocesses, a real Orbit store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agentops.orbit import Orbit
from agentops.pipelines import find_spec
from agentops.pipelines.runner import execute, plan_run
from pipeline_helpers import write_spec
from conftest import run_agentops

PY = sys.executable


def _spec(ws, stages: str, name: str = "p") -> None:
    write_spec(ws, name, f"name: {name}\nowner: data-engineer\nschedule: '@daily'\nstages:\n{stages}")


def _script(ws, name: str, body: str) -> str:
    path = ws.root / "scripts" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(body)
    return f"scripts/{name}"


def _runs(ws, pipeline="p"):
    with Orbit.open(ws) as orbit:
        return {(r["run_id"], r["task"]): r for r in orbit.runs(pipeline=pipeline, limit=None)}


def _events(ws, kind="run", pipeline="p"):
    with Orbit.open(ws) as orbit:
        return orbit.events(kind=kind, pipeline=pipeline, limit=None)


def test_command_stage_env_orbit_and_job_event(ws):
    out = ws.root / "env.json"
    script = _script(ws, "env.py", f"import json, os\njson.dump({{k: v for k, v in os.environ.items() "
                                   f"if k.startswith('AGENTOPS_')}}, open({str(out)!r}, 'w'))\n")
    _spec(ws, f"""  - {{name: a, kind: extract, outputs: [raw.a], command: [{PY}, {script}]}}
  - {{name: b, kind: transform, inputs: [raw.a], command: [{PY}, -c, "pass"]}}
""")
    r = run_agentops("pipeline", "run", "p", "--partition", "2026-03-01", "--json")
    assert r.returncode == 1, r.stderr  # a.py writes no output file: its output is missing
    assert "wrote nothing" in r.stdout
    env = json.loads(out.read_text())
    assert env["AGENTOPS_PIPELINE"] == "p" and env["AGENTOPS_STAGE"] == "a"
    assert env["AGENTOPS_PARTITION"] == "2026-03-01" and env["AGENTOPS_RUN_ID"] == "manual__2026-03-01"
    datasets = json.loads(env["AGENTOPS_DATASETS"])
    assert datasets["outputs"]["raw.a"]["format"] == "parquet"
    assert datasets["outputs"]["raw.a"]["table"] == "raw.a"


def test_a_run_is_recorded_and_a_second_run_skips_what_succeeded(ws):
    a = _script(ws, "a.py", "import duckdb, json, os\n"
                            "p = json.loads(os.environ['AGENTOPS_DATASETS'])['outputs']['raw.a']['path']\n"
                            "duckdb.sql(f\"COPY (SELECT range AS x FROM range(7)) TO '{p}' (FORMAT parquet)\")\n")
    _spec(ws, f"""  - {{name: a, kind: extract, outputs: [raw.a], command: [{PY}, {a}]}}
  - {{name: b, kind: transform, inputs: [raw.a], command: [{PY}, -c, "pass"]}}
""")
    spec = find_spec(ws, "p")
    result = execute(ws, plan_run(ws, spec, partitions=["2026-03-01"]))
    assert result.ok and result.runs["2026-03-01"] == "succeeded"
    runs = _runs(ws)
    assert runs[("manual__2026-03-01", "")]["state"] == "succeeded"
    assert runs[("manual__2026-03-01", "a")]["state"] == "succeeded"
    jobs = {e["task"]: e for e in _events(ws, "job")}
    assert jobs["a"]["rows_out"] == 7 and jobs["a"]["bytes"] > 0 and jobs["a"]["duration_s"] > 0
    import duckdb

    con = duckdb.connect(str(ws.data_dir / "warehouse.duckdb"), read_only=True)
    assert con.execute("SELECT count(*), min(agentops_partition) FROM raw.a").fetchone() == (7, "2026-03-01")
    con.close()
    # again: everything is skipped, nothing is logged
    before = len(_events(ws))
    again = plan_run(ws, spec, partitions=["2026-03-01"])
    assert again.partitions[0].tasks == [] and set(again.partitions[0].skipped) == {"a", "b"}
    assert execute(ws, again).ok and len(_events(ws)) == before
    # --rerun: a new attempt of each task; the table still holds the partition once
    rerun = execute(ws, plan_run(ws, spec, partitions=["2026-03-01"], rerun=True))
    assert rerun.ok and _runs(ws)[("manual__2026-03-01", "a")]["attempt"] == 2
    con = duckdb.connect(str(ws.data_dir / "warehouse.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM raw.a").fetchone() == (7,)
    con.close()


def test_manual_stage_stops_the_run_and_names_its_owner(ws):
    _spec(ws, f"""  - {{name: a, kind: extract, command: [{PY}, -c, "pass"]}}
  - {{name: sign_off, kind: custom, depends_on: [a], owner: devops}}
  - {{name: c, kind: load, depends_on: [sign_off], command: [{PY}, -c, "pass"]}}
""")
    r = run_agentops("pipeline", "run", "p", "--partition", "2026-03-01")
    assert r.returncode == 1
    assert "sign_off: manual stage" in r.stderr and "devops" in r.stderr
    runs = _runs(ws)
    assert runs[("manual__2026-03-01", "a")]["state"] == "succeeded"
    assert ("manual__2026-03-01", "c") not in runs  # not run, not failed: waiting
    assert runs[("manual__2026-03-01", "")]["state"] == "running"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def test_a_hanging_stage_is_killed_with_its_children_retried_then_failed(ws):
    pids = ws.root / "pids"
    hang = _script(ws, "hang.py", f"""import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
with open({str(pids)!r}, "a") as f:
    f.write(f"{{os.getpid()}} {{child.pid}}\\n")
time.sleep(600)
""")
    _spec(ws, f"""  - {{name: hang, kind: extract, command: [{PY}, {hang}], timeout: 1, retries: 1,
      backoff: {{initial: 0.1}}}}
  - {{name: after, kind: transform, depends_on: [hang], command: [{PY}, -c, "pass"]}}
  - {{name: last, kind: load, depends_on: [after], command: [{PY}, -c, "pass"]}}
""")
    started = time.monotonic()
    result = execute(ws, plan_run(ws, find_spec(ws, "p"), partitions=["2026-03-01"]))
    assert time.monotonic() - started < 60
    states = {t.task: t.state for t in result.tasks}
    assert states == {"hang": "failed", "after": "upstream_failed", "last": "upstream_failed"}
    lines = pids.read_text().split()
    assert len(lines) == 4  # two attempts, each a parent and a child
    for pid in map(int, lines):
        assert not _alive(pid), f"pid {pid} survived the timeout"
    runs = _runs(ws)
    assert runs[("manual__2026-03-01", "hang")]["state"] == "failed"
    assert runs[("manual__2026-03-01", "hang")]["attempt"] == 2
    assert "timed out after 1s" in runs[("manual__2026-03-01", "hang")]["error"]
    assert runs[("manual__2026-03-01", "after")]["state"] == "upstream_failed"
    assert runs[("manual__2026-03-01", "last")]["state"] == "upstream_failed"
    assert runs[("manual__2026-03-01", "")]["state"] == "failed"
    seen = [(e["task"], e["state"]) for e in _events(ws) if e.get("task") == "hang"]
    assert seen == [("hang", "running"), ("hang", "up_for_retry"), ("hang", "running"), ("hang", "failed")]


@pytest.mark.parametrize("arg", ["x; touch PWNED", "$(touch PWNED)", "`touch PWNED`", "a'b\"c",
                                 "line1\ntouch PWNED", "&& touch PWNED", "| touch PWNED > PWNED"])
def test_a_command_argument_runs_nothing_extra(ws, arg):
    got = ws.root / "got.json"
    echo = _script(ws, "echo.py", f"import json, sys\njson.dump(sys.argv[1:], open({str(got)!r}, 'w'))\n")
    write_spec(ws, "p", "name: p\nowner: data-engineer\nschedule: '@daily'\nstages:\n"
               + "  - " + json.dumps({"name": "a", "kind": "extract", "command": [PY, echo, arg, "tail"]}) + "\n")
    result = execute(ws, plan_run(ws, find_spec(ws, "p"), partitions=["2026-03-01"]))
    assert result.ok
    assert json.loads(got.read_text()) == [arg, "tail"]
    assert not (ws.root / "PWNED").exists() and not Path("PWNED").exists()


def test_a_shell_string_command_is_refused(ws):
    _spec(ws, "  - {name: a, kind: extract, command: 'echo hi; rm -rf /'}\n")
    r = run_agentops("pipeline", "check", "p")
    assert r.returncode == 1 and "never a shell string" in r.stdout


def test_two_runners_on_one_partition_one_runs_the_other_names_the_holder(ws):
    gate = ws.root / "gate"
    wait = _script(ws, "wait.py", f"import os, time\nopen({str(ws.root / 'started')!r}, 'w').close()\n"
                                  f"while not os.path.exists({str(gate)!r}):\n    time.sleep(0.02)\n")
    _spec(ws, f"  - {{name: a, kind: extract, command: [{PY}, {wait}]}}\n")
    env = {**os.environ, "AGENTOPS_WORKSPACE": str(ws.root), "AGENTOPS_AGENT": "devops"}
    first = subprocess.Popen([PY, "-m", "agentops", "pipeline", "run", "p", "--partition", "2026-03-01"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (ws.root / "started").exists():
            assert time.monotonic() < deadline and first.poll() is None, first.stderr.read() if first.poll() else ""
            time.sleep(0.02)
        second = run_agentops("pipeline", "run", "p", "--partition", "2026-03-01")
        assert second.returncode == 6
        assert f"pid {first.pid}" in second.stderr and "agent devops" in second.stderr
        assert "manual__2026-03-01" in second.stderr and second.stderr.count("\n") == 1
    finally:
        gate.touch()
        first.wait(60)
    assert first.returncode == 0, first.stderr
    succeeded = [e for e in _events(ws) if e["state"] == "succeeded" and e.get("task") == "a"]
    assert len(succeeded) == 1


def test_dry_run_runs_nothing_and_lists_reads_and_writes(ws):
    _spec(ws, f"""  - {{name: a, kind: extract, inputs: [src], outputs: [raw.a], command: [{PY}, -c, "pass"]}}
  - {{name: b, kind: transform, inputs: [raw.a], outputs: [raw.b], command: [{PY}, -c, "pass"]}}
""".replace("stages:", "stages:"))
    write_spec(ws, "p", (ws.pipelines_dir / "p.yaml").read_text().replace(
        "stages:", "sources:\n  - {name: src, kind: file, format: csv}\nstages:"))
    r = run_agentops("pipeline", "run", "p", "--start", "2026-03-01", "--end", "2026-03-03", "--from", "b",
                     "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert [p["partition"] for p in plan["partitions"]] == ["2026-03-01", "2026-03-02", "2026-03-03"]
    assert all(p["tasks"] == ["b"] for p in plan["partitions"])
    assert plan["reads"] == ["raw.a"] and plan["writes"] == ["raw.b"]
    assert not ws.db_path.exists() or _events(ws) == []
