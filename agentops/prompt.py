"""`agentops prompt AGENT`: everything an agent needs to start work, as one Markdown prompt.

Its role body, the workspace protocol (address, inbox, how to send, how to log to Orbit, the MCP
tools), its unread mail and its open work.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentops.errors import NotFoundError

MAX_UNREAD_IN_PROMPT = 50


@dataclass
class MailSummary:
    id: str
    sender: str
    subject: str
    date: str
    priority: str
    path: str
    body: str


def unread_mail(ws, agent: str, limit: int = MAX_UNREAD_IN_PROMPT) -> list[MailSummary]:
    """The agent's oldest unread messages (the order to work through them), from the mail library."""
    from agentops.mail import route_if_no_daemon, store
    from agentops.mail.inbox import box_dir, inbox
    from agentops.mail.maildir import locate

    rows = inbox(route_if_no_daemon(ws), agent, unread=True, limit=limit, newest=False)
    if not rows:
        return []
    box = box_dir(ws, "inbox", agent)
    with store.orbit_db(ws) as db:
        bodies = {r["message_id"]: store.message(db.conn, r["message_id"])["body"] for r in rows}
    out = []
    for r in rows:
        path = locate(box, r["key"])
        out.append(MailSummary(
            id=r["message_id"].strip("<>"), sender=r["sender"], subject=r["subject"], date=r["date"],
            priority=r["priority"], path=str(path.relative_to(ws.root)) if path else "", body=bodies[r["message_id"]],
        ))
    return out


def open_work(ws, agent: str) -> list[str]:
    """Open items from Orbit for this agent (failing pipelines it owns, open alerts, drafts)."""
    from agentops.status import agent_work

    return agent_work(ws, agent)


def build_prompt(ws, agent: str) -> str:
    from agentops.addresses import slug
    from agentops.exports import protocol_context
    from agentops.render import render
    from agentops.roles import find_role

    name = slug(agent)
    book = ws.addresses
    if name not in book.agents:
        known = ", ".join(sorted(book.agents)) or "none"
        raise NotFoundError(f"no agent '{agent}' in this workspace (known: {known})",
                            hint="see `agentops roles list` or the roster in agentops.toml")
    role = find_role(ws.roles(), book.agents[name].role)
    context = protocol_context(ws, name, role)
    return render(ws, "prompt.md.j2", **context, role=role, unread=unread_mail(ws, name),
                  work=open_work(ws, name)).strip() + "\n"
