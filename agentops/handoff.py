"""`agentops handoff`: one agent hands work to another along a handoff of its role.

The handoff is found by label (or by target role) in the sender's role file, its message rendered
from `handoff.email.j2` (the handoff's prompt, the context, the pipelines and runs it mentions),
then sent (`send: true`) or saved as a draft (`send: false` or `--draft`). Either way it is logged
in Orbit as a `handoff` event.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from agentops.errors import NotFoundError, ValidationError


@dataclass
class HandoffResult:
    sender: str
    target: str
    label: str
    sent: bool
    message_ids: list[str] = field(default_factory=list)
    draft: str | None = None


def find_handoff(role, wanted: str):
    from agentops.addresses import slug

    key = slug(wanted)
    for h in role.handoffs:
        if slug(h.label) == key:
            return h
    matches = [h for h in role.handoffs if slug(h.agent) == key]
    if len(matches) == 1:
        return matches[0]
    labels = "; ".join(f'"{h.label}"' for h in role.handoffs) or "none"
    raise NotFoundError(f"role '{role.name}' has no handoff '{wanted}' (handoffs: {labels})",
                        hint="use a label or a target role from the role file")


def _mentions(ws, text: str) -> tuple[list[dict], list[str]]:
    """Pipelines (by spec name) and run ids that the context text mentions."""
    if not text:
        return [], []
    try:
        from agentops.pipelines import load_specs

        specs, _ = load_specs(ws)
    except Exception:  # noqa: BLE001 - a broken spec must not stop a handoff
        specs = []
    words = set(re.findall(r"[A-Za-z0-9_.:-]+", text))
    pipelines = [{"name": spec.name, "owner": spec.owner, "path": f".agent/data/pipelines/{spec.name}.yaml",
                  "latest": None} for spec in specs if spec.name in words]
    runs = []
    if ws.db_path.exists():  # Orbit's derived `runs` table, not a scan of the event log
        db = ws.db()
        try:
            for p in pipelines:
                row = db.conn.execute("SELECT run_id, state FROM runs WHERE pipeline = ? AND task = '' "
                                      "ORDER BY updated_at DESC LIMIT 1", (p["name"],)).fetchone()
                p["latest"] = f"{row[0]} ({row[1]})" if row else None
            candidates = sorted(words)[:500]
            if candidates:
                marks = ",".join("?" * len(candidates))
                rows = db.conn.execute(f"SELECT pipeline, run_id, state FROM runs WHERE task = '' "
                                       f"AND run_id IN ({marks}) ORDER BY pipeline, run_id", candidates).fetchall()
                runs = [f"{p} run {r} ({state})" for p, r, state in rows]
        finally:
            db.conn.close()
    return pipelines, runs


def handoff(ws, sender: str, label: str, context: str = "", *, draft: bool = False) -> HandoffResult:
    from agentops.addresses import slug
    from agentops.exports import role_address
    from agentops.render import render
    from agentops.roles import find_role

    book = ws.addresses
    sender = slug(sender)
    if sender not in book.agents:
        raise NotFoundError(f"no agent '{sender}' to hand off from (known: {', '.join(sorted(book.agents))})")
    roles = ws.roles()
    role = find_role(roles, book.agents[sender].role)
    h = find_handoff(role, label)
    target_role = find_role(roles, h.agent)
    target = role_address(ws, target_role) or target_role.slug  # several members: their shared queue
    if target == sender:
        raise ValidationError(f"handoff '{h.label}' would send to yourself ({sender})")
    pipelines, runs = _mentions(ws, context)
    body = render(ws, "handoff.email.j2", handoff=h, context=context, pipelines=pipelines, runs=runs,
                  sender=sender, sender_role=role.name, target=target)
    subject = f"Handoff: {h.label}"
    result = HandoffResult(sender, target, h.label, sent=h.send and not draft)
    if result.sent:
        from agentops.mail import send

        result.message_ids = send(ws, sender=sender, to=[target], subject=subject, body=body,
                                  headers={"X-Agentops-Handoff": h.label})
    else:
        from agentops.mail.drafts import save_draft

        result.draft = save_draft(ws, sender=sender, to=[target], subject=subject, body=body,
                                  headers={"X-Agentops-Handoff": h.label})
    _log(ws, result, pipelines)
    return result


def _log(ws, result: HandoffResult, pipelines: list[dict]) -> None:
    from agentops.orbit import Orbit
    from agentops.orbit.events import HandoffEvent

    with Orbit.open(ws) as orbit:
        orbit.log(HandoffEvent(kind="handoff", sender=result.sender, target=result.target, label=result.label,
                               sent=result.sent, message_ids=list(result.message_ids), draft=result.draft,
                               pipelines=[p["name"] for p in pipelines], agent=result.sender), send_alerts=False)
