"""Issue 12 point 3: an event without an `id` gets a deterministic one, so a replay is a no-op
everywhere (drop files and `orbit ingest`: from the file and the line; the CLI and MCP: from the
content with its `ts`), and job and metric figures never double."""

from __future__ import annotations

import json

from conftest import run_agentops

from agentops.orbit import Orbit

LINES = [
    {"kind": "job", "pipeline": "orders", "task": "load", "rows_out": 100, "ts": "2026-11-01T06:00:00Z"},
    {"kind": "metric", "pipeline": "orders", "name": "row_count", "value": 100, "ts": "2026-11-01T06:00:00Z"},
    {"kind": "metric", "pipeline": "orders", "name": "row_count", "value": 100},  # no ts: still the same line
    {"kind": "check", "pipeline": "orders", "dataset": "d", "check": "c", "passed": True},
    {"kind": "note", "text": "loaded"},
]


def figures(ws) -> dict:
    with Orbit.open(ws) as orbit:
        c = orbit.db.conn
        return {t: c.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("events", "jobs", "metrics")}


def test_ingesting_a_file_twice_logs_it_once(ws, tmp_path, cli):
    f = tmp_path / "ev.jsonl"
    f.write_text("".join(json.dumps(e) + "\n" for e in LINES))
    first = cli("orbit", "ingest", f, "--json")
    assert first.exit_code == 0 and json.loads(first.output)["accepted"] == 5
    after = figures(ws)
    assert after == {"events": 5, "jobs": 1, "metrics": 2}
    again = json.loads(cli("orbit", "ingest", f, "--json").output)
    assert (again["accepted"], again["duplicates"]) == (0, 5)
    assert figures(ws) == after
    # one line added at the end: only it is new
    f.write_text(f.read_text() + json.dumps({"kind": "note", "text": "more"}) + "\n")
    assert json.loads(cli("orbit", "ingest", f, "--json").output)["accepted"] == 1


def test_a_drop_file_dropped_again_is_a_no_op(ws):
    text = "".join(json.dumps(e) + "\n" for e in LINES)
    for _ in range(2):
        (ws.orbit_dir / "batch.jsonl").write_text(text)
        done = run_agentops("daemon", "--once")
        assert done.returncode == 0, done.stderr
    assert figures(ws) == {"events": 5, "jobs": 1, "metrics": 2}
    assert len(list((ws.orbit_dir / "processed").iterdir())) == 2


def test_the_cli_and_mcp_dedupe_an_event_sent_again_with_its_ts(ws, cli):
    args = ("orbit", "log", "metric", "--pipeline", "orders", "--name", "rows", "--value", "5",
            "--ts", "2026-11-02T06:00:00Z")
    assert cli(*args).output.startswith("logged metric #1")
    assert "already logged" in cli(*args).output
    # without a ts, each call is a new event (its ts is now)
    cli("orbit", "log", "note", "--text", "hi")
    cli("orbit", "log", "note", "--text", "hi")
    assert figures(ws) == {"events": 3, "jobs": 0, "metrics": 1}

    import anyio
    from mcp import Client

    from agentops.mcpserver import build_server

    async def main():
        async with Client(build_server(ws)) as client:
            event = {"kind": "job", "pipeline": "orders", "task": "t", "rows_out": 7, "ts": "2026-11-03T00:00:00Z"}
            a = await client.call_tool("orbit_log", {"event": event})
            b = await client.call_tool("orbit_log", {"event": event})
            return a.structured_content, b.structured_content

    a, b = anyio.run(main)
    assert a["seq"] == 4 and b["seq"] is None and a["id"] == b["id"]
    assert figures(ws) == {"events": 4, "jobs": 1, "metrics": 1}
