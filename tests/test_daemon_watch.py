"""The daemon's watcher through watchdog's public API (issue 13 point 7): a real inotify queue
overflow makes it scan again, and what the kernel dropped is delivered."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys

import pytest

from agentops.daemon import read_state
from tests.test_daemon import wait_for as daemon_wait_for

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux only")


# the daemon tests' helper, with the longer wait these tests need under load
wait_for = functools.partial(daemon_wait_for, timeout=60.0, interval=0.05)


def max_queued_events() -> int:
    with open("/proc/sys/fs/inotify/max_queued_events") as fh:
        return int(fh.read())


def all_threads_stopped(pid: int) -> bool:
    """Every thread of `pid` is in state T (stopped), from /proc/<pid>/task/*/stat."""
    states = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as fh:
            states.append(fh.read().rsplit(")", 1)[1].split()[0])
    return all(state == "T" for state in states)


def test_the_observer_uses_only_public_watchdog_api():
    from agentops.daemon.core import _native_observer

    observer = _native_observer()
    assert "_emitter_class" not in type(observer).__dict__  # nothing assigned behind watchdog's back
    source = open(sys.modules["agentops.daemon.core"].__file__).read()
    assert "._emitter_class" not in source and "inotify_c\")" not in source  # no private attribute, no log hook


def test_an_inotify_queue_overflow_is_rescanned_and_nothing_is_lost(ws):
    """The daemon is stopped (SIGSTOP) while more events happen in the drop zone than the kernel
    queues; the drop files written last lose their events. On SIGCONT watchdog reports the overflow
    (EventsLostEvent) and the daemon scans again, long before its periodic rescan (an hour)."""
    (ws.root / "agentops.toml").write_text("[daemon]\nrescan_seconds = 3600\n[mail]\nsettle_seconds = 0.01\n")
    env = {**os.environ, "AGENTOPS_WORKSPACE": str(ws.root)}
    proc = subprocess.Popen([sys.executable, "-m", "agentops", "daemon", "--log-format", "json"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (s := read_state(ws)) and s.get("pid") == proc.pid and s["state"] == "running")
        wait_for(lambda: (s := read_state(ws)) and all(v == "active" for k, v in s["tasks"].items() if k == "mail"))
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            # kill() returns before the stop: a reader thread still running could drain part of the queue
            wait_for(lambda: all_threads_stopped(proc.pid))
            # each write is one IN_MODIFY; alternating two files keeps the kernel from merging them
            fds = [os.open(ws.email_dir / f".noise-{i}.tmp", os.O_WRONLY | os.O_CREAT, 0o644) for i in (0, 1)]
            for n in range(2 * max_queued_events()):
                os.write(fds[n % 2], b"x")
            for fd in fds:
                os.close(fd)
            for i in range(5):
                path = ws.email_dir / f"to-devops-from-developer-lost{i}.email"
                path.write_text(f"Subject: lost {i}\n\nwritten after the queue was full\n")
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        new = ws.inbox("devops") / "new"
        wait_for(lambda: new.is_dir() and len(os.listdir(new)) == 5, timeout=90)
        # the heartbeat is written at most every MIN_WRITE_INTERVAL: the count shows up a little after
        wait_for(lambda: read_state(ws)["rescans"] >= 1)
    finally:
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 0, err
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert {"event": "rescan", "reason": "inotify-overflow"}.items() <= \
        next(e for e in events if e["event"] == "rescan").items()
    assert not [e for e in events if e["level"] == "error"], err
