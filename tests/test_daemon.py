"""The daemon core with a recording task (no mail library needed): settling, batching, bad input,
the lock, signals, logs and the heartbeat file. Mail routing end to end is in test_daemon_mail.py."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agentops.daemon import Daemon, Task, read_state
from agentops.leases import open_for_writing
from agentops.errors import ConflictError


def wait_for(predicate, timeout=10.0, interval=0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")


def wait_idle_after_rescan(ws, d: Daemon) -> None:
    """Make the daemon rescan the drop zone, then wait until its heartbeat shows that rescan done
    and nothing pending: whatever it would still handle has been handled."""
    before = d.stats.rescans
    d.request_rescan("test")
    wait_for(lambda: (s := read_state(ws)) and s["rescans"] > before and s["queue"] == 0)


class Recorder(Task):
    """Takes `*.txt` files out of `.agent/email/` and records what they held."""

    name = "recorder"
    fail_on = "poison"
    delay = 0.0          # seconds per call, like a real routing transaction

    def __init__(self, daemon):
        super().__init__(daemon)
        self.seen: list[tuple[str, bytes]] = []
        self.calls: list[int] = []
        self.lock = threading.Lock()

    def dirs(self):
        return [self.ws.email_dir]

    def wants(self, path):
        return path.parent == self.ws.email_dir and path.suffix == ".txt"

    def scan(self):
        return self.listdir(self.ws.email_dir, self.wants)

    def handle(self, paths):
        with self.lock:
            self.calls.append(len(paths))
        time.sleep(self.delay)
        for p in paths:
            if self.fail_on in p.name:
                raise RuntimeError(f"cannot handle {p.name}")
            if not p.is_file() or p.is_symlink():
                p.unlink() if p.is_symlink() else None
                continue
            data = p.read_bytes()
            p.unlink()
            with self.lock:
                self.seen.append((p.name, data))


@pytest.fixture
def daemon_with(ws):
    """Start an in-process daemon with one Recorder; yields (daemon, recorder, log stream)."""
    started = []

    def start(poll=False, log_format="json"):
        box = {}

        def factory(d):
            box["task"] = Recorder(d)
            return box["task"]

        stream = io.StringIO()
        d = Daemon(ws, poll=poll, log_format=log_format, log_stream=stream, tasks=[factory])
        d.start()
        started.append(d)
        return d, box["task"], stream

    yield start
    for d in started:
        d.stop()
        d.join()


def drop(ws, name: str, data: bytes) -> Path:
    tmp = ws.email_dir / f".{name}.tmp"
    tmp.write_bytes(data)
    os.replace(tmp, ws.email_dir / name)
    return ws.email_dir / name


@pytest.mark.parametrize("poll", [False, True], ids=["inotify", "poll"])
def test_files_before_and_during_are_handled(ws, daemon_with, poll):
    drop(ws, "before.txt", b"early")
    d, rec, _ = daemon_with(poll=poll)
    wait_for(lambda: ("before.txt", b"early") in rec.seen)
    (ws.email_dir / "direct.txt").write_bytes(b"written in place")   # open/write/close, no rename
    drop(ws, "renamed.txt", b"renamed in")
    wait_for(lambda: len(rec.seen) == 3)
    assert sorted(rec.seen) == [("before.txt", b"early"), ("direct.txt", b"written in place"),
                                ("renamed.txt", b"renamed in")]
    state = read_state(ws)
    assert state["pid"] == os.getpid() and state["mode"] == ("poll" if poll else "inotify")
    assert state["tasks"] == {"recorder": "active"}


@pytest.mark.parametrize("poll", [False, True], ids=["inotify", "poll"])
def test_slow_writer_is_handled_once_whole(ws, daemon_with, poll):
    d, rec, _ = daemon_with(poll=poll)
    chunks = [f"chunk {i}\n".encode() * 50 for i in range(10)]
    with open(ws.email_dir / "slow.txt", "wb") as f:
        for chunk in chunks:
            f.write(chunk)
            f.flush()
            time.sleep(0.2)
    wait_for(lambda: rec.seen, timeout=10)
    wait_idle_after_rescan(ws, d)   # a second, partial handling would have happened by now
    assert rec.seen == [("slow.txt", b"".join(chunks))]


def test_a_burst_is_handled_in_batches(ws, daemon_with):
    """While a call is in hand the next files settle together: batches grow with the load."""
    d, rec, _ = daemon_with()
    rec.delay = 0.02
    for i in range(500):
        drop(ws, f"m{i:04}.txt", str(i).encode())
    wait_for(lambda: len(rec.seen) == 500)
    assert len(rec.calls) < 100, rec.calls
    assert sorted(n for n, _ in rec.seen) == [f"m{i:04}.txt" for i in range(500)]


def test_a_failing_task_never_stops_the_daemon(ws, daemon_with):
    d, rec, stream = daemon_with(log_format="json")
    drop(ws, "poison.txt", b"x")
    wait_for(lambda: "task-error" in stream.getvalue())
    drop(ws, "good.txt", b"fine")
    wait_for(lambda: ("good.txt", b"fine") in rec.seen)
    errors = [json.loads(line) for line in stream.getvalue().splitlines() if '"task-error"' in line]
    assert errors[0]["level"] == "error" and errors[0]["task"] == "recorder"
    assert "RuntimeError: cannot handle poison.txt" in errors[0]["traceback"]
    wait_for(lambda: read_state(ws)["errors"] >= 1, timeout=5)


def test_one_bad_file_in_a_batch_does_not_hold_back_the_others(ws, daemon_with):
    for i in range(20):
        drop(ws, f"ok{i:02}.txt", b"ok")
    drop(ws, "poison.txt", b"bad")
    d, rec, stream = daemon_with()
    wait_for(lambda: len(rec.seen) == 20)


def test_symlinks_and_folders_reach_the_task_without_being_read(ws, daemon_with, tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_text("outside the workspace")
    d, rec, _ = daemon_with()
    os.symlink(outside, ws.email_dir / "link.txt")
    (ws.email_dir / "folder.txt").mkdir()
    drop(ws, "after.txt", b"good")
    wait_for(lambda: ("after.txt", b"good") in rec.seen)
    assert outside.read_text() == "outside the workspace"
    assert all(n == "after.txt" for n, _ in rec.seen)


def test_lock_allows_one_daemon(ws, daemon_with):
    d, rec, _ = daemon_with()
    with pytest.raises(ConflictError, match=rf"another agentops daemon is running on this workspace \(pid {os.getpid()}\)"):
        Daemon(ws, log_stream=io.StringIO(), tasks=[]).start()


def test_mail_listeners_get_inboxes_and_their_errors_are_contained(ws):
    d = Daemon(ws, log_stream=io.StringIO(), tasks=[])
    got = []
    d.on_mail(lambda inboxes: 1 / 0)
    d.on_mail(got.append)
    d.mail_arrived({"devops"})
    assert got == [{"devops"}] and d.stats.errors == 1


def test_open_for_writing(tmp_path):
    p = tmp_path / "f"
    with open(p, "w") as f:
        f.write("x")
        assert open_for_writing(p) in (True, None)
    assert open_for_writing(p) in (False, None)


def test_once_handles_everything_and_exits(ws):
    for i in range(30):
        drop(ws, f"o{i}.txt", b"x")
    box = {}

    def factory(d):
        box["t"] = Recorder(d)
        return box["t"]

    stats = Daemon(ws, log_stream=io.StringIO(), tasks=[factory]).run_once(install_signals=False)
    assert len(box["t"].seen) == 30 and stats.batches < 30
    assert read_state(ws)["state"] == "stopped" and read_state(ws)["mode"] == "once"


# the real command ------------------------------------------------------------------------------
def start_daemon(ws, *args):
    proc = subprocess.Popen([sys.executable, "-m", "agentops", "daemon", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "AGENTOPS_WORKSPACE": str(ws.root)})
    wait_for(lambda: (read_state(ws) or {}).get("pid") == proc.pid or proc.poll() is not None, timeout=15)
    assert proc.poll() is None, proc.communicate()
    return proc


def test_second_daemon_exits_1_naming_the_first_and_sigterm_exits_0(ws):
    first = start_daemon(ws, "--log-format", "json")
    try:
        second = subprocess.run([sys.executable, "-m", "agentops", "daemon"], capture_output=True, text=True,
                                timeout=30, env={**os.environ, "AGENTOPS_WORKSPACE": str(ws.root)})
        assert second.returncode == 1
        assert f"Error: another agentops daemon is running on this workspace (pid {first.pid})" in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        out, err = first.communicate(timeout=15)
    assert first.returncode == 0, err
    assert out == ""
    events = [json.loads(line)["event"] for line in err.splitlines()]
    assert events[0] == "started" and events[-1] == "stopped"
    assert read_state(ws)["state"] == "stopped"


def test_sigint_exits_130(ws):
    proc = start_daemon(ws)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 130, err
    assert "stopped signal=SIGINT" in err


def test_daemon_cli_rejects_a_bad_log_format(cli):
    result = cli("daemon", "--log-format", "xml")
    assert result.exit_code == 2


def test_cli_import_does_not_load_watchdog():
    code = "import sys, agentops.cli; print(any(m.startswith(('watchdog', 'agentops.daemon')) for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "False", out.stderr


def test_periodic_rescan_finds_what_the_watcher_missed(ws):
    """A task whose folder is not watched at all still gets its files, from the periodic rescan."""
    (ws.root / "agentops.toml").write_text("[daemon]\nrescan_seconds = 0.3\n")
    from agentops.workspace import Workspace

    ws = Workspace(ws.root)
    box = {}

    class Unwatched(Recorder):
        def dirs(self):
            return []

    def factory(d):
        box["t"] = Unwatched(d)
        return box["t"]

    d = Daemon(ws, log_stream=io.StringIO(), tasks=[factory])
    d.start()
    try:
        time.sleep(0.05)
        drop(ws, "missed.txt", b"no event for me")
        wait_for(lambda: box["t"].seen, timeout=5)
        assert box["t"].seen == [("missed.txt", b"no event for me")]
        wait_for(lambda: read_state(ws)["rescans"] >= 1, timeout=5)
    finally:
        d.stop()
        d.join()
