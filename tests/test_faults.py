"""Faults of the file system under a workspace (issue 12 points 7 and 8): the Orbit store deleted
while the daemon runs, a full disk and no inodes left (a real, small tmpfs), an inbox whose `new/`
is a file. Each ends in one clear line, or in every message delivered exactly once when space is
back."""

from __future__ import annotations

import functools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from agentops.daemon import read_state
from agentops.workspace import Workspace, init_workspace
from tests.test_daemon import wait_for as daemon_wait_for

from conftest import run_agentops


# the daemon tests' helper, with the longer wait these tests need under load
wait_for = functools.partial(daemon_wait_for, timeout=60.0, interval=0.05)


def one_line(r, code):
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in r.stderr, r.stderr
    return lines[0]


def drop(ws, name, subject, body="hello\n"):
    path = ws.email_dir / name
    path.write_text(f"Subject: {subject}\n\n{body}")
    old = time.time() - 5
    os.utime(path, (old, old))
    return path


def inbox_subjects(ws, agent) -> list[str]:
    r = run_agentops("mail", "inbox", agent, "--json", "--limit", "1000", env={"AGENTOPS_WORKSPACE": str(ws.root)})
    assert r.returncode == 0, r.stderr
    return sorted(m["subject"] for m in json.loads(r.stdout))


def start_daemon(ws, *extra):
    """A real daemon; its log goes to a file (a pipe nobody reads while it runs would fill and stop it)."""
    env = {**os.environ, "AGENTOPS_WORKSPACE": str(ws.root)}
    log = tempfile.TemporaryFile("w+")  # not on the small file system under test
    proc = subprocess.Popen([sys.executable, "-m", "agentops", "daemon", "--log-format", "json", *extra], env=env,
                            stdout=subprocess.DEVNULL, stderr=log, text=True)
    proc.log = log
    wait_for(lambda: (s := read_state(ws)) and s.get("pid") == proc.pid and s["state"] == "running")
    return proc


def stop_daemon(proc) -> list[dict]:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    proc.log.seek(0)
    err = proc.log.read()
    proc.log.close()
    assert proc.returncode == 0, err
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


# the store deleted under a running daemon --------------------------------------------------------

@pytest.mark.parametrize("remove", [("",), ("", "-wal", "-shm")], ids=["db-only", "db-wal-shm"])
def test_orbit_db_deleted_while_the_daemon_runs_is_noticed_and_reopened(ws, remove):
    (ws.root / "agentops.toml").write_text("[daemon]\nrescan_seconds = 3600\n")
    proc = start_daemon(ws)
    try:
        drop(ws, "to-devops-from-developer-a.email", "before")
        wait_for(lambda: "before" in inbox_subjects(ws, "devops"))
        for suffix in remove:
            Path(f"{ws.db_path}{suffix}").unlink(missing_ok=True)
        drop(ws, "to-devops-from-developer-b.email", "after")
        wait_for(lambda: len(os.listdir(ws.inbox("devops") / "new")) == 2)
        assert inbox_subjects(ws, "devops") == ["after"]  # indexed in the store `mail inbox` reads
        drop(ws, "to-devops-from-developer-c.email", "later")
        wait_for(lambda: inbox_subjects(ws, "devops") == ["after", "later"])
    finally:
        events = stop_daemon(proc)
    assert [e for e in events if e["event"] == "orbit-db-replaced"]
    assert not [e for e in events if e["level"] == "error"]
    conn = sqlite3.connect(ws.db_path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


# an inbox whose new/ is a file ----------------------------------------------------------------------

def test_an_inbox_whose_new_is_a_file_is_one_line_and_a_dead_letter(ws):
    box = ws.inbox("devops")
    (box / "cur").mkdir(parents=True)
    (box / "tmp").mkdir()
    (box / "new").write_text("not a folder")
    r = run_agentops("mail", "send", "--from", "developer", "--to", "devops", "-s", "s", "--body", "b", cwd=ws.root)
    line = one_line(r, 1)
    assert "unsafe_mailbox" in line and ".agent/email/inbox/devops/new is a file, not a folder" in line
    line = one_line(run_agentops("mail", "inbox", "devops", cwd=ws.root), 3)
    assert "devops/new is a file, not a folder" in line
    assert run_agentops("status", cwd=ws.root).returncode in (0, 1)
    os.unlink(box / "new")
    dead = json.loads(run_agentops("mail", "dead", "--json", cwd=ws.root).stdout)
    assert [d["cause"] for d in dead] == ["unsafe_mailbox"]
    assert run_agentops("mail", "retry", dead[0]["id"], cwd=ws.root).returncode == 0
    assert inbox_subjects(ws, "devops") == ["s"]


# a full disk and no inodes left ---------------------------------------------------------------------

@pytest.fixture
def small_fs(tmp_path):
    """A 4 MiB tmpfs with 400 inodes; skipped when mounting is not permitted here."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,nr_inodes=400", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {r.stderr.strip() or r.returncode}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill_inodes(folder: Path) -> list[Path]:
    made = []
    while True:
        p = folder / f"filler{len(made)}"
        try:
            p.touch()
        except OSError:
            return made
        made.append(p)


def fill_space(folder: Path) -> Path:
    p = folder / "big"
    with open(p, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass
    return p


@pytest.mark.parametrize("fill", ["inodes", "space"])
def test_mail_send_and_orbit_log_on_a_full_disk_are_one_line_and_lose_nothing(small_fs, fill):
    root = small_fs / "ws"
    init_workspace(root)
    ws = Workspace(root)
    env = {"AGENTOPS_WORKSPACE": str(root)}
    assert run_agentops("mail", "send", "--from", "developer", "--to", "devops", "-s", "first", "--body", "b",
                        env=env).returncode == 0
    fillers = fill_inodes(small_fs) if fill == "inodes" else [fill_space(small_fs)]
    r = run_agentops("mail", "send", "--from", "developer", "--to", "devops", "-s", "full", "--body", "b", env=env)
    assert "disk is full" in one_line(r, 1) or "no space left" in one_line(r, 1)
    r = run_agentops("orbit", "log", "note", "--text", "while full", env=env)
    assert "full" in one_line(r, 1) or "no space left" in one_line(r, 1)
    assert [n for n in os.listdir(ws.email_dir) if n.endswith((".tmp", ".email"))] == []  # nothing half-written
    for p in fillers:
        p.unlink()
    assert run_agentops("mail", "send", "--from", "developer", "--to", "devops", "-s", "second", "--body", "b",
                        env=env).returncode == 0
    assert run_agentops("orbit", "log", "note", "--text", "after", env=env).returncode == 0
    assert inbox_subjects(ws, "devops") == ["first", "second"]  # the refused one was never half-delivered


def test_inodes_running_out_during_a_burst_then_every_message_once(small_fs):
    """A running daemon routes a burst while the file system has no inodes left; once space is back
    (no restart, no new drop file) every message is delivered exactly once."""
    root = small_fs / "ws"
    init_workspace(root)
    ws = Workspace(root)
    (root / "agentops.toml").write_text("[daemon]\nrescan_seconds = 0.5\n")
    assert run_agentops("orbit", "log", "note", "--text", "x", env={"AGENTOPS_WORKSPACE": str(root)}).returncode == 0
    total = 120
    proc = start_daemon(ws)
    new = ws.inbox("devops") / "new"
    try:
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            for i in range(total):
                drop(ws, f"to-devops-from-developer-m{i}.email", f"m{i}")
            fillers = fill_inodes(small_fs)
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        wait_for(lambda: os.listdir(ws.spool_dir), timeout=60)  # claimed, and delivering needs inodes
        time.sleep(1.0)  # two rescans while full: each retries and fails
        assert not new.is_dir() or len(os.listdir(new)) < total
        for p in fillers:
            p.unlink()
        wait_for(lambda: new.is_dir() and len(os.listdir(new)) >= total, timeout=90)
        time.sleep(1.5)  # three more rescans: nothing is delivered twice
    finally:
        events = stop_daemon(proc)
    bodies = sorted(p.read_text().split("Subject: ")[1].splitlines()[0] for p in (ws.inbox("devops") / "new").iterdir())
    assert bodies == sorted(f"m{i}" for i in range(total))
    assert os.listdir(ws.spool_dir) == [] and [n for n in os.listdir(ws.email_dir) if n.endswith(".email")] == []
    assert os.listdir(ws.dead_dir) == []
    assert sorted(inbox_subjects(ws, "devops")) == sorted(f"m{i}" for i in range(total))
    assert any(e["event"] == "task-error" for e in events)
