"""Alerts: one mail from `postmaster` to the pipeline's owner per failed run, failed error-severity
check, or anomaly.

The alert row (table `alerts`, keyed by what it is about: `run failed: P run R`, `check failed: P D C
run R`, `anomaly: P.D.M at TS`) and its `alert` event are written in the same transaction as the
event that caused it; `INSERT OR IGNORE` on the key is the dedupe, so a retry, a second failing
task of the same run, or a re-ingest never alerts twice. The mail is sent after the commit
(`send_pending`); an alert whose mail could not be sent stays `pending` (with the error) and is
retried the next time any write sends alerts.

The owner is the pipeline spec's `owner` when the spec is known, else the event's `owner`, else
`user`.
"""

from __future__ import annotations

import os

from agentops.errors import AgentOpsError
from agentops.store import utcnow, write_tx


def owner_of(spec, event_owner: str | None) -> str:
    owner = getattr(spec, "owner", None) if spec is not None else None
    return owner or event_owner or "user"


def _sender():
    try:
        from agentops.mail import send  # type: ignore[attr-defined]
    except ImportError:
        return None
    return send


def send_pending(orbit, limit: int = 100) -> list[dict]:
    """Send pending alerts (claimed one by one, so two writers never send the same alert)."""
    send = _sender()
    conn = orbit.db.conn
    if send is None or orbit.ws is None:
        return []
    sent = []
    pending = conn.execute("SELECT key, owner, subject, body FROM alerts WHERE status = 'pending' ORDER BY ts "
                           "LIMIT ?", (limit,)).fetchall()
    claim = f"sending:{os.getpid()}"
    for key, owner, subject, body in pending:
        with write_tx(orbit.db) as c:
            if not c.execute("UPDATE alerts SET status = ? WHERE key = ? AND status = 'pending'",
                             (claim, key)).rowcount:
                continue
        status, message_id, error = "sent", None, None
        try:
            result = send(orbit.ws, sender="postmaster", to=[owner], subject=subject, body=body)
            message_id = _message_id(result)
        except AgentOpsError as exc:
            status, error = "pending", str(exc)
        except Exception as exc:  # the mail library is another module: never lose the alert over it
            status, error = "pending", f"{type(exc).__name__}: {exc}"
        with write_tx(orbit.db) as c:
            c.execute("UPDATE alerts SET status = ?, message_id = ?, error = ?, sent_at = ? WHERE key = ?",
                      (status, message_id, error, utcnow() if status == "sent" else None, key))
        sent.append({"key": key, "owner": owner, "status": status, "error": error})
        if status != "sent":
            break  # mail is failing: keep the rest for the next attempt
    return sent


def _message_id(result) -> str | None:
    if result is None:
        return None
    if isinstance(result, str):
        return result
    if isinstance(result, (list, tuple)):
        return str(result[0]) if result else None
    for name in ("message_id", "id"):
        value = result.get(name) if isinstance(result, dict) else getattr(result, name, None)
        if isinstance(value, str):
            return value
    return None
