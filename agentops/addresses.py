"""Addresses (SPEC §3): who a name on an envelope means.

An address is a slug: lower case, spaces and `_` read as `-`. Built-ins: `all`, `user`, `postmaster`.
An agent is a roster member (or, without a roster, one agent per role named by the role's slug).
A role slug addresses that role: one member gets it directly; several share a role queue.
"""

from __future__ import annotations

import re
from collections import namedtuple

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


class Agent(namedtuple("Agent", "name role role_slug on_mail", defaults=(None,))):
    """A roster member: `name` (the address, a slug), `role` (the role's display name), `role_slug`,
    `on_mail` (an argv tuple, or None). Named tuples here, not dataclasses: see `agentops.workspace`."""

    __slots__ = ()


class Resolution(namedtuple("Resolution", "address kind agents queue", defaults=(None,))):
    """What an address means.

    kind: `agent`, `role` (one member: delivered to them; several: `queue` is the role slug),
    `all`, `user` or `postmaster`. `agents` are the agent inboxes that receive it directly.
    """

    __slots__ = ()


class AddressBook:
    """Who each address means: `agents` (Agent by slug) and `roles` (role slug -> display name)."""

    def __init__(self, agents: dict[str, Agent] | None = None, roles: dict[str, str] | None = None):
        self.agents = {} if agents is None else agents
        self.roles = {} if roles is None else roles

    def __repr__(self) -> str:
        return f"AddressBook(agents={self.agents!r}, roles={self.roles!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, AddressBook) and (other.agents, other.roles) == (self.agents, self.roles)

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


# The address book of a workspace, cached under .agent/run/ (see agentops.cache) ----------------
CACHE_FILE = "addresses.json"
CACHE_VERSION = 2
ROLE_SUFFIX = ".agent.md"  # roles.ROLE_SUFFIX (importing agentops.roles would cost what the cache saves)


def _sources(ws, roles_dir) -> list:
    from agentops.cache import folder_sources, stat_key

    return [str(roles_dir), stat_key(ws.config_path), *folder_sources(roles_dir, ROLE_SUFFIX)]


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
    from agentops.cache import cached

    def encode(book: AddressBook) -> dict:
        return {"roles": book.roles, "agents": [[a.name, a.role, a.role_slug, list(a.on_mail) if a.on_mail else None]
                                                for a in book.agents.values()]}

    def decode(data: dict) -> AddressBook:
        book = AddressBook(roles=dict(data["roles"]))
        for a in data["agents"]:
            book.agents[a[0]] = Agent(a[0], a[1], a[2], tuple(a[3]) if a[3] is not None else None)
        return book

    return cached(ws, CACHE_FILE, CACHE_VERSION, lambda: _sources(ws, roles_dir), build, encode, decode)
