"""The drop-file name grammar: longest match against known addresses; only BadName ever raised."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from agentops.mail.names import MAX_NAME_BYTES, BadName, Envelope, Matcher

KNOWN = {"all", "user", "postmaster", "data-engineer", "database-engineer", "devops", "developer", "data"}
M = Matcher(KNOWN)


@pytest.mark.parametrize("name, expected", [
    ("to-database-engineer-from-data-engineer-schema-review.email",
     Envelope(("database-engineer",), "data-engineer", "schema-review")),
    ("to-data-engineer-from-devops.email", Envelope(("data-engineer",), "devops", None)),
    ("to-data-from-devops.email", Envelope(("data",), "devops", None)),
    ("to-devops+developer-from-user-deploy.email", Envelope(("devops", "developer"), "user", "deploy")),
    ("To-DevOps-From-Data_Engineer-Late Load.email", Envelope(("devops",), "data-engineer", "Late Load")),
    ("to-all-from-postmaster-alert.email", Envelope(("all",), "postmaster", "alert")),
    ("to-developer+developer-from-devops.email", Envelope(("developer",), "devops", None)),
    ("to-data-engineer-from-data-engineer-from-notes.email", Envelope(("data-engineer",), "data-engineer", "from-notes")),
])
def test_parses(name, expected):
    assert M.parse(name) == expected


@pytest.mark.parametrize("name, cause", [
    ("hello.email", "bad_name"),
    ("to-devops.email", "bad_name"),
    ("to-nobody-from-devops.email", "unknown_recipient"),
    ("to-devops+nobody-from-devops.email", "unknown_recipient"),
    ("to-devops-from-nobody.email", "unknown_sender"),
    ("to-devops-from-all.email", "unknown_sender"),
    ("to-devops-from-user-..-etc.email", "bad_name"),
    ("to-devops-from-user-a\u2215b.email", "bad_name"),   # DIVISION SLASH
    ("to-devops-from-user-a\uff0fb.email", "bad_name"),   # FULLWIDTH SOLIDUS
    ("to-devops-from-user-a\\b.email", "bad_name"),
    ("to-devops-from-user-a\x00b.email", "bad_name"),
    ("to-devops-from-user-a\nb.email", "bad_name"),
    ("to-devops-from-user-" + "x" * 300 + ".email", "name_too_long"),
])
def test_rejects_with_cause(name, cause):
    with pytest.raises(BadName) as err:
        M.parse(name)
    assert err.value.cause == cause
    assert str(err.value)


def test_unknown_recipient_still_names_the_sender_for_the_bounce():
    with pytest.raises(BadName) as err:
        M.parse("to-nobody-from-data-engineer-x.email")
    assert err.value.sender == "data-engineer"


def test_longest_name_limit():
    ok = "to-devops-from-user-" + "x" * (MAX_NAME_BYTES - 26) + ".email"
    assert len(ok.encode()) <= MAX_NAME_BYTES
    assert M.parse(ok).sender == "user"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_never_raises_anything_else(name):
    try:
        env = M.parse(name)
    except BadName:
        return
    assert env.sender in KNOWN and all(r in KNOWN for r in env.recipients)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(sorted(KNOWN - {"all"})), min_size=1, max_size=3),
       st.sampled_from(sorted(KNOWN - {"all"})),
       st.one_of(st.none(), st.from_regex(r"[a-z0-9]+(-[a-z0-9]+){0,3}", fullmatch=True)))
def test_round_trip_of_well_formed_names(recipients, sender, topic):
    name = f"to-{'+'.join(recipients)}-from-{sender}{'-' + topic if topic else ''}.email"
    try:
        env = M.parse(name)
    except BadName:  # only a topic that makes the name too long may fail
        assert len(name.encode()) > MAX_NAME_BYTES
        return
    # longest match: a topic may extend the sender to a longer known address ("data" + "-engineer")
    full = f"{sender}-{topic}" if topic else sender
    assert env.sender == sender or full.startswith(env.sender)
    assert env.recipients == tuple(dict.fromkeys(recipients))
