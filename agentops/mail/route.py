"""Routing: drop files in `.agent/email/` to Maildir inboxes, exactly once across crashes.

The steps, and why a crash at any instant is safe:

1. Claim: each drop file is renamed into the private spool, `.queue/<token>~<original name>`, at
   once (the sender may reuse the name; a name too long to carry the token is cut and marked with
   `!` instead of `~`, and dead-lettered). `<token>` is new and unique; everything derived later
   (Maildir key, Message-ID when the file has none, Date, dead-letter id) is a function of it, so
   replaying the same spool entry produces the same result. A crash before the rename leaves the
   drop file; after it, the spool entry.
2. Deliver: the message is written into each recipient's Maildir (a new `tmp/` file, fsync as
   the durability policy says, rename to `new/<key>`). A replay writes the same name again, replacing the copy instead of adding one,
   and skips an inbox where the reader already moved it to `cur/`.
3. Record: one Orbit transaction per batch: `messages`, `deliveries`, FTS and a `mail` event whose
   id makes it idempotent. Dead letters and their bounces are recorded in the same transaction.
4. Finish: the spool entry is removed (dead letters: `.reason` written, then moved to `dead/`).
   A replay of an entry Orbit already recorded (crash between 3 and 4) only does step 4.

Nothing blocks the queue: whatever is wrong with one drop file (its name, its type, its bytes)
makes it a dead letter with a reason in step 2, and the text kept about it (name, reason) is made
valid UTF-8 first. Should a batch still fail in steps 2-4 for a reason of its own (not the disk or
the database: those fail the pass, and the next one replays the spool), its entries are replayed
one at a time, and one that fails alone is dead-lettered (`unroutable`) with the error as reason.

agentops' own messages (`postmaster`: alerts) are written straight into the spool as
`<token>^<name>` (`outbox.notify`); a drop file from `postmaster` is a dead letter (`forged_sender`).

Every file operation goes through folder descriptors `agentops.safefs` opened and checked once per
pass (the drop zone, the spool, each Maildir's `tmp/` and `new/`): a folder linked out of the
workspace is refused, and no path is resolved again after it was checked.

Every routing pass holds an exclusive lock (`.agent/run/mail.lock`), so the spool entries a pass
sees are its own or left by a crashed pass, never another live router's.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import itertools
import json
import os
import stat
import sys
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

from agentops.addresses import POSTMASTER
from agentops.errors import AgentOpsError, NotFoundError, UnsafePathError
from agentops.mail import maildir
from agentops.mail.message import Message, MessageError, addresses, decoded, message_ids
from agentops.mail.names import MAX_NAME_BYTES, SUFFIX, BadName, Matcher
from agentops.leases import lease_checks, open_for_writing
from agentops.mail.store import Record, ids_known, orbit_db, record_dead, record_delivered

BATCH_MESSAGES = 1000
BATCH_BYTES = 64 * 1024 * 1024
HOST = "agentops"  # the Maildir "host" part of every key
SCAN_WAIT = 1.0  # longest a scan waits to see whether a file it just saw change changes again
_OPEN_READ = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
_counter = itertools.count(1)


class RouteReport:
    """What one routing pass did. `inboxes`: the agents whose inbox received new mail.

    (Plain classes in this module and in `agentops.mail.store`, not dataclasses: `agentops mail
    send` routes its message itself when no daemon runs, and importing `dataclasses` would add
    about a fifth to that command.)"""

    def __init__(self):
        self.delivered = self.dead = self.bounces = self.recovered = self.skipped = 0
        self.message_ids: list[str] = []
        self.dead_letters: list[dict] = []
        self.inboxes: set[str] = set()
        self.queues: set[str] = set()
        self.seconds = 0.0

    def __repr__(self) -> str:
        return f"RouteReport({self.as_dict()})"

    def __bool__(self) -> bool:
        return bool(self.delivered or self.dead or self.recovered)

    def as_dict(self) -> dict:
        return {"delivered": self.delivered, "dead": self.dead, "bounces": self.bounces,
                "recovered": self.recovered, "skipped": self.skipped, "message_ids": self.message_ids,
                "dead_letters": self.dead_letters, "inboxes": sorted(self.inboxes),
                "queues": sorted(self.queues), "seconds": round(self.seconds, 4)}


# public ---------------------------------------------------------------------------------------
def route_pending(ws, paths: Iterable[os.PathLike | str] | None = None, *, db=None,
                  settle: float | None = None, and_pending: bool = False) -> RouteReport:
    """Route `paths` (drop files), or every `*.email` in the drop zone when None (or as well, with
    `and_pending`), after first finishing whatever a crashed pass left in the spool. When scanning,
    files changed less than `settle` seconds ago (default: the `mail.settle_seconds` setting) are
    left for the next pass."""
    started = time.monotonic()
    report = RouteReport()
    with route_lock(ws), orbit_db(ws, db) as database, lease_checks() as can_lease, \
            contextlib.ExitStack() as folders:
        router = _Router(ws, database, report, can_lease, folders)
        router.run(router.spool_entries(), recovered=True)
        given = [] if paths is None else _given(ws, paths)
        names = []
        if paths is None or and_pending:
            settle = ws.config.mail.settle_seconds if settle is None else settle
            names = _scan(router.zone, settle, report, given=set(given))
        names += given
        router.run(router.claim(names), recovered=False)
    report.seconds = time.monotonic() - started
    return report


def recover(ws, *, db=None) -> RouteReport:
    """Finish anything a crashed pass left half-done (call at daemon start): the spool, and role-queue
    claims committed in Orbit whose file had not moved yet."""
    from agentops.mail.inbox import settle_all_claims

    report = route_pending(ws, [], db=db)
    with orbit_db(ws, db) as database:
        settle_all_claims(ws, database)
    return report


def token_key(token: str) -> str:
    return f"{token}.{HOST}"


def derived_id(token: str, what: str = "") -> str:
    import hashlib  # here: a message with its own Message-ID (all that agentops sends) needs none

    return hashlib.sha1(f"{token}{what}".encode()).hexdigest()[:20]


def dead_id_of(token: str) -> str:
    return derived_id(token, "dead")[:12]


# internals ------------------------------------------------------------------------------------
@contextlib.contextmanager
def route_lock(ws):
    """Hold the routing lock (`.agent/run/mail.lock`): one routing pass, or retry, at a time."""
    from agentops.pidlock import FileLock

    ws.check_layout()  # no pass reads or writes through a state folder linked outside the workspace
    with FileLock(ws, ws.run_dir / "mail.lock", "routing pass", record_pid=False):
        yield


def new_token() -> str:
    now = time.time_ns()
    return f"{now // 1_000_000_000}.M{(now // 1000) % 1_000_000:06d}P{os.getpid()}Q{next(_counter)}"


def _token_time(token: str) -> datetime:
    try:
        sec, rest = token.split(".M", 1)
        usec = rest.split("P", 1)[0]
        return datetime.fromtimestamp(int(sec) + int(usec) / 1e6, tz=timezone.utc)
    except (ValueError, IndexError):
        return datetime.now(timezone.utc)


def _is_drop_name(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(SUFFIX)


def _scan(zone: int, settle: float, report: RouteReport, given: set[str] = frozenset()) -> list[str]:
    """The drop files to route (the `given` names are routed anyway: they are left out here).
    Settling is judged by observed change, never by a file's mtime (which a writer may set to any
    time): a file the kernel saw change (its ctime) less than `settle` seconds ago is looked at
    again once that time is over, and routed when it has not changed meanwhile; one that changed,
    or whose time is not over within SCAN_WAIT, is left for the next pass. A ctime ahead of the
    clock (the clock went back) counts as a change seen now. `zone`: the drop zone's descriptor."""
    names, young, wait = [], {}, 0.0
    now = time.time()
    try:
        with os.scandir(zone) as it:
            for entry in it:
                if not _is_drop_name(entry.name) or entry.name in given:
                    continue
                if settle > 0:
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    age = now - st.st_ctime
                    if age < settle:
                        left = settle - max(age, 0.0)
                        if left > SCAN_WAIT:
                            report.skipped += 1
                            continue
                        young[entry.name] = st
                        wait = max(wait, left)
                        continue
                names.append(entry.name)
    except FileNotFoundError:
        return []
    if young:
        time.sleep(wait)
        for name, st in young.items():
            try:
                again = os.stat(name, dir_fd=zone, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if _signature(again) == _signature(st):
                names.append(name)
            else:
                report.skipped += 1
    names.sort()
    return names


def _signature(st) -> tuple:
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _given(ws, paths) -> list[str]:
    zone = os.path.abspath(ws.email_dir)
    names = []
    for p in paths:
        p = os.path.abspath(os.fspath(p))
        if os.path.dirname(p) == zone and _is_drop_name(os.path.basename(p)):
            names.append(os.path.basename(p))
    return list(dict.fromkeys(names))


class _Entry:
    """One spool entry on its way: `spool` is `.queue/<token>~<name>`."""

    def __init__(self, token: str, spool: Path, name: str, recovered: bool, truncated: bool = False,
                 original: str = "", own: bool = False):
        self.token = token
        self.spool = spool
        self.name = name  # as the file system gave it (bytes that are not UTF-8 as surrogates)
        self.recovered = recovered
        self.truncated = truncated
        self.own = own  # written by agentops itself (`outbox.notify`), not claimed from the drop zone
        # the drop file's whole name (known unless a cut name was replayed), as text Orbit can keep
        self.original = text(original)
        self.key = token_key(token)
        self.plan: Record | None = None
        self.data = b""
        self.dead: dict | None = None  # {cause, reason, sender}
        self.done: str | None = None  # a replay of an entry Orbit already recorded: its message id / dead id
        self.bounce: tuple[Record, bytes] | None = None

    @property
    def path(self) -> Path:
        return self.spool

    @functools.cached_property
    def dead_id(self) -> str:
        return dead_id_of(self.token)


class _Router:
    def __init__(self, ws, db, report: RouteReport, can_lease: bool, folders: contextlib.ExitStack):
        from agentops import safefs

        self.ws = ws
        self.folders = folders  # checked folder descriptors, closed when the pass ends
        self.zone = self.folder(ws.email_dir)
        self.spool = self.folder(ws.spool_dir)
        self.boxes: dict[str, tuple[int, int]] = {}  # Maildir path -> (tmp/, new/) descriptors
        self.safefs = safefs
        self.can_lease = can_lease  # open_for_writing may be asked
        self.db = db
        self.report = report
        book = ws.addresses
        self.book = book
        self.matcher = Matcher(book.known())
        self.max_bytes = ws.config.mail.max_bytes
        self.dirs: dict[tuple[str, str], str] = {}
        self.fsync_each = FSYNC == "file"  # decided per batch in `commit`
        self.batch_ids: set[str] = set()
        self.threads: dict[str, str] = {}

    def folder(self, path) -> int:
        """A descriptor for the state folder `path` (made when missing), checked by safefs."""
        from agentops import safefs

        return self.folders.enter_context(safefs.opendir(self.ws, path, create=True))

    def _exists(self, e: _Entry) -> bool:
        try:
            os.stat(e.spool.name, dir_fd=self.spool, follow_symlinks=False)
            return True
        except FileNotFoundError:
            return False

    # spool --------------------------------------------------------------------------------
    def spool_entries(self):
        names = sorted(n for n in os.listdir(self.spool) if not n.startswith("."))
        for spool_name in names:
            entry = _parse_spool_name(self.ws.spool_dir, spool_name)
            if entry is not None:
                yield entry

    def claim(self, names: list[str]):
        spool = self.ws.spool_dir
        zone = self.ws.email_dir
        claimed = []
        for name in names:  # claim them all first: the drop zone empties at once
            if self.can_lease and open_for_writing(zone / name):
                self.report.skipped += 1  # a writer has it open: the next pass takes it
                continue
            entry = spool_entry(spool, new_token(), name)
            try:
                os.rename(name, entry.spool.name, src_dir_fd=self.zone, dst_dir_fd=self.spool)
            except FileNotFoundError:
                continue  # gone meanwhile (the writer took it back)
            claimed.append(entry)
        return claimed

    # batches ------------------------------------------------------------------------------
    def run(self, entries, *, recovered: bool) -> None:
        batch, size = [], 0
        for entry in entries:
            if recovered:
                self.report.recovered += 1
            self.analyze(entry)
            batch.append(entry)
            size += len(entry.data)
            if len(batch) >= BATCH_MESSAGES or size >= BATCH_BYTES:
                self.commit_or_isolate(batch)
                batch, size = [], 0
        if batch:
            self.commit_or_isolate(batch)

    def commit_or_isolate(self, batch: list[_Entry]) -> None:
        """Commit the batch; when it fails for a reason of its own, replay its entries one at a time
        (as a crashed pass's), and dead-letter one that fails alone."""
        try:
            self.commit(batch)
            return
        except Exception as exc:  # noqa: BLE001 - one entry must never block the others
            if _environment(exc):
                raise
        self.batch_ids.clear()
        for e in batch:
            if not self._exists(e):
                continue  # finished before the failure
            again = _Entry(e.token, e.spool, e.name, True, e.truncated, e.original, e.own)
            try:
                self.analyze(again)
                self.commit([again])
                continue
            except Exception as exc:  # noqa: BLE001
                if _environment(exc):
                    raise
                error = f"{type(exc).__name__}: {exc}"
            self.batch_ids.clear()
            if again.plan is not None:  # copies written before the failure are not deliveries
                for target in again.plan.targets:
                    if target in self.dirs:
                        maildir.remove_new(self.boxes[self.dirs[target]][1], again.key)
            dead = _Entry(e.token, e.spool, e.name, False, e.truncated, e.original, e.own)
            dead.dead = {"cause": "unroutable", "reason": text(f"routing failed on this file: {error}"),
                         "sender": None}
            self.commit([dead])

    def commit(self, batch: list[_Entry]) -> None:
        from agentops.store import utcnow, write_tx

        todo = [e for e in batch if e.done is None]
        # a few files: fsync each (and its folder); more: one syncfs for the batch
        self.fsync_each = FSYNC == "file" or (FSYNC == "batch" and (len(todo) <= FSYNC_EACH_UP_TO or _syncfs() is None))
        touched: set[int] = set()  # the new/ folders written to
        for e in todo:
            if e.plan is not None:
                self.write(e.plan, e.data, e.recovered, touched)
            if e.bounce is not None:
                self.write(*e.bounce, e.recovered, touched)
        if touched:
            _make_durable(touched, synced_each=self.fsync_each)
        now = utcnow()
        if todo:
            with write_tx(self.db) as conn:
                # messages and bounces in batch order, then the dead letters (each names its bounce)
                record_delivered(conn, [e.plan if e.plan is not None else e.bounce[0] for e in todo
                                        if e.plan is not None or e.bounce is not None], now, self.threads)
                for e in todo:
                    if e.dead is not None:
                        record_dead(conn, dead_id=e.dead_id, cause=e.dead["cause"], reason=e.dead["reason"],
                                    name=e.original, sender=e.dead["sender"],
                                    bounce_id=e.bounce[0].message_id if e.bounce else None, now=now)
        for e in batch:
            self.finish(e, now)
        self.batch_ids.clear()

    # one entry ----------------------------------------------------------------------------
    def analyze(self, e: _Entry) -> None:
        if e.recovered and self._replay_done(e):
            return
        try:
            e.plan, e.data = self.plan(e)
        except Exception as exc:  # noqa: BLE001 - bad input must never stop routing
            if not isinstance(exc, AgentOpsError):
                exc = MessageError(f"cannot process the file: {type(exc).__name__}: {exc}", cause="unreadable")
            cause = getattr(exc, "cause", "rejected")
            sender = getattr(exc, "sender", None)
            if sender is None and cause not in ("bad_name", "name_too_long", "unknown_sender"):
                sender = self._sender_of(e.name)
            e.plan, e.data = None, b""
            e.dead = {"cause": cause, "reason": text(str(exc)), "sender": sender}
            if sender and sender not in ("postmaster", "all"):
                e.bounce = self.bounce(e, sender)

    def _replay_done(self, e: _Entry) -> bool:
        """Did the crashed pass already record this entry in Orbit? (Then only step 4 is left.)"""
        conn = self.db.conn
        row = conn.execute("SELECT message_id FROM messages WHERE key = ?", (e.key,)).fetchone()
        if row:
            e.done = row[0]
            return True
        row = conn.execute("SELECT cause, reason, sender, bounce_id FROM dead_letters WHERE id = ?",
                           (e.dead_id,)).fetchone()
        if row:
            e.done = e.dead_id
            e.dead = {"cause": row[0], "reason": row[1], "sender": row[2], "bounce_id": row[3]}
            return True
        return False

    def _sender_of(self, name: str) -> str | None:
        try:
            return self.matcher.parse(name).sender
        except BadName as exc:
            return exc.sender

    def plan(self, e: _Entry) -> tuple[Record, bytes]:
        try:
            st = os.stat(e.spool.name, dir_fd=self.spool, follow_symlinks=False)
        except FileNotFoundError:
            raise MessageError("the file vanished from the spool", cause="vanished") from None
        if e.truncated:
            raise BadName(f"file name is over {MAX_NAME_BYTES} bytes long",
                          cause="name_too_long", hint="use a shorter topic; put details in the Subject header")
        if stat.S_ISLNK(st.st_mode):
            raise MessageError("the drop file is a symbolic link (never followed)", cause="symlink",
                               hint="write the message itself into the drop zone")
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise MessageError(f"the drop file is {kind}", cause="not_regular_file",
                               hint="write a regular file")
        if st.st_nlink > 1:
            raise MessageError("the drop file is a hard link to another file (never read)", cause="hard_link",
                               hint="write the message itself into the drop zone")
        envelope = self.matcher.parse(e.name)
        if envelope.sender == POSTMASTER and not e.own:
            raise MessageError("a drop file from 'postmaster', agentops' own voice, which only agentops writes",
                               cause="forged_sender", hint="send from your own address")
        if st.st_size > self.max_bytes:
            raise MessageError(f"the file is {st.st_size} bytes, over the limit of {self.max_bytes}",
                               cause="too_large", hint="send a shorter message, or raise mail.max_bytes")
        raw = self._read(e.spool.name, st)
        msg = Message.from_bytes(raw)
        msg.validate()
        return self.build(e, envelope, msg)

    def _read(self, name: str, st) -> bytes:
        try:
            fd = os.open(name, _OPEN_READ, dir_fd=self.spool)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise MessageError("the drop file is a symbolic link (never followed)", cause="symlink") from None
            raise MessageError(f"cannot open the drop file: {exc.strerror}", cause="unreadable") from None
        try:
            fst = os.fstat(fd)
            if not stat.S_ISREG(fst.st_mode) or (fst.st_ino, fst.st_dev) != (st.st_ino, st.st_dev):
                raise MessageError("the drop file changed type while being read", cause="not_regular_file")
            chunks, total = [], 0
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                total += len(chunk)
                if total > self.max_bytes:
                    raise MessageError(f"the file is over the limit of {self.max_bytes} bytes", cause="too_large")
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def _address(self, addr: str, where: str) -> str:
        from agentops.addresses import slug

        s = slug(addr)
        if s not in self.matcher.known:
            raise MessageError(f"unknown recipient '{addr}' in the {where} header", cause="unknown_recipient",
                               hint="check the address, or add the agent to agentops.toml")
        return s

    def build(self, e: _Entry, envelope, msg: Message) -> tuple[Record, bytes]:
        sender = envelope.sender
        to = list(envelope.recipients)
        for a in addresses(msg.get("To")):
            s = self._address(a, "To")
            if s not in to:
                to.append(s)
        cc = []
        for a in addresses(", ".join(msg.get_all("Cc"))):
            s = self._address(a, "Cc")
            if s not in to and s not in cc:
                cc.append(s)
        bcc = []  # blind copies: delivered, but named in no delivered copy and no Orbit row
        for a in addresses(", ".join(msg.get_all("Bcc"))):
            s = self._address(a, "Bcc")
            if s not in to and s not in cc and s not in bcc:
                bcc.append(s)
        msg.remove("Bcc")
        targets = self.targets(to + cc + bcc, sender)
        blind: frozenset = frozenset()
        if bcc:
            blind = frozenset(targets) - set(self.targets(to + cc, sender))
        for target in targets:
            self.box_dir(target)  # made, and checked to stay inside the workspace
        when = _token_time(e.token)
        msg.set("From", sender)
        msg.set("To", ", ".join(to))
        if cc:
            msg.set("Cc", ", ".join(cc))
        else:
            msg.remove("Cc")
        subject = msg.get("Subject")
        if not subject:
            subject = envelope.topic or _first_line(msg.body) or "(no subject)"
            msg.set("Subject", subject)
        subject = decoded(subject)  # Orbit (inbox, thread, search, FTS) keeps the text, not =?utf-8?q?...?=
        given_date = msg.get("Date")
        if not given_date:
            msg.set("Date", rfc5322_date(when))
        message_id = self._message_id(msg.get("Message-ID"), e.token, "")
        msg.set("Message-ID", message_id)
        priority = (msg.get("Priority") or "normal").strip().lower()
        if msg.get("Priority") is not None:
            msg.set("Priority", priority)
        in_reply = message_ids(msg.get("In-Reply-To"))
        rec = Record(
            message_id=message_id, key=e.key, sender=sender, recipients=to, cc=cc, subject=subject,
            body=msg.body, priority=priority, date=_iso(given_date, when) if given_date else _whole_seconds(when),
            in_reply_to=in_reply[0] if in_reply else None, refs=message_ids(msg.get("References")),
            topic=envelope.topic, drop_name=e.name, size=0, targets=targets, blind=blind)
        data = msg.to_bytes()
        rec.size = len(data)
        return rec, data

    def _message_id(self, given: str | None, token: str, what: str) -> str:
        if given:
            ids = message_ids(given)
            if len(ids) == 1 and len(ids[0]) <= 250:
                mid = ids[0]
                if mid not in self.batch_ids and not ids_known(self.db.conn, [mid]):
                    self.batch_ids.add(mid)
                    return mid
        mid = f"<{derived_id(token, what)}@{HOST}>"
        self.batch_ids.add(mid)
        return mid

    def targets(self, addrs: list[str], sender: str) -> list[tuple[str, str]]:
        out: dict[tuple[str, str], None] = {}
        for addr in addrs:
            try:
                res = self.book.resolve(addr, sender=sender)
            except NotFoundError as exc:
                raise MessageError(str(exc), cause="unknown_recipient") from None
            for agent in res.agents:
                out[("inbox", agent)] = None
            if res.queue:
                out[("queue", res.queue)] = None
        if not out:
            raise MessageError(f"nobody to deliver to ({', '.join(addrs)} has no other member)",
                               cause="unknown_recipient")
        return list(out)

    def bounce(self, e: _Entry, sender: str) -> tuple[Record, bytes] | None:
        try:
            targets = self.targets([sender], "postmaster")
            for target in targets:
                self.box_dir(target)
        except MessageError:
            return None  # no safe inbox to bounce to: the dead letter and its reason still say why
        dead_path = (self.ws.dead_dir / e.dead_id).relative_to(self.ws.root)
        subject = f"Undeliverable: {e.original[:120]}"
        body = (f"Your message {e.original!r} could not be delivered.\n\n"
                f"Cause: {e.dead['cause']}\nReason: {e.dead['reason']}\n\n"
                f"The original is kept at {dead_path} (reason in {dead_path}.reason).\n"
                f"Fix the cause, then run: agentops mail retry {e.dead_id}\n")
        when = _token_time(e.token)
        message_id = f"<{derived_id(e.token, 'bounce')}@{HOST}>"
        msg = Message([("From", "postmaster"), ("To", sender), ("Subject", subject),
                       ("Date", rfc5322_date(when)), ("Message-ID", message_id),
                       ("Priority", "high"), ("X-Agentops-Dead-Letter", e.dead_id)], body)
        rec = Record(message_id=message_id, key=f"{e.token}B.{HOST}", sender="postmaster", recipients=[sender],
                     cc=[], subject=subject, body=body, priority="high", date=when.isoformat(),
                     in_reply_to=None, refs=[], topic=None, drop_name=None, size=0, targets=targets)
        data = msg.to_bytes()
        rec.size = len(data)
        return rec, data

    def box_dir(self, target: tuple[str, str]) -> str:
        d = self.dirs.get(target)
        if d is None:
            kind, box = target
            path = self.ws.inbox(box) if kind == "inbox" else self.ws.queues_root / box
            try:
                tmp, new = self.folder(path / "tmp"), self.folder(path / "new")
                self.safefs.makedirs(self.ws, path / "cur")
            except UnsafePathError as exc:  # a link out of the workspace, a file for a folder
                raise MessageError(f"the {kind} folder is unsafe: {exc.message}; nothing is written there",
                                   cause="unsafe_mailbox", hint=exc.hint) from None
            d = self.dirs[target] = os.fspath(path)
            self.boxes[d] = (tmp, new)
            maildir.remove_old_spares(tmp)  # left by earlier versions, which reused them
        return d

    def write(self, rec: Record, data: bytes, replay: bool, touched: set[str]) -> None:
        for target in rec.targets:
            d = self.box_dir(target)
            if replay and maildir.in_cur(Path(d), rec.key, self.ws):
                continue  # delivered before the crash and already read: never twice
            tmp, new = self.boxes[d]
            maildir.write_new(tmp, new, rec.key, data, fsync=self.fsync_each)
            touched.add(new)

    def finish(self, e: _Entry, now: str) -> None:
        if e.dead is None:
            if e.plan is not None:
                self.report.delivered += 1
                self.report.message_ids.append(e.plan.message_id)
                self._note_targets(e.plan)
            elif e.done:
                self.report.delivered += 1
                self.report.message_ids.append(e.done)
            _unlink(e.spool.name, self.spool)
            return
        safefs = self.safefs

        dead = self.ws.dead_dir
        safefs.makedirs(self.ws, dead)
        reason = {"id": e.dead_id, "cause": e.dead["cause"], "reason": e.dead["reason"], "name": e.original,
                  "sender": e.dead["sender"], "time": _token_time(e.token).isoformat(),
                  "bounce_id": e.bounce[0].message_id if e.bounce else e.dead.get("bounce_id")}
        safefs.write_atomic(self.ws, dead / f"{e.dead_id}.reason", json.dumps(reason, indent=2, ensure_ascii=False) + "\n")
        if self._exists(e):
            safefs.rename(self.ws, e.path, dead / e.dead_id)  # moves a link or a folder itself, never what it points to
        self.report.dead += 1
        self.report.dead_letters.append(reason)
        if e.bounce:
            self.report.bounces += 1
            self._note_targets(e.bounce[0])

    def _note_targets(self, rec: Record) -> None:
        for kind, box in rec.targets:
            (self.report.inboxes if kind == "inbox" else self.report.queues).add(box)


# Delivered files are made durable before Orbit records them (so a power loss cannot lose mail
# that Orbit calls delivered): "batch" = one syncfs(2) per batch where Linux has it (an fsync per
# file, and per folder, for a batch of at most FSYNC_EACH_UP_TO messages, such as one `mail send`);
# "file" = fsync per file; "none" = rely on the page cache (process crashes are still exactly-once;
# only power loss is not covered).
FSYNC = os.environ.get("AGENTOPS_MAIL_FSYNC", "batch")
if FSYNC not in ("batch", "file", "none"):
    FSYNC = "batch"  # an unknown value never means less durable
FSYNC_EACH_UP_TO = 4
_SYNCFS: list = []


def _syncfs():
    """libc's syncfs, or None where there is none."""
    if not _SYNCFS:
        fn = None
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                libc = ctypes.CDLL(None, use_errno=True)
                fn = libc.syncfs
                fn.argtypes = [ctypes.c_int]
            except (OSError, AttributeError):
                fn = None
        _SYNCFS.append(fn)
    return _SYNCFS[0]


def _make_durable(boxes: set[int], *, synced_each: bool) -> None:
    """After a batch of deliveries into `boxes` (descriptors of Maildir `new/` folders), before Orbit records them.
    `synced_each`: every file was fsynced as it was written (their renames are left); else one
    syncfs covers the files and the renames. A failed syncfs raises: nothing is recorded, and the
    spool entries are delivered again by the next pass."""
    if FSYNC == "none":
        return
    if not synced_each:
        if _syncfs()(next(iter(boxes))) != 0:
            import ctypes

            err = ctypes.get_errno()
            raise OSError(err, f"syncfs of the inboxes failed: {os.strerror(err)}")
        return
    for fd in boxes:
        os.fsync(fd)


def _unlink(name: str, folder: int) -> None:
    try:
        os.unlink(name, dir_fd=folder)  # a regular file: anything else was dead-lettered
    except FileNotFoundError:
        pass


def spool_entry(spool: Path, token: str, name: str, recovered: bool = False, *, own: bool = False) -> _Entry:
    """The spool entry for drop file `name`: `<token>~<name>`, `<token>!<cut name>` when the name is
    too long to carry the token, `<token>^<name>` for agentops' own messages (`own`)."""
    room = 250 - len(token.encode())
    if len(name.encode("utf-8", "surrogateescape")) <= room:
        return _Entry(token, spool / f"{token}{'^' if own else '~'}{name}", name, recovered, original=name, own=own)
    cut = name.encode("utf-8", "surrogateescape")[:room].decode("utf-8", "ignore")
    return _Entry(token, spool / f"{token}!{cut}", cut, recovered, truncated=True, original=name)


def _parse_spool_name(spool: Path, spool_name: str) -> _Entry | None:
    cuts = [i for i in (spool_name.find("~"), spool_name.find("!"), spool_name.find("^")) if i > 0]
    if not cuts:
        return None  # not ours
    i = min(cuts)
    cut = spool_name[i] == "!"
    name = spool_name[i + 1:]
    return _Entry(spool_name[:i], spool / spool_name, name, recovered=True, truncated=cut,
                  original=name + "..." if cut else name, own=spool_name[i] == "^")


def text(value: str) -> str:
    """`value` as valid UTF-8 text: bytes a file name had that are not UTF-8 (kept by Python as
    surrogates) are written as `\\xff`."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        pass
    try:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate no file name gives
        return value.encode("utf-8", "backslashreplace").decode("utf-8")


def _environment(exc: BaseException) -> bool:
    """Is `exc` about the disk or the database (the pass fails; the next replays), not one file?"""
    import sqlite3

    from agentops.errors import StorageError

    if isinstance(exc, (MemoryError, sqlite3.OperationalError, StorageError, UnsafePathError)):
        return True
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS,
                                                      errno.ENOMEM, errno.EMFILE, errno.ENFILE)


def _first_line(body: str, limit: int = 120) -> str:
    for line in body.splitlines():
        line = line.strip()
        if line:
            return line[:limit]
    return ""


def _whole_seconds(when: datetime) -> str:
    """`_iso` of the Date header written for `when` (RFC 5322 dates have whole seconds)."""
    return when.astimezone(timezone.utc).replace(microsecond=0).isoformat()


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def rfc5322_date(when: datetime) -> str:
    """A UTC time as an RFC 5322 Date (what `email.utils.format_datetime` writes for it, without
    importing the email package): `Thu, 26 Nov 2026 13:33:30 +0000`."""
    when = when.astimezone(timezone.utc)
    return (f"{_DAYS[when.weekday()]}, {when.day:02d} {_MONTHS[when.month - 1]} {when.year:04d} "
            f"{when.hour:02d}:{when.minute:02d}:{when.second:02d} +0000")


def _iso(date: str | None, fallback: datetime) -> str:
    if date:
        try:
            import email.utils

            d = email.utils.parsedate_to_datetime(date)
            if d.tzinfo is None:
                d = d.replace(tzinfo=timezone.utc)
            return d.astimezone(timezone.utc).isoformat()
        except (TypeError, ValueError, IndexError):
            pass
    return fallback.isoformat()
