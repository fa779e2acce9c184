"""Reading mail: inboxes and role queues, read, ack, claim, threads and search.

Read state lives in the Maildir itself (so mutt and notmuch agree with agentops): unread messages
are in `new/` (or in `cur/` without `S`); read adds `S`; ack adds `R` ("answered"). Orbit keeps
the times (`deliveries.read_at`, `acked_at`) and a `mail` event for each.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from agentops import safefs
from agentops.addresses import slug
from agentops.errors import ConflictError, NotFoundError, ValidationError, WorkspaceError
from agentops.mail import maildir
from agentops.mail.maildir import ACKED, SEEN
from agentops.mail import store
from agentops.orbit.registry import MailEvent, record
from agentops.store import utcnow, write_tx


def box_of(ws, address: str) -> tuple[str, str]:
    """(`inbox`, agent) or (`queue`, role) for an address; a one-member role is its member's inbox."""
    s = slug(address)
    book = ws.addresses
    if s in book.agents or s in ("user", "postmaster"):
        return "inbox", s
    if s in book.roles:
        members = book.members(s)
        if len(members) == 1:
            return "inbox", members[0]
        if members:
            return "queue", s
    raise NotFoundError(f"no inbox or role queue named '{address}' (agents: {', '.join(sorted(book.agents))})",
                        hint="see `agentops roles list`")


def box_dir(ws, kind: str, box: str) -> Path:
    """The Maildir of an inbox or role queue; refused when it is a link leading outside the workspace."""
    path = ws.inbox(box) if kind == "inbox" else ws.queues_root / box
    if not ws.inside(path):
        raise WorkspaceError(f"{path.relative_to(ws.root)} is a symlink leading outside the workspace"
                             f" ({os.path.realpath(path)}); replace it with a real folder")
    return path


def _state(flags_at: tuple[str, str] | None) -> str:
    if flags_at is None:
        return "missing"
    where, flags = flags_at
    if ACKED in flags:
        return "acked"
    if where == "cur" and SEEN in flags:
        return "read"
    return "unread"


def inbox(ws, address: str, *, unread: bool = False, limit: int | None = None, newest: bool = True,
          db=None) -> list[dict[str, Any]]:
    """The messages in an agent's inbox (or a role's queue), oldest first, with their state.

    With `limit`, only that many: the newest ones (`newest=True`, what a person looks at) or the
    oldest ones (`newest=False`, the order an agent works through its mail)."""
    kind, box = box_of(ws, address)
    files = maildir.listing(box_dir(ws, kind, box))
    out: list[dict[str, Any]] = []
    with store.orbit_db(ws, db) as database:
        if kind == "queue":
            settle_claims(ws, database, box)
        for row in store.box_messages(database.conn, kind, box, newest_first=newest):
            row["box"], row["kind"] = box, kind
            row["state"] = _state(files.get(row["key"]))
            if kind == "queue" and row.get("claimed_by"):
                row["state"] = "claimed"
            if row["state"] in ("missing",) or (unread and row["state"] != "unread"):
                continue
            out.append(row)
            if limit and len(out) >= limit:
                break
    return out[::-1] if newest else out


def count(ws, address: str, *, unread: bool = False) -> int:
    """How many messages the box holds (unread ones only with `unread`), from the Maildir itself."""
    kind, box = box_of(ws, address)
    files = maildir.listing(box_dir(ws, kind, box))
    return sum(1 for state in map(_state, files.values()) if not unread or state == "unread")


def _delivery(conn, message_id: str, agent: str | None) -> tuple[str, str] | None:
    boxes = conn.execute("SELECT kind, box FROM deliveries WHERE message_id = ? ORDER BY kind, box",
                         (message_id,)).fetchall()
    inboxes = [b for k, b in boxes if k == "inbox"]
    if agent:
        a = slug(agent)
        if a not in inboxes:
            raise NotFoundError(f"message {message_id} is not in {a}'s inbox"
                                f" (delivered to: {', '.join(inboxes) or 'a role queue only'})")
        return "inbox", a
    if len(inboxes) == 1:
        return "inbox", inboxes[0]
    if len(inboxes) > 1:
        raise ConflictError(f"message {message_id} is in {len(inboxes)} inboxes ({', '.join(inboxes)})",
                            hint="say whose copy with --as AGENT")
    return None


def _mark(ws, db, ident: str, agent: str | None, flags: str, action: str) -> dict[str, Any]:
    conn = db.conn
    message_id = store.resolve_id(conn, ident)
    msg = store.message(conn, message_id)
    where = _delivery(conn, message_id, agent)
    msg["box"] = where[1] if where else None
    if where is None:
        return msg
    kind, box = where
    # the reader sees their own copy's delivery only: the others' would name Bcc recipients
    msg["deliveries"] = [d for d in msg["deliveries"] if (d["kind"], d["box"]) == where]
    try:
        path, _ = maildir.add_flags(box_dir(ws, kind, box), msg["key"], flags, ws)
        msg["path"] = str(path)
    except FileNotFoundError:
        msg["path"] = None
    column = "read_at" if action == "read" else "acked_at"
    now = utcnow()
    with write_tx(db) as c:
        c.execute(f"UPDATE deliveries SET {column} = COALESCE({column}, ?),"
                  " read_at = COALESCE(read_at, ?) WHERE message_id = ? AND kind = ? AND box = ?",
                  (now, now, message_id, kind, box))
        record(c, MailEvent(kind="mail", action=action, message_id=message_id,
                            id=f"mail:{action}:{message_id}:{box}", ts=now, agent=box))
    msg["state"] = "acked" if action == "acked" else "read"
    return msg


def read(ws, ident: str, *, agent: str | None = None, db=None) -> dict[str, Any]:
    """The message (headers from Orbit, body, its file), marked read in `agent`'s inbox (the only
    inbox it is in when `agent` is None)."""
    with store.orbit_db(ws, db) as database:
        return _mark(ws, database, ident, agent, SEEN, "read")


def ack(ws, ident: str, *, agent: str | None = None, db=None) -> dict[str, Any]:
    """Acknowledge a message: read + the Maildir `R` flag + an Orbit `acked` event."""
    with store.orbit_db(ws, db) as database:
        return _mark(ws, database, ident, agent, SEEN + ACKED, "acked")


def claim(ws, role: str, agent: str, ident: str | None = None, *, db=None) -> dict[str, Any]:
    """Take one message from a role's queue into `agent`'s inbox: the oldest unclaimed one, or
    `ident`. Orbit decides the winner (one write transaction), so of concurrent claimers exactly
    one gets each message; the file then moves from the queue into the winner's inbox."""
    r, a = slug(role), slug(agent)
    book = ws.addresses
    if r not in book.roles:
        raise NotFoundError(f"no role '{role}' (roles: {', '.join(sorted(book.roles))})")
    members = book.members(r)
    if a not in members:
        raise ValidationError(f"'{a}' is not a member of role '{book.roles[r]}' (members: {', '.join(members) or 'none'})",
                              hint="claim as one of the role's agents")
    if len(members) < 2:
        raise ValidationError(f"role '{book.roles[r]}' has one member, so its mail goes straight to {a}'s inbox",
                              hint=f"see `agentops mail inbox {a}`")
    with store.orbit_db(ws, db) as database:
        conn = database.conn
        settle_claims(ws, database, r)
        now = utcnow()
        with write_tx(database) as c:
            if ident:
                message_id = store.resolve_id(c, ident)
                row = c.execute("SELECT claimed_by FROM deliveries WHERE kind = 'queue' AND box = ? AND message_id = ?",
                                (r, message_id)).fetchone()
                if row is None:
                    raise NotFoundError(f"message {message_id} is not in the {r} queue")
                if row[0] is not None and row[0] != a:
                    raise ConflictError(f"message {message_id} was already claimed by {row[0]}")
            else:
                row = c.execute(
                    "SELECT d.message_id FROM deliveries d JOIN messages m ON m.message_id = d.message_id"
                    " WHERE d.kind = 'queue' AND d.box = ? AND d.claimed_by IS NULL ORDER BY m.seq LIMIT 1",
                    (r,)).fetchone()
                if row is None:
                    raise NotFoundError(f"the {r} queue has no unclaimed message")
                message_id = row[0]
            changed = c.execute("UPDATE deliveries SET claimed_by = ?, claimed_at = ? WHERE kind = 'queue'"
                                " AND box = ? AND message_id = ? AND claimed_by IS NULL",
                                (a, now, r, message_id)).rowcount
            if changed:
                key = c.execute("SELECT key FROM messages WHERE message_id = ?", (message_id,)).fetchone()[0]
                c.execute("INSERT INTO deliveries (message_id, kind, box, key, delivered_at) VALUES (?,?,?,?,?)"
                          " ON CONFLICT DO NOTHING", (message_id, "inbox", a, key, now))
                record(c, MailEvent(kind="mail", action="claimed", message_id=message_id, role=r,
                                    id=f"mail:claimed:{message_id}", ts=now, agent=a))
        settle_claims(ws, database, r)
        msg = store.message(conn, message_id)
    msg["claimed_by"] = a
    return msg


def settle_claims(ws, db, role: str) -> int:
    """Move queue files Orbit says are claimed into the claimer's inbox (finishes a claim that
    crashed between its commit and its rename). Returns how many moved."""
    qdir = box_dir(ws, "queue", role)
    files = maildir.listing(qdir)
    if not files:
        return 0
    rows = db.conn.execute("SELECT key, claimed_by FROM deliveries WHERE kind = 'queue' AND box = ?"
                           " AND claimed_by IS NOT NULL", (role,)).fetchall()
    moved = 0
    for key, agent in rows:
        if key not in files:
            continue
        where, flags = files[key]
        src = qdir / where / (key if where == "new" else f"{key}:2,{flags}")
        dest_box = maildir.ensure(box_dir(ws, "inbox", agent), ws)
        dest = dest_box / where / src.name
        try:
            safefs.rename(ws, src, dest)
            moved += 1
        except FileNotFoundError:
            pass
    return moved


def settle_all_claims(ws, db) -> int:
    try:
        roles = [name for name, st in safefs.scan(ws, ws.queues_root) if stat.S_ISDIR(st.st_mode)]
    except FileNotFoundError:
        return 0
    return sum(settle_claims(ws, db, r) for r in roles)


def thread(ws, ident: str, *, db=None) -> list[dict[str, Any]]:
    with store.orbit_db(ws, db) as database:
        return store.thread(database.conn, store.resolve_id(database.conn, ident))


def search(ws, text: str, *, limit: int = 50, db=None) -> list[dict[str, Any]]:
    with store.orbit_db(ws, db) as database:
        return store.search(database.conn, text, limit)
