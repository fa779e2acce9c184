"""Hostile drop files and senders: every drop file ends delivered or set aside as a dead letter with
a reason, and a good file dropped after a bad one is delivered (issue 12, points 2, 4 and 7)."""

from __future__ import annotations

import errno
import json
import mailbox
import os
import time
from pathlib import Path

import pytest

from agentops.mail import maildir, route as route_mod
from agentops.mail.route import route_pending
from agentops.workspace import Workspace

from conftest import run_agentops


def aged(path: Path | bytes) -> None:
    past = time.time() - 5
    os.utime(path, (past, past), follow_symlinks=False)


def drop(ws: Workspace, name: str, content: str | bytes = "hello\n") -> Path:
    path = ws.email_dir / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    aged(path)
    return path


def bodies(ws, agent) -> list[str]:
    try:
        return sorted(m.get_payload() for m in mailbox.Maildir(ws.inbox(agent), create=False))
    except mailbox.NoSuchMailboxError:
        return []


def nothing_left(ws: Workspace) -> None:
    assert not [n for n in os.listdir(ws.email_dir) if n.endswith(b".email" if isinstance(n, bytes) else ".email")]
    assert not any(ws.spool_dir.iterdir())


def dead_reasons(ws) -> list[dict]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(ws.dead_dir.glob("*.reason"))]


def orbit_dead(ws) -> list[tuple]:
    db = ws.db()
    try:
        return db.conn.execute("SELECT cause, original_name FROM dead_letters ORDER BY ts").fetchall()
    finally:
        db.conn.close()


def test_a_name_that_is_not_utf8_is_a_dead_letter_and_the_next_file_is_delivered(ws):
    bad = os.fsencode(ws.email_dir) + b"/to-devops-from-developer-\xff\xfe.email"
    with open(bad, "wb") as f:
        f.write(b"Subject: bad name\n\nx\n")
    aged(bad)
    drop(ws, "to-devops-from-developer-good.email", "Subject: good\n\nafter the bad one\n")
    report = route_pending(ws)
    assert report.delivered == 1 and report.dead == 1
    assert bodies(ws, "devops") == ["after the bad one\n"]
    [reason] = dead_reasons(ws)
    assert reason["cause"] == "bad_name" and "not valid UTF-8 (byte 0xff)" in reason["reason"]
    assert reason["name"] == "to-devops-from-developer-\\xff\\xfe.email"
    assert orbit_dead(ws) == [("bad_name", "to-devops-from-developer-\\xff\\xfe.email")]
    nothing_left(ws)
    assert (ws.dead_dir / reason["id"]).read_bytes() == b"Subject: bad name\n\nx\n"  # the file itself
    drop(ws, "to-devops-from-developer-later.email", "later\n")
    assert route_pending(ws).delivered == 1


def test_a_name_that_is_not_utf8_through_the_cli_and_the_daemon(ws):
    bad = os.fsencode(ws.email_dir) + b"/to-devops-from-\xc3(-x.email"
    with open(bad, "wb") as f:
        f.write(b"x\n")
    aged(bad)
    drop(ws, "to-devops-from-developer-good.email", "good\n")
    r = run_agentops("daemon", "--once", cwd=ws.root, timeout=120)
    assert r.returncode == 0, r.stderr
    assert bodies(ws, "devops") == ["good\n"]
    assert [d["cause"] for d in dead_reasons(ws)] == ["bad_name"]
    r = run_agentops("mail", "dead", "--json", cwd=ws.root)
    assert r.returncode == 0 and json.loads(r.stdout)[0]["name"] == "to-devops-from-\\xc3(-x.email"
    nothing_left(ws)


def _future(path: Path) -> None:
    later = time.time() + 10 * 365 * 86400
    os.utime(path, (later, later))


def test_an_mtime_in_the_future_is_routed_by_a_scan(ws):
    _future(drop(ws, "to-devops-from-developer-future.email", "from the future\n"))
    drop(ws, "to-devops-from-developer-now.email", "now\n")
    report = route_pending(ws)
    assert report.delivered == 2 and report.skipped == 0
    assert bodies(ws, "devops") == ["from the future\n", "now\n"]
    nothing_left(ws)


def test_an_mtime_in_the_future_is_routed_by_the_daemon(ws):
    from agentops.daemon.core import ONCE_MAX_WAIT, Daemon

    _future(drop(ws, "to-devops-from-developer-future.email", "from the future\n"))
    drop(ws, "to-devops-from-developer-now.email", "now\n")
    started = time.monotonic()
    stats = Daemon(Workspace(ws.root)).run_once(install_signals=False)
    assert stats.delivered == 2 and time.monotonic() - started < ONCE_MAX_WAIT  # not left pending
    assert bodies(ws, "devops") == ["from the future\n", "now\n"]
    nothing_left(ws)


def test_a_fresh_file_that_keeps_changing_is_left_for_the_next_pass(ws):
    import threading

    path = ws.email_dir / "to-devops-from-developer-slow.email"
    path.write_text("line 0\n")
    stop = threading.Event()

    def append():  # opens, appends and closes every 20 ms: never held open while routing looks
        i = 1
        while not stop.wait(0.02):
            with open(path, "a") as f:
                f.write(f"line {i}\n")
            i += 1

    writer = threading.Thread(target=append)
    writer.start()
    try:
        report = route_pending(ws, settle=0.3)  # it sees a change within the settle time
    finally:
        stop.set()
        writer.join()
    assert report.delivered == 0 and report.skipped == 1 and path.exists()
    time.sleep(0.4)
    expected = path.read_text()
    assert route_pending(ws, settle=0.3).delivered == 1
    assert bodies(ws, "devops") == [expected]


def _fifo(ws, name):
    os.mkfifo(ws.email_dir / name)


def _folder(ws, name):
    (ws.email_dir / name).mkdir()
    (ws.email_dir / name / "inner.email").write_text("x\n")


def _empty(ws, name):
    drop(ws, name, b"")


def _huge(ws, name):
    path = ws.email_dir / name
    with open(path, "wb") as f:
        f.truncate(2 * 1024 ** 3)  # 2 GiB, sparse: over mail.max_bytes
    aged(path)


def _symlink(ws, name):
    os.symlink("/etc/passwd", ws.email_dir / name)


def _hard_link(ws, name):
    target = ws.root / "outside.txt"
    target.write_text("Subject: hi\n\nnot yours\n")
    os.link(target, ws.email_dir / name)


def _binary(ws, name):
    drop(ws, name, b"\x00\x01\x02 binary \xff")


def _newline_name(ws, name):
    drop(ws, name.replace("bad", "b\nad"), "x\n")


def _forged(ws, name):
    drop(ws, "to-devops-from-postmaster-run-failed.email", "Subject: [orbit] run failed\n\nfake alert\n")


HOSTILE = {
    "fifo": (_fifo, "not_regular_file"),
    "folder": (_folder, "not_regular_file"),
    "empty": (_empty, "empty"),
    "huge": (_huge, "too_large"),
    "symlink": (_symlink, "symlink"),
    "hard_link": (_hard_link, "hard_link"),
    "binary": (_binary, "binary"),
    "newline_in_name": (_newline_name, "bad_name"),
    "forged_postmaster": (_forged, "forged_sender"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_drop_file_is_set_aside_and_the_next_one_is_delivered(ws, case):
    make, cause = HOSTILE[case]
    make(ws, "to-devops-from-developer-bad.email")
    drop(ws, "to-devops-from-developer-zgood.email", "Subject: good\n\nafter the bad one\n")
    report = route_pending(ws)
    assert report.delivered == 1 and report.dead == 1, report
    assert [d["cause"] for d in dead_reasons(ws)] == [cause]
    assert bodies(ws, "devops") == ["after the bad one\n"]
    nothing_left(ws)
    assert route_pending(ws).recovered == 0  # nothing half-done is left for the next pass


def test_the_daemon_sets_hostile_files_aside_too(ws):
    for i, (make, _) in enumerate(HOSTILE.values()):
        make(ws, f"to-devops-from-developer-bad{i}.email")
    drop(ws, "to-devops-from-developer-zgood.email", "good\n")
    r = run_agentops("daemon", "--once", cwd=ws.root, timeout=120)
    assert r.returncode == 0, r.stderr
    assert bodies(ws, "devops") == ["good\n"]
    assert sorted(d["cause"] for d in dead_reasons(ws)) == sorted(c for _, c in HOSTILE.values())
    nothing_left(ws)


def test_an_entry_that_fails_alone_in_a_batch_is_dead_lettered_and_the_others_delivered(ws, monkeypatch):
    """The batch mechanism: a failure of one file's own (here injected where the message is written)
    is found by replaying the batch one entry at a time; that one is set aside (`unroutable`)."""
    real = maildir.write_new

    def write_new(tmp, new, key, data, **kw):
        if b"poison" in data:
            real(tmp, new, key, data, **kw)  # a copy is written before it fails: it must not stay
            raise ValueError("cannot write this one")
        return real(tmp, new, key, data, **kw)

    monkeypatch.setattr(maildir, "write_new", write_new)
    for i in range(5):
        drop(ws, f"to-devops-from-developer-m{i}.email", f"m{i}\n")
    drop(ws, "to-devops-from-developer-m2x.email", "poison\n")
    report = route_pending(ws)
    assert report.delivered == 5 and report.dead == 1
    assert bodies(ws, "devops") == [f"m{i}\n" for i in range(5)]
    [reason] = dead_reasons(ws)
    assert reason["cause"] == "unroutable" and "ValueError: cannot write this one" in reason["reason"]
    assert reason["name"] == "to-devops-from-developer-m2x.email"
    nothing_left(ws)
    db = ws.db()
    assert db.conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 5
    db.conn.close()


def test_a_full_disk_fails_the_pass_and_loses_nothing(ws, monkeypatch):
    real = maildir.write_new
    calls = []

    def write_new(tmp, new, key, data, **kw):
        calls.append(key)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(tmp, new, key, data, **kw)

    monkeypatch.setattr(maildir, "write_new", write_new)
    for i in range(3):
        drop(ws, f"to-devops-from-developer-m{i}.email", f"m{i}\n")
    with pytest.raises(OSError):
        route_pending(ws)
    assert dead_reasons(ws) == [] and len(list(ws.spool_dir.iterdir())) == 3
    report = route_pending(ws)  # space is back
    assert report.recovered == 3 and report.delivered == 3 and report.dead == 0
    assert bodies(ws, "devops") == ["m0\n", "m1\n", "m2\n"]
    nothing_left(ws)


# postmaster is agentops' own voice ---------------------------------------------------------------
def test_the_cli_refuses_postmaster_as_a_sender(ws):
    r = run_agentops("mail", "send", "--from", "postmaster", "--to", "devops", "-s", "[orbit] run failed",
                     "--body", "fake", cwd=ws.root)
    assert r.returncode == 4 and r.stdout == ""
    assert r.stderr.splitlines() == [
        "Error: 'postmaster' is agentops' own voice (alerts); nobody else may send as it (send from your own address)"]
    assert bodies(ws, "devops") == [] and not list(ws.email_dir.glob("*.email"))


def test_mcp_refuses_postmaster_as_a_sender(ws):
    from test_mcp import error, session

    async def script(call):
        return await call("mail_send", {"sender": "postmaster", "to": ["devops"], "subject": "s", "body": "b"})

    assert "'postmaster' is agentops' own voice" in error(session(ws, script))
    assert bodies(ws, "devops") == []


def test_agentops_own_messages_from_postmaster_are_delivered_daemon_or_not(ws):
    from agentops.daemon.core import Daemon
    from agentops.mail import notify

    [mid] = notify(ws, to=["devops"], subject="[orbit] run failed", body="a real alert\n")
    msgs = list(mailbox.Maildir(ws.inbox("devops"), create=False))
    assert [(m["From"], m["Message-ID"], m.get_payload()) for m in msgs] == [("postmaster", mid, "a real alert\n")]
    daemon = Daemon(Workspace(ws.root))
    woken = []
    daemon.on_mail(woken.append)  # what dispatch listens to: the daemon routes it and wakes devops
    daemon.start()
    try:
        notify(ws, to=["devops"], subject="second", body="while the daemon runs\n")
        deadline = time.monotonic() + 30
        while len(bodies(ws, "devops")) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        daemon.stop()
        daemon.join()
    assert bodies(ws, "devops") == ["a real alert\n", "while the daemon runs\n"]
    assert daemon.stats.delivered == 1 and {"devops"} in woken
    assert dead_reasons(ws) == [] and not any(ws.spool_dir.iterdir())


def test_an_own_spool_entry_survives_a_crash_and_a_claimed_forgery_does_not_pass_for_one(ws):
    """After a crash, a spool entry agentops wrote (`^`) is still delivered; a drop file from
    postmaster claimed into the spool (`~`) is still a forgery."""
    from agentops.mail.outbox import compose
    from agentops.mail.route import new_token, spool_entry

    ws.spool_dir.mkdir(parents=True, exist_ok=True)
    _, msg, name = compose(ws, sender="postmaster", to=["devops"], subject="own", body="own\n", own_voice=True)
    spool_entry(ws.spool_dir, new_token(), name, own=True).spool.write_bytes(msg.to_bytes())
    spool_entry(ws.spool_dir, new_token(), "to-devops-from-postmaster-x.email").spool.write_bytes(b"forged\n")
    report = route_pending(ws, [])
    assert report.recovered == 2 and report.delivered == 1 and report.dead == 1
    assert bodies(ws, "devops") == ["own\n"]
    assert [d["cause"] for d in dead_reasons(ws)] == ["forged_sender"]


# addresses --------------------------------------------------------------------------------------
def test_a_look_alike_slash_in_an_address_is_refused(ws):
    for args in (["--from", "devops", "--to", "de\u2215veloper"], ["--from", "dev\u2215ops", "--to", "developer"]):
        r = run_agentops("mail", "send", *args, "-s", "hi", "--body", "x", cwd=ws.root)
        assert r.returncode == 4, r.stderr
        [line] = r.stderr.splitlines()
        assert line.startswith("Error: ") and "'\u2215' (U+2215), which no address has" in line
    assert bodies(ws, "developer") == [] and bodies(ws, "devops") == []


def test_an_unknown_sender_and_an_unknown_recipient_exit_alike(ws):
    sender = run_agentops("mail", "send", "--from", "nobody", "--to", "devops", "-s", "hi", "--body", "x", cwd=ws.root)
    recipient = run_agentops("mail", "send", "--from", "devops", "--to", "nobody", "-s", "hi", "--body", "x",
                             cwd=ws.root)
    assert sender.returncode == recipient.returncode == 5
    assert "unknown sender 'nobody'" in sender.stderr and "unknown address 'nobody'" in recipient.stderr
