"""Options declared once, as data, for the commands agents run all day.

`agentops mail send` and the root options are declared here as `Option` rows (no typer import), and
everything else is built from those rows: the typer parameters (`signature`), the fast parser's
tables (`agentops.cli.fast`), the `Options:` block of `agentops --help` (`help_block`, the text
click prints for them) and, for `mail send`, the MCP tool's parameters (`agentops.mcpserver`). A
row's default says its kind: a tuple is a repeatable option (a list), a bool a flag, anything else an
option taking one value. A row's `mcp` says how an MCP tool takes it (`Mcp`); None: it does not.
"""

from __future__ import annotations

from collections import namedtuple

Option = namedtuple("Option", "name flags default help metavar mcp", defaults=(None, None))
# type: a name in agentops.mcpserver.ARGUMENT_TYPES; required: no default there; doc: its description
Mcp = namedtuple("Mcp", "type required doc", defaults=(False, None))

JSON_HELP = "Print JSON instead of text."

ROOT = (
    Option("workspace", ("--workspace", "-w"), None,
           "Workspace folder (default: $AGENTOPS_WORKSPACE, else walk up from here).", "PATH"),
    Option("version", ("--version",), False, "Show the version and exit."),
)
HELP_FLAGS = ("-h", "--help")
HELP_HELP = "Show this message and exit."


def takes_value(o: Option) -> bool:
    return not isinstance(o.default, bool)


def repeats(o: Option) -> bool:
    return isinstance(o.default, tuple)


def table(options) -> dict[str, tuple[str, bool, bool]]:
    """{option string: (parameter, takes a value, repeats)}: what the fast parser reads."""
    return {flag: (o.name, takes_value(o), repeats(o)) for o in options for flag in o.flags}


def defaults(options) -> dict:
    return {o.name: list(o.default) if repeats(o) else o.default for o in options}


def signature(func, options, *, callbacks: dict | None = None):
    """Give `func(ctx, **values)` typer parameters built from `options` (its `__signature__`), so
    typer builds the command from the same rows as the fast parser. `callbacks`: name -> (callback,
    is_eager) for options that need one (such as `--version`)."""
    import inspect
    from typing import List, Optional

    import typer

    params = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)]
    for o in options:
        callback, eager = (callbacks or {}).get(o.name, (None, False))
        info = typer.Option(list(o.default) if repeats(o) else o.default, *o.flags, help=o.help,
                            metavar=o.metavar, callback=callback, is_eager=eager)
        kind = List[str] if repeats(o) else bool if not takes_value(o) else Optional[str]
        params.append(inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=kind))
    func.__signature__ = inspect.Signature(params)
    return func


def help_block(options, width: int = 78) -> str:
    """The `Options:` section click prints for `options` (and -h/--help) on an 80-column terminal."""
    import textwrap

    rows = [(_opts(o), o.help) for o in options] + [(", ".join(HELP_FLAGS), HELP_HELP)]
    first_col = min(max(len(first) for first, _ in rows), 30) + 2
    out = ["Options:\n"]
    for first, text in rows:
        lines = textwrap.wrap(text, max(width - first_col - 2, 10)) or [""]
        pad = " " * (first_col - len(first)) if len(first) <= first_col - 2 else "\n" + " " * (first_col + 2)
        out.append(f"  {first}{pad}{lines[0]}\n")
        out += [f"{'':>{first_col + 2}}{line}\n" for line in lines[1:]]
    return "".join(out)


def _opts(o: Option) -> str:
    """click's first column: the option strings, shortest prefix first, then the metavar."""
    flags = sorted(o.flags, key=lambda f: len(f) - len(f.lstrip("-")))
    head = ", ".join(flags)
    if takes_value(o):
        head += f" {o.metavar or 'TEXT'}"
    return head
