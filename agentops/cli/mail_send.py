"""`agentops mail send`: its options, declared once (`OPTIONS`), and its work (`run`), shared by its
typer command (`agentops.cli.mail`, built from `OPTIONS`) and the fast path (`agentops.cli.fast`,
which parses with tables built from `OPTIONS`) that runs it without importing typer. The library
call (`agentops.mail.send`) takes the same names, and the MCP tool `mail_send` is built from the rows'
`mcp` column. No typer import here."""

from __future__ import annotations

import json
import sys

from agentops.cli.options import JSON_HELP, Mcp, Option
from agentops.errors import ValidationError

HELP = "Send a message (text from --body, --body-file or stdin), or a saved draft with --draft ID."
OPTIONS = (
    Option("sender", ("--from",), None, "Your address.", mcp=Mcp("address", True, "your address")),
    Option("to", ("--to",), (), "A recipient (repeat for more): agent, role, all, user.",
           mcp=Mcp("addresses", True, "agents, roles, all, user")),
    Option("subject", ("--subject", "-s"), None, "One line.", mcp=Mcp("line", True)),
    Option("body", ("--body", "-b"), None, "The message text.", mcp=Mcp("text", True)),
    Option("body_file", ("--body-file",), None, "Read the text from this file ('-': stdin)."),
    Option("cc", ("--cc",), (), "A copy to (repeat for more).", mcp=Mcp("addresses")),
    Option("bcc", ("--bcc",), (), "A blind copy to (repeat for more): named in no delivered copy.",
           mcp=Mcp("addresses", False, "named in no copy")),
    Option("priority", ("--priority", "-p"), "normal", "low | normal | high | urgent.", mcp=Mcp("priority")),
    Option("reply_to", ("--reply-to",), None, "The id of the message this answers.",
           mcp=Mcp("id", False, "id of the message answered")),
    Option("draft", ("--draft",), None, "Send this saved draft (see `mail drafts`) instead."),
    Option("as_json", ("--json",), False, JSON_HELP),
)


def run(explicit_workspace: str | None, *, sender: str | None, to: list[str], subject: str | None,
        body: str | None, body_file: str | None, cc: list[str], bcc: list[str], priority: str, reply_to: str | None,
        draft: str | None, as_json: bool) -> None:
    """Send a message (text from `body`, `body_file` or stdin), or the saved draft `draft`."""
    from agentops.mail import route_if_no_daemon, send as send_mail
    from agentops.pidlock import daemon_pid
    from agentops.workspace import find_workspace

    ws = find_workspace(explicit_workspace)
    ws.config  # noqa: B018 - validate agentops.toml up front, as every command does
    if draft is not None:
        from agentops.mail.drafts import send_draft

        name = send_draft(route_if_no_daemon(ws), draft)
        _out({"draft": draft, "file": name} if as_json else f"sent draft {draft} ({name})")
        return
    missing = [opt for opt, value in (("--from", sender), ("--to", to), ("--subject", subject)) if not value]
    if missing:
        raise ValidationError(f"missing {', '.join(missing)}", hint="see `agentops mail send --help`")
    if body is not None and body_file is not None:
        raise ValidationError("give --body or --body-file, not both")
    limit = ws.config.mail.max_bytes
    if body_file is not None and body_file != "-":
        try:
            with open(body_file, "rb") as f:
                body = text(f.read(limit + 1), f"--body-file {body_file}", limit)
        except OSError as exc:
            raise ValidationError(f"cannot read --body-file {body_file}: {exc.strerror}") from None
    elif body is None:
        if sys.stdin is None or (body_file is None and sys.stdin.isatty()):
            raise ValidationError("no message text", hint="pass --body TEXT, --body-file FILE, or pipe it in")
        stdin = getattr(sys.stdin, "buffer", None)
        data = stdin.read(limit + 1) if stdin is not None else sys.stdin.read(limit + 1).encode("utf-8", "surrogateescape")
        body = text(data, "the text on stdin", limit)
    ids = send_mail(ws, sender=sender, to=to, subject=subject, body=body, cc=cc, bcc=bcc, priority=priority,
                    reply_to=reply_to)
    queued = daemon_pid(ws) is not None
    if as_json:
        _out({"message_ids": ids, "routed_by": "daemon" if queued else "now"})
        return
    _out("\n".join(f"{mid} {'queued for the daemon' if queued else 'delivered'}" for mid in ids))


def text(data: bytes, what: str, limit: int) -> str:
    """`data` (read with at most `limit` + 1 bytes) as UTF-8 text, or a ValidationError saying why not."""
    if len(data) > limit:
        raise ValidationError(f"{what} is over the limit of {limit} bytes",
                              hint="send a shorter message, or raise mail.max_bytes in agentops.toml")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError(f"{what} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})",
                              hint="convert it to UTF-8 first, e.g. with iconv") from None


def _out(value) -> None:
    """Print `value`. A closed or broken stdout loses the output, never the message (it was sent)."""
    if isinstance(value, str):
        text = value + "\n"
    else:  # the same JSON as agentops.cli.common.emit_json
        text = json.dumps(value, indent=2, default=str, ensure_ascii=False) + "\n"
    try:
        if sys.stdout is not None:
            sys.stdout.write(text)
    except OSError:
        pass
