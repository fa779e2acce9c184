"""Drafts: a composed message kept in `.agent/email/drafts/` until someone sends it.

A draft is the very drop file it will become (same name, same Message-ID), so sending it is one
rename into the drop zone; the router then treats it like any other drop file.
"""

from __future__ import annotations

from pathlib import Path

from agentops.errors import NotFoundError, ValidationError


def save_draft(ws, *, sender, to, subject, body, cc=(), priority="normal", reply_to=None, headers=None) -> str:
    """Compose (every address checked now) and keep as a draft. Returns the draft id."""
    from agentops.mail.outbox import compose

    message_id, msg, name = compose(ws, sender=sender, to=to, subject=subject, body=body, cc=cc,
                                    priority=priority, reply_to=reply_to, headers=headers)
    draft_id = message_id[1:9]
    from agentops import safefs

    ws.check_layout()
    safefs.write_atomic(ws, ws.drafts_dir / name, msg.to_bytes())
    return draft_id


def list_drafts(ws) -> list[dict]:
    out = []
    if ws.drafts_dir.is_dir():
        for path in sorted(ws.drafts_dir.glob("*.email")):
            if path.is_file() and not path.is_symlink():
                out.append({"id": path.stem.rsplit("-", 1)[-1], "file": path.name})
    return out


def find_draft(ws, draft_id: str) -> Path:
    draft_id = draft_id.strip()
    if not draft_id or "/" in draft_id:
        raise ValidationError(f"'{draft_id}' is not a draft id", hint="see `agentops mail drafts`")
    matches = [p for p in ws.drafts_dir.glob(f"*-{draft_id}*.email") if p.is_file() and not p.is_symlink()] \
        if ws.drafts_dir.is_dir() else []
    if len(matches) != 1:
        what = "no draft" if not matches else f"{len(matches)} drafts"
        raise NotFoundError(f"{what} with id '{draft_id}' in {ws.drafts_dir.relative_to(ws.root)}",
                            hint="see `agentops mail drafts`")
    return matches[0]


def send_draft(ws, draft_id: str) -> str:
    """Move the draft into the drop zone (routing it now when no daemon runs). Returns the file name."""
    from agentops.pidlock import daemon_pid

    from agentops import safefs

    ws.check_layout()
    path = find_draft(ws, draft_id)
    target = ws.email_dir / path.name
    safefs.rename(ws, path, target, create_parents=True)
    if daemon_pid(ws) is None:
        from agentops.mail.outbox import check_delivered
        from agentops.mail.route import route_pending

        check_delivered(route_pending(ws, [target]), path.name, f"draft {draft_id}")
    return path.name
