"""`agentops mail ...` through the CLI (in-process and real subprocesses): send, inbox, read,
ack, claim (a real race), thread, search, dead, retry; 8 concurrent senders."""

from __future__ import annotations

import json
import mailbox
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from agentops.workspace import Workspace
from tests.conftest import run_agentops

TEAM = """
[[agents]]
name = "dana"
role = "Data Engineer"
[[agents]]
name = "dave"
role = "Data Engineer"
[[agents]]
name = "dora"
role = "Data Engineer"
[[agents]]
name = "bob"
role = "Database Engineer"
"""


def ok(result):
    assert result.exit_code == 0, result.output
    return result.output


def test_send_inbox_read_ack(ws, cli):
    out = ok(cli("mail", "send", "--from", "data-engineer", "--to", "database-engineer", "--subject", "Schema review",
                 "--body", "Please look at orders.\n", "--priority", "high"))
    mid = out.split()[0]
    assert mid.startswith("<") and "delivered" in out
    rows = json.loads(ok(cli("mail", "inbox", "database-engineer", "--json")))
    assert [(r["message_id"], r["state"], r["priority"], r["subject"]) for r in rows] == \
        [(mid, "unread", "high", "Schema review")]
    text = ok(cli("mail", "inbox", "database-engineer"))
    assert "Schema review" in text and "unread" in text
    shown = ok(cli("mail", "read", mid.strip("<>")[:8]))
    assert "Subject: Schema review" in shown and "Please look at orders." in shown
    assert ok(cli("mail", "inbox", "database-engineer", "--unread")).strip() == "no unread messages"
    md = mailbox.Maildir(ws.inbox("database-engineer"), create=False)
    [msg] = list(md)
    assert msg.get_subdir() == "cur" and msg.get_flags() == "S"
    ok(cli("mail", "ack", mid))
    [msg] = list(mailbox.Maildir(ws.inbox("database-engineer"), create=False))
    assert msg.get_flags() == "RS"
    assert json.loads(ok(cli("mail", "inbox", "database-engineer", "--json")))[0]["state"] == "acked"
    data = json.loads(ok(cli("mail", "read", mid, "--json")))
    assert data["body"] == "Please look at orders.\n" and data["deliveries"][0]["acked_at"]
    db = ws.db()
    actions = [r[0] for r in db.conn.execute(
        "SELECT json_extract(data, '$.action') FROM events WHERE kind = 'mail' ORDER BY seq")]
    db.conn.close()
    assert actions == ["delivered", "read", "acked"]


def test_body_from_stdin_and_file(ws, cli, tmp_path):
    ok(cli("mail", "send", "--from", "user", "--to", "devops", "-s", "from stdin", input="piped text\n"))
    f = tmp_path / "body.txt"
    f.write_text("file text\n")
    ok(cli("mail", "send", "--from", "user", "--to", "devops", "-s", "from file", "--body-file", f))
    bodies = sorted(m.get_payload() for m in mailbox.Maildir(ws.inbox("devops"), create=False))
    assert bodies == ["file text\n", "piped text\n"]


def test_errors_are_one_line_with_exit_codes(ws, cli):
    r = cli("mail", "send", "--from", "user", "--to", "nobody", "-s", "x", "--body", "y")
    assert r.exit_code == 5 and "unknown address 'nobody'" in r.output
    r = cli("mail", "send", "--from", "user", "--to", "devops", "-s", "x", "--body", "y", "--priority", "asap")
    assert r.exit_code == 2  # a bad option value is a usage error (issue 12.12)
    r = cli("mail", "read", "zzzz")
    assert r.exit_code == 5 and "no message" in r.output


def test_reply_and_thread_and_search(ws, cli):
    first = ok(cli("mail", "send", "--from", "devops", "--to", "developer", "-s", "Disk alert",
                   "--body", "The warehouse disk is at 91 percent")).split()[0]
    reply = ok(cli("mail", "send", "--from", "developer", "--to", "devops", "-s", "Re: Disk alert",
                   "--body", "Cleaning old partitions", "--reply-to", first[1:9])).split()[0]
    ok(cli("mail", "send", "--from", "devops", "--to", "developer", "-s", "Other", "--body", "unrelated"))
    thread = json.loads(ok(cli("mail", "thread", reply, "--json")))
    assert [m["message_id"] for m in thread] == [first, reply]
    assert thread[1]["in_reply_to"] == first
    assert "Cleaning old partitions" in ok(cli("mail", "thread", first))
    hits = json.loads(ok(cli("mail", "search", "partition", "--json")))  # porter stemming
    assert [h["message_id"] for h in hits] == [reply]
    assert "Disk alert" in ok(cli("mail", "search", "warehouse disk"))
    assert ok(cli("mail", "search", 'unbalanced "quote')).strip() == "no match"


def test_read_of_a_broadcast_needs_whose_copy(ws, cli):
    mid = ok(cli("mail", "send", "--from", "devops", "--to", "all", "-s", "Freeze", "--body", "no deploys")).split()[0]
    r = cli("mail", "read", mid)
    assert r.exit_code == 6 and "--as" in r.output
    ok(cli("mail", "read", mid, "--as", "developer"))
    states = {a: json.loads(ok(cli("mail", "inbox", a, "--json")))[0]["state"]
              for a in ("developer", "data-engineer")}
    assert states == {"developer": "read", "data-engineer": "unread"}


def test_drop_files_are_routed_by_any_command_without_daemon(ws, cli):
    path = ws.email_dir / "to-devops-from-user-hello.email"
    path.write_text("hi devops\n")
    os.utime(path, (time.time() - 1, time.time() - 1))
    rows = json.loads(ok(cli("mail", "inbox", "devops", "--json")))
    assert [r["subject"] for r in rows] == ["hello"]


def test_dead_and_retry(ws, cli):
    path = ws.email_dir / "to-ingrid-from-devops-welcome.email"
    path.write_text("welcome\n")
    os.utime(path, (time.time() - 1, time.time() - 1))
    [dead] = json.loads(ok(cli("mail", "dead", "--json")))
    assert dead["cause"] == "unknown_recipient" and dead["name"] == path.name
    assert "unknown_recipient" in ok(cli("mail", "dead"))
    r = cli("mail", "retry", dead["id"])
    assert r.exit_code == 1 and "dead again" in r.output
    [dead] = json.loads(ok(cli("mail", "dead", "--json")))
    ws.config_path.write_text('[[agents]]\nname = "ingrid"\nrole = "Developer"\n'
                              '[[agents]]\nname = "devops"\nrole = "DevOps"\n')
    assert "delivered" in ok(cli("mail", "retry", dead["id"][:5]))
    assert ok(cli("mail", "dead")).strip() == "no dead letters"
    assert json.loads(ok(cli("mail", "inbox", "ingrid", "--json")))[0]["subject"] == "welcome"


def test_claim_from_a_role_queue(ws, cli):
    ws.config_path.write_text(TEAM)
    ok(cli("mail", "send", "--from", "bob", "--to", "data-engineer", "-s", "Backfill March", "--body", "please"))
    queue = json.loads(ok(cli("mail", "inbox", "data-engineer", "--json")))
    assert [r["state"] for r in queue] == ["unread"]
    r = cli("mail", "claim", "data-engineer", "--as", "bob")
    assert r.exit_code == 4
    claimed = json.loads(ok(cli("mail", "claim", "data-engineer", "--as", "dave", "--json")))
    assert claimed["claimed_by"] == "dave"
    assert [r["subject"] for r in json.loads(ok(cli("mail", "inbox", "dave", "--json")))] == ["Backfill March"]
    assert json.loads(ok(cli("mail", "inbox", "data-engineer", "--json")))[0]["state"] == "claimed"
    r = cli("mail", "claim", "data-engineer", "--as", "dana")
    assert r.exit_code == 5 and "no unclaimed" in r.output
    r = cli("mail", "claim", "data-engineer", "--as", "dana", "--id", claimed["message_id"])
    assert r.exit_code == 6 and "already claimed by dave" in r.output
    assert not list(mailbox.Maildir(ws.queues_root / "data-engineer", create=False))


CLAIMER = r"""
import sys
from agentops.workspace import Workspace
from agentops.mail.inbox import claim
from agentops.errors import NotFoundError
ws = Workspace(sys.argv[1])
sys.stdin.readline()  # start together
while True:
    try:
        print(claim(ws, "data-engineer", sys.argv[2])["message_id"], flush=True)
    except NotFoundError:
        break
"""


def test_claim_race_with_real_processes_has_exactly_one_winner(ws):
    from agentops.mail import send

    ws.config_path.write_text(TEAM)
    ws = Workspace(ws.root)
    ids = [send(ws, sender="bob", to="data-engineer", subject=f"job {i}", body=f"job {i}\n")[0] for i in range(30)]
    procs = {agent: subprocess.Popen([sys.executable, "-c", CLAIMER, str(ws.root), agent], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True) for agent in ("dana", "dave", "dora")}
    for p in procs.values():
        p.stdin.write("go\n")
        p.stdin.flush()
    won = {agent: p.communicate(timeout=60)[0].split() for agent, p in procs.items()}
    assert all(p.returncode == 0 for p in procs.values())
    every = [m for ms in won.values() for m in ms]
    assert sorted(every) == sorted(ids)  # each claimed exactly once
    for agent, ms in won.items():
        md = mailbox.Maildir(ws.inbox(agent), create=False) if ws.inbox(agent).exists() else []
        assert sorted(m["Message-ID"] for m in md) == sorted(ms)
    assert not list(mailbox.Maildir(ws.queues_root / "data-engineer", create=False))


def test_eight_processes_sending_at_once(ws):
    def sender(i):
        return run_agentops("mail", "send", "--from", "developer", "--to", "devops", "--subject", f"s{i}",
                            "--body", f"b{i}", env={"AGENTOPS_WORKSPACE": str(ws.root)}, timeout=120)

    def burst(i):
        return [sender(i * 10 + j) for j in range(2)]

    with ThreadPoolExecutor(8) as pool:
        results = [r for rs in pool.map(burst, range(8)) for r in rs]
    for r in results:
        assert r.returncode == 0, r.stderr
        assert "locked" not in r.stderr
    md = mailbox.Maildir(ws.inbox("devops"), create=False)
    assert sorted(m.get_payload() for m in md) == sorted(f"b{i * 10 + j}" for i in range(8) for j in range(2))
    db = ws.db()
    assert db.conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 16
    db.conn.close()


def test_cli_module_imports_are_light():
    code = ("import sys, agentops.cli.mail, agentops.mail; "
            "print(sorted(m for m in ('sqlite_utils', 'pydantic', 'agentops.mail.route') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_claim_interrupted_before_its_file_moved_is_finished_by_recover(ws, monkeypatch):
    from agentops.mail import inbox as inbox_mod, send
    from agentops.mail.route import recover

    ws.config_path.write_text(TEAM)
    ws = Workspace(ws.root)
    [mid] = send(ws, sender="bob", to="data-engineer", subject="job", body="job\n")
    monkeypatch.setattr(inbox_mod, "settle_claims", lambda *a, **k: 0)  # "crash" after the commit
    inbox_mod.claim(ws, "data-engineer", "dora")
    assert len(mailbox.Maildir(ws.queues_root / "data-engineer", create=False)) == 1
    monkeypatch.undo()
    recover(ws)
    assert not list(mailbox.Maildir(ws.queues_root / "data-engineer", create=False))
    assert [m["Message-ID"] for m in mailbox.Maildir(ws.inbox("dora"), create=False)] == [mid]


def test_drafts_list_and_send(ws, cli):
    from agentops.mail.drafts import save_draft

    draft = save_draft(ws, sender="developer", to=["devops"], subject="Release notes", body="v2 notes\n")
    rows = json.loads(ok(cli("mail", "drafts", "--json")))
    assert [r["id"] for r in rows] == [draft]
    assert draft in ok(cli("mail", "drafts"))
    assert "sent draft" in ok(cli("mail", "send", "--draft", draft))
    assert ok(cli("mail", "drafts")).strip() == "no drafts"
    assert [r["subject"] for r in json.loads(ok(cli("mail", "inbox", "devops", "--json")))] == ["Release notes"]
    r = cli("mail", "send", "--to", "devops", "--body", "x")
    assert r.exit_code == 4 and "--from" in r.output and "--subject" in r.output


def test_inbox_shows_the_newest_by_default_and_all_on_request(ws, cli):
    for i in range(60):
        (ws.email_dir / f"to-devops-from-data-engineer-n{i:02}.email").write_text(f"Subject: note {i:02}\n\nbody\n")
    out = ok(cli("mail", "inbox", "devops"))
    lines = out.strip().splitlines()
    assert lines[-1] == "(the newest 50 of 60; --limit 0 shows all)"
    assert "note 10" in lines[1] and "note 59" in lines[-2]  # newest 50, oldest first
    assert len(ok(cli("mail", "inbox", "devops", "--limit", "0")).strip().splitlines()) == 61
    rows = json.loads(ok(cli("mail", "inbox", "devops", "--limit", "3", "--json")))
    assert [r["subject"] for r in rows] == ["note 57", "note 58", "note 59"]
    ok(cli("mail", "read", rows[0]["message_id"]))
    unread = json.loads(ok(cli("mail", "inbox", "devops", "--unread", "--limit", "0", "--json")))
    assert len(unread) == 59 and "note 57" not in [r["subject"] for r in unread]
