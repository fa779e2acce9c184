"""`status --format markdown`: the status as a Markdown report with mermaid pictures."""

from __future__ import annotations

import os
from pathlib import Path


def write_markdown(ws, status: dict) -> Path:
    from agentops.render import render
    from agentops.roles import graph_report

    text = render(ws, "status.md.j2", s=status, team=graph_report(ws.roles()))
    ws.reports_dir.mkdir(parents=True, exist_ok=True)
    path = ws.reports_dir / "status.md"
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path
