"""`agentops daemon`: watch the workspace and route mail (the work is in `agentops.daemon`)."""

from __future__ import annotations

import typer

from agentops.cli.common import workspace


def register(app: typer.Typer) -> None:
    @app.command("daemon")
    def daemon(
        ctx: typer.Context,
        once: bool = typer.Option(False, "--once", help="Recover, route everything pending, then exit (no watcher)."),
        poll: bool = typer.Option(False, "--poll", help="Poll the folders instead of inotify (network and container mounts)."),
        log_format: str = typer.Option("text", "--log-format", metavar="text|json",
                                       help="Log lines on stderr as plain text or JSON objects."),
    ):
        """It also re-checks changed specs. One daemon per workspace (a second one exits 1 naming the
        first one's pid). SIGTERM exits 0 and Ctrl-C exits 130, each after finishing the batch in hand."""
        if log_format not in ("text", "json"):
            raise typer.BadParameter("must be text or json", param_hint="--log-format")
        from agentops.daemon import Daemon
        from agentops.errors import ConflictError

        ws = workspace(ctx)
        try:
            d = Daemon(ws, poll=poll, log_format=log_format)
            if once:
                d.run_once()
                code = 0
            else:
                code = d.run()
        except ConflictError as exc:
            typer.echo(f"Error: {exc}", err=True)
            raise typer.Exit(1) from None
        raise typer.Exit(code)
