"""`agentops dispatch AGENT [--dry-run]`: run an agent's on_mail command by hand."""

from __future__ import annotations

import shlex

import typer

from agentops.cli.common import workspace


def register(app: typer.Typer) -> None:
    app.command("dispatch")(dispatch)


def dispatch(
    ctx: typer.Context,
    agent: str = typer.Argument(..., help="The agent to wake (it needs on_mail in agentops.toml)."),
    dry_run: bool = typer.Option(False, "--dry-run", "-n",
                                 help="Print the command and the rendered prompt; run nothing."),
):
    """As when its mail arrives, with the [dispatch] timeout and retries; exits with the final run's
    status (124 on timeout)."""
    from agentops import dispatch as lib

    ws = workspace(ctx)
    if dry_run:
        plan = lib.plan(ws, agent)
        typer.echo(f"# command ({plan.agent}; not run):")
        typer.echo(shlex.join(plan.argv))
        typer.echo(f"# prompt file: {plan.prompt_file} (not written)")
        typer.echo(f"# message file: {plan.message_file or '(no mail)'}")
        typer.echo(f"# log: {plan.log}")
        typer.echo("# prompt:")
        typer.echo(plan.prompt, nl=False)
        return
    result = lib.run_with_retries(ws, agent)
    if result.ok:
        typer.echo(f"{result.agent}: succeeded in {result.duration_s:.1f}s "
                   f"(attempt {result.attempt}); log: {result.log}")
        return
    why = "timed out" if result.timed_out else f"exited with status {result.exit_code}"
    typer.echo(f"Error: {result.agent}: {why} after {result.attempt} attempt(s); log: {result.log}", err=True)
    raise typer.Exit(result.status)
