"""Sending from code (the CLI, MCP, handoffs): a message is written atomically into the drop zone
under a unique name, then routed at once when no daemon runs (else the daemon routes it).
Addresses are checked first, so a typo is an error here, not a dead letter later.

`postmaster` is agentops' own voice: `send` refuses it as a sender (so do the CLI and MCP, which
call it), and a drop file from it is a dead letter (`forged_sender`). agentops' own messages
(alerts, dispatch giving up) go through `notify`, which writes them into the private spool, where
only agentops writes, and routes them at once."""

from __future__ import annotations

import os
from collections.abc import Iterable

import re

from agentops.addresses import POSTMASTER, slug
from agentops.errors import DeliveryError, NotFoundError, UsageError, ValidationError
from agentops.mail.message import PRIORITIES, Message, MessageError, check_name
from agentops.mail.names import MAX_NAME_BYTES, topic_name

_RESERVED = {"from", "to", "cc", "bcc", "subject", "message-id", "priority", "in-reply-to", "references", "date"}


_ADDRESS_CHARS = re.compile(r"[A-Za-z0-9.\-_\s]*")


def address(text: str, what: str) -> str:
    """The address `text` names (a slug), refusing a character no address has (a look-alike
    slash `∕`, say, which a slug would silently drop)."""
    text = str(text)
    if not _ADDRESS_CHARS.fullmatch(text):
        ch = next(c for c in text if not _ADDRESS_CHARS.fullmatch(c))
        raise ValidationError(f"{what} address {text!r} contains {ch!r} (U+{ord(ch):04X}), which no address has",
                              hint="addresses are letters, digits, '-' and '.'; see `agentops roles list`")
    return slug(text)


def _addresses(value: str | Iterable[str], what: str) -> list[str]:
    items = [value] if isinstance(value, str) else list(value or ())
    out = []
    for item in items:
        for part in str(item).split(","):
            if part.strip():
                out.append(address(part, what))
    if what == "to" and not out:
        raise ValidationError("no recipient given", hint="pass --to ADDRESS")
    return list(dict.fromkeys(out))


def compose(ws, *, sender, to, subject, body, cc=(), bcc=(), priority="normal", reply_to=None, headers=None,
            own_voice: bool = False) -> tuple[str, Message, str]:
    """Build the message and its drop-file name. Returns (message id, message, file name).
    `bcc` recipients get the message; routing removes the Bcc header from every delivered copy.
    `own_voice`: agentops' own message, from `postmaster` (see `notify`)."""
    book = ws.addresses
    sender = address(sender or "", "sender")
    known = book.known()
    if sender == POSTMASTER and not own_voice:
        raise ValidationError("'postmaster' is agentops' own voice (alerts); nobody else may send as it",
                              hint="send from your own address")
    if not sender or sender not in known or sender == "all":
        raise NotFoundError(f"unknown sender '{sender}' (known: {', '.join(sorted(known - {'all', POSTMASTER}))})",
                            hint="send from your own address")
    to_list, cc_list, bcc_list = _addresses(to, "to"), _addresses(cc, "cc"), _addresses(bcc, "bcc")
    for addr in to_list + cc_list + bcc_list:
        book.resolve(addr, sender=sender)  # NotFoundError names the unknown address
    priority = (priority or "normal").strip().lower()
    if priority not in PRIORITIES:
        raise UsageError("priority", f"'{priority}' is not one of {', '.join(PRIORITIES)}")
    subject = (subject or "").strip()
    if "\n" in subject or "\r" in subject:
        raise MessageError("the subject contains a line break", cause="header_injection",
                           hint="keep the subject on one line")
    message_id = f"<{os.urandom(10).hex()}@agentops>"  # as random as uuid4, without importing uuid
    msg = Message([("From", sender), ("To", ", ".join(to_list))], body or "")
    if cc_list:
        msg.set("Cc", ", ".join(cc_list))
    if bcc_list:
        msg.set("Bcc", ", ".join(bcc_list))
    msg.set("Subject", subject or "(no subject)")
    msg.set("Message-ID", message_id)
    msg.set("Priority", priority)
    if reply_to:
        parent_id, parent_refs = _parent(ws, reply_to)
        msg.set("In-Reply-To", parent_id)
        msg.set("References", " ".join([*parent_refs, parent_id]))
    for name, value in (headers or {}).items():
        check_name(name)
        if name.lower() in _RESERVED:
            raise ValidationError(f"header {name} is set by agentops; pass it as an argument")
        msg.set(name, str(value))
    size = len(msg.to_bytes())  # checks every header once more, and that the text is UTF-8
    limit = ws.config.mail.max_bytes
    if size > limit:
        raise ValidationError(f"the message is {size} bytes, over the limit of {limit} bytes",
                              hint="send a shorter message (put large data in a file under .agent/data/),"
                                   " or raise mail.max_bytes in agentops.toml")
    return message_id, msg, _file_name(sender, to_list, subject, message_id)


def _file_name(sender: str, to_list: list[str], subject: str, message_id: str) -> str:
    uniq = message_id[1:9]
    topic = topic_name(subject, 40)
    tail = f"-{topic}-{uniq}" if topic else f"-{uniq}"
    name = f"to-{'+'.join(to_list)}-from-{sender}{tail}.email"
    if len(name.encode()) > MAX_NAME_BYTES:  # the To header carries the rest
        name = f"to-{to_list[0]}-from-{sender}-{uniq}.email"
    return name


def _parent(ws, reply_to: str) -> tuple[str, list[str]]:
    from agentops.mail.store import resolve_id

    db = ws.db()
    try:
        parent_id = resolve_id(db.conn, reply_to)
        row = db.conn.execute("SELECT refs FROM messages WHERE message_id = ?", (parent_id,)).fetchone()
    finally:
        db.conn.close()
    import json

    return parent_id, json.loads(row[0]) if row else []


def drop(ws, msg: Message, name: str, *, durable: bool = True) -> str:
    """Write `msg` into the drop zone as `name`, atomically (a hidden temp file, then rename).
    `durable=False` skips the fsync: for a file routed at once by the caller, whose delivered copies
    are made durable before anyone is told the message was delivered."""
    from agentops import safefs

    ws.check_layout()
    zone = ws.email_dir
    safefs.write_atomic(ws, zone / name, msg.to_bytes(), sync=durable)  # a full disk: StorageError, no temp left
    return str(zone / name)


def send(ws, *, sender, to, subject, body, cc=(), bcc=(), priority="normal", reply_to=None, headers=None
         ) -> list[str]:
    """Send one message; returns [its Message-ID]. Routed now when no daemon runs (with any other
    pending drop files, in one pass), and then a message that was dead-lettered instead of
    delivered raises DeliveryError (with the dead id)."""
    from agentops.pidlock import daemon_pid

    message_id, msg, name = compose(ws, sender=sender, to=to, subject=subject, body=body, cc=cc, bcc=bcc,
                                    priority=priority, reply_to=reply_to, headers=headers)
    route_now = daemon_pid(ws) is None
    path = drop(ws, msg, name, durable=not route_now)  # for the daemon: durable before we say "queued"
    if route_now:
        from agentops.mail.route import route_pending

        check_delivered(route_pending(ws, [path], and_pending=True), name, f"message {message_id}")
    return [message_id]


def notify(ws, *, to, subject, body, priority="normal") -> list[str]:
    """Send a message in agentops' own voice (from `postmaster`: alerts, dispatch giving up).
    It is written into the private spool (`.agent/email/.queue/<token>^<name>`, through a hidden
    temp file), not the drop zone, and routed at once when no daemon runs; a running daemon
    watches the spool for such entries and routes them (and wakes the recipient, as for any mail).
    Returns [its Message-ID]."""
    from agentops import safefs
    from agentops.mail.route import new_token, route_pending, spool_entry
    from agentops.pidlock import daemon_pid

    message_id, msg, name = compose(ws, sender=POSTMASTER, to=to, subject=subject, body=body,
                                    priority=priority, own_voice=True)
    ws.check_layout()
    entry = spool_entry(ws.spool_dir, new_token(), name, own=True)
    safefs.write_atomic(ws, entry.spool, msg.to_bytes(), sync=True)  # a hidden temp file, then the rename
    if daemon_pid(ws) is None:
        check_delivered(route_pending(ws, []), name, f"message {message_id}")
    return [message_id]


def check_delivered(report, name: str, what: str) -> None:
    """Raise DeliveryError when routing `report` dead-lettered the drop file `name`."""
    for dead in report.dead_letters:
        if dead.get("name") == name:
            raise DeliveryError(
                f"{what} was not delivered: dead letter {dead['id']} ({dead['cause']}: {dead['reason']})",
                dead_id=dead["id"], cause=dead["cause"],
                hint=f"see `agentops mail dead`; fix the cause, then `agentops mail retry {dead['id']}`")
