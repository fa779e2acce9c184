"""`agentops demo` end to end: a real daemon, real files and subprocesses, in a scratch folder."""

from __future__ import annotations

import json
import mailbox

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
    assert "Traceback" not in out + r.stderr
    ws = Workspace(target)
    # the handoff, the reply and the alerts all reached real Maildirs
    de = mailbox.Maildir(ws.inbox("data-engineer"), create=False)
    subjects = sorted(str(m["Subject"]) for m in de)
    assert "Re: schema-review" in subjects
    assert any(s.startswith("Handoff: Report capacity") for s in subjects)
    assert any("run failed: orders_daily" in s for s in subjects)
    assert any("anomaly" in s for s in subjects)
    status = json.loads(run_agentops("status", "--json", env={"AGENTOPS_WORKSPACE": str(target)}).stdout)
    orders = next(p for p in status["pipelines"] if p["name"] == "orders_daily")
    assert orders["backfill"]["done"] == orders["backfill"]["total"] >= 2
    assert status["quality"]["anomalies"][0]["direction"] == "drop"
    assert {h["label"] for h in status["handoffs"]} == {"Coordinate with DevOps", "Report capacity to Data Engineer"}
    assert status["daemon"]["running"] is False and status["daemon"]["routed"] >= 5
    assert not list(ws.orbit_dir.glob("*.jsonl"))  # the daemon ingested every drop file
