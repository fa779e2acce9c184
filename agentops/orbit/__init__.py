"""Orbit: the pipeline and data-quality event log (SPEC §5).

`Orbit.open(ws)` is the Python API the CLI, daemon and MCP server share; `ingest_pending(ws)` takes
the JSONL files dropped in `.agent/orbit/`; `record(conn, *events)` writes agentops' own records
(mail) inside a transaction another module holds. Every kind is registered (`registry.py` says how
to add one; the models are in `events.py`). The names below load on first use, so the mail library
can import `agentops.orbit.registry` without pydantic.
"""

__all__ = ["IngestReport", "LogResult", "Orbit", "parse_since", "record"]

_WHERE = {"IngestReport": "log", "LogResult": "log", "Orbit": "log", "parse_since": "queries", "record": "registry"}


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'agentops.orbit' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"agentops.orbit.{_WHERE[name]}"), name)
