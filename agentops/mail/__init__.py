"""Mail: `.email` drop files routed exactly once into Maildir inboxes, recorded in Orbit.

Modules: `message` (the RFC 5322 model), `names` (the drop-file name grammar), `maildir` (the
folders), `route` (drop zone -> inboxes, crash recovery), `dead` (dead letters, retry), `outbox`
(sending from code), `drafts`, `inbox` (inbox, read, ack, claim, thread, search), `store` (Orbit rows).
This package's import is light: the heavy parts load when called.
"""

from __future__ import annotations

__all__ = ["send", "notify", "route_pending", "route_if_no_daemon", "recover"]


def send(ws, *, sender, to, subject, body, cc=(), bcc=(), priority="normal", reply_to=None, headers=None
         ) -> list[str]:
    """Send a message (see `agentops.mail.outbox.send`). Returns its Message-ID in a list."""
    from agentops.mail.outbox import send as _send

    return _send(ws, sender=sender, to=to, subject=subject, body=body, cc=cc, bcc=bcc, priority=priority,
                 reply_to=reply_to, headers=headers)


def notify(ws, *, to, subject, body, priority="normal") -> list[str]:
    """Send a message in agentops' own voice, from `postmaster` (see `agentops.mail.outbox.notify`);
    `send` refuses `postmaster` as a sender."""
    from agentops.mail.outbox import notify as _notify

    return _notify(ws, to=to, subject=subject, body=body, priority=priority)


def route_pending(ws, paths=None, *, db=None, settle=None):
    """Route pending drop files (see `agentops.mail.route.route_pending`)."""
    from agentops.mail.route import route_pending as _route

    return _route(ws, paths, db=db, settle=settle)


def recover(ws, *, db=None):
    from agentops.mail.route import recover as _recover

    return _recover(ws, db=db)


def route_if_no_daemon(ws):
    """Route pending drop files now unless a daemon is running (it would route them itself), so
    mail written as files is readable without the daemon. Returns `ws` for chaining."""
    from agentops.pidlock import daemon_pid

    if ws.email_dir.is_dir() and daemon_pid(ws) is None:
        route_pending(ws)
    return ws
