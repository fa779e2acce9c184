"""`agentops status`: the JSON shape, the terminal report, --check, markdown."""

from __future__ import annotations

import json
import shutil

from agentops.orbit import Orbit
from tests.conftest import REPO, run_agentops


def _seed(ws):
    shutil.copy(REPO / ".agent" / "data" / "pipelines" / "orders_daily.yaml", ws.pipelines_dir)
    with Orbit.open(ws) as orbit:
        for state in ("queued", "running", "failed"):
            orbit.log({"kind": "run", "pipeline": "orders_daily", "run_id": "r1", "state": state,
                       "run_type": "scheduled", "logical_date": "2026-11-24", "attempt": 1,
                       "error": "extract timed out" if state == "failed" else None})
        orbit.log({"kind": "check", "pipeline": "orders_daily", "run_id": "r1", "dataset": "orders",
                   "check": "not_null:order_id", "passed": False, "severity": "error", "observed": 12,
                   "threshold": 0})
        orbit.log({"kind": "perf", "pipeline": "orders_daily", "task": "extract", "bottleneck": "network",
                   "note": "API pages of 100 rows", "status": "open"})


def test_status_json_shape_and_problems(ws, cli):
    from agentops.mail import send

    send(ws, sender="data-engineer", to=["devops"], subject="capacity", body="8 cores please")
    _seed(ws)
    r = cli("status", "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    assert s["version"] == 1 and s["healthy"] is False
    assert {"daemon", "agents", "queues", "pipelines", "quality", "perf_open", "alerts", "handoffs",
            "problems"} <= set(s)
    devops = next(a for a in s["agents"] if a["name"] == "devops")
    assert devops["unread"] == 1 and devops["unacked"] == 1 and devops["oldest_unread_age_s"] is not None
    orders = next(p for p in s["pipelines"] if p["name"] == "orders_daily")
    assert orders["failing"] and orders["latest"]["state"] == "failed" and orders["owner"] == "data-engineer"
    assert s["quality"]["failed_checks"][0]["check"] == "not_null:order_id"
    assert s["perf_open"][0]["bottleneck"] == "network"
    assert any("orders_daily: run r1 failed: extract timed out" in p for p in s["problems"])
    assert any(a["cause"] for a in s["alerts"])  # the failed run alerted its owner
    assert s["daemon"]["running"] is False


def test_status_check_exit_codes(ws, cli):
    assert cli("status", "--check").exit_code == 0
    _seed(ws)
    r = cli("status", "--check")
    assert r.exit_code == 1
    assert "problem(s)" in r.output and "orders_daily" in r.output


def test_status_markdown_report(ws, cli):
    _seed(ws)
    r = cli("status", "--format", "markdown")
    assert r.exit_code == 0
    text = (ws.reports_dir / "status.md").read_text()
    assert text.startswith("# Team status")
    assert "```mermaid" in text and "-->|\"Consult Database Engineer\"|" in text
    assert "| orders_daily | data-engineer | r1 | failed |" in text


def test_status_as_a_process_is_plain_without_a_terminal(ws):
    _seed(ws)
    r = run_agentops("status")
    assert r.returncode == 0, r.stderr
    assert "\x1b[" not in r.stdout  # no colour codes when not a terminal
    assert "orders_daily" in r.stdout and "failed" in r.stdout


def test_handoff_shows_in_status_and_prompt(ws, cli):
    r = cli("handoff", "--from", "data-engineer", "Consult Database Engineer",
            "--context", "orders_daily needs a partitioned orders table")
    assert r.exit_code == 0, r.output
    assert "handed off 'Consult Database Engineer' from data-engineer to database-engineer" in r.output
    s = json.loads(cli("status", "--json").output)
    assert s["handoffs"][0]["target"] == "database-engineer" and s["handoffs"][0]["sent"] is True
    p = cli("prompt", "database-engineer").output
    assert "### Handoff: Consult Database Engineer" in p
    assert "Need help with database schema" in p and "orders_daily needs a partitioned" in p


def test_handoff_draft_then_send(ws, cli):
    r = cli("handoff", "--from", "data-engineer", "Developer", "--json")  # by target; send: false
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["sent"] is False and res["draft"]
    s = json.loads(cli("status", "--json").output)
    assert next(a for a in s["agents"] if a["name"] == "data-engineer")["drafts"] == 1
    r = cli("mail", "send", "--draft", res["draft"])
    assert r.exit_code == 0, r.output
    s = json.loads(cli("status", "--json").output)
    assert next(a for a in s["agents"] if a["name"] == "developer")["unread"] == 1
    r = cli("handoff", "--from", "data-engineer", "No Such Label")
    assert r.exit_code == 5 and "has no handoff 'No Such Label'" in r.output


def test_handoff_links_the_pipelines_and_runs_its_context_mentions(ws, cli):
    _seed(ws)
    r = cli("handoff", "--from", "data-engineer", "Consult Database Engineer",
            "--context", "orders_daily run r1 died in extract; is the index on orders(order_id) missing?")
    assert r.exit_code == 0, r.output
    p = cli("prompt", "database-engineer").output
    assert "orders_daily (owner data-engineer): spec `.agent/data/pipelines/orders_daily.yaml`" in p
    assert "latest run r1 (failed)" in p and "- orders_daily run r1 (failed)" in p


HOSTILE = "\x1b[31m", "\x9b", "\n"  # an escape sequence, a one-byte CSI (C1), a line break


def _columns(header: str) -> list[int]:
    """Where each column of a table starts: at 0 and after each gap of two spaces or more."""
    import re

    return [0] + [m.end() for m in re.finditer(r" {2,}", header)]


def test_the_terminal_report_is_aligned_tables_and_agent_text_cannot_drive_the_terminal(ws):
    shutil.copy(REPO / ".agent" / "data" / "pipelines" / "orders_daily.yaml", ws.pipelines_dir)
    esc, csi, newline = HOSTILE
    r = run_agentops("mail", "send", "--from", "devops", "--to", "data-engineer", "-s", f"disk {esc}full{csi}2J",
                     "--body", "x")
    assert r.returncode == 0, r.stderr
    run_id = f"r1{esc}red{csi}x"  # agents log runs: the id reaches the Pipelines table, and the alert's subject
    event = {"pipeline": "orders_daily", "run_id": run_id, "state": "failed", "error": f"extract{newline}timed out"}
    r = run_agentops("orbit", "log", "run", "--event", json.dumps(event))
    assert r.returncode == 0, r.stderr
    r = run_agentops("reserve", "--as", "devops", "dataset:raw.orders", "--reason", f"why{esc}{csi}not{newline}now")
    assert r.returncode == 0, r.stderr
    s = json.loads(run_agentops("status", "--json").stdout)
    # the alert's subject is written one line, its controls blanked, and its mail delivered
    assert [a["subject"] for a in s["alerts"]] == ["[orbit] run failed: orders_daily r1 [31mred x"]
    assert s["alerts"][0]["status"] == "sent"
    assert next(a for a in s["agents"] if a["name"] == "data-engineer")["unread"] == 3  # that, mail send's, the reservation's

    r = run_agentops("status")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert not [c for c in out if c != "\n" and (ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0)], repr(out)
    sections = {}
    for block in out.strip("\n").split("\n\n")[1:-1]:  # after the daemon line, before the verdict
        title, header, *rows = block.split("\n")
        sections[title] = header, rows
    assert list(sections) == ["Agents", "Pipelines", "Alerts", "Reservations"]
    for title, (header, rows) in sections.items():
        starts = _columns(header)
        assert len(starts) == {"Agents": 7, "Pipelines": 7, "Alerts": 4, "Reservations": 5}[title], header
        for line in rows:  # every column starts at the same place in each row, after a gap
            assert all(line[s - 2:s] == "  " for s in starts[1:] if s < len(line)), (title, header, line)

    def cell(title: str, row_with: str, column: str) -> str:
        header, rows = sections[title]
        start = header.index(column)
        [row] = [line for line in rows if row_with in line]
        following = [s for s in _columns(header) if s > start]
        return row[start:following[0] if following else None].rstrip()

    blanked = "r1 [31mred x"
    assert cell("Pipelines", "orders_daily", "LATEST RUN") == blanked
    assert cell("Pipelines", "orders_daily", "STATE") == "failed"
    assert cell("Alerts", "data-engineer", "SUBJECT") == f"[orbit] run failed: orders_daily {blanked}"
    assert cell("Alerts", "data-engineer", "MAIL") == "sent"
    assert cell("Reservations", "devops", "REASON / CONFLICT") == "why [31m not now"
    header, rows = sections["Agents"]
    row = next(line for line in rows if line.startswith("data-engineer "))
    assert row[:header.index("UNACKED") - 2].endswith("  3")  # UNREAD is right-aligned under its header
    assert f"  - pipeline orders_daily: run {blanked} failed: extract timed out" in out.splitlines()


def test_colour_codes_never_shift_a_column():
    import re

    from agentops.cli.common import table_lines

    rows = [[("data-engineer", "bold"), ("Data Engineer", None), ("12", "red")], ["dev\x1b[2J", None, ("3", "bold red")]]
    plain = table_lines(rows, ["agent", "role", "unread"], right=("unread",))
    coloured = table_lines(rows, ["agent", "role", "unread"], right=("unread",), colour=True)
    assert plain == ["AGENT          ROLE           UNREAD",
                     "data-engineer  Data Engineer      12",
                     "dev [2J                            3"]
    assert "\x1b[1;31m3\x1b[0m" in coloured[2]
    assert [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in coloured] == plain  # only colour codes were added
