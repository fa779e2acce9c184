"""`agentops prompt AGENT`: everything an agent needs to start work, as one Markdown prompt.

Its role body, the workspace protocol (address, inbox, how to send, how to log to Orbit, the MCP
tools), its unread mail and its open work.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path

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


def _is_unread(path: Path) -> bool:
    if path.parent.name == "new":
        return True
    info = path.name.rpartition(":2,")[2] if ":2," in path.name else ""
    return "S" not in info


def unread_mail(ws, agent: str, limit: int = MAX_UNREAD_IN_PROMPT) -> list[MailSummary]:
    """Unread messages in the agent's Maildir, oldest first (read straight from the files)."""
    box = ws.inbox(agent)
    files = []
    for sub in ("new", "cur"):
        d = box / sub
        if d.is_dir():
            files.extend(p for p in d.iterdir() if p.is_file() and not p.is_symlink() and _is_unread(p))
    files.sort(key=lambda p: (p.stat().st_mtime, p.name))
    out = []
    parser = BytesParser(policy=default_policy)
    for path in files[:limit]:
        with open(path, "rb") as fh:
            msg = parser.parse(fh)
        body = msg.get_body(preferencelist=("plain",))
        text = body.get_content() if body is not None else ""
        out.append(MailSummary(
            id=str(msg.get("Message-ID", path.name)).strip("<>"), sender=str(msg.get("From", "")),
            subject=str(msg.get("Subject", "(no subject)")), date=str(msg.get("Date", "")),
            priority=str(msg.get("Priority", "normal")), path=str(path.relative_to(ws.root)), body=text,
        ))
    return out


def open_work(ws, agent: str) -> list[str]:
    """Open items from Orbit for this agent (failing pipelines it owns, open alerts, drafts)."""
    try:
        from agentops.status import agent_work
    except ImportError:  # status is optional for a prompt
        return []
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
