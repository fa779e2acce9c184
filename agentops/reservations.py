"""Reservations (SPEC §13): an agent claims files and datasets before it changes them.

A target is a path or glob inside the workspace (`sql/orders/**`, `.agent/data/pipelines/x.yaml`;
a plain path naming a folder means everything below it) or `dataset:NAME` (a glob too:
`dataset:warehouse.*`). A reservation is exclusive (the default) or shared, and lasts until it is
released or its TTL runs out; an expired one simply stops counting (nothing has to clean up: every
query compares `expires_at` with now).

Two reservations conflict when at least one is exclusive, they belong to different agents, and
their targets are of the same kind and can match a common path or dataset name (`agentops.globs`:
a real overlap test, not string equality). `reserve` takes all its targets in one `BEGIN IMMEDIATE`
transaction or none of them, so racing processes give exactly one exclusive winner.

Every change is a `reservation` event in Orbit (reserved, renewed, released, forced, expired,
conflict, overridden, changed), written in the same transaction as the `reservations` row.

Enforcement: `check_datasets` (pipeline backfill and runs) refuses to write a dataset another agent
holds exclusively and warns on reads; `check_paths` is the git pre-commit guard's test;
`changed_files` is the daemon's (it mails the holder when a reserved file changes).
"""

from __future__ import annotations

import os
import secrets
from collections import namedtuple
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable

from agentops.errors import ConflictError, NotFoundError, ValidationError
from agentops.globs import compile_glob, is_glob, normalize, overlap
from agentops.store import write_tx

DATASET = "dataset:"
DEFAULT_TTL = "2h"
MAX_TTL = timedelta(days=7)
AGENT_ENV = "AGENTOPS_AGENT"
_COLUMNS = ("id", "agent", "kind", "pattern", "exclusive", "reason", "created_at", "expires_at", "released_at",
            "released_by", "release_note")
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM reservations"


class Reservation(namedtuple("Reservation", _COLUMNS)):
    """One row of `reservations`. `target` is what the user wrote it as (`dataset:` prefix kept)."""

    __slots__ = ()

    @property
    def target(self) -> str:
        return DATASET + self.pattern if self.kind == "dataset" else self.pattern

    @property
    def mode(self) -> str:
        return "exclusive" if self.exclusive else "shared"

    def state(self, now: str) -> str:
        if self.released_at:
            return "forced" if self.released_by and self.released_by != self.agent and self.release_note else "released"
        return "active" if self.expires_at > now else "expired"

    def as_dict(self, now: str | None = None) -> dict[str, Any]:
        out = {"id": self.id, "agent": self.agent, "target": self.target, "kind": self.kind,
               "exclusive": bool(self.exclusive), "reason": self.reason, "created_at": self.created_at,
               "expires_at": self.expires_at}
        if now is not None:
            out["state"] = self.state(now)
        if self.released_at:
            out.update(released_at=self.released_at, released_by=self.released_by, release_note=self.release_note)
        return out

    def describe(self) -> str:
        """`data-engineer (exclusive, until 2026-12-04 17:00 UTC, reason: ...)`."""
        why = f", reason: {self.reason}" if self.reason else ""
        return f"{self.agent} ({self.mode} {self.id}, until {short_time(self.expires_at)}{why})"


class Target(namedtuple("Target", "kind pattern")):
    __slots__ = ()

    @property
    def text(self) -> str:
        return DATASET + self.pattern if self.kind == "dataset" else self.pattern


class Conflict(namedtuple("Conflict", "target holder example")):
    """`target` (what was wanted or touched) cannot be had: `holder` (a Reservation) holds an
    overlapping one; `example` is a path or name both match."""

    __slots__ = ()

    def line(self) -> str:
        r = self.holder
        if r.target == self.target:
            shown = self.target
        elif self.example == self.target:
            shown = f"{self.target} (reserved as {r.target})"
        else:
            shown = f"{self.target} overlaps {r.target} (e.g. {self.example})"
        why = r.reason or "no reason given"
        return f"{shown}: held {r.mode} by {r.agent} ({r.id}) until {short_time(r.expires_at)}: {why}"


class ReservationConflict(ConflictError):
    """Exit 6: one line per conflict (holder, reason, expiry); nothing was taken."""

    def __init__(self, conflicts: list[Conflict], *, hint: str | None = None):
        lines = [c.line() for c in conflicts]
        super().__init__(lines[0] if lines else "reservation conflict", hint=hint)
        self.conflicts = conflicts
        self.problems = lines


# helpers ----------------------------------------------------------------------------------------
def utc(now: datetime | None = None) -> datetime:
    now = now or datetime.now(timezone.utc)
    return now if now.tzinfo else now.replace(tzinfo=timezone.utc)


def ts(now: datetime) -> str:
    from agentops.orbit.queries import format_ts

    return format_ts(now)


def short_time(value: str) -> str:
    """`2026-12-04T17:00:00.000000+00:00` -> `2026-12-04 17:00 UTC`."""
    return f"{value[:10]} {value[11:16]} UTC" if len(value) >= 16 else value


def parse_ttl(value: str | float | None) -> timedelta:
    from agentops.pipelines.spec import parse_duration

    try:
        seconds = parse_duration(DEFAULT_TTL if value in (None, "") else value)
    except ValueError as exc:
        raise ValidationError(f"--ttl: {exc}") from None
    if seconds <= 0:
        raise ValidationError("--ttl: a reservation must last more than 0 seconds")
    if seconds > MAX_TTL.total_seconds():
        raise ValidationError(f"--ttl: at most {MAX_TTL.days}d", hint="renew with `agentops reserve --renew ID`")
    return timedelta(seconds=seconds)


def agent_name(ws, name: str | None, what: str = "--as") -> str:
    """The agent's address (`Data Engineer` -> `data-engineer`); it must be an agent or `user`."""
    from agentops.addresses import USER, slug

    if not name or not name.strip():
        raise ValidationError(f"{what}: name the acting agent", hint=f"pass --as AGENT or set {AGENT_ENV}")
    s = slug(name)
    if s == USER:
        return s
    r = ws.addresses.resolve(name)
    if r.kind not in ("agent", "role") or len(r.agents) != 1:
        raise ValidationError(f"{what}: '{name}' is not one agent", hint="use an agent's address")
    return r.agents[0]


def acting_agent(ws, name: str | None) -> str | None:
    """`--as` if given, else $AGENTOPS_AGENT, else None (as a known agent's address)."""
    name = name or os.environ.get(AGENT_ENV)
    return agent_name(ws, name, "--as" if name else AGENT_ENV) if name else None


def parse_target(ws, text: str, cwd: Path | None = None) -> Target:
    """`dataset:NAME` or a workspace path/glob (relative to the workspace root, or to `cwd` when
    that is inside it; absolute paths must lie inside the workspace)."""
    raw = text.strip()
    if raw.lower().startswith(DATASET):
        name = raw[len(DATASET):].strip()
        if not name:
            raise ValidationError(f"target {text!r}: name a dataset after 'dataset:'")
        return Target("dataset", name)
    if not raw:
        raise ValidationError("a target is empty", hint="give a path, a glob or dataset:NAME")
    root = ws.root
    if os.path.isabs(raw):
        try:
            raw = Path(raw).relative_to(root).as_posix() if not is_glob(raw) else os.path.relpath(raw, root)
        except ValueError:
            raise ValidationError(f"target {text!r} is outside the workspace {root}") from None
        if raw.startswith(".."):
            raise ValidationError(f"target {text!r} is outside the workspace {root}")
    elif cwd is not None:
        try:
            prefix = Path(cwd).resolve().relative_to(root).as_posix()
        except ValueError:
            prefix = "."
        if prefix not in (".", ""):
            raw = f"{prefix}/{raw}"
    pattern = normalize(raw, "target")
    if not is_glob(pattern) and (root / pattern).is_dir() and not (root / pattern).is_symlink():
        pattern += "/**"  # a folder: everything below it
    compile_glob(pattern)  # a bad [...] range is refused here
    return Target("path", pattern)


def _rows(conn, where: str = "", args: tuple = ()) -> list[Reservation]:
    return [Reservation(*r) for r in conn.execute(f"{_SELECT} {where}", args).fetchall()]


def _active(conn, now: str, kind: str | None = None) -> list[Reservation]:
    if kind:
        return _rows(conn, "WHERE released_at IS NULL AND expires_at > ? AND kind = ? ORDER BY created_at", (now, kind))
    return _rows(conn, "WHERE released_at IS NULL AND expires_at > ? ORDER BY created_at", (now,))


def _orbit(ws):
    from agentops.orbit import Orbit

    return Orbit.open(ws)


def _event(orbit, at: str, action: str, agent: str | None, **fields: Any) -> None:
    """One `reservation` event through the Orbit registry (its deriver keeps the `reservations`
    row), inside the caller's write transaction."""
    from agentops.orbit.events import ReservationEvent

    orbit.log(ReservationEvent(kind="reservation", ts=at, action=action, agent=agent, **fields), send_alerts=False)


def _note_expired(orbit, conn, now: str) -> int:
    """Write one `expired` event for each reservation seen past its expiry (dated at the expiry).
    Nothing depends on this: an expired reservation stopped counting at its `expires_at`."""
    rows = _rows(conn, "WHERE released_at IS NULL AND expires_at <= ? AND expiry_logged = 0", (now,))
    for r in rows:
        _event(orbit, r.expires_at, "expired", "agentops", reservation=r.id, target=r.target, holder=r.agent,
               exclusive=bool(r.exclusive), expires=r.expires_at)
    return len(rows)


def conflicts_with(held: Iterable[Reservation], agent: str | None, target: Target, exclusive: bool,
                   ) -> list[Conflict]:
    """The reservations of other agents in `held` that `target` (exclusive or not) conflicts with."""
    out = []
    for r in held:
        if r.agent == agent or r.kind != target.kind or not (exclusive or r.exclusive):
            continue
        example = overlap(target.pattern, r.pattern)
        if example is not None:
            out.append(Conflict(target.text, r, DATASET + example if target.kind == "dataset" else example))
    return out


def _new_id() -> str:
    return "r-" + secrets.token_hex(4)


# the life cycle ---------------------------------------------------------------------------------
class Reserved:
    """What `reserve` took: `reservations`, plus per exclusive dataset reservation what lies
    downstream (`downstream[id]`: datasets, pipelines, owners), `notices` mailed, `warnings`."""

    def __init__(self, reservations: list[Reservation]):
        self.reservations = reservations
        self.downstream: dict[str, dict[str, Any]] = {}
        self.notices: list[dict[str, Any]] = []
        self.warnings: list[str] = []

    def as_dict(self) -> dict[str, Any]:
        return {"reservations": [r.as_dict() for r in self.reservations], "downstream": self.downstream,
                "notices": self.notices, "warnings": self.warnings}


def reserve(ws, agent: str, targets: Iterable[str], *, ttl: str | float | None = None, shared: bool = False,
            reason: str | None = None, now: datetime | None = None, cwd: Path | None = None,
            notify: bool = True) -> Reserved:
    """Take one reservation per target, all or none. Raises ReservationConflict (exit 6, one line
    per conflict; the conflicts are logged) when another agent holds an overlapping one and either
    side is exclusive."""
    agent = agent_name(ws, agent)
    wanted = [parse_target(ws, t, cwd) for t in targets]
    if not wanted:
        raise ValidationError("name at least one TARGET (a path, a glob or dataset:NAME)")
    if reason is not None and len(reason) > 2000:
        raise ValidationError("--reason: at most 2,000 characters")
    life = parse_ttl(ttl)
    now = utc(now)
    at, until = ts(now), ts(now + life)
    exclusive = not shared
    orbit = _orbit(ws)
    try:
        with write_tx(orbit.db) as conn:
            _note_expired(orbit, conn, at)
            held = _active(conn, at)
            conflicts = [c for t in wanted for c in conflicts_with(held, agent, t, exclusive)]
            if conflicts:
                for c in conflicts:
                    _event(orbit, at, "conflict", agent, reservation=c.holder.id, target=c.target,
                           holder=c.holder.agent, exclusive=exclusive, reason=reason,
                           detail=f"overlaps {c.holder.target}")
                rows = []
            else:
                rows = []
                for t in dict.fromkeys(wanted):
                    r = Reservation(_new_id(), agent, t.kind, t.pattern, int(exclusive), reason, at, until,
                                    None, None, None)
                    _event(orbit, at, "reserved", agent, reservation=r.id, target=r.target, holder=agent,
                           exclusive=exclusive, reason=reason, expires=until)
                    rows.append(r)
    finally:
        orbit.close()
    if conflicts:
        raise ReservationConflict(conflicts, hint=None if len(conflicts) > 1 else "nothing was reserved")
    result = Reserved(rows)
    _lineage(ws, result, notify)
    return result


def renew(ws, reservation_id: str, *, ttl: str | float | None = None, agent: str | None = None,
          now: datetime | None = None) -> Reservation:
    """Extend a reservation to now + ttl (also one that expired, when nobody took its target since)."""
    life = parse_ttl(ttl)
    agent = agent_name(ws, agent) if agent else None
    now = utc(now)
    at, until = ts(now), ts(now + life)
    orbit = _orbit(ws)
    try:
        with write_tx(orbit.db) as conn:
            _note_expired(orbit, conn, at)
            r = _one(conn, reservation_id)
            if agent and r.agent != agent:
                raise ConflictError(f"reservation {r.id} is held by {r.agent}, not {agent}",
                                    hint="only the holder renews it")
            if r.released_at:
                raise ConflictError(f"reservation {r.id} was released at {short_time(r.released_at)}",
                                    hint="reserve the target again")
            if r.expires_at <= at:
                others = [h for h in _active(conn, at) if h.id != r.id]
                conflicts = conflicts_with(others, r.agent, Target(r.kind, r.pattern), bool(r.exclusive))
                if conflicts:
                    raise ReservationConflict(conflicts, hint=f"{r.id} expired and its target was taken since")
            _event(orbit, at, "renewed", r.agent, reservation=r.id, target=r.target, holder=r.agent,
                   exclusive=bool(r.exclusive), expires=until)
            return r._replace(expires_at=until)
    finally:
        orbit.close()


def _one(conn, reservation_id: str) -> Reservation:
    rows = _rows(conn, "WHERE id = ?", (reservation_id.strip(),))
    if not rows:
        raise NotFoundError(f"no reservation {reservation_id!r}", hint="see `agentops reservations --all`")
    return rows[0]


def release(ws, agent: str, items: Iterable[str] = (), *, now: datetime | None = None,
            cwd: Path | None = None) -> list[Reservation]:
    """Release the agent's reservations named by id or by target (none named: all of them). An id
    held by another agent is refused (use `force_release`); a name matching nothing is NotFound."""
    agent = agent_name(ws, agent)
    items = [i for i in items if i.strip()]
    now = utc(now)
    at = ts(now)
    orbit = _orbit(ws)
    try:
        with write_tx(orbit.db) as conn:
            _note_expired(orbit, conn, at)
            mine = [r for r in _active(conn, at) if r.agent == agent]
            chosen: dict[str, Reservation] = {}
            if not items:
                chosen = {r.id: r for r in mine}
            for item in items:
                found = _rows(conn, "WHERE id = ?", (item.strip(),))
                if found:
                    r = found[0]
                    if r.agent != agent:
                        raise ConflictError(f"reservation {r.id} ({r.target}) is held by {r.agent}, not {agent}",
                                            hint=f"ask {r.agent}, or `agentops release --force {r.id} --reason TEXT`")
                    if r.released_at or r.expires_at <= at:
                        continue  # already over: releasing it again is a no-op
                    chosen[r.id] = r
                    continue
                t = parse_target(ws, item, cwd)
                hits = [r for r in mine if (r.kind, r.pattern) == (t.kind, t.pattern)]
                if not hits:
                    raise NotFoundError(f"{agent} holds no active reservation on {t.text}",
                                        hint=f"see `agentops reservations --agent {agent}`")
                chosen.update((r.id, r) for r in hits)
            for r in chosen.values():
                _event(orbit, at, "released", agent, reservation=r.id, target=r.target, holder=r.agent,
                       exclusive=bool(r.exclusive))
            return [r._replace(released_at=at, released_by=agent) for r in chosen.values()]
    finally:
        orbit.close()


def force_release(ws, reservation_id: str, reason: str, *, by: str | None = None,
                  now: datetime | None = None) -> tuple[Reservation, str | None]:
    """Release anyone's reservation, with a reason: logged (`forced`) and the holder is mailed
    from postmaster. Returns (the reservation, the mail's Message-ID or an error text)."""
    if not reason or not reason.strip():
        raise ValidationError("--force needs --reason TEXT (the holder is told why)")
    by = agent_name(ws, by) if by else "user"
    now = utc(now)
    at = ts(now)
    orbit = _orbit(ws)
    try:
        with write_tx(orbit.db) as conn:
            _note_expired(orbit, conn, at)
            r = _one(conn, reservation_id)
            if r.released_at:
                raise ConflictError(f"reservation {r.id} was already released at {short_time(r.released_at)}")
            _event(orbit, at, "forced", by, reservation=r.id, target=r.target, holder=r.agent,
                   exclusive=bool(r.exclusive), reason=reason)
    finally:
        orbit.close()
    r = r._replace(released_at=at, released_by=by, release_note=reason)
    mailed = _mail(ws, r.agent, f"[reservations] {r.id} on {r.target} was released by {by}",
                   f"Your {r.mode} reservation {r.id} on {r.target} (taken {short_time(r.created_at)}, "
                   f"until {short_time(r.expires_at)}) was force-released by {by}.\n\nReason: {reason}\n\n"
                   f"Reserve it again with `agentops reserve --as {r.agent} {r.target}` once it is free.\n")
    return r, mailed


def reservations(ws, *, agent: str | None = None, include_all: bool = False,
                 now: datetime | None = None) -> list[Reservation]:
    """Active reservations (`include_all`: also released and expired ones), oldest first."""
    at = ts(utc(now))
    agent = agent_name(ws, agent, "--agent") if agent else None
    db = ws.db()
    try:
        conn = db.conn
        if include_all:
            rows = _rows(conn, "ORDER BY created_at")
        else:
            rows = _active(conn, at)
        return [r for r in rows if agent is None or r.agent == agent]
    finally:
        db.conn.close()


def active(conn, now: datetime | None = None) -> list[Reservation]:
    """Active reservations read through an open connection (status, prompt)."""
    return _active(conn, ts(utc(now)))


# mail -------------------------------------------------------------------------------------------
def _mail(ws, to: str, subject: str, body: str) -> str | None:
    """Send from postmaster; returns the Message-ID, or `error: ...` (a notice never fails the
    reservation that caused it)."""
    from agentops.errors import AgentOpsError
    from agentops.mail import notify  # agentops' own voice: from postmaster

    try:
        return notify(ws, to=[to], subject=subject, body=body)[0]
    except AgentOpsError as exc:
        return f"error: {exc}"


# lineage ----------------------------------------------------------------------------------------
def _lineage(ws, result: Reserved, notify: bool) -> None:
    """For each exclusive dataset reservation: the datasets it names, the pipelines that write them
    and what lies downstream (pipelines, owners); each affected owner but the reserver gets one
    notice per reservation."""
    picks = [r for r in result.reservations if r.kind == "dataset"]
    if not picks:
        return
    from agentops.pipelines import load_specs
    from agentops.pipelines.lineage import datasets, lineage

    specs, _ = load_specs(ws, check=False)
    names = datasets(specs)
    owners_of = {s.name: s.owner for s in specs}
    for r in picks:
        matched = [n for n in names if compile_glob(r.pattern).matches(n)] if is_glob(r.pattern) else (
            [r.pattern] if r.pattern in names else [])
        if not matched:
            result.warnings.append(f"{r.target} names no dataset of the pipeline specs (reserved anyway)")
            continue
        if not r.exclusive:
            continue
        info: dict[str, Any] = {"datasets": matched, "writers": [], "downstream_datasets": [], "pipelines": [],
                                "owners": []}
        writers, down_sets, pipelines, owners = set(), set(), set(), set()
        for name in matched:
            got = lineage(specs, name, "downstream")
            for stage in got["produced_by"]:
                pipe = stage.split(".", 1)[0]
                writers.add(stage)
                if owners_of.get(pipe):
                    owners.add(owners_of[pipe])
            d = got["downstream"]
            down_sets.update(x["name"] for x in d["datasets"])
            pipelines.update(d["pipelines"])
            owners.update(d["owners"])
        owners.discard(r.agent)
        info.update(writers=sorted(writers), downstream_datasets=sorted(down_sets), pipelines=sorted(pipelines),
                    owners=sorted(o for o in owners if o))
        result.downstream[r.id] = info
        if not notify:
            continue
        for owner in info["owners"]:
            body = (f"{r.agent} reserved {r.target} exclusively until {short_time(r.expires_at)} "
                    f"({r.reason or 'no reason given'}).\n\n"
                    f"Datasets: {', '.join(matched)}\n"
                    f"Written by: {', '.join(info['writers']) or '-'}\n"
                    f"Downstream pipelines: {', '.join(info['pipelines']) or '-'}\n"
                    f"Downstream datasets: {', '.join(info['downstream_datasets']) or '-'}\n\n"
                    f"While it is held, agentops refuses to write these datasets for anyone but {r.agent} "
                    f"(pipeline backfill and runs). Reply to {r.agent} to coordinate.\n")
            mid = _mail(ws, owner, f"[reservations] {r.agent} reserved {r.target} ({r.id})", body)
            result.notices.append({"reservation": r.id, "to": owner, "message_id": mid})


# enforcement ------------------------------------------------------------------------------------
def check_datasets(ws, agent: str | None, *, writes: Iterable[str] = (), reads: Iterable[str] = (),
                   ignore: bool = False, action: str = "", now: datetime | None = None,
                   dry_run: bool = False) -> list[str]:
    """Refuse to write a dataset another agent holds exclusively; warn when reading one (or writing
    one another agent holds shared). Raises ReservationConflict naming each holder (the refusals are
    logged as `conflict` events); with `ignore` it writes `overridden` events instead and returns
    the refusals among the warnings. `agent` None (unknown) counts every holder as another agent.
    `dry_run`: nothing is logged or raised; a refusal comes back as a `would be refused` warning."""
    writes, reads = sorted(set(writes)), sorted(set(reads) - set(writes))
    if not writes and not reads:
        return []
    at = ts(utc(now))
    orbit = _orbit(ws)
    db = orbit.db
    try:
        held = [r for r in active(db.conn, utc(now)) if r.kind == "dataset" and r.agent != agent]
        if not held:
            return []
        blocked: list[Conflict] = []
        warnings: list[str] = []
        for name in writes:
            for r in held:
                if _names(r, name):
                    if r.exclusive:
                        blocked.append(Conflict(DATASET + name, r, DATASET + name))
                    else:
                        warnings.append(f"writes dataset:{name}, which {r.agent} holds shared ({r.id}, until "
                                        f"{short_time(r.expires_at)}: {r.reason or 'no reason given'})")
        for name in reads:
            for r in held:
                if r.exclusive and _names(r, name):
                    warnings.append(f"reads dataset:{name}, which {r.agent} holds exclusively ({r.id}, until "
                                    f"{short_time(r.expires_at)}: {r.reason or 'no reason given'}); it may change")
        if not blocked:
            return warnings
        if dry_run:
            return [f"would be refused: {c.line()}" for c in blocked] + warnings
        with write_tx(db):
            for c in blocked:
                _event(orbit, at, "overridden" if ignore else "conflict", agent, reservation=c.holder.id,
                       target=c.target, holder=c.holder.agent, exclusive=True,
                       detail=f"{action or 'write'}: writes {c.target}")
    finally:
        db.conn.close()
    if ignore:
        return [f"ignored reservation: {c.line()}" for c in blocked] + warnings
    who = agent or f"an unnamed agent (pass --as AGENT or set {AGENT_ENV})"
    raise ReservationConflict(blocked, hint=f"{who} may not write it; wait, ask the holder, or pass "
                              "--ignore-reservations (logged)" if len(blocked) == 1 else None)


def _names(r: Reservation, name: str) -> bool:
    return compile_glob(r.pattern).matches(name) if is_glob(r.pattern) else r.pattern == name


def check_paths(ws, agent: str | None, paths: Iterable[str], *, now: datetime | None = None) -> list[Conflict]:
    """The paths (workspace-relative) another agent holds exclusively: one Conflict per (path, holder)."""
    db = ws.db()
    try:
        held = [r for r in active(db.conn, utc(now)) if r.kind == "path" and r.exclusive and r.agent != agent]
    finally:
        db.conn.close()
    out = []
    for p in paths:
        try:
            path = normalize(p)
        except ValidationError:
            continue
        out.extend(Conflict(path, r, path) for r in held if compile_glob(r.pattern).matches(path))
    return out


def pipeline_datasets(spec, stages: Iterable[str] | None = None) -> tuple[set[str], set[str]]:
    """(writes, reads) of a pipeline spec's stages (all of them, or those named)."""
    wanted = None if stages is None else set(stages)
    writes, reads = set(), set()
    for st in spec.stages:
        if wanted is not None and st.name not in wanted:
            continue
        writes.update(st.outputs)
        reads.update(st.inputs)
    for dst in getattr(spec, "destinations", ()) or ():
        if wanted is None:
            writes.add(dst.name)
    return writes, reads - writes


def check_pipeline(ws, spec, agent: str | None, *, stages: Iterable[str] | None = None, ignore: bool = False,
                   action: str = "", dry_run: bool = False) -> list[str]:
    """`check_datasets` for the datasets the named stages (default: all) of `spec` write and read."""
    writes, reads = pipeline_datasets(spec, stages)
    return check_datasets(ws, agent, writes=writes, reads=reads, ignore=ignore,
                          action=action or f"pipeline {spec.name}", dry_run=dry_run)


# status and prompt ------------------------------------------------------------------------------
def status_section(conn, since_ts: str | None, limit: int = 20) -> dict[str, list[dict[str, Any]]]:
    """`status`'s `reservations`: the active ones, and the conflicts (refused reservations, refused or
    overridden writes) since `since_ts`, newest first."""
    import json

    rows = active(conn)
    events = conn.execute("SELECT data FROM events WHERE kind = 'reservation' AND ts >= ? AND "
                          "json_extract(data, '$.action') IN ('conflict', 'overridden') ORDER BY seq DESC "
                          "LIMIT ?", (since_ts or "", limit)).fetchall()
    keep = ("ts", "action", "agent", "target", "holder", "reservation", "detail")
    return {"active": [r.as_dict() for r in rows],
            "conflicts": [{k: v for k, v in json.loads(d).items() if k in keep} for (d,) in events]}


def prompt_items(ws, agent: str, status: dict[str, Any] | None = None) -> list[str]:
    """For an agent's prompt: its own active reservations, and others' on what it owns (the datasets
    and spec files of its pipelines)."""
    from agentops.pipelines import load_specs

    db = ws.db()
    try:
        held = active(db.conn)
    finally:
        db.conn.close()
    if not held:
        return []
    items = [f"You hold {r.mode} reservation {r.id} on `{r.target}` until {short_time(r.expires_at)}: release it "
             f"when done (`agentops release --as {agent} {r.id}`)" for r in held if r.agent == agent]
    others = [r for r in held if r.agent != agent]
    if others:
        specs, _ = load_specs(ws, check=False)
        mine = [s for s in specs if s.owner == agent]
        datasets = {d for s in mine for st in s.stages for d in (*st.inputs, *st.outputs)}
        files = {}
        for s in mine:
            try:
                files[Path(s.source_file).resolve().relative_to(ws.root).as_posix()] = s.name
            except (ValueError, TypeError):
                continue
        for r in others:
            if r.kind == "dataset":
                hit = sorted(d for d in datasets if _names(r, d))
            else:
                hit = sorted(f for f in files if compile_glob(r.pattern).matches(f))
            if hit:
                items.append(f"{r.agent} holds {r.mode} reservation {r.id} on `{r.target}` until "
                             f"{short_time(r.expires_at)} ({r.reason or 'no reason given'}), covering what you "
                             f"own: {', '.join(hit[:5])}" + (" ..." if len(hit) > 5 else ""))
    return items


# the daemon -------------------------------------------------------------------------------------
MAX_WATCHED = 10_000  # files per reservation the daemon keeps an eye on


def reserved_files(ws, pattern: str, limit: int = MAX_WATCHED) -> list[str]:
    """Workspace files (relative) a path reservation covers: a walk from its longest plain prefix,
    no deeper than the glob can reach, never following links; at most `limit`."""
    segments = pattern.split("/")
    fixed = []
    for seg in segments:
        if is_glob(seg) or seg == "**":
            break
        fixed.append(seg)
    base = ws.root.joinpath(*fixed) if fixed else ws.root
    if len(fixed) == len(segments):
        return [pattern] if base.is_file() and not base.is_symlink() else []
    depth = None if "**" in segments else len(segments) - len(fixed)
    glob = compile_glob(pattern)
    out: list[str] = []
    prefix = "/".join(fixed)
    for folder, dirs, files in os.walk(base):
        rel = os.path.relpath(folder, base)
        level = 0 if rel == "." else rel.count(os.sep) + 1
        if depth is not None and level >= depth - 1:
            dirs[:] = []
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(folder, d))]
        for name in files:
            sub = name if rel == "." else f"{rel.replace(os.sep, '/')}/{name}"
            path = f"{prefix}/{sub}" if prefix else sub
            if glob.matches(path):
                out.append(path)
                if len(out) >= limit:
                    return out
    return out


class Watch:
    """What the daemon's watch remembers between passes: per reservation, each covered file's
    (mtime, size); and the (reservation, file) pairs already reported."""

    def __init__(self):
        self.files: dict[str, dict[str, tuple[int, int]]] = {}
        self.reported: set[tuple[str, str]] = set()


def changed_files(ws, watch: Watch, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """One pass of the daemon's watch over exclusively reserved files: a file that changed, appeared
    or went away since the last pass gets its holder one mail (per reservation and file) and a
    `changed` event. A reservation's first pass only records what is there. Returns the reports."""
    db = ws.db()
    try:
        held = [r for r in active(db.conn, utc(now)) if r.kind == "path" and r.exclusive]
    finally:
        db.conn.close()
    live = {r.id for r in held}
    for rid in [k for k in watch.files if k not in live]:
        del watch.files[rid]
    reported = []
    for r in held:
        current = {}
        for path in reserved_files(ws, r.pattern):
            try:
                st = os.stat(ws.root / path, follow_symlinks=False)
            except OSError:
                continue
            current[path] = (st.st_mtime_ns, st.st_size)
        before = watch.files.get(r.id)
        watch.files[r.id] = current
        if before is None:
            continue
        changed = [p for p in current if before.get(p) != current[p]] + [p for p in before if p not in current]
        for path in sorted(changed):
            if (r.id, path) in watch.reported:
                continue
            watch.reported.add((r.id, path))
            reported.append(_report_change(ws, r, path, gone=path not in current, now=now))
    return reported


def _report_change(ws, r: Reservation, path: str, *, gone: bool, now: datetime | None) -> dict[str, Any]:
    at = ts(utc(now))
    what = "was deleted" if gone else "changed"
    orbit = _orbit(ws)
    try:
        with write_tx(orbit.db):
            _event(orbit, at, "changed", "agentops", reservation=r.id, target=r.target, holder=r.agent,
                   exclusive=True, detail=f"{path} {what}")
    finally:
        orbit.close()
    mid = _mail(ws, r.agent, f"[reservations] {path} {what} while you hold {r.target} ({r.id})",
                f"The agentops daemon saw {path} {what} at {short_time(at)} while you hold {r.id} on {r.target} "
                f"exclusively (until {short_time(r.expires_at)}).\n\nIf that was not you, another agent changed it "
                f"despite your reservation: check `git diff -- {path}` and ask the team "
                f"(`agentops reservations`). You are told once per file per reservation.\n")
    return {"reservation": r.id, "holder": r.agent, "path": path, "change": what, "message_id": mid}


def daemon_task(daemon):
    """The daemon's watch over reserved files (registered in agentops.daemon.tasks): at each scan
    (start, every `rescan_seconds`), `changed_files`."""
    import logging

    from agentops.daemon.tasks import Task

    class ReservationWatch(Task):
        name = "reservations"

        def __init__(self, daemon):
            super().__init__(daemon)
            self.watch = Watch()
            self.passes = 0

        def scan(self):
            for item in changed_files(self.ws, self.watch):
                self.log(logging.WARNING, "reserved-file-changed", **item)
            self.passes += 1
            return []

    return ReservationWatch(daemon)
