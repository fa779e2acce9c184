"""The real daemon (`python -m agentops daemon` subprocesses, real watchers) routing real mail:
start-up scan, live drops, --poll, --once, a slow writer, bad input, concurrent senders, and
repeated SIGKILL during a burst (exactly once in the inboxes and in Orbit)."""

from __future__ import annotations

import json
import mailbox
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agentops.daemon import read_state
from agentops.mail.route import route_pending
from tests.conftest import run_agentops
from tests.test_daemon import wait_for

SENDER = "data-engineer"


def drop(ws, name: str, body: str, subject: str | None = None) -> Path:
    """Write a drop file the way agents are told to: a temp name, then a rename into place."""
    text = (f"Subject: {subject}\n\n" if subject else "") + body
    tmp = ws.email_dir / f".{name}.tmp"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, ws.email_dir / name)
    return ws.email_dir / name


def new_mail(ws, agent: str) -> list[Path]:
    d = ws.inbox(agent) / "new"
    return sorted(d.iterdir()) if d.is_dir() else []


def subjects(ws, agent: str) -> list[str]:
    if not all((ws.inbox(agent) / sub).is_dir() for sub in ("tmp", "new", "cur")):
        return []    # not there yet, or being made (the router makes tmp/ new/ cur/ one by one)
    box = mailbox.Maildir(ws.inbox(agent), create=False)
    return sorted(str(m["Subject"]) for m in box)


def drop_zone(ws) -> list[str]:
    return sorted(p.name for p in ws.email_dir.iterdir() if p.name.endswith(".email"))


class DaemonProc:
    def __init__(self, ws, *args):
        self.ws = ws
        self.proc = subprocess.Popen([sys.executable, "-m", "agentops", "daemon", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, "AGENTOPS_WORKSPACE": str(ws.root)})

    def wait_ready(self, timeout=15):
        wait_for(lambda: (read_state(self.ws) or {}).get("pid") == self.proc.pid or self.proc.poll() is not None,
                 timeout=timeout)
        assert self.proc.poll() is None, self.proc.communicate()
        return self

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=20)
        return self.proc.returncode, err


@pytest.fixture
def daemon(ws):
    procs = []

    def start(*args):
        d = DaemonProc(ws, *args).wait_ready()
        procs.append(d)
        return d

    yield start
    for d in procs:
        if d.alive():
            d.proc.kill()
        d.proc.communicate(timeout=20)


def test_once_routes_a_prefilled_drop_zone_and_exits(ws):
    for i in range(50):
        drop(ws, f"to-devops-from-{SENDER}-once-{i}.email", f"body {i}\n")
    result = run_agentops("daemon", "--once", "--log-format", "json")
    assert result.returncode == 0, result.stderr
    assert len(new_mail(ws, "devops")) == 50
    assert drop_zone(ws) == []
    assert read_state(ws)["state"] == "stopped" and read_state(ws)["routed"] == 50


@pytest.mark.parametrize("mode", ["inotify", "poll"])
def test_files_from_downtime_then_a_live_drop(ws, daemon, mode):
    for i in range(5):
        drop(ws, f"to-devops-from-{SENDER}-down-{i}.email", "written while the daemon was down\n")
    d = daemon(*(["--poll"] if mode == "poll" else []))
    wait_for(lambda: len(new_mail(ws, "devops")) == 5)
    drop(ws, f"to-database-engineer-from-{SENDER}-live.email", "live\n")
    (ws.email_dir / f"to-developer-from-{SENDER}-in-place.email").write_text("written in place\n")
    wait_for(lambda: len(new_mail(ws, "database-engineer")) == 1 and len(new_mail(ws, "developer")) == 1)
    assert subjects(ws, "database-engineer") == ["live"]
    code, err = d.stop()
    assert code == 0, err
    assert "Traceback" not in err


def test_a_slow_writer_is_delivered_once_whole(ws, daemon):
    daemon()
    chunks = [f"line {i}: " + "x" * 200 + "\n" for i in range(10)]
    with open(ws.email_dir / f"to-devops-from-{SENDER}-slow.email", "w") as f:
        f.write("Subject: slow\n\n")
        for chunk in chunks:
            f.write(chunk)
            f.flush()
            time.sleep(0.2)
    wait_for(lambda: new_mail(ws, "devops"))
    # the daemon says it is done (one routed, nothing pending); a pass of our own over the drop
    # zone and the spool then finds nothing left that would make a second (partial) copy
    wait_for(lambda: (s := read_state(ws)) and s["routed"] == 1 and s["queue"] == 0)
    report = route_pending(ws, settle=0)
    assert (report.delivered, report.recovered, report.dead) == (0, 0, 0)
    [msg] = list(mailbox.Maildir(ws.inbox("devops"), create=False))
    assert msg["Subject"] == "slow"
    assert msg.get_payload() == "".join(chunks)
    assert not any(ws.dead_dir.iterdir())


def test_bad_files_never_stop_the_daemon(ws, daemon, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("outside the workspace")
    d = daemon("--log-format", "json")
    drop(ws, f"to-nobody-at-all-from-{SENDER}.email", "unknown recipient\n")
    os.symlink(secret, ws.email_dir / f"to-devops-from-{SENDER}-link.email")
    (ws.email_dir / f"to-devops-from-{SENDER}-folder.email").mkdir()
    (ws.email_dir / f"to-devops-from-{SENDER}-binary.email").write_bytes(b"\xff\xfe\x00\x01" * 64)
    drop(ws, f"to-devops-from-{SENDER}-good.email", "good\n")
    wait_for(lambda: "good" in subjects(ws, "devops"))
    wait_for(lambda: len([p for p in ws.dead_dir.iterdir() if p.suffix == ".reason"]) == 4)
    assert drop_zone(ws) == []
    assert d.alive()
    assert secret.read_text() == "outside the workspace"
    drop(ws, f"to-devops-from-{SENDER}-after.email", "still routing\n")
    wait_for(lambda: "after" in subjects(ws, "devops"))
    code, err = d.stop()
    assert code == 0 and '"dead-letter"' in err and "Traceback" not in err


SENDER_SCRIPT = """
import os, sys
from pathlib import Path
zone, n, count = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
for i in range(count):
    name = f"to-devops+database-engineer-from-data-engineer-p{n}-m{i}.email"
    tmp = zone / f".{name}.tmp"
    tmp.write_text(f"Subject: p{n}-m{i}\\n\\nfrom process {n}\\n")
    os.replace(tmp, zone / name)
"""


def test_eight_concurrent_senders(ws, daemon):
    d = daemon()
    per = 100
    procs = [subprocess.Popen([sys.executable, "-c", SENDER_SCRIPT, str(ws.email_dir), str(n), str(per)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for n in range(8)]
    outputs = [p.communicate(timeout=60)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    want = sorted(f"p{n}-m{i}" for n in range(8) for i in range(per))
    wait_for(lambda: len(new_mail(ws, "devops")) == 8 * per and len(new_mail(ws, "database-engineer")) == 8 * per,
             timeout=30)
    assert subjects(ws, "devops") == want and subjects(ws, "database-engineer") == want
    code, err = d.stop()
    assert code == 0
    assert not any("database is locked" in text for text in [err, *outputs])
    with sqlite3.connect(ws.db_path) as conn:
        assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 8 * per


def delivered_count(ws, agents) -> int:
    return sum(len(new_mail(ws, a)) for a in agents)


@pytest.mark.stress
def test_sigkill_during_a_burst_delivers_every_message_exactly_once(ws):
    """1,200 messages written at ~200/s while the daemon is SIGKILLed every 0.2-0.9 s and restarted."""
    total = 1200
    recipients = ["devops", "database-engineer", "developer"]
    done = threading.Event()

    def writer():
        for i in range(total):
            drop(ws, f"to-{recipients[i % 3]}-from-{SENDER}-k{i}.email", f"message {i}\n", subject=f"k{i}")
            if i % 10 == 9:
                time.sleep(0.05)
        done.set()

    rng = random.Random(3)
    env = {**os.environ, "AGENTOPS_WORKSPACE": str(ws.root)}
    cmd = [sys.executable, "-m", "agentops", "daemon"]
    thread = threading.Thread(target=writer, name="burst-writer")
    thread.start()
    kills, progress = 0, []
    deadline = time.monotonic() + 90
    try:
        while (not done.is_set() or kills < 10) and time.monotonic() < deadline:
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            # kill while routing: count from this daemon's first delivery, not from its start (start-up varies with load)
            before, up = delivered_count(ws, recipients), time.monotonic() + 15
            while proc.poll() is None and delivered_count(ws, recipients) == before and time.monotonic() < up \
                    and not (done.is_set() and before == total):
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.3))
            proc.kill()
            err = proc.communicate(timeout=20)[1]
            assert "database is locked" not in err
            kills += 1
            progress.append(delivered_count(ws, recipients))
    finally:
        thread.join()
    mid_burst = [n for n in progress if 0 < n < total]
    assert kills >= 10 and len(set(mid_burst)) >= 3, progress   # several daemons died with work in hand
    result = run_agentops("daemon", "--once")     # the last start: recover and finish
    assert result.returncode == 0, result.stderr
    assert drop_zone(ws) == []
    assert not any(ws.spool_dir.iterdir())
    assert not any(ws.dead_dir.iterdir())
    got = []
    for agent in recipients:
        got += subjects(ws, agent)
    assert len(got) == total, f"{len(got)} delivered after {kills} kills"
    assert sorted(got) == sorted(f"k{i}" for i in range(total))
    with sqlite3.connect(ws.db_path) as conn:
        assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] == total
        assert conn.execute("SELECT count(DISTINCT message_id) FROM deliveries").fetchone()[0] == total
        delivered = conn.execute("SELECT count(*) FROM events WHERE kind = 'mail' "
                                 "AND json_extract(data, '$.action') = 'delivered'").fetchone()[0]
        assert delivered == total


def test_eight_concurrent_mail_send_commands(ws, daemon):
    """The CLI path: `agentops mail send` from 8 processes at once, 2 messages each, daemon running."""
    d = daemon()
    env = {**os.environ, "AGENTOPS_WORKSPACE": str(ws.root)}
    script = ("import subprocess, sys\n"
              "for i in range(2):\n"
              "    r = subprocess.run([sys.executable, '-m', 'agentops', 'mail', 'send', '--from', 'devops',\n"
              "                        '--to', 'developer', '--subject', f'cli-{sys.argv[1]}-{i}', '--body', 'hi'],\n"
              "                       capture_output=True, text=True)\n"
              "    sys.stdout.write(r.stdout + r.stderr)\n"
              "    if r.returncode: sys.exit(r.returncode)\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(n)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for n in range(8)]
    outputs = [p.communicate(timeout=90)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    want = sorted(f"cli-{n}-{i}" for n in range(8) for i in range(2))
    wait_for(lambda: subjects(ws, "developer") == want, timeout=20)
    code, err = d.stop()
    assert code == 0
    assert not any("database is locked" in text for text in [err, *outputs])


def test_orbit_drop_files_are_ingested(ws, daemon):
    d = daemon()
    tmp = ws.orbit_dir / ".notes.jsonl.tmp"
    tmp.write_text('{"kind":"note","text":"from the drop zone","id":"n1"}\n{"kind":"nonsense"}\n')
    os.replace(tmp, ws.orbit_dir / "notes.jsonl")

    def ingested():
        with sqlite3.connect(ws.db_path) as conn:
            return conn.execute("SELECT count(*) FROM events WHERE kind = 'note' AND id = 'n1'").fetchone()[0]

    wait_for(lambda: ingested() == 1 and not (ws.orbit_dir / "notes.jsonl").exists())
    assert d.alive()
    code, err = d.stop()
    assert code == 0 and "ingested" in err


def test_a_roster_change_takes_effect_without_a_restart(ws, daemon):
    d = daemon()
    drop(ws, f"to-dana-from-{SENDER}-early.email", "before dana joined\n")
    wait_for(lambda: any(p.name.endswith(".reason") for p in ws.dead_dir.iterdir()))
    wait_for(lambda: (read_state(ws) or {}).get("dead") == 1)
    batches = read_state(ws)["batches"]
    ws.config_path.write_text("[[agents]]\nname = 'dana'\nrole = 'Data Engineer'\n"
                              "[[agents]]\nname = 'ops'\nrole = 'DevOps'\n")
    wait_for(lambda: read_state(ws)["batches"] > batches)  # the spec-check task saw agentops.toml
    drop(ws, "to-dana-from-ops-welcome.email", "after dana joined\n")
    wait_for(lambda: len(new_mail(ws, "dana")) == 1)
    dead = run_agentops("mail", "dead", "--json")
    dead_id = json.loads(dead.stdout)[0]["id"]
    assert run_agentops("mail", "retry", dead_id).returncode == 0
    wait_for(lambda: len(new_mail(ws, "dana")) == 2)
    code, err = d.stop()
    assert code == 0, err
