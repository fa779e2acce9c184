"""The `orbit` MCP server: the SDK's in-process Client calling every tool for real on a temp
workspace, bad arguments as tool errors, one real stdio subprocess started the way `.vscode/mcp.json`
starts it, and the CLI not paying for the SDK at import."""

from __future__ import annotations

import json
import mailbox
import os
import shutil
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from mcp import Client, StdioServerParameters

from agentops.mcpserver import build_server
from agentops.workspace import Workspace, init_workspace

REPO = Path(__file__).resolve().parent.parent
TOOLS = {"mail_send", "mail_inbox", "mail_read", "mail_ack", "mail_claim", "mail_search", "mail_thread",
         "handoff", "orbit_log", "orbit_runs", "orbit_quality", "quality_run", "pipeline_check", "pipeline_plan", "pipeline_run",
         "status", "reserve", "release"}
TOKEN_BUDGET = 2000  # names + descriptions + input schemas of every tool, as characters / 4 (issue 12.14)


def session(ws, script):
    """Run `await script(call)` against an in-process client; `call(name, args)` -> CallToolResult."""

    async def main():
        async with Client(build_server(ws)) as client:
            async def call(name, args=None):
                return await client.call_tool(name, args or {})

            call.client = client
            return await script(call)

    return anyio.run(main)


def ok(result) -> dict:
    assert not result.is_error, result.content[0].text
    assert json.loads(result.content[0].text) == result.structured_content
    return result.structured_content


def error(result) -> str:
    assert result.is_error, result.structured_content
    text = result.content[0].text
    assert "\n" not in text and "Traceback" not in text
    return text


@pytest.fixture
def pipelines(ws):
    for spec in (REPO / ".agent" / "data" / "pipelines").glob("*.yaml"):
        shutil.copy(spec, ws.pipelines_dir / spec.name)
    return ws


# --- listing ------------------------------------------------------------------------------------
def test_lists_the_tools_each_described_and_typed(ws):
    async def script(call):
        return (await call.client.list_tools()).tools, call.client.server_info

    tools, info = session(ws, script)
    assert info.name == "orbit"
    assert {t.name for t in tools} == TOOLS
    for t in tools:
        assert t.description and len(t.description) < 120, t.name
        assert t.input_schema["type"] == "object", t.name
        assert t.output_schema and t.output_schema["type"] == "object", t.name
        assert "title" not in json.dumps(t.input_schema).replace('"title": {', ""), t.name
    send = next(t for t in tools if t.name == "mail_send")
    assert set(send.input_schema["required"]) == {"sender", "to", "subject", "body"}
    assert send.input_schema["properties"]["priority"]["enum"] == ["low", "normal", "high", "urgent"]


def test_mail_send_takes_the_cli_declaration(ws):
    """`mail send`'s signature is declared once (agentops.cli.mail_send.OPTIONS): the MCP tool's
    arguments are the rows with an `mcp` column, in their order, required as they say, and each is a parameter of the library call."""
    import inspect

    from agentops import mail
    from agentops.cli.mail_send import OPTIONS

    async def script(call):
        return next(t for t in (await call.client.list_tools()).tools if t.name == "mail_send")

    schema = session(ws, script).input_schema
    shared = [o for o in OPTIONS if o.mcp is not None]
    assert list(schema["properties"]) == [o.name for o in shared]
    assert set(schema["required"]) == {o.name for o in shared if o.mcp.required}
    for o in shared:  # the schema leaves defaults out to save tokens; where one shows, it is the CLI's
        default = list(o.default) if isinstance(o.default, tuple) else o.default
        assert schema["properties"][o.name].get("default", default) == default, o.name
    assert {o.name for o in shared} <= set(inspect.signature(mail.send).parameters)
    assert "body_file" not in schema["properties"] and "draft" not in schema["properties"]  # CLI-only rows


def test_the_tool_surface_fits_the_token_budget(ws):
    """What every agent pays for on every turn: each tool's name, description and input schema (JSON as
    the SDK's client gets it, json.dumps with its default separators), counted as characters / 4. New
    tools (quality_run, pipeline_run, reserve, release, ...) must fit in what is left."""

    async def script(call):
        return (await call.client.list_tools()).tools

    sizes = {t.name: len(t.name) + len(t.description or "") + len(json.dumps(t.input_schema))
             for t in session(ws, script)}
    tokens = sum(sizes.values()) / 4
    biggest = ", ".join(f"{n} {c / 4:.0f}" for n, c in sorted(sizes.items(), key=lambda x: -x[1])[:4])
    assert tokens <= TOKEN_BUDGET, (
        f"the MCP tool surface is {tokens:.0f} tokens (characters/4), over the budget of {TOKEN_BUDGET} by "
        f"{tokens - TOKEN_BUDGET:.0f}; trim descriptions and schemas (biggest: {biggest})")
    print(f"MCP tool surface: {len(sizes)} tools, {tokens:.0f} of {TOKEN_BUDGET} tokens, "
          f"{TOKEN_BUDGET - tokens:.0f} left (biggest: {biggest})")


def test_unknown_arguments_are_refused_naming_the_arguments_the_tool_takes(ws):
    async def script(call):
        return (await call("mail_inbox", {"agent": "devops", "limt": 5}),
                await call("status", {"since": "1d", "verbose": True, "format": "xml"}),
                await call("mail_inbox", {"agent": "devops"}))

    typo, two, fine = session(ws, script)
    assert error(typo) == "mail_inbox: unknown argument limt (takes: agent, unread, limit)"
    assert error(two) == "status: unknown arguments format, verbose (takes: since)"
    assert ok(fine)["total"] == 0


@pytest.mark.parametrize("name, args, expected", [
    ("orbit_runs", {"since": "yesterday"}, "orbit_runs: since: 'yesterday' is neither"),
    ("orbit_quality", {"since": "soon"}, "orbit_quality: since: 'soon' is neither"),
    ("status", {"since": "99999999d"}, "status: since: '99999999d' is out of range"),
    ("mail_send", {"sender": "devops", "to": ["developer"], "subject": "s", "body": "b", "priority": "asap"},
     "mail_send: bad arguments: priority: Input should be"),
])
def test_errors_name_the_tools_arguments_not_cli_flags(ws, name, args, expected):
    async def script(call):
        return await call(name, args)

    text = error(session(ws, script))
    assert text.startswith(expected) and "--" not in text, text


def test_instructions_follow_the_roster(ws):
    async def script(call):
        return call.client.server_info, call.client.instructions

    _, plain = session(ws, script)
    assert "Address agents by role slug (" in plain and "data-engineer" in plain and "mail_claim" not in plain
    ws.config_path.write_text('[[agents]]\nname = "dana"\nrole = "Data Engineer"\n'
                              '[[agents]]\nname = "dave"\nrole = "Data Engineer"\n'
                              '[[agents]]\nname = "ops"\nrole = "DevOps"\n')
    _, roster = session(Workspace(ws.root), script)
    assert "by slug" not in roster and "by role slug" not in roster
    assert "Address agents by name (dana, dave, ops)" in roster
    assert "Shared role queues: data-engineer" in roster and "mail_claim" in roster


def test_a_shared_role_queue_through_mcp_claim_search_thread(ws):
    """Issue 12.9: an MCP-only agent can reach alerts sent to its role's queue."""
    ws.config_path.write_text('[[agents]]\nname = "dana"\nrole = "Data Engineer"\n'
                              '[[agents]]\nname = "dave"\nrole = "Data Engineer"\n'
                              '[[agents]]\nname = "ops"\nrole = "DevOps"\n')
    ws = Workspace(ws.root)

    async def script(call):
        first = ok(await call("mail_send", {"sender": "ops", "to": ["data-engineer"], "subject": "disk full on etl-3",
                                            "body": "the nightly load will fail"}))["ids"][0]
        ok(await call("mail_send", {"sender": "ops", "to": ["data-engineer"], "subject": "second", "body": "later"}))
        queue = ok(await call("mail_inbox", {"agent": "data-engineer"}))
        dana = ok(await call("mail_claim", {"role": "data-engineer", "agent": "dana"}))
        again = await call("mail_claim", {"role": "data-engineer", "agent": "dave", "id": first})
        reply = ok(await call("mail_send", {"sender": "dana", "to": ["ops"], "subject": "Re: disk full on etl-3",
                                            "body": "moving the load to etl-4", "reply_to": first}))["ids"][0]
        return (first, reply, queue, dana, again, await call("mail_inbox", {"agent": "dana"}),
                await call("mail_search", {"query": "etl-4"}), await call("mail_thread", {"id": reply}),
                await call("mail_claim", {"role": "data-engineer", "agent": "ops"}),
                await call("mail_search", {"query": " "}))

    first, reply, queue, dana, again, inbox, found, thread, outsider, empty = session(ws, script)
    assert [m["subject"] for m in queue["messages"]] == ["disk full on etl-3", "second"]
    assert dana["id"] == first and dana["body"] == "the nightly load will fail"
    assert "already claimed by dana" in error(again)
    assert [m["id"] for m in ok(inbox)["messages"]] == [first]
    hits = ok(found)["messages"]
    assert [h["id"] for h in hits] == [reply] and "etl-4" in hits[0]["snippet"]
    assert [(m["id"], m["sender"]) for m in ok(thread)["messages"]] == [(first, "ops"), (reply, "dana")]
    assert "'ops' is not a member of role" in error(outsider)
    assert "empty search query" in error(empty)


def test_stdio_server_without_a_workspace_answers_and_errors_per_call(tmp_path):
    """Issue 12.14: the server exited before the handshake (the client saw "Connection closed")."""
    nowhere = tmp_path / "nowhere"
    nowhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "AGENTOPS_WORKSPACE"}
    params = StdioServerParameters(command=sys.executable, args=["-m", "agentops", "mcp"], env=env,
                                   cwd=str(nowhere))

    async def main():
        async with Client(params, read_timeout_seconds=20) as client:
            tools = (await client.list_tools()).tools
            first = await client.call_tool("status", {})
            init_workspace(nowhere)  # the workspace appears: the next call works, no restart
            return client.server_info, client.instructions, {t.name for t in tools}, first, \
                await client.call_tool("mail_inbox", {"agent": "devops"})

    info, about, names, first, later = anyio.run(main)
    assert info.name == "orbit" and names == TOOLS
    assert "No workspace was found" in about
    assert error(first).startswith("status: no agentops workspace in ")
    assert ok(later)["total"] == 0


# --- pipelines ----------------------------------------------------------------------------------
def test_pipeline_check_and_plan(pipelines):
    ws = pipelines

    async def script(call):
        return (await call("pipeline_check"), await call("pipeline_check", {"name": "orders_daily"}),
                await call("pipeline_plan", {"name": "orders_daily"}))

    every, one, plan = session(ws, script)
    every, one, plan = ok(every), ok(one), ok(plan)
    assert every["ok"] and "orders_daily" in every["pipelines"] and every["problems"] == []
    assert one == {"ok": True, "pipelines": ["orders_daily"], "problems": []}
    assert plan["pipeline"] == "orders_daily"
    assert plan["order"][0] in plan["levels"][0] and plan["critical_path"][-1] in plan["order"]
    assert {s["name"] for s in plan["stages"]} == set(plan["order"])


def test_pipeline_check_reports_problems_with_file_and_line(pipelines):
    ws = pipelines
    bad = ws.pipelines_dir / "orders_daily.yaml"
    bad.write_text(bad.read_text().replace("owner: data-engineer", "owner: nobody-here"))

    async def script(call):
        return await call("pipeline_check", {"name": "orders_daily"})

    out = ok(session(ws, script))
    assert out["ok"] is False
    assert any(p["file"].endswith("orders_daily.yaml") and "nobody-here" in p["message"] and p["line"]
               for p in out["problems"])


# --- errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, args, expected", [
    ("mail_inbox", {"agent": "data-engineer", "limit": 0}, "limit: Input should be greater than or equal to 1"),
    ("mail_send", {"sender": "data-engineer", "to": [], "subject": "s", "body": "b"}, "to: List should have at least 1"),
    ("mail_send", {"sender": "data-engineer", "subject": "s", "body": "b"}, "to: Field required"),
    ("orbit_runs", {"state": "exploded"}, "state: Input should be 'queued'"),
    ("pipeline_plan", {}, "name: Field required"),
    ("orbit_log", {"event": "not an object"}, "event: Input should be a valid dictionary"),
])
def test_bad_arguments_are_one_line_tool_errors(ws, name, args, expected):
    async def script(call):
        return await call(name, args)

    text = error(session(ws, script))
    assert text.startswith(f"{name}: bad arguments: ") and expected in text


def test_library_errors_are_tool_errors_with_the_library_message(pipelines):
    ws = pipelines

    async def script(call):
        return (await call("pipeline_plan", {"name": "nope"}),
                await call("pipeline_check", {"name": "nope"}),
                await call("no_such_tool", {}))

    plan, check, unknown = session(ws, script)
    assert "no pipeline 'nope'" in error(plan) and "orders_daily" in error(plan)
    assert "no pipeline 'nope'" in error(check)
    assert "no_such_tool" in error(unknown)


# --- the CLI ------------------------------------------------------------------------------------
def test_cli_import_does_not_import_the_sdk_or_heavy_modules():
    code = ("import agentops.cli, sys; heavy = [m for m in ('mcp', 'networkx', 'jinja2', 'watchdog') "
            "if m in sys.modules]; assert not heavy, heavy")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


def test_mcp_command_is_registered(cli):
    result = cli("mcp", "--help")
    assert result.exit_code == 0 and "orbit" in result.output


def test_stdio_server_started_as_vscode_mcp_json_starts_it(pipelines):
    """`.vscode/mcp.json` from `agentops init`: its command, args and env, `${workspaceFolder}` being
    the workspace. When init wrote a bare `agentops` that is not on this test's PATH, the venv's
    scripts folder (beside `sys.executable`) is put on PATH, as an activated venv would; failing
    that, the same module runs as `sys.executable -m agentops`."""
    ws = pipelines
    conf = json.loads((ws.root / ".vscode" / "mcp.json").read_text())["servers"]["orbit"]
    assert conf["type"] == "stdio" and conf["args"] == ["mcp"]
    env = {k: v.replace("${workspaceFolder}", str(ws.root)) for k, v in conf["env"].items()}
    assert env == {"AGENTOPS_WORKSPACE": str(ws.root)}
    if "PYTHONPATH" in os.environ:  # a worktree's code, not the editable install's
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    assert json.loads((ws.root / ".mcp.json").read_text())["mcpServers"]["orbit"]["args"] == ["mcp"]
    command, args = conf["command"], conf["args"]
    if not (os.path.isabs(command) and os.access(command, os.X_OK)) and not shutil.which(command):
        scripts = Path(sys.executable).parent
        if (scripts / command).is_file():
            env["PATH"] = f"{scripts}{os.pathsep}{os.environ.get('PATH', '')}"
        else:
            command, args = sys.executable, ["-m", "agentops", *args]
    params = StdioServerParameters(command=command, args=args, env=env, cwd=str(ws.root.parent))

    async def main():
        async with Client(params, read_timeout_seconds=20) as client:
            tools = (await client.list_tools()).tools
            return client.server_info, {t.name for t in tools}, await client.call_tool("pipeline_check", {})

    info, names, checked = anyio.run(main)
    assert info.name == "orbit" and names == TOOLS
    out = ok(checked)
    assert out["ok"] and "orders_daily" in out["pipelines"]


# --- orbit --------------------------------------------------------------------------------------
def test_orbit_log_then_runs(pipelines):
    ws = pipelines
    run = {"kind": "run", "pipeline": "orders_daily", "run_id": "r1", "state": "running",
           "logical_date": "2026-11-25", "id": "ev-1"}

    async def script(call):
        first = await call("orbit_log", {"event": run})
        again = await call("orbit_log", {"event": run})
        done = await call("orbit_log", {"event": {**run, "id": None, "state": "succeeded"}})
        return first, again, done, await call("orbit_runs", {"pipeline": "orders_daily"}), \
            await call("orbit_runs", {"state": "failed"})

    first, again, done, runs, failed = session(ws, script)
    first = ok(first)
    assert first["kind"] == "run" and first["seq"] >= 1 and first["id"] == "ev-1" and first["state"] == "running"
    assert ok(again)["seq"] is None  # same id: idempotent
    assert ok(done)["state"] == "succeeded"
    rows = ok(runs)["runs"]
    assert [(r["run_id"], r["state"], r["task"], r["logical_date"]) for r in rows] == \
        [("r1", "succeeded", None, "2026-11-25")]
    assert ok(failed)["runs"] == []


def test_failing_check_and_anomaly_show_in_orbit_quality_with_their_alerts(pipelines):
    ws = pipelines
    check = {"kind": "check", "pipeline": "orders_daily", "dataset": "warehouse.fact_orders",
             "check": "not_null:order_id", "passed": False, "severity": "error", "observed": 12, "threshold": 0}

    async def script(call):
        logged = await call("orbit_log", {"event": check})
        await call("orbit_log", {"event": {**check, "check": "unique:order_id", "passed": True}})
        for day, value in enumerate([1000, 1010, 990, 1005, 995, 1000]):
            await call("orbit_log", {"event": {"kind": "metric", "pipeline": "orders_daily", "name": "row_count",
                                               "value": value, "ts": f"2026-11-{10 + day}T02:00:00Z"}})
        drop = await call("orbit_log", {"event": {"kind": "metric", "pipeline": "orders_daily", "name": "row_count",
                                                  "value": 12, "ts": "2026-11-16T02:00:00Z"}})
        return logged, drop, await call("orbit_quality", {"pipeline": "orders_daily"}), \
            await call("orbit_quality", {"pipeline": "customers_dim"})

    logged, drop, quality, other = session(ws, script)
    assert [a["cause"] for a in ok(logged)["alerts"]] == ["check"]
    assert ok(logged)["alerts"][0]["owner"] == "data-engineer"
    drop = ok(drop)
    assert [a["metric"] for a in drop["anomalies"]] == ["row_count"]
    assert [a["cause"] for a in drop["alerts"]] == ["anomaly"]
    q = ok(quality)
    assert [(c["check"], c["passed"], c["observed"]) for c in q["failed_checks"]] == [("not_null:order_id", False, 12)]
    assert [(a["metric"], a["direction"], a["value"]) for a in q["anomalies"]] == [("row_count", "drop", 12)]
    assert ok(other) == {"failed_checks": [], "anomalies": []}


@pytest.mark.parametrize("event, expected", [
    ({"kind": "bogus"}, "kind: unknown kind 'bogus'"),
    ({"kind": "note", "text": "hi", "colour": "red"}, "note.colour: unknown field"),
    ({"kind": "run", "pipeline": "p", "run_id": "r"}, "run.state: Field required"),
])
def test_orbit_log_rejects_a_bad_event_naming_the_field(ws, event, expected):
    async def script(call):
        return await call("orbit_log", {"event": event}), await call("orbit_runs", {})

    rejected, runs = session(ws, script)
    assert expected in error(rejected)
    assert ok(runs)["runs"] == []


def test_orbit_errors_from_the_library_are_tool_errors(ws):
    run = {"kind": "run", "pipeline": "p", "run_id": "r", "state": "failed"}

    async def script(call):
        await call("orbit_log", {"event": run})
        return await call("orbit_log", {"event": {**run, "state": "running"}}), \
            await call("orbit_quality", {"since": "yesterday"})

    illegal, since = session(ws, script)
    assert "illegal transition failed -> running" in error(illegal)
    assert "'yesterday'" in error(since)


def test_orbit_log_refuses_kinds_agentops_writes(ws):
    forged = {"kind": "mail", "action": "delivered", "message_id": "<forged@x>", "sender": "ceo"}

    async def script(call):
        return await call("orbit_log", {"event": forged}), await call("orbit_log", {"event": {"kind": "alert"}})

    mail, alert = session(ws, script)
    assert error(mail) == "orbit_log: kind 'mail' is written by agentops itself; log run, job, check, metric, perf or note"
    assert "kind 'alert' is written by agentops itself" in error(alert)
    from agentops.orbit import Orbit

    with Orbit.open(ws) as orbit:
        assert orbit.events() == []


def test_since_out_of_range_is_a_tool_error(ws):
    async def script(call):
        return [await call(name, {"since": "99999999d"}) for name in ("status", "orbit_runs", "orbit_quality")]

    for result in session(ws, script):
        assert "'99999999d' is out of range" in error(result)


# --- mail ---------------------------------------------------------------------------------------
def test_mail_send_then_inbox_read_ack(ws):
    (ws.email_dir / "to-data-engineer-from-devops-capacity.email").write_text("Subject: capacity\n\n3 nodes free\n")

    async def script(call):
        sent = ok(await call("mail_send", {"sender": "data-engineer", "to": ["database-engineer"], "cc": ["devops"],
                                           "subject": "Schema review", "body": "Index on order_id?",
                                           "priority": "high"}))
        mid = sent["ids"][0]
        return (sent, await call("mail_inbox", {"agent": "database-engineer"}),
                await call("mail_read", {"id": mid}),
                await call("mail_read", {"id": mid, "agent": "database-engineer"}),
                await call("mail_inbox", {"agent": "database-engineer"}),
                await call("mail_ack", {"id": mid.strip("<>")[:10], "agent": "database-engineer"}),
                await call("mail_inbox", {"agent": "database-engineer", "unread": False}),
                await call("mail_inbox", {"agent": "data-engineer"}),
                await call("mail_read", {"id": "no-such-message"}),
                await call("mail_send", {"sender": "data-engineer", "to": ["nobody"], "subject": "s", "body": "b"}))

    sent, inbox, ambiguous, read, after_read, acked, everything, dropped, missing, unknown = session(ws, script)
    mid = sent["ids"][0]
    assert mid.startswith("<") and mid.endswith(">")
    inbox = ok(inbox)
    assert inbox["total"] == 1
    assert inbox["messages"] == [{**inbox["messages"][0], "id": mid, "sender": "data-engineer",
                                  "to": ["database-engineer"], "subject": "Schema review", "priority": "high",
                                  "state": "unread"}]
    assert "2 inboxes" in error(ambiguous)
    read = ok(read)
    assert (read["body"], read["cc"], read["state"]) == ("Index on order_id?", ["devops"], "read")
    assert ok(after_read)["messages"] == []
    assert ok(acked) == {"id": mid, "state": "acked"}
    assert [m["state"] for m in ok(everything)["messages"]] == ["acked"]
    # a file dropped by an agent is routed when no daemon runs, as the mail CLI does
    assert [(m["sender"], m["subject"]) for m in ok(dropped)["messages"]] == [("devops", "capacity")]
    assert "no message with id 'no-such-message'" in error(missing)
    assert "unknown address 'nobody'" in error(unknown)


def test_inbox_limit_keeps_the_total(ws):
    async def script(call):
        for i in range(3):
            ok(await call("mail_send", {"sender": "devops", "to": ["developer"], "subject": f"m{i}", "body": "b"}))
        return await call("mail_inbox", {"agent": "developer", "limit": 2})

    out = ok(session(ws, script))
    assert out["total"] == 3 and [m["subject"] for m in out["messages"]] == ["m0", "m1"]


# --- handoff and status -------------------------------------------------------------------------
def test_handoff_sends_or_drafts_and_status_shows_it(pipelines):
    ws = pipelines

    async def script(call):
        return (await call("handoff", {"sender": "data-engineer", "label": "Consult Database Engineer",
                                       "context": "orders_daily needs an index on order_id"}),
                await call("handoff", {"sender": "data-engineer", "label": "Consult Database Engineer",
                                       "draft": True}),
                await call("handoff", {"sender": "data-engineer", "label": "no such handoff"}),
                await call("mail_inbox", {"agent": "database-engineer"}),
                await call("orbit_log", {"event": {"kind": "run", "pipeline": "orders_daily", "run_id": "r9",
                                                   "state": "failed", "error": "timeout"}}),
                await call("status", {}))

    sent, draft, unknown, inbox, _, status = session(ws, script)
    sent, draft = ok(sent), ok(draft)
    assert sent["sent"] and sent["target"] == "database-engineer" and len(sent["message_ids"]) == 1
    assert not draft["sent"] and draft["draft"] and draft["message_ids"] == []
    assert "has no handoff 'no such handoff'" in error(unknown)
    assert [m["subject"] for m in ok(inbox)["messages"]] == ["Handoff: Consult Database Engineer"]
    status = ok(status)
    assert status["workspace"] == str(ws.root) and status["healthy"] is False
    assert {a["name"]: a["unread"] for a in status["agents"]}["database-engineer"] == 1
    orders = next(p for p in status["pipelines"] if p["name"] == "orders_daily")
    assert orders["failing"] and orders["latest"]["run_id"] == "r9"
    assert [h["label"] for h in status["handoffs"]] == ["Consult Database Engineer"] * 2


def test_each_call_sees_the_workspace_as_it_is_now(ws):
    """A long-running server picks up a roster change without a restart."""

    async def script(call):
        before = await call("mail_inbox", {"agent": "dana"})
        (ws.root / "agentops.toml").write_text('[[agents]]\nname = "dana"\nrole = "Data Engineer"\n')
        return before, await call("mail_inbox", {"agent": "dana"})

    before, after = session(ws, script)
    assert "no inbox or role queue named 'dana'" in error(before)
    assert ok(after) == {"agent": "dana", "total": 0, "messages": []}


def test_a_crash_inside_a_tool_is_a_tool_error_without_internals(ws, monkeypatch):
    import agentops.status

    def broken(*args, **kwargs):
        raise RuntimeError("secret internals /etc/passwd")

    monkeypatch.setattr(agentops.status, "collect", broken)

    async def script(call):
        return await call("status"), await call("pipeline_check")

    crashed, still_serving = session(ws, script)
    assert error(crashed) == "Error executing tool status"
    assert ok(still_serving)["ok"] is True


def test_schemas_are_lean_and_still_valid_json_schema(ws):
    import jsonschema

    async def script(call):
        return (await call.client.list_tools()).tools

    for t in session(ws, script):
        for schema in (t.input_schema, t.output_schema):
            jsonschema.Draft202012Validator.check_schema(schema)
            text = json.dumps(schema)
            assert '"anyOf": [{"type": "string"}, {"type": "null"}]' not in text, t.name
    runs = next(t for t in session(ws, script) if t.name == "orbit_runs").input_schema["properties"]
    jsonschema.validate({"state": None, "pipeline": None}, {"type": "object", "properties": runs})
    assert runs["limit"] == {"default": 20, "maximum": 500, "minimum": 1, "type": "integer"}


def test_mail_send_that_is_not_delivered_is_a_tool_error(ws, tmp_path):
    ws.config_path.write_text("[mail]\nmax_bytes = 4096\n")
    outside = tmp_path / "out"
    outside.mkdir()
    ws.inbox_root.mkdir(parents=True, exist_ok=True)
    os.symlink(outside, ws.inbox("devops"))
    args = {"sender": "data-engineer", "to": ["devops"], "subject": "s"}

    async def script(call):
        return await call("mail_send", {**args, "body": "x" * 5000}), await call("mail_send", {**args, "body": "b"})

    too_big, dead = session(ws, script)
    assert "over the limit of 4096 bytes" in error(too_big)
    text = error(dead)
    assert "was not delivered: dead letter" in text and "unsafe_mailbox" in text and "mail retry" in text
    assert list(outside.iterdir()) == []


def test_mail_send_with_a_blind_copy(ws):
    async def script(call):
        return await call("mail_send", {"sender": "data-engineer", "to": ["devops"], "bcc": ["developer"],
                                        "subject": "quiet", "body": "b"})

    sent = session(ws, script)
    ok(sent)
    copies = [next(iter(mailbox.Maildir(ws.inbox(a), create=False))) for a in ("devops", "developer")]
    assert [c["Subject"] for c in copies] == ["quiet", "quiet"]
    assert all(c["Bcc"] is None and "developer" not in c["To"] for c in copies)


def test_pipeline_run_tool_runs_the_stages_and_records_them(ws):
    """MCP `pipeline_run`: the runner, as `agentops pipeline run`; its result is each task's state."""
    import sys

    from agentops.orbit import Orbit
    from tests.pipeline_helpers import write_spec

    write_spec(ws, "p", "name: p\nowner: data-engineer\nschedule: '@daily'\nstages:\n"
                        f"  - {{name: a, kind: extract, command: [{sys.executable}, -c, 'pass']}}\n"
                        f"  - {{name: b, kind: load, depends_on: [a], command: [{sys.executable}, -c, 'import sys; sys.exit(3)'],"
                        " retries: 0}\n")
    async def script(call):
        return await call("pipeline_run", {"name": "p", "partition": "2026-03-01"})

    data = ok(session(ws, script))
    assert data["ok"] is False
    assert {t["task"]: t["state"] for t in data["tasks"]} == {"a": "succeeded", "b": "failed"}
    with Orbit.open(ws) as orbit:
        assert orbit.run("p", "manual__2026-03-01", "b")["state"] == "failed"
