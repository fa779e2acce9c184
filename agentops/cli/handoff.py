"""`agentops handoff` and `agentops prompt`."""

from __future__ import annotations

import sys

import typer

from agentops.cli.common import JSON_HELP, emit_json, workspace


def register(app: typer.Typer) -> None:
    app.command("handoff")(handoff)
    app.command("prompt")(prompt)


def handoff(
    ctx: typer.Context,
    label: str = typer.Argument(..., help="The handoff's label (or its target role) in the sender's role file."),
    sender: str = typer.Option(..., "--from", help="The agent handing off."),
    context: str = typer.Option("", "--context", "-c", help="What the receiver needs to know; '-' reads stdin."),
    draft: bool = typer.Option(False, "--draft", help="Save as a draft even when the handoff has send: true."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
):
    """The message is sent, or saved as a draft when the handoff says so."""
    from agentops.handoff import handoff as do_handoff

    if context == "-":
        context = sys.stdin.read()
    result = do_handoff(workspace(ctx), sender, label, context, draft=draft)
    if as_json:
        emit_json(result.__dict__)
    elif result.sent:
        typer.echo(f"handed off '{result.label}' from {result.sender} to {result.target}: {', '.join(result.message_ids)}")
    else:
        typer.echo(f"saved draft {result.draft} ('{result.label}' to {result.target}); "
                   f"send it with: agentops mail send --draft {result.draft}")


def prompt(
    ctx: typer.Context,
    agent: str = typer.Argument(..., help="The agent's address."),
    out: str = typer.Option(None, "--out", "-o", help="Write the prompt to this file instead of stdout."),
):
    """Its role, the workspace protocol, its unread mail and open work."""
    from pathlib import Path

    from agentops.prompt import build_prompt

    text = build_prompt(workspace(ctx), agent)
    if out:
        Path(out).write_text(text, encoding="utf-8")
        typer.echo(f"wrote {out}")
    else:
        typer.echo(text, nl=False)
