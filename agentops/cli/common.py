"""Helpers the command modules share: the workspace from the context, JSON output, tables."""

from __future__ import annotations

import json
import sys
from typing import Any, Iterable, Sequence

import typer

from agentops.cli.options import JSON_HELP  # noqa: F401 - declared with the options mail send shares


def explicit_workspace(ctx: typer.Context) -> str | None:
    """The root `--workspace` option's value, if it was given."""
    return (ctx.find_root().obj or {}).get("workspace")


def workspace(ctx: typer.Context):
    """The workspace named by --workspace / $AGENTOPS_WORKSPACE / the folders above cwd."""
    from agentops.workspace import find_workspace

    ws = find_workspace(explicit_workspace(ctx))
    ws.config  # noqa: B018 - validate agentops.toml up front: a bad file is an error on every command
    return ws


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str, ensure_ascii=False) + "\n")


def table(rows: Iterable[Sequence[Any]], headers: Sequence[str]) -> None:
    """A plain aligned text table (cheap: no rich import on hot paths; one pass per column, so an
    inbox of 25,000 messages prints in a few tens of milliseconds)."""
    rows = [["" if v is None else str(v) for v in r] for r in rows]
    columns = list(zip(*rows)) if rows else [()] * len(headers)
    widths = [max(len(h), max(map(len, col), default=0)) for h, col in zip(headers, columns)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*(h.upper() for h in headers)).rstrip()]
    out += [fmt.format(*r).rstrip() for r in rows]
    typer.echo("\n".join(out))


def show_rows(rows: list, as_json: bool, headers: Sequence[str], cells, empty: str) -> bool:
    """The common shape of a read command: JSON, or `empty` when there is nothing, or a table of
    `cells(row)`. Returns False when there was nothing (for a caller that adds a footer)."""
    if as_json:
        emit_json(rows)
        return bool(rows)
    if not rows:
        typer.echo(empty)
        return False
    table((cells(r) for r in rows), headers)
    return True
