"""Addresses (SPEC §3): who a name on an envelope means.

An address is a slug: lower case, spaces and `_` read as `-`. Built-ins: `all`, `user`, `postmaster`.
An agent is a roster member (or, without a roster, one agent per role named by the role's slug).
A role slug addresses that role: one member gets it directly; several share a role queue.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field

from agentops.errors import NotFoundError

ALL, USER, POSTMASTER = "all", "user", "postmaster"
BUILTINS = (ALL, USER, POSTMASTER)

_SEP = re.compile(r"[\s_]+")
_BAD = re.compile(r"[^a-z0-9.-]+")


def slug(name: str) -> str:
    """`Database Engineer` -> `database-engineer`; `DATA_engineer` -> `data-engineer`."""
    s = _SEP.sub("-", name.strip().lower())
    s = _BAD.sub("", s)
    return re.sub(r"-{2,}", "-", s).strip("-.")


@dataclass(frozen=True)
class Agent:
    name: str  # the address (a slug)
    role: str  # the role's display name
    role_slug: str
    on_mail: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Resolution:
    """What an address means.

    kind: `agent`, `role` (one member: delivered to them; several: `queue` is the role slug),
    `all`, `user` or `postmaster`. `agents` are the agent inboxes that receive it directly.
    """

    address: str
    kind: str
    agents: tuple[str, ...]
    queue: str | None = None


@dataclass
class AddressBook:
    agents: dict[str, Agent] = field(default_factory=dict)  # by slug
    roles: dict[str, str] = field(default_factory=dict)  # role slug -> role display name

    @classmethod
    def build(cls, roles, roster=()) -> "AddressBook":
        """`roles`: Role objects (name); `roster`: AgentEntry objects (name, role, on_mail)."""
        book = cls(roles={r.slug: r.name for r in roles})
        if roster:
            for entry in roster:
                rslug = slug(entry.role)
                book.agents[slug(entry.name)] = Agent(
                    slug(entry.name), book.roles.get(rslug, entry.role), rslug,
                    tuple(entry.on_mail) if entry.on_mail else None,
                )
        else:
            for rslug, rname in book.roles.items():
                book.agents[rslug] = Agent(rslug, rname, rslug)
        return book

    def members(self, role: str) -> list[str]:
        rslug = slug(role)
        return sorted(a.name for a in self.agents.values() if a.role_slug == rslug)

    def known(self) -> set[str]:
        """Every address a file name may use."""
        return set(BUILTINS) | set(self.agents) | {r for r in self.roles if self.members(r)}

    def is_known(self, name: str) -> bool:
        return slug(name) in self.known()

    def resolve(self, name: str, *, sender: str | None = None) -> Resolution:
        """Resolve an address to the agents that receive it. Raise NotFoundError when unknown."""
        s = slug(name)
        if s == ALL:
            others = tuple(sorted(a for a in self.agents if a != (slug(sender) if sender else None)))
            return Resolution(s, ALL, others)
        if s in (USER, POSTMASTER):
            return Resolution(s, s, (s,))
        if s in self.agents:
            return Resolution(s, "agent", (s,))
        if s in self.roles:
            members = self.members(s)
            if len(members) == 1:
                return Resolution(s, "role", (members[0],))
            if members:
                return Resolution(s, "role", (), queue=s)
            raise NotFoundError(f"role '{self.roles[s]}' has no agent in the roster",
                                hint="add an [[agents]] entry with this role to agentops.toml")
        known = ", ".join(sorted(self.known()))
        raise NotFoundError(f"unknown address '{name}' (known: {known})",
                            hint="check the name, or add the agent to agentops.toml")


# The address book of a workspace, cached --------------------------------------------------------
# Building it parses every role file (YAML + pydantic), which costs a short command like
# `agentops mail send` more than its own work. The book is kept in .agent/run/addresses.json with the
# (name, mtime_ns, size, inode) of every file it was built from; any change to them rebuilds it. As
# git does with its index, a file changed in the last second is not trusted to that key (file-system
# timestamps are coarse): while any source is that fresh, the book is built and not cached.
CACHE_FILE = "addresses.json"
CACHE_VERSION = 1
RACY_NS = 1_000_000_000


ROLE_SUFFIX = ".agent.md"  # roles.ROLE_SUFFIX (importing agentops.roles would cost what the cache saves)


def _sources(ws, roles_dir) -> list:
    out = [str(roles_dir)]
    for path in (ws.config_path, roles_dir):
        try:
            st = os.stat(path)
            out.append([path.name, st.st_mtime_ns, st.st_size, st.st_ino])
        except OSError:
            out.append([path.name, None, None])
    try:
        with os.scandir(roles_dir) as it:
            for e in sorted(it, key=lambda e: e.name):
                if e.name.endswith(ROLE_SUFFIX):
                    st = e.stat(follow_symlinks=False)
                    out.append([e.name, st.st_mtime_ns, st.st_size, st.st_ino, st.st_mode])
    except OSError:
        pass
    return out


def roster_problems(roles, roster) -> list[tuple[str, str]]:
    """(field, message) for roster entries that name an unknown role or take another role's address."""
    by_slug = {r.slug: r.name for r in roles}
    known = ", ".join(sorted(by_slug.values())) or "none"
    out = []
    for i, entry in enumerate(roster):
        rslug = slug(entry.role)
        if rslug not in by_slug:
            out.append((f"agents[{i}].role", f"unknown role {entry.role!r} (known: {known})"))
        address = slug(entry.name)
        if address in by_slug and address != rslug:
            out.append((f"agents[{i}].name", f"{entry.name!r} is the address of role {by_slug[address]!r}; "
                                             "pick another name"))
    return out


def workspace_book(ws, roles_dir, build) -> AddressBook:
    """`build()`'s AddressBook, from the cache when no source file changed since it was written."""
    path = ws.run_dir / CACHE_FILE
    key = _sources(ws, roles_dir)
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
        if cached.get("version") == CACHE_VERSION and cached.get("sources") == key:
            book = AddressBook(roles=dict(cached["roles"]))
            for a in cached["agents"]:
                book.agents[a[0]] = Agent(a[0], a[1], a[2], tuple(a[3]) if a[3] is not None else None)
            return book
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        pass
    book = build()
    data = {"version": CACHE_VERSION, "sources": key, "roles": book.roles,
            "agents": [[a.name, a.role, a.role_slug, list(a.on_mail) if a.on_mail else None]
                       for a in book.agents.values()]}
    newest = max((s[1] for s in key[1:] if s[1] is not None), default=0)
    if time.time_ns() - newest < RACY_NS or _sources(ws, roles_dir) != key:
        return book  # too fresh to trust its timestamp, or changed while we read it
    try:
        ws.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{CACHE_FILE}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only workspace works, only without the cache
    return book
