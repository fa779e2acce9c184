"""Commands agents run all day, parsed without typer.

Agents send mail with `agentops mail send` many times a session, and importing typer (with the
pydantic it parses options through) takes several times longer than Python takes to start. So
`agentops.cli.main` first offers the command line to `run()` here: when it is a `mail send` whose
options this small parser reads exactly as typer would, the command runs from here (the same code
as the typer command: `agentops.cli.mail_send`). Anything else (`--help`, an option it does not
know, a missing value, combined short options, `--`, a stray argument) returns None and typer
handles it, with its usual help and errors. The tables below are built from the one declaration
of the options (`agentops.cli.mail_send.OPTIONS`, `agentops.cli.options.ROOT`), which the typer
commands are built from too.
"""

from __future__ import annotations

import sys

from agentops.cli import mail_send
from agentops.cli.options import ROOT, defaults, table

# option -> (parameter name, takes a value, may repeat); `--version` is left to typer (it is eager)
ROOT_OPTIONS = table(o for o in ROOT if o.name != "version")
SEND_OPTIONS = table(mail_send.OPTIONS)
SEND_DEFAULTS = defaults(mail_send.OPTIONS)


def parse_options(args: list[str], table: dict, values: dict, *, stop: str | None = None) -> int | None:
    """Read options from `args` into `values` as click would, up to the argument `stop` (or the end).
    Returns the index where it stopped, or None for anything it does not read exactly."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == stop:
            return i
        name, eq, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        spec = table.get(name)
        if spec is None:
            return None  # an argument, `--`, `-sVALUE`, `--help`, an unknown option: typer's job
        param, takes_value, repeats = spec
        if not takes_value:
            if eq:
                return None
            values[param] = True
            i += 1
            continue
        if eq:
            value = inline
            i += 1
        elif i + 1 < len(args):
            value = args[i + 1]  # click takes the next argument as the value, even one starting with "-"
            i += 2
        else:
            return None  # a missing value: typer says so
        if repeats:
            values[param] = [*values[param], value]
        else:
            values[param] = value  # the last one wins, as in click
    return None if stop is not None else i


def parse_send(argv: list[str]) -> tuple[str | None, dict] | None:
    """(--workspace, `mail send`'s parameters) from `agentops ARGV`, or None when it is not a plain
    `mail send` command line."""
    root = {"workspace": None}
    at = parse_options(argv, ROOT_OPTIONS, root, stop="mail")
    if at is None or argv[at + 1:at + 2] != ["send"]:
        return None
    values = dict(SEND_DEFAULTS)
    if parse_options(argv[at + 2:], SEND_OPTIONS, values) is None:
        return None
    return root["workspace"], values


def run(argv: list[str]) -> int | None:
    """Run `argv` here when it is a `mail send` this parser reads exactly; returns the exit code, or
    None to let typer run it."""
    parsed = parse_send(argv)
    if parsed is None:
        return None
    from agentops.errors import AgentOpsError, error_lines, storage_error

    workspace, values = parsed
    try:
        try:
            mail_send.run(workspace, **values)
        except Exception as exc:  # a full disk reaches us as OSError or sqlite3.OperationalError
            full = storage_error(exc)
            if full is None or isinstance(exc, AgentOpsError):
                raise
            raise full from None
    except AgentOpsError as exc:
        try:
            if sys.stderr is not None:
                sys.stderr.write("".join(line + "\n" for line in error_lines(exc, "agentops mail send")))
        except OSError:
            pass
        return exc.exit_code
    return 0
