"""Helpers the command modules share: the workspace from the context, JSON output, tables."""

from __future__ import annotations

import json
import sys
from typing import Any, Iterable, Sequence

import typer

from agentops.cli.options import JSON_HELP  # noqa: F401 - declared with the options mail send shares
from agentops.text import one_line, width


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


_SGR = {"bold": "1", "red": "31", "green": "32", "yellow": "33", "blue": "34", "magenta": "35", "cyan": "36"}


def paint(text: str, style: str | None, colour: bool) -> str:
    """`text` in `style` ("green", "bold red", ...) when `colour` is on; as it is otherwise."""
    if not (colour and style and text):
        return text
    return f"\x1b[{';'.join(_SGR[s] for s in style.split())}m{text}\x1b[0m"


def table_lines(rows: Iterable[Sequence[Any]], headers: Sequence[str], right: Sequence[str] = (),
                colour: bool = False) -> list[str]:
    """A plain aligned text table as lines: upper-cased headers, then one line per row. A cell is a
    value or a `(value, style)` pair; the columns named in `right` are right-aligned. Every cell's
    text is blanked of control characters (`agentops.text.one_line`) and widths are the columns that
    text takes on a terminal (`agentops.text.width`: CJK and emoji take two), so neither wide
    characters nor colour codes (only when `colour`) shift a column. One pass per column: an inbox of 25,000
    messages prints in a few tens of milliseconds."""
    texts, styles = [], []
    for row in rows:
        cells = [c if isinstance(c, tuple) else (c, None) for c in row]
        texts.append(["" if v is None else one_line(str(v)) for v, _ in cells])
        styles.append([s for _, s in cells])
    heads = [one_line(h.upper()) for h in headers]
    columns = list(zip(*texts)) if texts else [()] * len(heads)
    ascii_only = all(map(str.isascii, heads)) and all(t.isascii() for col in columns for t in col)
    size = len if ascii_only else width  # columns on the terminal (CJK takes two each)
    widths = [max(size(h), max(map(size, col), default=0)) for h, col in zip(heads, columns)]
    aligned = [">" if h in right else "<" for h in headers]
    if not colour and ascii_only:  # the common case: one format string for every line
        fmt = "  ".join(f"{{:{a}{w}}}" for a, w in zip(aligned, widths))
        return [fmt.format(*heads).rstrip(), *(fmt.format(*r).rstrip() for r in texts)]

    def cell(text: str, style: str | None, cols: int, align: str) -> str:
        pad = " " * (cols - size(text))
        return paint(text, style, colour) + pad if align == "<" else pad + paint(text, style, colour)

    def line(cells: Sequence[str], cell_styles: Sequence[str | None]) -> str:
        return "  ".join(map(cell, cells, cell_styles, widths, aligned)).rstrip()

    return [line(heads, ["bold"] * len(heads)), *map(line, texts, styles)]


def table(rows: Iterable[Sequence[Any]], headers: Sequence[str]) -> None:
    """Print a plain aligned text table (cheap: no rich import on hot paths)."""
    typer.echo("\n".join(table_lines(rows, headers)))


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
