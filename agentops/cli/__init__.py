"""The `agentops` command: a thin shell over the library.

Each concept has its module here (roles, mail, orbit, pipeline, ...), each exposing `register(app)`.
`COMMANDS` below lists them; the typer app (`agentops.cli.root`) builds only the command being run,
and `agentops --help` is printed from the table and the root options' declaration
(`agentops.cli.options.ROOT`, which the typer callback is built from too) without importing typer
at all (start-up time matters: agents run these commands all day). tests/test_cli_docs.py checks
the table against the real commands and the fast help against typer's.
"""

from __future__ import annotations

import sys

HELP = "Coordination runtime for teams of AI agents doing data engineering."

# name -> (module in agentops/cli/, its one-line summary), in help order. The summary is declared only
# here: `agentops --help` lists it, and the command's own --help starts with it, followed by the details
# its docstring holds (`agentops.cli.root.build_command`). At most 60 characters, so typer shows it whole.
COMMANDS = {
    "init": ("workspace", "Create a complete workspace: roles, .agent/, agentops.toml."),
    "daemon": ("daemon", "Watch the workspace: route mail, ingest Orbit drop files."),
    "handoff": ("handoff", "Hand work to another agent along a handoff of your role."),
    "prompt": ("handoff", "The full prompt to start an agent, with its unread mail."),
    "status": ("status", "Daemon health, mail, pipeline runs, quality and alerts."),
    "demo": ("demo", "Play a scripted day of the team in a scratch workspace."),
    "dispatch": ("dispatch", "Run an agent's on_mail command now, as the daemon would."),
    "mcp": ("mcp", "Serve the workspace to agents as the `orbit` MCP server."),
    "roles": ("roles", "Role files: list, show, check, graph, export."),
    "mail": ("mail", "Mail between agents: send, inbox, read, ack, claim, search."),
    "orbit": ("orbit", "The Orbit event log: runs, jobs, checks, metrics, anomalies."),
    "pipeline": ("pipeline", "Pipeline specs: check, plan, run, backfill, lineage, render."),
    "reserve": ("reserve", "Claim files or datasets before changing them."),
    "release": ("reserve", "Release reservations by id or target."),
    "reservations": ("reserve", "List active reservations: holder, target, mode, expiry."),
    "guard": ("reserve", "A git pre-commit hook refusing paths others reserved."),
    "quality": ("data", "Data-quality checks measured on the data: run."),
    "dataset": ("data", "Datasets the specs name: list, show, profile."),
}

def root_help() -> str:
    """`agentops --help` as typer prints it on a terminal 80 or more columns wide."""
    from agentops.cli.options import ROOT, help_block

    width = max(len(n) for n in COMMANDS)
    rows = "".join(f"  {name:<{width}}  {short}\n" for name, (_, short) in COMMANDS.items())
    return f"Usage: agentops [OPTIONS] COMMAND [ARGS]...\n\n  {HELP}\n\n{help_block(ROOT)}\nCommands:\n{rows}"


def _wide_terminal() -> bool:
    import shutil

    return shutil.get_terminal_size().columns >= 80


def __getattr__(name: str):
    if name == "app":  # the typer app, imported on first use
        from agentops.cli.root import app

        return app
    raise AttributeError(name)


def _flushed(code: int) -> int:
    """Flush the standard streams; a closed or broken one loses its output but never changes the
    exit code (the work is done), and the interpreter's own flush at exit then has nothing to do."""
    import os

    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
            except (OSError, ValueError):
                pass
    return code


def _not_utf8(args: list[str]) -> str | None:
    """What to say about the first argument that is not valid UTF-8 (Python hands such bytes over as
    lone surrogates, which would end up in file names, headers and the log), or None."""
    for i, arg in enumerate(args):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError as exc:
            byte = ord(arg[exc.start]) - 0xDC00
            where = f"{args[i - 1]}: the value" if i and args[i - 1].startswith("-") else f"argument {i + 1}"
            return f"{where} is not UTF-8 text (byte 0x{byte:02x} at offset {exc.start}); give names and text in UTF-8"
    return None


def main() -> None:
    bad = _not_utf8(sys.argv[1:])
    if bad is not None:  # input rejected (exit 4) before anything reads it
        sys.stderr.write(f"Error: {bad}\n")
        sys.exit(4)
    try:
        if sys.argv[1:] in (["--help"], ["-h"]) and _wide_terminal():
            sys.stdout.write(root_help())  # the text typer prints, without importing typer
            return
        if "send" in sys.argv[1:5]:  # `agentops [-w PATH] mail send ...`, parsed without typer
            from agentops.cli.fast import run

            code = run(sys.argv[1:])
            if code is not None:
                sys.exit(_flushed(code))
        from agentops.cli.root import app

        app()
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        # Exit as usual (atexit handlers, stream flushes), but spare the interpreter's last collection
        # a walk over every object the imports made: nothing agentops leaves to run at exit is cyclic
        # garbage (files, stores and locks are closed by `with`), and this is ~6% of a short command.
        import gc

        gc.freeze()
