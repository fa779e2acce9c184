"""`agentops init`."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("init")(init)


def init(
    directory: Path = typer.Argument(Path("."), help="Folder to make a workspace (created if missing)."),
    force: bool = typer.Option(False, "--force", help="Overwrite files that differ from the packaged ones."),
    examples: bool = typer.Option(False, "--examples", help="Also add the example pipeline specs "
                                  "(orders_daily, customers_dim, clickstream) to .agent/data/pipelines/."),
):
    """It holds the roles, templates, .agent/, agentops.toml, a .gitignore and the MCP config."""
    from agentops.workspace import init_workspace

    result = init_workspace(directory, force=force, examples=examples)
    for p in result.created:
        typer.echo(f"created      {p.relative_to(result.root)}")
    for p in result.overwritten:
        typer.echo(f"overwritten  {p.relative_to(result.root)}")
    kept = [p for p in result.kept]
    if kept and force:  # with --force only what is already the packaged text, or is no regular file, is kept
        typer.echo(f"kept         {len(kept)} existing file(s) (already as packaged, or not regular files)")
    elif kept:
        typer.echo(f"kept         {len(kept)} existing file(s) (use --force to overwrite)")
    typer.echo(f"Workspace ready at {result.root}")
