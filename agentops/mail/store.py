"""Mail in Orbit: the rows and events written when mail is delivered, bounced, read, acked or
claimed (always with the `mail` event in the same transaction), and the queries over them."""

from __future__ import annotations

import contextlib
import functools
import json
import sqlite3
from collections.abc import Iterator

from agentops.errors import ConflictError, NotFoundError, ValidationError
from agentops.orbit.registry import MailEvent, record

_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode  # made once: json.dumps with options makes one per call


class Record:
    """What Orbit keeps about one delivered message. `targets`: (kind, box) pairs, inbox/agent or
    queue/role; `blind`: those only a Bcc reached (left out of the `mail` event; their `deliveries`
    rows are what lets them read their copy). (A plain class: see `agentops.mail.route.RouteReport`.)"""

    def __init__(self, *, message_id: str, key: str, sender: str, recipients: list[str], cc: list[str],
                 subject: str, body: str, priority: str, date: str, in_reply_to: str | None, refs: list[str],
                 topic: str | None, drop_name: str | None, size: int,
                 targets: list[tuple[str, str]] | None = None, thread_id: str | None = None,
                 blind: frozenset[tuple[str, str]] = frozenset()):
        self.message_id, self.key, self.sender = message_id, key, sender
        self.recipients, self.cc, self.subject, self.body = recipients, cc, subject, body
        self.priority, self.date, self.in_reply_to, self.refs = priority, date, in_reply_to, refs
        self.topic, self.drop_name, self.size = topic, drop_name, size
        self.targets = [] if targets is None else targets
        self.thread_id = thread_id
        self.blind = blind

    def __repr__(self) -> str:
        return f"Record({self.message_id!r}, key={self.key!r}, sender={self.sender!r}, targets={self.targets!r})"


@contextlib.contextmanager
def orbit_db(ws, db=None):
    """`db` when the caller has Orbit open already, else Orbit opened for the block and closed after."""
    if db is not None:
        yield db
        return
    db = ws.db()
    try:
        yield db
    finally:
        db.conn.close()


def record_delivered(conn: sqlite3.Connection, recs: list[Record], now: str, threads: dict[str, str]) -> None:
    """Insert the messages, their deliveries, their FTS rows and their `delivered` events: one
    statement of each kind for the whole batch. A message Orbit has already (same Message-ID or
    Maildir key) is left as it is, with no second event."""
    ids, keys = _known(conn, recs)
    new = []
    for rec in recs:
        if rec.thread_id is None:
            rec.thread_id = _thread_of(conn, rec, threads)
        threads[rec.message_id] = rec.thread_id
        if rec.message_id in ids or rec.key in keys:
            continue
        ids.add(rec.message_id)
        keys.add(rec.key)
        new.append(rec)
    if not new:
        return
    (last,) = conn.execute("SELECT coalesce(max(seq), 0) FROM messages").fetchone()
    conn.executemany(
        "INSERT INTO messages (message_id, key, sender, recipients, cc, subject, body, priority, date,"
        " in_reply_to, refs, thread_id, topic, drop_name, size, delivered_at)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        [(rec.message_id, rec.key, rec.sender, _JSON(rec.recipients), _JSON(rec.cc),
          rec.subject, rec.body, rec.priority, rec.date, rec.in_reply_to, _JSON(rec.refs),
          rec.thread_id, rec.topic, rec.drop_name, rec.size, now) for rec in new])
    # the new rows are the ones after `last` (seq is the rowid; the write lock is ours)
    conn.execute("INSERT INTO messages_fts (rowid, subject, body) SELECT seq, subject, body FROM messages"
                 " WHERE seq > ?", (last,))
    conn.executemany(
        "INSERT INTO deliveries (message_id, kind, box, key, delivered_at) VALUES (?,?,?,?,?)"
        " ON CONFLICT DO NOTHING",
        [(rec.message_id, kind, box, rec.key, now) for rec in new for kind, box in rec.targets])
    record(conn, *(MailEvent(
        kind="mail", action="delivered", message_id=rec.message_id, sender=rec.sender,
        recipients=rec.recipients + [c for c in rec.cc if c not in rec.recipients], subject=rec.subject,
        inboxes=[box for kind, box in rec.targets if kind == "inbox" and (kind, box) not in rec.blind],
        queues=[box for kind, box in rec.targets if kind == "queue" and (kind, box) not in rec.blind],
        id=f"mail:delivered:{rec.message_id}", ts=now, agent=rec.sender) for rec in new))


def _known(conn, recs: list[Record]) -> tuple[set[str], set[str]]:
    """The Message-IDs and the keys of `recs` that Orbit has already."""
    ids, keys = set(), set()
    if recs:
        for mid, key in conn.execute(
                "SELECT message_id, key FROM messages WHERE message_id IN (SELECT value FROM json_each(?))"
                " OR key IN (SELECT value FROM json_each(?))",
                (json.dumps([r.message_id for r in recs]), json.dumps([r.key for r in recs]))):
            ids.add(mid)
            keys.add(key)
    return ids, keys


def _thread_of(conn, rec: Record, threads: dict[str, str]) -> str:
    parents = ([rec.in_reply_to] if rec.in_reply_to else []) + list(reversed(rec.refs))
    for parent in parents:
        if parent in threads:
            return threads[parent]
        row = conn.execute("SELECT thread_id FROM messages WHERE message_id = ?", (parent,)).fetchone()
        if row:
            return row[0]
    return rec.refs[0] if rec.refs else (rec.in_reply_to or rec.message_id)


def record_dead(conn: sqlite3.Connection, *, dead_id: str, cause: str, reason: str, name: str,
                sender: str | None, bounce_id: str | None, now: str) -> None:
    cur = conn.execute(
        "INSERT INTO dead_letters (id, cause, reason, original_name, sender, ts, bounce_id)"
        " VALUES (?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
        (dead_id, cause, reason, name, sender, now, bounce_id))
    if cur.rowcount:
        record(conn, MailEvent(kind="mail", action="bounced", dead_id=dead_id, cause=cause, reason=reason, name=name,
                               sender=sender, bounce_id=bounce_id, id=f"mail:bounced:{dead_id}", ts=now,
                               agent=sender))


def ids_known(conn: sqlite3.Connection, message_ids: list[str]) -> set[str]:
    if not message_ids:
        return set()
    return {r[0] for r in conn.execute(
        "SELECT message_id FROM messages WHERE message_id IN (SELECT value FROM json_each(?))",
        (json.dumps(message_ids),))}


# queries ------------------------------------------------------------------------------------
_COLS = ("seq, message_id, key, sender, recipients, cc, subject, priority, date, in_reply_to, refs,"
         " thread_id, topic, drop_name, size, delivered_at")


@functools.lru_cache(maxsize=4096)
def _address_list(text: str) -> tuple:
    return tuple(json.loads(text))  # a few distinct lists ("[]", one team's recipients) fill an inbox


def _rows(names: list[str], rows) -> list[dict[str, object]]:
    lists = [k for k in ("recipients", "cc", "refs") if k in names]
    out = []
    for row in rows:
        d = dict(zip(names, row))
        for k in lists:
            v = d[k]
            if isinstance(v, str):
                d[k] = list(_address_list(v))
        out.append(d)
    return out


def query(conn, sql: str, params=()) -> list[dict[str, object]]:
    cur = conn.execute(sql, params)
    return _rows([d[0] for d in cur.description], cur.fetchall())


def resolve_id(conn, ident: str) -> str:
    """A full Message-ID (with or without <>), a unique prefix of one, or a Maildir key."""
    ident = (ident or "").strip()
    bare = ident.strip("<>")
    if not bare:
        raise ValidationError("empty message id", hint="pass an id from `agentops mail inbox`")
    row = conn.execute("SELECT message_id FROM messages WHERE message_id = ? OR key = ?",
                       (f"<{bare}>", bare.split(":")[0])).fetchone()
    if row:
        return row[0]
    escaped = bare.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    rows = conn.execute("SELECT message_id FROM messages WHERE message_id LIKE ? ESCAPE '\\' LIMIT 6",
                        (f"<{escaped}%",)).fetchall()
    if not rows:
        raise NotFoundError(f"no message with id '{ident}'", hint="see `agentops mail inbox AGENT` for ids")
    if len(rows) > 1:
        shown = ", ".join(r[0] for r in rows[:5])
        raise ConflictError(f"message id prefix '{ident}' is ambiguous ({shown}{', ...' if len(rows) > 5 else ''})",
                            hint="give more characters")
    return rows[0][0]


def message(conn, message_id: str) -> dict[str, object]:
    rows = query(conn, f"SELECT {_COLS}, body FROM messages WHERE message_id = ?", (message_id,))
    if not rows:
        raise NotFoundError(f"no message with id '{message_id}'")
    out = rows[0]
    out["deliveries"] = query(conn, "SELECT kind, box, delivered_at, read_at, acked_at, claimed_by, claimed_at"
                                    " FROM deliveries WHERE message_id = ? ORDER BY kind, box", (message_id,))
    return out


def box_messages(conn, kind: str, box: str, *, newest_first: bool = False) -> Iterator[dict[str, object]]:
    """The box's messages in delivery order (or newest first), read lazily: a caller that wants
    the last 50 of 25,000 stops after 50 rows."""
    order = "DESC" if newest_first else "ASC"
    cur = conn.execute(f"SELECT {', '.join('m.' + c.strip() for c in _COLS.split(','))},"
                       " d.read_at, d.acked_at, d.claimed_by, d.claimed_at"
                       " FROM deliveries d JOIN messages m ON m.message_id = d.message_id"
                       f" WHERE d.kind = ? AND d.box = ? ORDER BY d.delivered_at {order}, m.seq {order}",
                       (kind, box))
    names = [d[0] for d in cur.description]
    while True:
        chunk = cur.fetchmany(256)
        if not chunk:
            return
        yield from _rows(names, chunk)


def thread(conn, message_id: str) -> list[dict[str, object]]:
    row = conn.execute("SELECT thread_id FROM messages WHERE message_id = ?", (message_id,)).fetchone()
    if not row:
        raise NotFoundError(f"no message with id '{message_id}'")
    return query(conn, f"SELECT {_COLS}, body FROM messages WHERE thread_id = ? ORDER BY date, seq", (row[0],))


def search(conn, text: str, limit: int = 50) -> list[dict[str, object]]:
    """FTS5 over subject and body; plain words work, and so does FTS5 query syntax."""
    if not text.strip():
        raise ValidationError("empty search query", hint="e.g. agentops mail search 'schema review'")
    sql = (f"SELECT {', '.join('m.' + c.strip() for c in _COLS.split(','))},"
           " snippet(messages_fts, 1, '[', ']', '...', 12) AS snippet"
           " FROM messages_fts JOIN messages m ON m.seq = messages_fts.rowid"
           " WHERE messages_fts MATCH ? ORDER BY rank LIMIT ?")
    try:
        return query(conn, sql, (text, limit))
    except sqlite3.OperationalError:
        quoted = " ".join('"' + w.replace('"', '""') + '"' for w in text.split())
        return query(conn, sql, (quoted, limit))
