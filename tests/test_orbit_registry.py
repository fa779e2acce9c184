"""The one way to write an Orbit event: registered models, derivers per kind, results that say what
a write caused (issue 13 points 3 and 4)."""

from __future__ import annotations

import gc
import re
from pathlib import Path

import pytest

from agentops.orbit import Orbit
from agentops.orbit.events import describe
from agentops.orbit.registry import AGENTOPS_KINDS, MODELS, USER_KINDS

PACKAGE = Path(__file__).resolve().parent.parent / "agentops"


@pytest.fixture
def orbit(ws):
    with Orbit.open(ws) as o:
        yield o


def test_only_the_registry_inserts_into_events():
    writers = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
               if re.search(r"INSERT\s+(OR\s+\w+\s+)?INTO\s+events\b", p.read_text(encoding="utf-8"))]
    assert writers == ["orbit/registry.py"]


def test_every_kind_is_registered_with_its_writer():
    assert set(USER_KINDS) == {"run", "job", "check", "metric", "perf", "note"}
    assert set(AGENTOPS_KINDS) == {"anomaly", "alert", "mail", "handoff", "dispatch", "reservation", "schema",
                                   "schema_change", "watermark"}
    assert set(MODELS) == set(USER_KINDS) | set(AGENTOPS_KINDS)


def test_orbit_log_help_names_every_user_kind():
    from agentops.cli.orbit import KIND_HELP

    assert re.findall(r"\w+", KIND_HELP.replace(" or ", ", ")) == list(USER_KINDS)


def test_the_mcp_description_of_the_kinds_comes_from_the_models(ws):
    text = describe()
    for kind in USER_KINDS:
        fields = [n for n in MODELS[kind].model_fields if n not in ("kind", "ts", "id", "agent", "owner")]
        part = re.search(rf"\b{kind}: ([^.]*)\.", text).group(1)
        assert [f.split(" ")[0].rstrip("?") for f in part.split(", ")] == fields
    assert "severity? (warn|error)" in text and "bottleneck (io|cpu|network|serialization|memory)" in text

    from agentops.mcpserver import build_server

    import asyncio

    tools = asyncio.run(build_server(ws).list_tools())
    tool = next(t for t in tools if t.name == "orbit_log")
    assert text in tool.input_schema["properties"]["event"]["description"]


def test_a_write_returns_the_alerts_anomalies_and_upstream_failed_it_caused(ws, orbit):
    from pipeline_helpers import write_spec

    write_spec(ws, "orders", "name: orders\nowner: data-engineer\nschedule: '@daily'\nstages:\n"
               "  - {name: s0, kind: transform}\n  - {name: s1, kind: transform, depends_on: [s0]}\n"
               "  - {name: s2, kind: transform, depends_on: [s1]}\n")
    orbit.log({"kind": "run", "pipeline": "orders", "run_id": "r1", "task": "s2", "state": "queued"})
    r = orbit.log({"kind": "run", "pipeline": "orders", "run_id": "r1", "task": "s0", "state": "failed"})
    assert [d["kind"] for d in r.derived] == ["run", "run", "alert"]
    assert [(d["task"], d["state"]) for d in r.derived[:2]] == [("s1", "upstream_failed"), ("s2", "upstream_failed")]
    alert = r.derived[2]
    assert alert["owner"] == "data-engineer" and alert["subject"].startswith("[orbit] run failed: orders r1")
    assert alert["status"] == "sent"

    for day in range(1, 9):
        orbit.log({"kind": "metric", "pipeline": "orders", "name": "rows", "value": 100 + day % 2,
                   "ts": f"2026-11-{day:02d}T06:00:00Z"})
    r = orbit.log({"kind": "metric", "pipeline": "orders", "name": "rows", "value": 5, "ts": "2026-11-09T06:00:00Z"})
    assert [d["kind"] for d in r.derived] == ["anomaly", "alert"]
    assert r.derived[1]["cause"] == "anomaly" and r.derived[1]["seq"] > r.derived[0]["seq"] > r.seq


def test_library_writes_never_pause_the_garbage_collector(orbit):
    seen = []

    def lines():
        for i in range(3):
            seen.append(gc.isenabled())
            yield {"kind": "note", "text": f"n{i}"}

    assert gc.isenabled()
    assert orbit.log_many(lines()).accepted == 3
    assert seen == [True, True, True]


def test_dispatch_and_handoff_events_are_typed_and_derive_their_rows(ws, orbit):
    from agentops.dispatch import record

    record(ws, "data-engineer", "started", attempt=1, log=ws.root / "x.log")
    record(ws, "data-engineer", "succeeded", attempt=1, exit_code=0, duration_s=1.23456)
    row = next(r for r in orbit.db["dispatch_runs"].rows if r["agent"] == "data-engineer")
    assert (row["action"], row["exit_code"], row["duration_s"], row["runs"], row["log"]) == (
        "succeeded", 0, 1.235, 1, "x.log")
    ev = orbit.events(kind="dispatch")[-1]
    assert ev["agent"] == "data-engineer" and ev["action"] == "succeeded"
    with pytest.raises(Exception, match="action"):
        record(ws, "data-engineer", "exploded")
