"""Routing drop files into Maildir inboxes: recipients, dead letters, Maildir compatibility,
and exactly-once delivery across crashes (simulated and real SIGKILL)."""

from __future__ import annotations

import json
import mailbox
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from agentops.mail import route as route_mod
from agentops.mail.route import route_pending
from agentops.workspace import Workspace

ROSTER = """
[[agents]]
name = "dana"
role = "Data Engineer"
[[agents]]
name = "dave"
role = "Data Engineer"
[[agents]]
name = "bob"
role = "Database Engineer"
[[agents]]
name = "olga"
role = "DevOps"
[[agents]]
name = "dev"
role = "Developer"
"""


def drop(ws: Workspace, name: str, content: str | bytes = "hello\n") -> Path:
    """Write a drop file as an agent would, aged past the settle time."""
    path = ws.email_dir / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    os.utime(path, (time.time() - 5, time.time() - 5))
    return path


def inbox_files(ws: Workspace, agent: str) -> list[Path]:
    box = ws.inbox(agent)
    return sorted(p for sub in ("new", "cur") if (box / sub).is_dir() for p in (box / sub).iterdir())


def bodies(ws, agent) -> list[str]:
    md = mailbox.Maildir(ws.inbox(agent), create=False)
    return sorted(m.get_payload() for m in md)


def table_count(ws, table, where="1=1"):
    db = ws.db()
    try:
        return db.conn.execute(f"SELECT count(*) FROM {table} WHERE {where}").fetchone()[0]
    finally:
        db.conn.close()


@pytest.fixture
def team(ws):
    ws.config_path.write_text(ROSTER)
    return Workspace(ws.root)


def test_routes_to_agent_with_added_headers(ws):
    drop(ws, "to-database-engineer-from-data-engineer-schema-review.email", "Please review orders.\n")
    report = route_pending(ws)
    assert report.delivered == 1 and report.dead == 0 and report.inboxes == {"database-engineer"}
    assert not list(ws.email_dir.glob("*.email")) and not any(ws.spool_dir.iterdir())
    md = mailbox.Maildir(ws.inbox("database-engineer"), create=False)
    [msg] = list(md)
    assert msg["From"] == "data-engineer" and msg["To"] == "database-engineer"
    assert msg["Subject"] == "schema-review" and msg["Message-ID"] == report.message_ids[0]
    assert msg["Date"] and msg.get_payload() == "Please review orders.\n"
    assert msg.get_subdir() == "new"
    db = ws.db()
    event = json.loads(db.conn.execute("SELECT data FROM events WHERE kind='mail'").fetchone()[0])
    db.conn.close()
    assert event["action"] == "delivered" and event["recipients"] == ["database-engineer"]
    assert event["subject"] == "schema-review"


def test_subject_from_first_body_line_and_name_wins_over_headers(ws):
    drop(ws, "to-devops-from-developer.email", "From: user\nTo: devops, user\nCc: developer\n\n\n  Deploy please \nmore\n")
    route_pending(ws)
    [msg] = list(mailbox.Maildir(ws.inbox("devops"), create=False))
    assert msg["From"] == "developer"          # the name wins
    assert msg["To"] == "devops, user"          # To may add recipients
    assert msg["Cc"] == "developer"
    assert msg["Subject"] == "Deploy please"
    assert len(inbox_files(ws, "user")) == 1 and len(inbox_files(ws, "developer")) == 1


def test_broadcast_user_postmaster(ws):
    drop(ws, "to-all-from-devops-maintenance.email", "down at 5\n")
    drop(ws, "to-user+postmaster-from-devops.email", "hi\n")
    route_pending(ws)
    for agent in ("data-engineer", "database-engineer", "developer"):
        assert bodies(ws, agent) == ["down at 5\n"]
    assert not inbox_files(ws, "devops")  # not to the sender
    assert bodies(ws, "user") == ["hi\n"] and bodies(ws, "postmaster") == ["hi\n"]


def test_role_queue_for_a_role_with_several_members(team):
    drop(team, "to-data-engineer-from-bob-question.email", "which partition?\n")
    drop(team, "to-database-engineer-from-dana.email", "index please\n")
    report = route_pending(team)
    assert report.queues == {"data-engineer"}
    assert len(list(mailbox.Maildir(team.queues_root / "data-engineer", create=False))) == 1
    assert not inbox_files(team, "dana") and not inbox_files(team, "dave")
    assert bodies(team, "bob") == ["index please\n"]  # one member: straight to the inbox


def test_header_message_id_is_kept_unless_reused(ws):
    drop(ws, "to-devops-from-user-a.email", "Message-ID: <abc@x>\n\none\n")
    r1 = route_pending(ws)
    drop(ws, "to-devops-from-user-b.email", "Message-ID: <abc@x>\n\ntwo\n")
    r2 = route_pending(ws)
    assert r1.message_ids == ["<abc@x>"] and r2.message_ids[0] != "<abc@x>"
    assert bodies(ws, "devops") == ["one\n", "two\n"]


def test_same_name_can_be_reused_at_once(ws):
    for i in range(3):
        drop(ws, "to-devops-from-user.email", f"n{i}\n")
        route_pending(ws)
    assert bodies(ws, "devops") == ["n0\n", "n1\n", "n2\n"]


def test_settle_time_leaves_a_fresh_file_for_later(ws):
    (ws.email_dir / "to-devops-from-user.email").write_text("fresh\n")
    report = route_pending(ws, settle=60)
    assert report.skipped == 1 and report.delivered == 0
    assert route_pending(ws, settle=0).delivered == 1


def test_explicit_paths_outside_the_drop_zone_are_ignored(ws, tmp_path):
    outside = tmp_path / "to-devops-from-user.email"
    outside.write_text("nope")
    report = route_pending(ws, [outside, ws.inbox_root / "x.email"])
    assert report.delivered == 0 and outside.read_text() == "nope"


# dead letters --------------------------------------------------------------------------------
def test_bad_input_corpus(ws, tmp_path):
    ws.config_path.write_text("[mail]\nmax_bytes = 2000\n")
    ws = Workspace(ws.root)
    sentinel = tmp_path / "outside.txt"
    sentinel.write_text("secret outside the workspace")
    before = (sentinel.read_bytes(), sentinel.stat().st_mtime_ns)
    inside_target = ws.root / "notes.txt"
    inside_target.write_text("inside")
    corpus = {
        "to-nobody-from-devops.email": ("unknown_recipient", "devops"),
        "to-devops-from-nobody.email": ("unknown_sender", None),
        "hello-world.email": ("bad_name", None),
        "to-developer-from-devops-empty.email": ("empty", "devops"),
        "to-developer-from-devops-latin1.email": ("invalid_utf8", "devops"),
        "to-developer-from-devops-binary.email": ("binary", "devops"),
        "to-developer-from-devops-big.email": ("too_large", "devops"),
        "to-developer-from-devops-link-out.email": ("symlink", "devops"),
        "to-developer-from-devops-link-in.email": ("symlink", "devops"),
        "to-developer-from-devops-dir.email": ("not_regular_file", "devops"),
        "to-developer-from-devops-..-up.email": ("bad_name", None),
        "to-developer-from-devops-a\u2215b.email": ("bad_name", None),
        "to-developer-from-devops-" + "x" * 220 + ".email": ("name_too_long", None),
        "to-developer-from-devops-inject.email": ("header_injection", "devops"),
        "to-developer-from-devops-cc.email": ("unknown_recipient", "devops"),
        "to-developer-from-devops-prio.email": ("bad_header", "devops"),
    }
    contents = {
        "empty": b"", "latin1": "café\n".encode("latin-1"), "binary": b"\x89PNG\x00\x00\x01",
        "big": b"x" * 2500, "inject": b"Subject: hi\rBcc: all\n\nbody\n", "cc": b"Cc: nobody\n\nbody\n",
        "prio": b"Priority: asap\n\nbody\n",
    }
    for name in corpus:
        path = ws.email_dir / name
        tag = name.split("-from-devops-")[-1][:-6] if "-from-devops-" in name else ""
        if tag == "link-out":
            os.symlink(sentinel, path)
        elif tag == "link-in":
            os.symlink(inside_target, path)
        elif tag == "dir":
            path.mkdir()
            (path / "inner").write_text("x")
        else:
            path.write_bytes(contents.get(tag, b"some body\n"))
    drop(ws, "to-developer-from-devops-good.email", "still routing\n")
    os.utime(ws.email_dir, None)
    report = route_pending(ws, settle=0)
    assert report.delivered == 1 and bodies(ws, "developer") == ["still routing\n"]
    assert report.dead == len(corpus)
    by_name = {d["name"]: d for d in report.dead_letters}
    for name, (cause, sender) in corpus.items():
        d = by_name[name]
        assert d["cause"] == cause, (name, d)
        assert d["sender"] == sender, (name, d)
        reason = json.loads((ws.dead_dir / f"{d['id']}.reason").read_text())
        assert reason["name"] == name and reason["cause"] == cause and reason["time"]
        assert os.path.lexists(ws.dead_dir / d["id"])
    # links were moved, never followed; the targets are untouched
    link = ws.dead_dir / by_name["to-developer-from-devops-link-out.email"]["id"]
    assert link.is_symlink() and os.readlink(link) == str(sentinel)
    assert (sentinel.read_bytes(), sentinel.stat().st_mtime_ns) == before
    assert inside_target.read_text() == "inside"
    # bounces went to the known sender, from postmaster, saying where the original is
    bounces = list(mailbox.Maildir(ws.inbox("devops"), create=False))
    assert len(bounces) == sum(1 for c, s in corpus.values() if s == "devops")
    assert all(m["From"] == "postmaster" and "dead/" in m.get_payload() for m in bounces)
    assert table_count(ws, "events", "kind='mail' AND json_extract(data,'$.action')='bounced'") == len(corpus)
    assert not list(ws.email_dir.glob("*.email")) and not any(ws.spool_dir.iterdir())


def test_million_line_body(ws):
    body = "".join(f"{i}\n" for i in range(1_000_000))
    drop(ws, "to-devops-from-data-engineer-big-log.email", body)
    report = route_pending(ws)
    assert report.delivered == 1
    [msg] = list(mailbox.Maildir(ws.inbox("devops"), create=False))
    assert msg.get_payload() == body


def test_retry_after_the_cause_is_fixed(ws):
    from agentops.mail.dead import list_dead, retry

    drop(ws, "to-ingrid-from-devops-welcome.email", "hello ingrid\n")
    report = route_pending(ws)
    [dead] = list_dead(ws)
    assert dead["cause"] == "unknown_recipient" and report.dead == 1
    ws.config_path.write_text('[[agents]]\nname = "ingrid"\nrole = "Developer"\n'
                              '[[agents]]\nname = "olga"\nrole = "DevOps"\n')
    fixed = Workspace(ws.root)
    again = retry(fixed, dead["id"][:6])
    assert again.delivered == 1 and bodies(fixed, "ingrid") == ["hello ingrid\n"]
    assert list_dead(fixed) == []


# exactly once ---------------------------------------------------------------------------------
class Crash(BaseException):
    """Stands in for the process dying: not an Exception, which routing would take for one bad file."""


@pytest.mark.parametrize("point", ["before_commit", "after_commit"])
def test_replay_after_a_crash_is_exactly_once(ws, monkeypatch, point):
    for i in range(20):
        drop(ws, f"to-all-from-devops-n{i}.email", f"m{i}\n")
    drop(ws, "to-nobody-from-devops.email", "dead\n")
    if point == "before_commit":  # files delivered, Orbit not yet written
        monkeypatch.setattr(route_mod, "record_delivered", lambda *a, **k: (_ for _ in ()).throw(Crash()))
    else:  # Orbit written, spool not yet cleaned
        monkeypatch.setattr(route_mod._Router, "finish", lambda *a, **k: (_ for _ in ()).throw(Crash()))
    with pytest.raises(Crash):
        route_pending(ws)
    assert len(list(ws.spool_dir.iterdir())) == 21
    # an agent reads one of the copies before the restart
    md = mailbox.Maildir(ws.inbox("developer"), create=False)
    key = sorted(md.keys())[0]
    m = md[key]
    m.set_subdir("cur")
    m.add_flag("S")
    md[key] = m
    monkeypatch.undo()
    report = route_pending(ws)
    assert report.recovered == 21 and report.dead == 1
    for agent in ("data-engineer", "database-engineer", "developer"):
        assert bodies(ws, agent) == sorted(f"m{i}\n" for i in range(20))
    assert table_count(ws, "messages", "sender='devops'") == 20
    assert table_count(ws, "events", "json_extract(data,'$.action')='delivered' AND agent='devops'") == 20
    assert table_count(ws, "dead_letters") == 1
    assert len(mailbox.Maildir(ws.inbox("devops"), create=False)) == 1  # one bounce
    assert not any(ws.spool_dir.iterdir())


# Maildir tmp/: a new file per delivery, nothing kept ---------------------------------------------
def tmp_files(ws, agent) -> list[Path]:
    return sorted((ws.inbox(agent) / "tmp").iterdir())


def test_each_delivery_is_a_new_file_and_tmp_is_left_empty(ws):
    long_body = "long line\n" * 20
    for i in range(12):
        drop(ws, f"to-developer-from-devops-first{i}.email", f"Subject: first {i}\n\n{long_body}")
    assert route_pending(ws).delivered == 12
    first = {p.stat().st_ino for p in inbox_files(ws, "developer")}
    for i in range(12):
        drop(ws, f"to-developer-from-devops-second{i}.email", f"short {i}\n")
    assert route_pending(ws).delivered == 12
    assert tmp_files(ws, "developer") == [] and not any(ws.spool_dir.iterdir())
    files = inbox_files(ws, "developer")
    assert len(files) == 24 and len({p.stat().st_ino for p in files}) == 24 and first <= {p.stat().st_ino for p in files}
    mode = 0o644 & ~_umask()
    for p in files:
        st = p.stat()
        assert st.st_nlink == 1 and (st.st_mode & 0o7777) == mode
    assert bodies(ws, "developer") == sorted([long_body] * 12 + [f"short {i}\n" for i in range(12)])


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_spare_files_left_by_earlier_versions_are_removed_on_the_next_pass(ws, tmp_path):
    from agentops.mail import maildir

    box = maildir.ensure(ws.inbox("developer"), ws)
    for i in range(3):
        (box / "tmp" / f".spare-1700000000.M00000{i}P1Q{i}").write_bytes(b"an earlier message's bytes\n")
    outside = tmp_path / "kept-elsewhere"
    os.link(box / "tmp" / ".spare-1700000000.M000000P1Q0", outside)  # a link elsewhere: only ours goes
    (box / "tmp" / ".spare-folder").mkdir()  # not a file: left alone, never stops routing
    drop(ws, "to-developer-from-devops-next.email", "Subject: next\n\nhello\n")
    assert route_pending(ws).delivered == 1
    assert [p.name for p in tmp_files(ws, "developer")] == [".spare-folder"]
    assert outside.read_bytes() == b"an earlier message's bytes\n"
    assert bodies(ws, "developer") == ["hello\n"]


def test_a_file_left_in_tmp_by_a_crash_is_never_written_over(ws):
    from agentops.mail import maildir

    box = maildir.ensure(ws.inbox("developer"), ws)
    key = "1.M1P1Q1.agentops"
    taken = box / "tmp" / f"{key}.{os.getpid()}_{next(maildir._tmp_counter) + 1}"  # the name it would take next
    taken.write_bytes(b"someone else's file\n")
    from agentops import safefs

    with safefs.opendir(ws, box / "tmp") as tmp, safefs.opendir(ws, box / "new") as new:
        maildir.write_new(tmp, new, key, b"Subject: x\n\nbody\n")
    assert taken.read_bytes() == b"someone else's file\n"
    assert (box / "new" / key).read_bytes() == b"Subject: x\n\nbody\n"


KILLER = r"""
import sys
from agentops.workspace import Workspace
from agentops.mail.route import route_pending
ws = Workspace(sys.argv[1])
print("ready", flush=True)
route_pending(ws, settle=0)
print("done", flush=True)
"""


def _route_in_child(root, delay):
    p = subprocess.Popen([sys.executable, "-c", KILLER, str(root)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    if delay is None:
        p.wait(timeout=120)
        return p.returncode
    deadline = time.monotonic() + 60  # count the delay from the first claim, not from start-up (load varies)
    while p.poll() is None and not any(Path(root, ".agent/email/.queue").iterdir()) and time.monotonic() < deadline:
        time.sleep(0.002)
    time.sleep(delay)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    return p.returncode


def test_sigkill_mid_burst_then_route_again_is_exactly_once(ws):
    n = 1000
    for i in range(n):
        drop(ws, f"to-developer+devops-from-data-engineer-n{i}.email", f"msg-{i}\n")
    delays = [0.15, 0.3, 0.05, 0.5, 0.25, 0.1]
    interrupted = 0
    for delay in delays:
        _route_in_child(ws.root, delay)
        interrupted += any(ws.spool_dir.iterdir())  # killed with claimed, unfinished work
        if not list(ws.email_dir.glob("*.email")) and not any(ws.spool_dir.iterdir()):
            break
    assert interrupted, "no kill landed mid-routing"
    assert _route_in_child(ws.root, None) == 0
    expected = sorted(f"msg-{i}\n" for i in range(n))
    assert bodies(ws, "developer") == expected
    assert bodies(ws, "devops") == expected
    assert table_count(ws, "messages") == n
    assert table_count(ws, "events", "json_extract(data,'$.action')='delivered'") == n
    assert table_count(ws, "deliveries") == 2 * n
    assert not any(ws.spool_dir.iterdir())


@pytest.mark.stress
def test_5000_drop_files_in_one_pass_are_each_delivered_and_recorded_once(ws):
    """Scale, not speed (benchmarks/run.py measures that): 5,000 drop files, batches of 1,000, every message in new/ once and in Orbit once."""
    n = 5000
    for i in range(n):
        (ws.email_dir / f"to-developer-from-data-engineer-load-{i}.email").write_bytes(
            f"Subject: load {i}\n\nrows ok {i}\n".encode())
    report = route_pending(ws, settle=0)
    assert report.delivered == n and report.dead == 0
    assert sorted(bodies(ws, "developer")) == sorted(f"rows ok {i}\n" for i in range(n))
    db = ws.db()
    assert db.conn.execute("SELECT count(*), count(DISTINCT key) FROM messages").fetchone() == (n, n)
    db.conn.close()


def test_an_inbox_linked_outside_the_workspace_is_never_written(ws, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    ws.inbox_root.mkdir(parents=True, exist_ok=True)
    os.symlink(outside, ws.inbox("developer"))
    drop(ws, "to-developer-from-devops-x.email", "hi\n")
    drop(ws, "to-devops-from-developer-y.email", "still fine\n")
    report = route_pending(ws)
    assert [d["cause"] for d in report.dead_letters] == ["unsafe_mailbox"]
    assert list(outside.iterdir()) == []
    assert bodies(ws, "devops")[-1] == "still fine\n"


def test_no_bounce_into_an_inbox_linked_outside(ws, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    ws.inbox_root.mkdir(parents=True, exist_ok=True)
    os.symlink(outside, ws.inbox("devops"))
    drop(ws, "to-nobody-from-devops.email", "x\n")
    report = route_pending(ws)
    assert report.dead == 1 and report.bounces == 0 and list(outside.iterdir()) == []


_names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"), min_size=1, max_size=60)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(_names, st.sampled_from(["to-devops-from-user", "to-all-from-developer-x", "to-user-from-devops"]))
       .map(lambda n: n + ".email"), st.binary(max_size=300))
def test_any_drop_file_is_delivered_or_dead_never_an_error(ws, name, content):
    if len(name.encode()) > 250 or name.startswith("."):
        return
    (ws.email_dir / name).write_bytes(content)
    report = route_pending(ws, settle=0)
    assert report.delivered + report.dead == 1
    assert not list(ws.email_dir.glob("*.email")) and not any(ws.spool_dir.iterdir())


def test_a_file_still_open_by_its_writer_waits(ws):
    path = ws.email_dir / "to-devops-from-user-slow.email"
    with open(path, "w") as writer:
        writer.write("first half\n")
        writer.flush()
        report = route_pending(ws, settle=0)
        assert report.delivered == 0 and report.skipped == 1 and path.exists()
        writer.write("second half\n")
    assert route_pending(ws, settle=0).delivered == 1
    assert bodies(ws, "devops") == ["first half\nsecond half\n"]


def test_a_file_only_a_reader_holds_open_is_routed(ws):
    """The same question the daemon asks (agentops.leases): is anyone still writing it?"""
    path = ws.email_dir / "to-devops-from-user-done.email"
    path.write_text("written\n")
    with open(path) as reader:
        report = route_pending(ws, settle=0)
        assert report.delivered == 1 and report.skipped == 0 and reader.read() == "written\n"


@settings(max_examples=200, deadline=None)
@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 1, 1), timezones=st.timezones()))
def test_the_date_written_on_delivery_is_what_the_email_package_writes(when):
    import email.utils
    from datetime import timezone

    utc = when.astimezone(timezone.utc)
    assert route_mod.rfc5322_date(when) == email.utils.format_datetime(utc).replace("-0000", "+0000")
    assert email.utils.parsedate_to_datetime(route_mod.rfc5322_date(when)) == utc.replace(microsecond=0)


def test_sending_routes_the_pending_drop_files_in_the_same_pass(ws):
    from agentops.mail import send

    old = ws.email_dir / "to-devops-from-developer-older.email"
    old.write_text("Subject: older\n\nwritten as a file\n")
    past = time.time() - 5
    os.utime(old, (past, past))
    send(ws, sender="user", to="devops", subject="newer", body="sent")
    subjects = sorted(m["Subject"] for m in mailbox.Maildir(ws.inbox("devops"), create=False))
    assert subjects == ["newer", "older"] and not old.exists()  # the library call routed both


def test_a_maildir_subfolder_linked_outside_is_a_dead_letter(ws, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    box = ws.inbox("developer")
    drop(ws, "to-developer-from-devops-first.email", "Subject: first\n\nhello\n")
    assert route_pending(ws).delivered == 1
    import shutil

    shutil.rmtree(box / "tmp")
    (box / "tmp").symlink_to(outside)
    drop(ws, "to-developer-from-devops-secret.email", "Subject: secret\n\nsecret body\n")
    report = route_pending(ws)
    assert report.delivered == 0 and report.dead == 1
    assert report.dead_letters[0]["cause"] == "unsafe_mailbox"
    assert list(outside.iterdir()) == []
