"""The roster and shared queues tell one story (issue 12.9), and `status --check` sees what is broken
(12.13): with two members in a role, every text an agent reads uses its own address and says how to
work the role's queue; `roles list` shows members; `status` reports inboxes nobody owns, broken role
files and rejected Orbit lines."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

from agentops.workspace import Workspace
from tests.conftest import run_agentops

ROSTER = ('[[agents]]\nname = "dana"\nrole = "Data Engineer"\n'
          '[[agents]]\nname = "dave"\nrole = "Data Engineer"\n'
          '[[agents]]\nname = "ops"\nrole = "DevOps"\n'
          '[[agents]]\nname = "dbe"\nrole = "Database Engineer"\n')


def _roster(ws) -> Workspace:
    ws.config_path.write_text(ROSTER)
    return Workspace(ws.root)


def test_prompt_of_a_role_member_uses_her_address_and_explains_the_queue(ws, cli):
    _roster(ws)
    r = cli("prompt", "dana")
    assert r.exit_code == 0, r.output
    text = r.output
    assert "Your address:** `dana`" in text
    # nothing tells her the role's address is hers: no inbox or "your address" of the role anywhere
    assert ".agent/email/inbox/data-engineer/" not in text
    assert "mail inbox data-engineer --unread" not in text
    assert not re.search(r"[Yy]our address is `data-engineer`", text)
    assert "agentops mail claim data-engineer --as dana" in text
    assert ".agent/email/queues/data-engineer/" in text and "`dana`, `dave`" in text
    assert "`mail_claim`" in text and "`mail_search`" in text and "`mail_thread`" in text
    # the single member of a role has no queue to work
    devops = cli("prompt", "ops").output
    assert "Your address:** `ops`" in devops and "agentops mail claim devops" not in devops
    assert "Your role's queue" not in devops and ".agent/email/queues/" not in devops
    assert ".agent/email/inbox/devops/" not in devops


def test_exports_with_a_shared_role_name_no_single_address(ws, cli):
    _roster(ws)
    for target in ("claude", "vscode", "agents-md"):
        assert cli("roles", "export", "--target", target).exit_code == 0
    claude = (ws.root / ".claude" / "agents" / "data-engineer.md").read_text()
    vscode = (ws.root / ".github" / "agents" / "Data Engineer.agent.md").read_text()
    agents_md = (ws.root / "AGENTS.md").read_text()
    for text in (claude, vscode):
        assert "Your address:** your own name in the roster (one of `dana`, `dave`)" in text
        assert "Your address:** `data-engineer`" not in text
        assert ".agent/email/inbox/data-engineer/" not in text
        assert "agentops mail claim data-engineer --as <you>" in text
    assert "### Data Engineer (`dana`, `dave`; shared queue `data-engineer`)" in agents_md
    assert "### DevOps (`ops`)" in agents_md
    assert "Your address:** `ops`" in (ws.root / ".claude" / "agents" / "devops.md").read_text()


def test_handoff_to_a_shared_role_goes_to_its_queue(ws, cli):
    _roster(ws)
    r = cli("handoff", "--from", "ops", "Report capacity to Data Engineer", "--context", "4 workers", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["target"] == "data-engineer"
    queue = json.loads(cli("mail", "inbox", "data-engineer", "--json").output)
    assert [m["subject"] for m in queue] == ["Handoff: Report capacity to Data Engineer"]


def test_roles_list_shows_members_and_queues(ws, cli):
    _roster(ws)
    rows = json.loads(cli("roles", "list", "--json").output)
    by_name = {r["name"]: r for r in rows}
    assert by_name["Data Engineer"]["members"] == ["dana", "dave"] and by_name["Data Engineer"]["queue"] is True
    assert by_name["DevOps"]["members"] == ["ops"] and by_name["DevOps"]["queue"] is False
    assert by_name["Developer"]["members"] == []
    text = cli("roles", "list").output
    assert re.search(r"Data Engineer\s+data-engineer \(queue\)\s+dana, dave", text), text
    assert re.search(r"Developer\s+developer\s+-", text), text


def test_status_reports_inboxes_no_agent_owns_any_more(ws, cli):
    """Mail delivered to role addresses before the roster was added stays in inboxes nobody reads."""
    assert cli("mail", "send", "--from", "devops", "--to", "data-engineer", "-s", "before the roster",
               "--body", "x").exit_code == 0
    _roster(ws)
    s = json.loads(cli("status", "--json").output)
    orphans = {o["box"]: o["messages"] for o in s["orphans"]}
    assert orphans[".agent/email/inbox/data-engineer/"] == 1
    (ws.inbox_root / "developer" / "new").mkdir(parents=True)  # empty: listed, but no problem
    s = json.loads(cli("status", "--json").output)
    assert {o["box"]: o["messages"] for o in s["orphans"]}[".agent/email/inbox/developer/"] == 0
    problems = [p for p in s["problems"] if "belongs to no agent" in p]
    assert problems == [".agent/email/inbox/data-engineer/ belongs to no agent and holds 1 message(s) nobody "
                        "reads (left from an earlier roster?); move them to an agent's inbox, then remove it"]
    r = cli("status", "--check")
    assert r.exit_code == 1 and "inbox/data-engineer/ belongs to no agent" in r.output.replace("\n", " ")
    assert re.search(r"\ninbox/data-engineer/  +\(no agent; 1 held\) +1\n", r.output), r.output


def test_status_check_lists_a_broken_role_file(ws, cli):
    assert cli("status", "--check").exit_code == 0
    role = ws.roles_dir / "DevOps.agent.md"
    role.write_text(role.read_text().replace("name: DevOps", "name: [DevOps", 1))
    r = cli("mail", "send", "--from", "devops", "--to", "developer", "-s", "x", "--body", "y")
    assert r.exit_code != 0 and "unknown sender 'devops'" in r.output
    r = cli("status", "--check")
    assert r.exit_code == 1, r.output
    s = json.loads(cli("status", "--json").output)
    found = [p for p in s["problems"] if p.startswith("role file ")]
    assert found[0].startswith("role file roles/DevOps.agent.md:") and "agentops roles check" in found[0]
    assert s["healthy"] is False and s["roles"]["files"] == 4


def test_status_check_lists_rejected_orbit_lines(ws, cli):
    from agentops.orbit.ingest import ingest_pending

    (ws.orbit_dir / "airflow.jsonl").write_text(
        '{"kind": "note", "text": "fine"}\n{"kind": "run", "pipeline": "p", "run_id": "r", "state": "exploded"}\n'
        '{"kind": "nonsense"}\n')
    report = ingest_pending(ws)
    assert report.accepted == 1 and len(report.rejected) == 2
    r = cli("status", "--check")
    assert r.exit_code == 1
    s = json.loads(cli("status", "--json").output)
    assert s["orbit_rejected"] == [{"file": ".agent/orbit/rejected/airflow.jsonl.rejected.jsonl",
                                    "source": "airflow.jsonl", "lines": 2,
                                    "reason": s["orbit_rejected"][0]["reason"]}]
    assert s["orbit_rejected"][0]["reason"].startswith("line 2: run.state")
    [problem] = [p for p in s["problems"] if p.startswith("orbit: ")]
    assert problem.startswith("orbit: 2 line(s) of airflow.jsonl rejected (.agent/orbit/rejected/")


def test_daemon_with_a_roster_naming_an_unknown_role_says_so_once(ws):
    """Issue 12.7: the daemon logged the same task error with a traceback at every rescan."""
    ws.config_path.write_text('[daemon]\nrescan_seconds = 0.2\n[[agents]]\nname = "dana"\nrole = "Data Wizard"\n')
    proc = subprocess.Popen([sys.executable, "-m", "agentops", "daemon"], stderr=subprocess.PIPE, text=True,
                            stdout=subprocess.DEVNULL)
    beat = ws.run_dir / "daemon.json"

    def rescans() -> int:
        try:
            return json.loads(beat.read_text()).get("rescans") or 0
        except (OSError, ValueError):
            return 0

    try:  # each rescan retries the tasks that failed to start
        deadline = time.monotonic() + 60
        while rescans() < 5 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert rescans() >= 5, "the daemon did not rescan"
    finally:
        proc.terminate()
        err = proc.communicate(timeout=30)[1]
    errors = [line for line in err.splitlines() if "task-error" in line]
    assert "Traceback" not in err, err
    assert errors and all("unknown role 'Data Wizard'" in line for line in errors), err
    assert len(errors) == len({re.search(r"task=(\S+)", line).group(1) for line in errors}), err  # once per task
    r = run_agentops("status")
    assert r.returncode == 3 and r.stderr.startswith("Error: agentops.toml:agents[0].role: unknown role 'Data Wizard'")


def test_status_reads_no_rejected_file_through_a_link(ws, cli, tmp_path):
    outside = tmp_path / "secret.jsonl"
    outside.write_text('{"file": "x", "line": 1, "reason": "SECRET from outside"}\n')
    rejected = ws.orbit_dir / "rejected"
    rejected.mkdir(parents=True, exist_ok=True)
    (rejected / "evil.jsonl.rejected.jsonl").symlink_to(outside)
    s = json.loads(cli("status", "--json").output)
    assert "SECRET" not in json.dumps(s)


def test_roles_check_flags_a_shared_role_body_that_claims_the_role_address(ws, cli):
    ws = _roster(ws)
    assert cli("roles", "check").exit_code == 0  # the packaged role bodies refer to the protocol
    role = ws.roles_dir / "Data Engineer.agent.md"
    role.write_text(role.read_text() + "\n**Email:** your address is `data-engineer`; your inbox is "
                    "`.agent/email/inbox/data-engineer/`.\n")  # as role files said before the roster
    r = cli("roles", "check")
    assert r.exit_code == 1
    assert r.output.startswith("roles/Data Engineer.agent.md: body: says 'address is `data-engineer'"), r.output
    assert "2 agents share this role (dana, dave)" in r.output
    s = json.loads(cli("status", "--json").output)
    assert any("2 agents share this role" in p for p in s["problems"])
    role.write_text(role.read_text().replace("your address is `data-engineer`", "x"))
    (ws.root / "agentops.toml").write_text(ROSTER.replace('name = "dave"\nrole = "Data Engineer"', 'name = "dave"\nrole = "Developer"'))
    assert cli("roles", "check").exit_code == 0  # one member: the role's address is hers
