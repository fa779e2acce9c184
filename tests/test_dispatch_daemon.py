"""Dispatch inside the real daemon: `python -m agentops daemon` routes a dropped mail, the fake agent
runs with the message file; role-queue mail wakes each member with on_mail."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from agentops.daemon import read_state
from tests.test_dispatch import FAKE_AGENT, argv_for, configure, events, runs, wait_for


@pytest.fixture
def daemon_proc(ws):
    procs = []

    def start(*args):
        proc = subprocess.Popen([sys.executable, "-m", "agentops", "daemon", *args],
                                env={**os.environ, "AGENTOPS_WORKSPACE": str(ws.root)},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def test_daemon_wakes_agent_on_mail(ws, daemon_proc, tmp_path):
    fake = tmp_path / "fake_agent.py"
    fake.write_text(FAKE_AGENT)
    dana, ann, bea = (tmp_path / f"{n}.jsonl" for n in ("dana", "ann", "bea"))
    configure(ws.root, {"dana": argv_for(fake, "ok", dana, "{agent}", "{message_file}", "{prompt_file}"),
                        "zed": None}, coalesce_seconds=0.1)
    with open(ws.config_path, "a") as fh:  # a role with two members: a shared queue
        for name, out in (("ann", ann), ("bea", bea)):
            fh.write(f'\n[[agents]]\nname = "{name}"\nrole = "Database Engineer"\n'
                     f"on_mail = {json.dumps(argv_for(fake, 'ok', out, '{agent}'))}\n")
    proc = daemon_proc()
    assert wait_for(lambda: (read_state(ws) or {}).get("tasks", {}).get("dispatch") == "active", 15), \
        read_state(ws)
    (ws.email_dir / "to-dana-from-user-orders.email").write_text("Subject: orders failed\n\nplease rerun\n")
    (ws.email_dir / "to-zed-from-user-hi.email").write_text("no on_mail: nothing runs\n")
    assert wait_for(lambda: runs(dana), 20), proc.poll()
    (run,) = runs(dana)
    agent, message_file, prompt_file = run["argv"]
    assert agent == "dana"
    assert Path(message_file).parent.parent == ws.inbox("dana")
    assert "please rerun" in Path(message_file).read_text()
    assert "orders failed" in Path(prompt_file).read_text()

    (ws.email_dir / "to-database-engineer-from-user-index.email").write_text("add an index\n")
    assert wait_for(lambda: runs(ann) and runs(bea), 20)
    assert runs(ann)[0]["argv"] == ["ann"] and runs(bea)[0]["argv"] == ["bea"]

    assert wait_for(lambda: sum(e["action"] == "succeeded" for e in events(ws)) == 3, 10)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "dispatch-succeeded" in err
    assert {e["agent"] for e in events(ws)} == {"dana", "ann", "bea"}
