"""`agentops mail ...`: send, inbox, read, ack, claim, thread, search, dead, retry.

A thin shell over `agentops.mail`. Every command first routes pending drop files when no daemon
runs, so mail works without the daemon. Imports are lazy: start-up time matters for agents.
"""

from __future__ import annotations

from typing import Optional

import typer

from agentops.cli import mail_send
from agentops.cli.common import JSON_HELP, emit_json, explicit_workspace, show_rows, workspace
from agentops.cli.options import signature

mail_app = typer.Typer(help="Also drafts, threads and dead letters.",
                       no_args_is_help=True)

AS_HELP = "Whose copy (needed when the message went to several inboxes)."


def register(app: typer.Typer) -> None:
    app.add_typer(mail_app, name="mail")


def _ws(ctx: typer.Context):
    """The workspace, after routing pending drop files when no daemon is running."""
    from agentops.mail import route_if_no_daemon

    return route_if_no_daemon(workspace(ctx))


def _short(message_id: str) -> str:
    return message_id.strip("<>").split("@")[0][:12]


def _when(iso: str | None) -> str:
    return (iso or "")[:16].replace("T", " ")


def send(ctx: typer.Context, **values):
    from agentops.cli.mail_send import run

    run(explicit_workspace(ctx), **values)


send.__doc__ = mail_send.HELP
mail_app.command("send")(signature(send, mail_send.OPTIONS))  # its options: agentops.cli.mail_send.OPTIONS


@mail_app.command("drafts")
def drafts(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help=JSON_HELP)):
    """List saved drafts (handoffs with `send: false`); send one with `mail send --draft ID`."""
    from agentops.mail.drafts import list_drafts

    show_rows(list_drafts(workspace(ctx)), as_json, ["id", "file"], lambda r: [r["id"], r["file"]], "no drafts")


@mail_app.command("inbox")
def inbox(
    ctx: typer.Context,
    agent: str = typer.Argument(..., help="An agent (or a role with a shared queue)."),
    unread: bool = typer.Option(False, "--unread", help="Only unread messages."),
    limit: int = typer.Option(50, "--limit", "-n", min=0, help="Show the newest N (0: all)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
):
    """List an agent's messages (or a role queue's): the newest --limit, oldest first."""
    from agentops.mail.inbox import count, inbox as list_inbox

    ws = _ws(ctx)
    rows = list_inbox(ws, agent, unread=unread, limit=limit or None)
    shown = show_rows(rows, as_json, ["id", "state", "priority", "from", "date", "subject"],
                      lambda r: [_short(r["message_id"]), r["state"], r["priority"], r["sender"], _when(r["date"]),
                                 r["subject"][:60]], "no unread messages" if unread else "no messages")
    if shown and not as_json and limit and len(rows) == limit:
        total = count(ws, agent, unread=unread)
        if total > limit:
            typer.echo(f"(the newest {limit} of {total:,}; --limit 0 shows all)")


def _show(msg: dict) -> None:
    typer.echo(f"Message-ID: {msg['message_id']}")
    typer.echo(f"From: {msg['sender']}")
    typer.echo(f"To: {', '.join(msg['recipients'])}")
    if msg.get("cc"):
        typer.echo(f"Cc: {', '.join(msg['cc'])}")
    typer.echo(f"Date: {msg['date']}")
    typer.echo(f"Subject: {msg['subject']}")
    if msg.get("priority") and msg["priority"] != "normal":
        typer.echo(f"Priority: {msg['priority']}")
    if msg.get("in_reply_to"):
        typer.echo(f"In-Reply-To: {msg['in_reply_to']}")
    typer.echo("")
    typer.echo(msg.get("body", "").rstrip("\n"))


@mail_app.command("read")
def read(
    ctx: typer.Context,
    message_id: str = typer.Argument(..., metavar="ID", help="Message-ID or a unique prefix of it."),
    agent: Optional[str] = typer.Option(None, "--as", help=AS_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
):
    """Show a message and mark it read (Maildir: moved to cur/ with the S flag)."""
    from agentops.mail.inbox import read as read_mail

    msg = read_mail(_ws(ctx), message_id, agent=agent)
    if as_json:
        emit_json(msg)
    else:
        _show(msg)


@mail_app.command("ack")
def ack(
    ctx: typer.Context,
    message_id: str = typer.Argument(..., metavar="ID", help="Message-ID or a unique prefix of it."),
    agent: Optional[str] = typer.Option(None, "--as", help=AS_HELP),
):
    """Acknowledge a message: marked read and answered (Maildir flags S and R), logged in Orbit."""
    from agentops.mail.inbox import ack as ack_mail

    msg = ack_mail(_ws(ctx), message_id, agent=agent)
    typer.echo(f"acked {msg['message_id']}" + (f" ({msg['box']})" if msg.get("box") else ""))


@mail_app.command("claim")
def claim(
    ctx: typer.Context,
    role: str = typer.Argument(..., help="A role whose members share a queue."),
    agent: str = typer.Option(..., "--as", help="The member taking the message."),
    message_id: Optional[str] = typer.Option(None, "--id", help="A particular message (default: the oldest)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
):
    """Take the oldest unclaimed message of a role queue into your inbox (exactly one claimer wins)."""
    from agentops.mail.inbox import claim as claim_mail

    msg = claim_mail(_ws(ctx), role, agent, message_id)
    if as_json:
        emit_json(msg)
        return
    typer.echo(f"claimed {msg['message_id']} ({msg['subject'][:60]}) into {msg['claimed_by']}'s inbox")


@mail_app.command("thread")
def thread(
    ctx: typer.Context,
    message_id: str = typer.Argument(..., metavar="ID", help="Any message of the thread."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
):
    """Show the whole thread a message belongs to (by In-Reply-To / References), oldest first."""
    from agentops.mail.inbox import thread as thread_of

    rows = thread_of(_ws(ctx), message_id)
    if as_json:
        emit_json(rows)
        return
    for i, msg in enumerate(rows):
        if i:
            typer.echo("\n" + "-" * 60)
        _show(msg)


@mail_app.command("search")
def search(
    ctx: typer.Context,
    query: str = typer.Argument(..., help="Words (or FTS5 syntax) to find in subjects and bodies."),
    limit: int = typer.Option(50, "--limit", "-n", help="At most this many results."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
):
    """Full-text search over every delivered message (SQLite FTS5 on subject and body)."""
    from agentops.mail.inbox import search as search_mail

    show_rows(search_mail(_ws(ctx), query, limit=limit), as_json, ["id", "from", "to", "date", "subject", "match"],
              lambda r: [_short(r["message_id"]), r["sender"], ", ".join(r["recipients"]), _when(r["date"]),
                         r["subject"][:50], r["snippet"].replace("\n", " ")[:70]], "no match")


@mail_app.command("dead")
def dead(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help=JSON_HELP)):
    """List the dead letters: what could not be delivered, and why."""
    from agentops.mail.dead import list_dead

    rows = list_dead(_ws(ctx))
    show_rows(rows, as_json, ["id", "cause", "time", "file", "reason"],
              lambda r: [r["id"], r.get("cause"), _when(r.get("time")), r.get("name", "")[:50],
                         r.get("reason", "")[:80]], "no dead letters")


@mail_app.command("retry")
def retry(
    ctx: typer.Context,
    dead_id: str = typer.Argument(..., metavar="DEAD-ID", help="From `agentops mail dead` (a prefix works)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
):
    """Route a dead letter again after fixing its cause (e.g. the agent was added to the roster)."""
    from agentops.mail.dead import retry as retry_dead

    report = retry_dead(_ws(ctx), dead_id)
    if as_json:
        emit_json(report.as_dict())
        return
    if report.delivered:
        typer.echo(f"delivered {', '.join(report.message_ids)}")
    for d in report.dead_letters:
        typer.echo(f"dead again as {d['id']}: {d['reason']}")
        raise typer.Exit(1)
