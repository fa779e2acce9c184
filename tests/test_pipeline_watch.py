"""The daemon's hook: re-check changed specs, mail the owner once per distinct broken content."""

from __future__ import annotations

import pytest

from agentops.pipelines.watch import recheck
from tests.pipeline_helpers import add_examples, write_spec

GOOD = """\
name: tiny
owner: database-engineer
schedule: "@daily"
sources: [{name: api, kind: api, format: json}]
stages:
  - {name: extract, kind: extract, inputs: [api], outputs: [raw]}
"""


@pytest.fixture
def outbox(monkeypatch):
    import agentops.mail

    sent = []
    # agentops' own voice (postmaster) is `notify`; `send` refuses postmaster
    monkeypatch.setattr(agentops.mail, "notify", lambda ws, **kw: sent.append({"via": "notify", **kw}) or ["<id>"])
    return sent


def test_one_mail_per_distinct_content_and_a_fixed_note(ws, outbox):
    path = write_spec(ws, "tiny", GOOD)
    assert recheck(ws, [path])[0].problems == [] and outbox == []
    write_spec(ws, "tiny", GOOD.replace("inputs: [api]", "inputs: [apii]"))
    for _ in range(5):  # a save storm
        recheck(ws, [path])
    assert len(outbox) == 1
    mail = outbox[0]
    assert mail["via"] == "notify" and mail["to"] == ["database-engineer"]
    assert "unknown dataset 'apii'" in mail["body"] and "1 problem" in mail["subject"]
    write_spec(ws, "tiny", GOOD.replace("inputs: [api]", "inputs: [apiii]"))
    recheck(ws, [path, path])
    assert len(outbox) == 2
    write_spec(ws, "tiny", GOOD)
    recheck(ws, [path])
    recheck(ws, [path])
    assert len(outbox) == 3 and outbox[2]["subject"].endswith("fixed")


def test_unparseable_spec_mails_the_owner_from_its_text(ws, outbox):
    path = write_spec(ws, "tiny", GOOD + "  - {broken\n")
    results = recheck(ws, [path])
    assert results[0].owner == "database-engineer" and results[0].mailed == "errors"
    assert "YAML error" in outbox[0]["body"]


def test_unknown_owner_goes_to_user_and_ignores_other_files(ws, outbox):
    path = write_spec(ws, "tiny", GOOD.replace("owner: database-engineer", "owner: nobody"))
    assert recheck(ws, [ws.root / "README.md", ws.email_dir / "x.email"]) == []
    recheck(ws, [path])
    assert outbox[0]["to"] == ["user"] and "unknown owner 'nobody'" in outbox[0]["body"]


def test_role_change_rechecks_every_spec(ws, outbox):
    add_examples(ws)
    results = recheck(ws, [ws.roles_dir / "Data Engineer.agent.md"])
    assert {r.file.rsplit("/", 1)[-1] for r in results} == {"orders_daily.yaml", "customers_dim.yaml", "clickstream.yaml"}
    assert outbox == []


def test_real_mail_lands_in_the_owners_inbox(ws):
    import mailbox

    path = write_spec(ws, "tiny", GOOD.replace("inputs: [api]", "inputs: [nope]"))
    results = recheck(ws, [path])
    assert results[0].mailed == "errors", results[0].error
    from agentops.mail import route_pending

    route_pending(ws)
    box = mailbox.Maildir(ws.inbox("database-engineer"), create=False)
    subjects = [m["Subject"] for m in box]
    assert any("tiny" in (s or "") for s in subjects), subjects
