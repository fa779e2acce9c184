"""`agentops demo`."""

from __future__ import annotations

from pathlib import Path

import typer

from agentops.cli.common import explicit_workspace


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    ctx: typer.Context,
    directory: Path = typer.Option(None, "--dir", help="Play into this folder (default: a new temp folder)."),
):
    """With the real daemon; then it shows status."""
    from agentops.demo import run_demo
    from agentops.errors import AgentOpsError
    from agentops.workspace import find_workspace

    try:
        source = find_workspace(explicit_workspace(ctx))
    except AgentOpsError:
        source = None
    root = run_demo(directory, say=typer.echo, source=source)
    import shutil
    import sys

    from agentops.cli.status import render_terminal
    from agentops.status import collect
    from agentops.workspace import Workspace

    typer.echo(render_terminal(collect(Workspace(root)), colour=sys.stdout.isatty()))
    exe = Path(sys.argv[0]).resolve() if Path(sys.argv[0]).name == "agentops" else None
    cmd = "agentops" if exe is None or shutil.which("agentops") == str(exe) else str(exe)
    typer.echo(f"\nExplore it: cd {root} && {cmd} status   (or: export AGENTOPS_WORKSPACE={root})")
    typer.echo("  .agent/email/inbox/<agent>/   the Maildirs (mutt -f works)     agentops mail inbox data-engineer")
    typer.echo("  .agent/orbit.db               the Orbit log                     agentops orbit events --limit 20")
    typer.echo("  .agent/logs/daemon.log        the daemon's JSON log lines       agentops pipeline render orders_daily")
