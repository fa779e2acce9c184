"""`status --format markdown`: the status as a Markdown report with mermaid pictures."""

from __future__ import annotations

from pathlib import Path


def write_markdown(ws, status: dict) -> Path:
    from agentops.render import render
    from agentops.roles import graph_report

    from agentops import safefs

    text = render(ws, "status.md.j2", s=status, team=graph_report(ws.roles()))
    path = ws.reports_dir / "status.md"
    safefs.write_atomic(ws, path, text)
    return path
