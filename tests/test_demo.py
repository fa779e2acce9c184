"""`agentops demo` end to end: a real daemon, real files and subprocesses, in a scratch folder."""

from __future__ import annotations

import json
import mailbox
from datetime import date, timedelta

from agentops.orbit import Orbit
from agentops.workspace import Workspace
from tests.conftest import run_agentops


def test_demo_plays_the_whole_day(tmp_path):
    target = tmp_path / "demo"
    r = run_agentops("demo", "--dir", target, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    out = r.stdout
    for step in range(1, 9):
        assert f"\n{step}. " in out or out.startswith(f"{step}. ")
    assert "Explore it: cd " + str(target) in out
    refused = next(line for line in out.splitlines() if "Error: dataset:warehouse.fact_orders" in line)
    assert "held exclusive by database-engineer" in refused and "(exit 6: refused, nothing queued)" in out
    assert "Traceback" not in out + r.stderr
    ws = Workspace(target)
    # the handoff, the reply and the alerts all reached real Maildirs
    de = mailbox.Maildir(ws.inbox("data-engineer"), create=False)
    subjects = sorted(str(m["Subject"]) for m in de)
    assert "Re: schema-review" in subjects
    assert any(s.startswith("Handoff: Report capacity") for s in subjects)
    assert any("anomaly" in s for s in subjects)
    status = json.loads(run_agentops("status", "--json", env={"AGENTOPS_WORKSPACE": str(target)}).stdout)
    orders = next(p for p in status["pipelines"] if p["name"] == "orders_daily")
    assert orders["backfill"]["done"] == orders["backfill"]["total"] >= 2
    # the failed check and the anomaly come from the generated data, measured by `quality run`
    drops = [(a["dataset"], a["metric"]) for a in status["quality"]["anomalies"] if a["direction"] == "drop"]
    assert ("raw.orders", "row_count") in drops
    # issue 14 follow-ups: the one anomaly the demo stages (today's short file) is the only one status shows,
    # as one row for raw.orders and one alert; no growing key, no ordinary day, no score in the millions
    groups = status["quality"]["anomaly_groups"]
    assert [(g["dataset"], g["runs"]) for g in groups] == [("raw.orders", 1)], groups
    assert groups[0]["worst"]["metric"] in ("row_count", "null_fraction:customer_id")
    assert groups[0]["worst"]["run_id"] == f"quality-{date.today().isoformat()}"
    assert {"row_count", "null_fraction:customer_id"} <= set(groups[0]["metrics"])
    assert not [m for m in groups[0]["metrics"] if m.endswith(":order_id") and not m.startswith("distinct:")]
    assert all(abs(a["zscore"]) < 1000 for a in status["quality"]["anomalies"])
    assert [a["cause"] for a in status["alerts"]].count("anomaly") == 1
    assert not [a for a in status["alerts"] if "anomaly:" in a["subject"] and a["cause"] == "check"]  # no second mail
    assert sum(1 for p in status["problems"] if p.startswith("anomaly:")) == 1
    assert sum(1 for s in subjects if s.startswith("[orbit] anomaly")) == 1
    text = run_agentops("status", env={"AGENTOPS_WORKSPACE": str(target)}).stdout
    assert text.count("anomalies in raw.orders") == 1 and "anomaly distinct:" not in text
    failed = {(c["dataset"], c["check"]) for c in status["quality"]["failed_checks"]}
    assert ("raw.orders", "not_null:customer_id") in failed
    assert len(list(target.glob("data/raw/orders/date=*/part-0.parquet"))) == 15
    assert {h["label"] for h in status["handoffs"]} == {"Coordinate with DevOps", "Report capacity to Data Engineer"}
    assert status["daemon"]["running"] is False and status["daemon"]["routed"] >= 5
    assert not list(ws.orbit_dir.glob("*.jsonl"))  # the daemon ingested every drop file
    # orders_daily ran for real (issue 15.9): the late CDC export failed wait_for_cdc once, the retry passed;
    # a three-day backfill ran; every run and task succeeded, with job figures measured by the runner
    assert "attempt 1 failed (exit 1: CDC export not complete yet" in out
    days = [(date.today() - timedelta(days=n)).isoformat() for n in range(4, 0, -1)]
    with Orbit.open(ws) as orbit:
        runs = orbit.runs(pipeline="orders_daily", limit=None)
        jobs = orbit.jobs(pipeline="orders_daily")
    pipeline_runs = {(r["run_id"], r["state"]) for r in runs if not r.get("task")}
    assert pipeline_runs == {(f"manual__{days[-1]}", "succeeded")} | {(f"backfill__{d}", "succeeded") for d in days[:-1]}
    tasks = [r for r in runs if r.get("task")]
    assert len(tasks) == 4 * 8 and all(r["state"] == "succeeded" for r in tasks), tasks
    retried = {(r["run_id"], r["task"]): r["attempt"] for r in tasks if r["attempt"] != 1}
    assert retried == {(f"manual__{days[-1]}", "wait_for_cdc"): 2}
    loads = {j["run_id"]: j for j in jobs if j["task"] == "load_fact_orders"}
    assert set(loads) == {r for r, _ in pipeline_runs}
    assert all(j["rows_out"] >= 100 and j["bytes"] > 0 and j["duration_s"] > 0 for j in loads.values())
    fact = sorted(p.parent.name for p in target.glob("data/warehouse/fact_orders/order_date=*/*.parquet"))
    assert fact == [f"order_date={d}" for d in days]
    import duckdb

    got = duckdb.connect().execute(
        f"SELECT count(*), count(customer_sk), sum(items) FROM '{target}/data/warehouse/fact_orders/*/*.parquet'"
    ).fetchone()
    assert got[0] == sum(j["rows_out"] for j in loads.values()) and got[1] == got[0] and got[2] > got[0]


def _snapshot(root):
    """Every path under `root` with its content and mtime: what "nothing changed" means."""
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        out[str(path.relative_to(root))] = (st.st_mtime_ns, path.read_bytes() if path.is_file() else None)
    return out


def test_demo_refuses_a_workspace_a_folder_inside_one_and_a_folder_not_empty(ws, tmp_path):
    """Issue 12.1: `demo --dir` on a populated workspace replaced its agentops.toml, specs, mail and log."""
    from tests.test_mcp import REPO

    import shutil

    ws.config_path.write_text('[[agents]]\nname = "dana"\nrole = "Data Engineer"\n'
                              '[[agents]]\nname = "dave"\nrole = "Data Engineer"\n'
                              '[[agents]]\nname = "ops"\nrole = "DevOps"\n')
    for spec in (REPO / ".agent" / "data" / "pipelines").glob("*.yaml"):
        shutil.copy(spec, ws.pipelines_dir / spec.name)
    env = {"AGENTOPS_WORKSPACE": str(ws.root)}
    assert run_agentops("mail", "send", "--from", "ops", "--to", "dana", "-s", "hi", "--body", "x", env=env).returncode == 0
    assert run_agentops("orbit", "log", "note", "--text", "real work", env=env).returncode == 0
    (ws.root / "sub").mkdir()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine\n")
    before, before_other = _snapshot(ws.root), _snapshot(other)
    cases = [(ws.root, "is a workspace"), (ws.root / "sub", "is inside the workspace"),
             (ws.root / "new" / "deeper", "is inside the workspace"), (ws.agent_dir, "is inside the workspace"),
             (other, "is not empty"), (other / "notes.txt", "exists and is not a folder")]
    for target, says in cases:
        r = run_agentops("demo", "--dir", target, env=env)
        assert r.returncode == 2, (target, r.stdout, r.stderr)
        lines = r.stderr.splitlines()
        assert lines[0].startswith("Error: --dir: ") and says in lines[0] and len(lines) == 2, r.stderr
        assert r.stdout == ""
    assert _snapshot(ws.root) == before
    assert _snapshot(other) == before_other
