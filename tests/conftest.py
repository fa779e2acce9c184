"""Shared fixtures: every test gets its own workspace through AGENTOPS_WORKSPACE, and a test that
leaves threads running fails (as in watchdog's conftest)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentops.workspace import Workspace, init_workspace

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _workspace_env(tmp_path, monkeypatch):
    root = tmp_path / "ws"
    root.mkdir()
    monkeypatch.setenv("AGENTOPS_WORKSPACE", str(root))
    yield root


@pytest.fixture(autouse=True)
def _no_thread_leaks():
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while True:
        extra = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not extra or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not extra, f"test leaked threads: {[t.name for t in extra]}"


@pytest.fixture
def ws(_workspace_env) -> Workspace:
    """A complete, freshly initialised workspace."""
    init_workspace(_workspace_env)
    return Workspace(_workspace_env)


@pytest.fixture
def cli():
    """Invoke the CLI in-process: cli("roles", "check") -> click Result."""
    from agentops.cli import app

    runner = CliRunner()

    def invoke(*args, input=None):
        return runner.invoke(app, [str(a) for a in args], input=input, catch_exceptions=False)

    return invoke


def age(*paths, seconds=10):
    """Set the paths' mtimes `seconds` in the past: caches under .agent/run/ do not trust a source
    changed within the last second (see agentops.cache), as git does not."""
    t = time.time() - seconds
    for p in paths:
        os.utime(p, (t, t))


def run_agentops(*args, cwd=None, env=None, timeout=60, input=None) -> subprocess.CompletedProcess:
    """Run the real `agentops` command in a subprocess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "agentops", *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout, input=input)
