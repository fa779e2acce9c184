"""Helpers the command modules share: the workspace from the context, JSON output, tables."""

from __future__ import annotations

import json
import sys
from typing import Any, Iterable, Sequence

import typer

JSON_HELP = "Print JSON instead of text."


def workspace(ctx: typer.Context):
    """The workspace named by --workspace / $AGENTOPS_WORKSPACE / the folders above cwd."""
    from agentops.workspace import find_workspace

    root = ctx.find_root()
    explicit = (root.obj or {}).get("workspace") if root.obj else None
    ws = find_workspace(explicit)
    ws.config  # noqa: B018 - validate agentops.toml up front: a bad file is an error on every command
    return ws


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str, ensure_ascii=False) + "\n")


def table(rows: Iterable[Sequence[Any]], headers: Sequence[str]) -> None:
    """A plain aligned text table (cheap: no rich import on hot paths)."""
    rows = [["" if v is None else str(v) for v in r] for r in rows]
    widths = [len(h) for h in headers]
    for r in rows:
        for i, v in enumerate(r):
            widths[i] = max(widths[i], len(v))
    line = "  ".join(h.upper().ljust(w) for h, w in zip(headers, widths))
    out = [line.rstrip()]
    for r in rows:
        out.append("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
    typer.echo("\n".join(out))
