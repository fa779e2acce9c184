"""Orbit: the pipeline and data-quality event log (SPEC §5).

`Orbit.open(ws)` is the Python API the CLI, daemon and MCP server share; `ingest_pending(ws)` takes
the JSONL files dropped in `.agent/orbit/`.
"""

from agentops.orbit.log import IngestReport, LogResult, Orbit
from agentops.orbit.queries import parse_since

__all__ = ["IngestReport", "LogResult", "Orbit", "parse_since"]
