"""Address slugging and resolution (SPEC §3)."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from agentops.addresses import AddressBook, slug
from agentops.config import AgentEntry
from agentops.errors import NotFoundError
from agentops.roles import Role
from tests.conftest import age

ROLES = [Role(name=n) for n in ("Data Engineer", "Database Engineer", "DevOps", "Developer")]


@pytest.mark.parametrize("raw, expected", [
    ("Database Engineer", "database-engineer"), ("DATA_engineer", "data-engineer"),
    ("  Dev  Ops ", "dev-ops"), ("a/../b", "a..b"), ("Zoë", "zo"),
])
def test_slug(raw, expected):
    assert slug(raw) == expected


@given(st.text())
def test_slug_is_idempotent_and_safe(text):
    s = slug(text)
    assert slug(s) == s
    assert "/" not in s and " " not in s and not s.startswith(("-", "."))


def test_without_roster_each_role_is_an_agent():
    book = AddressBook.build(ROLES)
    assert book.resolve("Database Engineer").agents == ("database-engineer",)
    assert book.resolve("DEVOPS").kind == "agent"
    assert book.resolve("all", sender="devops").agents == ("data-engineer", "database-engineer", "developer")
    assert book.resolve("user").kind == "user"
    assert book.resolve("postmaster").agents == ("postmaster",)
    assert {"all", "user", "postmaster", "devops"} <= book.known()


def test_roster_members_and_role_queues():
    roster = [AgentEntry(name="dana", role="Data Engineer"), AgentEntry(name="dan", role="Data Engineer"),
              AgentEntry(name="ops", role="DevOps")]
    book = AddressBook.build(ROLES, roster)
    assert book.resolve("dana").agents == ("dana",)
    queued = book.resolve("data-engineer")
    assert queued.kind == "role" and queued.queue == "data-engineer" and queued.agents == ()
    assert book.resolve("devops").agents == ("ops",)
    assert book.resolve("all").agents == ("dan", "dana", "ops")
    with pytest.raises(NotFoundError, match="has no agent in the roster"):
        book.resolve("developer")
    with pytest.raises(NotFoundError, match="unknown address 'nobody'"):
        book.resolve("nobody")
    assert "developer" not in book.known() and "data-engineer" in book.known()


def test_the_workspace_address_book_is_cached_until_a_source_changes(ws, monkeypatch):
    from agentops import roles as roles_mod
    from agentops.addresses import CACHE_FILE, ROLE_SUFFIX
    from agentops.workspace import Workspace

    assert ROLE_SUFFIX == roles_mod.ROLE_SUFFIX
    sources = [ws.config_path, *ws.roles_dir.iterdir(), ws.roles_dir]
    age(*sources)
    assert Workspace(ws.root).addresses.known() >= {"data-engineer", "devops"}
    assert (ws.run_dir / CACHE_FILE).is_file()

    def no_build(*a, **k):
        raise AssertionError("built again although nothing changed")

    with monkeypatch.context() as m:
        m.setattr(AddressBook, "build", classmethod(no_build))
        assert "devops" in Workspace(ws.root).addresses.known()

    ws.config_path.write_text('[[agents]]\nname = "dora"\nrole = "Data Engineer"\n')
    age(ws.config_path, seconds=5)
    book = Workspace(ws.root).addresses
    assert book.resolve("data-engineer").agents == ("dora",) and "devops" not in book.agents

    (ws.roles_dir / "DevOps.agent.md").unlink()  # a fresh change is never trusted to the cache
    assert "devops" not in Workspace(ws.root).addresses.roles
