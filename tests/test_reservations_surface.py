"""Reservations where agents meet them: the MCP tools, status, prompt, the protocol text, the daemon."""

from __future__ import annotations

import json

from agentops import reservations as rs
from tests.test_mcp import error, ok, session


def test_mcp_reserve_and_release(ws):
    async def script(call):
        took = ok(await call("reserve", {"agent": "database-engineer", "targets": ["sql/**", "dataset:raw.orders"],
                                         "reason": "migration", "ttl": "1h"}))
        refused = error(await call("reserve", {"agent": "data-engineer", "targets": ["sql/a.sql"]}))
        released = ok(await call("release", {"agent": "database-engineer", "targets": ["sql/**"]}))
        again = ok(await call("reserve", {"agent": "data-engineer", "targets": ["sql/a.sql"], "shared": True}))
        return took, refused, released, again

    took, refused, released, again = session(ws, script)
    assert [r["target"] for r in took["reservations"]] == ["sql/**", "dataset:raw.orders"]
    assert "database-engineer" in refused and "migration" in refused and "sql/**" in refused
    assert [r["target"] for r in released["released"]] == ["sql/**"]
    assert again["reservations"][0]["exclusive"] is False
    assert {r.agent for r in rs.reservations(ws)} == {"database-engineer", "data-engineer"}


def test_status_shows_active_reservations_and_conflicts(ws, cli):
    from tests.pipeline_helpers import add_examples

    add_examples(ws)
    rs.reserve(ws, "database-engineer", ["dataset:warehouse.fact_orders"], reason="partitioning")
    cli("reserve", "--as", "data-engineer", "dataset:warehouse.*")
    s = json.loads(cli("status", "--json").output)
    assert [r["target"] for r in s["reservations"]["active"]] == ["dataset:warehouse.fact_orders"]
    conflict = s["reservations"]["conflicts"][0]
    assert conflict["agent"] == "data-engineer" and conflict["holder"] == "database-engineer"
    text = cli("status").output
    assert "Reservations" in text and "dataset:warehouse.fact_orders" in text and "conflict" in text


def test_prompt_lists_own_reservations_and_those_on_what_the_agent_owns(ws):
    from agentops.prompt import build_prompt
    from tests.pipeline_helpers import add_examples

    add_examples(ws)
    rs.reserve(ws, "database-engineer", ["dataset:warehouse.fact_orders"], reason="partitioning")
    mine = rs.reserve(ws, "data-engineer", [".agent/data/pipelines/orders_daily.yaml"]).reservations[0]
    rs.reserve(ws, "devops", ["dataset:unrelated.table"])
    text = build_prompt(ws, "data-engineer")
    assert f"You hold exclusive reservation {mine.id}" in text
    assert "database-engineer holds exclusive reservation" in text and "partitioning" in text
    assert "unrelated.table" not in text
    db_text = build_prompt(ws, "database-engineer")
    assert "data-engineer holds" not in db_text  # it owns no spec of orders_daily


def test_protocol_and_role_exports_teach_reserving(ws, cli):
    from agentops.prompt import build_prompt

    assert "agentops reserve --as devops" in build_prompt(ws, "devops")
    r = cli("roles", "export", "--target", "claude", "--out", ws.root / "out")
    assert r.exit_code == 0, r.output
    exported = (ws.root / "out" / ".claude" / "agents" / "database-engineer.md").read_text()
    assert "agentops reserve" in exported and "dataset:TABLE" in exported


def test_the_daemon_mails_the_holder_when_a_reserved_file_changes(ws):
    import io

    from agentops.daemon.core import Daemon
    from agentops.daemon.tasks import reservations_task
    from agentops.mail.inbox import inbox
    from tests.test_daemon import wait_for

    (ws.root / "sql" / "orders").mkdir(parents=True)
    spec = ws.root / "sql" / "orders" / "daily.sql"
    spec.write_text("select 1\n")
    (ws.root / "sql" / "other.sql").write_text("select 0\n")
    r = rs.reserve(ws, "database-engineer", ["sql/orders/*.sql"], reason="rewrite").reservations[0]
    box = {}

    def factory(daemon):
        box["task"] = reservations_task(daemon)
        return box["task"]

    def one_pass():
        before = box["task"].passes
        d.request_rescan("test")
        wait_for(lambda: box["task"].passes > before, timeout=10)

    d = Daemon(ws, log_stream=io.StringIO(), tasks=[factory])
    d.start()
    try:
        wait_for(lambda: "task" in box and box["task"].passes >= 1, timeout=10)  # the start scan: a baseline
        (ws.root / "sql" / "other.sql").write_text("select 00\n")  # not reserved: no mail
        spec.write_text("select 2 -- changed by someone\n")
        (ws.root / "sql" / "orders" / "new.sql").write_text("select 3\n")
        one_pass()
        spec.write_text("select 4\n")  # a second change of the same file is not mailed twice
        one_pass()
    finally:
        d.stop()
        d.join()
    from agentops.mail import route_if_no_daemon

    mail = inbox(route_if_no_daemon(ws), "database-engineer", unread=True, limit=50, newest=False)
    subjects = sorted(m["subject"] for m in mail)
    assert subjects == [f"[reservations] sql/orders/daily.sql changed while you hold sql/orders/*.sql ({r.id})",
                        f"[reservations] sql/orders/new.sql changed while you hold sql/orders/*.sql ({r.id})"]
    changed = [e for e in _events(ws) if e["action"] == "changed"]
    assert len(changed) == 2 and all(e["holder"] == "database-engineer" for e in changed)


def _events(ws) -> list[dict]:
    from agentops.orbit import Orbit

    with Orbit.open(ws) as orbit:
        return orbit.events(kind="reservation", limit=None)
