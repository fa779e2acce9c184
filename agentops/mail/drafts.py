"""Drafts: a composed message saved in `.agent/email/drafts/` instead of sent (a handoff with
`send: false`). Moving a draft into `.agent/email/` sends it."""

from __future__ import annotations

import os


def save_draft(ws, *, sender, to, subject, body, cc=(), priority="normal", reply_to=None, headers=None) -> str:
    """Compose the message (addresses checked) and write it to the drafts folder. Returns its path."""
    from agentops.mail.outbox import compose

    _, msg, name = compose(ws, sender=sender, to=to, subject=subject, body=body, cc=cc, priority=priority,
                           reply_to=reply_to, headers=headers)
    ws.drafts_dir.mkdir(parents=True, exist_ok=True)
    path = ws.drafts_dir / name
    tmp = ws.drafts_dir / f".{name}.tmp"
    with open(tmp, "wb") as f:
        f.write(msg.to_bytes())
    os.replace(tmp, path)
    return str(path)
