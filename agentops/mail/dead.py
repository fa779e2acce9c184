"""Dead letters: drop files that could not be delivered, kept in `.agent/email/dead/<id>` (the
file, link or folder itself, never what a link points to) with `<id>.reason` (JSON: id, cause,
reason, name, sender, time, bounce_id) beside it. `retry` routes one again once its cause is fixed.

Causes: unknown_recipient, unknown_sender, bad_name, name_too_long, empty, binary, invalid_utf8,
too_large, symlink, hard_link, not_regular_file, header_injection, bad_header, unsafe_mailbox
(an inbox folder that is a link leading outside the workspace), unreadable, forged_sender (a drop
file from `postmaster`), unroutable (routing failed on that file alone).
"""

from __future__ import annotations

import json
import os
from typing import Any

from agentops.errors import ConflictError, NotFoundError, UnsafePathError, ValidationError

CAUSES = ("unknown_recipient", "unknown_sender", "bad_name", "name_too_long", "empty", "binary",
          "invalid_utf8", "too_large", "symlink", "hard_link", "not_regular_file", "header_injection",
          "bad_header", "unsafe_mailbox", "unreadable", "forged_sender", "unroutable")


def list_dead(ws) -> list[dict[str, Any]]:
    """Every dead letter still in `dead/`, oldest first."""
    from agentops import safefs

    out = []
    try:
        present = set(safefs.listdir(ws, ws.dead_dir))
    except FileNotFoundError:
        return []
    names = sorted(n for n in present if n.endswith(".reason") and not n.startswith("."))
    for name in names:
        dead_id = name[: -len(".reason")]
        if dead_id not in present:
            continue
        try:
            info = json.loads(safefs.read_text(ws, ws.dead_dir / name))
            if not isinstance(info, dict):
                raise ValueError("not an object")
        except UnsafePathError as exc:  # a link or a hard link: never read
            info = {"id": dead_id, "cause": "unknown", "reason": f"{name} was not read: {exc.message}"}
        except (OSError, ValueError):
            info = {"id": dead_id, "cause": "unknown", "reason": f"{name} is not readable JSON"}
        info["id"] = dead_id
        info["path"] = str((ws.dead_dir / dead_id).relative_to(ws.root))
        out.append(info)
    out.sort(key=lambda d: (d.get("time") or "", d["id"]))
    return out


def find(ws, ident: str) -> dict[str, Any]:
    ident = (ident or "").strip()
    matches = [d for d in list_dead(ws) if d["id"].startswith(ident)] if ident else []
    if not matches:
        raise NotFoundError(f"no dead letter '{ident}'", hint="see `agentops mail dead`")
    exact = [d for d in matches if d["id"] == ident]
    if len(matches) > 1 and not exact:
        raise ConflictError(f"dead letter id '{ident}' is ambiguous ({', '.join(d['id'] for d in matches[:5])})",
                            hint="give more characters")
    return (exact or matches)[0]


def retry(ws, ident: str, *, db=None):
    """Route a dead letter again (after fixing its cause). Returns the RouteReport; when it fails
    again it is a new dead letter with a new id."""
    from agentops import safefs
    from agentops.mail.route import new_token, route_lock, route_pending, spool_entry
    from agentops.mail.store import orbit_db
    from agentops.store import utcnow, write_tx

    with route_lock(ws), orbit_db(ws, db) as database:
        info = find(ws, ident)
        dead_id = info["id"]
        name = _original_name(database.conn, ws, info)
        safefs.makedirs(ws, ws.spool_dir)
        entry = spool_entry(ws.spool_dir, new_token(), name)
        safefs.rename(ws, ws.dead_dir / dead_id, entry.spool)
        safefs.unlink(ws, ws.dead_dir / f"{dead_id}.reason")
        with write_tx(database) as conn:
            conn.execute("UPDATE dead_letters SET retried_at = ?, retried_as = ? WHERE id = ?",
                         (utcnow(), entry.token, dead_id))
    return route_pending(ws, [], db=db)


def _original_name(conn, ws, info: dict[str, Any]) -> str:
    """The drop-file name a dead letter is routed under again: Orbit's record of it (the `.reason`
    file is only a copy anyone can edit), else the `.reason` file's, else `<id>.email`. A name that
    is not one plain file name is refused before anything moves."""
    dead_id = info["id"]
    row = conn.execute("SELECT original_name FROM dead_letters WHERE id = ?", (dead_id,)).fetchone()
    name = row[0] if row and row[0] else info.get("name", f"{dead_id}.email")
    if not isinstance(name, str) or not name or "/" in name or "\x00" in name or name in (".", ".."):
        reason = (ws.dead_dir / f"{dead_id}.reason").relative_to(ws.root)
        raise ValidationError(f"dead letter {dead_id} has no usable file name ({name!r} is not one plain file name)",
                              hint=f"set \"name\" in {reason} to a name like to-B-from-A.email, then retry")
    return name
