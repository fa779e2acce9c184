"""Commands agents run all day, parsed without typer.

Agents send mail with `agentops mail send` many times a session, and importing typer (with the
pydantic it parses options through) takes several times longer than Python takes to start. So
`agentops.cli.main` first offers the command line to `run()` here: when it is a `mail send` whose
options this small parser reads exactly as typer would, the command runs from here (the same code
as the typer command: `agentops.cli.mail_send`). Anything else (`--help`, an option it does not
know, a missing value, combined short options, `--`, a stray argument) returns None and typer
handles it, with its usual help and errors. tests/test_cli_fast.py checks the tables below against
the typer commands and runs both paths on the same arguments.
"""

from __future__ import annotations

import sys

# option -> (parameter name, takes a value, may repeat); the typer definitions are in cli/root.py
# (the root callback) and cli/mail.py (`send`)
ROOT_OPTIONS = {"--workspace": ("workspace", True, False), "-w": ("workspace", True, False)}
SEND_OPTIONS = {
    "--from": ("sender", True, False),
    "--to": ("to", True, True),
    "--subject": ("subject", True, False), "-s": ("subject", True, False),
    "--body": ("body", True, False), "-b": ("body", True, False),
    "--body-file": ("body_file", True, False),
    "--cc": ("cc", True, True),
    "--bcc": ("bcc", True, True),
    "--priority": ("priority", True, False), "-p": ("priority", True, False),
    "--reply-to": ("reply_to", True, False),
    "--draft": ("draft", True, False),
    "--json": ("as_json", False, False),
}
SEND_DEFAULTS = {"sender": None, "to": [], "subject": None, "body": None, "body_file": None, "cc": [], "bcc": [],
                 "priority": "normal", "reply_to": None, "draft": None, "as_json": False}


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
    from agentops.cli.mail_send import run as send
    from agentops.errors import AgentOpsError, error_lines, storage_error

    workspace, values = parsed
    try:
        try:
            send(workspace, **values)
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
