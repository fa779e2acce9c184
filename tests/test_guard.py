"""The reservations guard: `agentops guard install` in a real git repository, and the commits it lets
through or refuses."""

from __future__ import annotations

import os
import subprocess

import pytest

from agentops import reservations as rs
from tests.conftest import run_agentops


def git(root, *args, env=None):
    full = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@x", **(env or {})}
    if "AGENTOPS_AGENT" not in (env or {}):
        full.pop("AGENTOPS_AGENT", None)
    return subprocess.run(["git", *args], cwd=root, env=full, capture_output=True, text=True, timeout=60)


@pytest.fixture
def repo(ws):
    assert git(ws.root, "init", "-q").returncode == 0
    (ws.root / "sql" / "orders").mkdir(parents=True)
    (ws.root / "sql" / "orders" / "daily.sql").write_text("select 1\n")
    (ws.root / "README.txt").write_text("hi\n")
    assert git(ws.root, "add", "-A").returncode == 0
    assert git(ws.root, "commit", "-qm", "base", "--no-verify").returncode == 0
    return ws


def test_the_hook_refuses_a_commit_on_others_exclusive_paths_and_names_the_holder(repo):
    ws = repo
    r = run_agentops("guard", "install")
    assert r.returncode == 0, r.stderr
    hook = ws.root / ".git" / "hooks" / "pre-commit"
    assert os.access(hook, os.X_OK)
    rs.reserve(ws, "database-engineer", ["sql/orders/**"], reason="rewriting the orders SQL")
    (ws.root / "sql" / "orders" / "daily.sql").write_text("select 2\n")
    git(ws.root, "add", "sql/orders/daily.sql")
    r = git(ws.root, "commit", "-m", "tweak", env={"AGENTOPS_AGENT": "data-engineer"})
    assert r.returncode != 0
    assert "sql/orders/daily.sql" in r.stderr and "database-engineer" in r.stderr
    assert "rewriting the orders SQL" in r.stderr
    assert git(ws.root, "rev-list", "--count", "HEAD").stdout.strip() == "1"
    # the holder commits (agent from git config this time)
    git(ws.root, "config", "agentops.agent", "database-engineer")
    r = git(ws.root, "commit", "-m", "by the holder")
    assert r.returncode == 0, r.stderr
    # an unrelated path goes through for anyone; a deletion of a held path does not
    git(ws.root, "config", "agentops.agent", "data-engineer")
    (ws.root / "README.txt").write_text("changed\n")
    git(ws.root, "add", "README.txt")
    assert git(ws.root, "commit", "-m", "readme").returncode == 0
    git(ws.root, "rm", "-q", "sql/orders/daily.sql")
    r = git(ws.root, "commit", "-m", "delete")
    assert r.returncode != 0 and "database-engineer" in r.stderr


def test_guard_check_on_named_paths_and_install_keeps_a_foreign_hook(repo):
    ws = repo
    rs.reserve(ws, "devops", ["infra/*.tf"], reason="terraform apply")
    r = run_agentops("guard", "check", "infra/main.tf", "README.txt", "--as", "developer", cwd=ws.root)
    assert r.returncode == 6 and "infra/main.tf" in r.stderr and "devops" in r.stderr
    r = run_agentops("guard", "check", "README.txt", "--as", "developer", cwd=ws.root)
    assert r.returncode == 0
    r = run_agentops("guard", "check", "main.tf", "--as", "developer", cwd=ws.root / "sql")
    assert r.returncode == 0  # sql/main.tf: not reserved
    (ws.root / "infra").mkdir()
    r = run_agentops("guard", "check", "main.tf", "--as", "developer", cwd=ws.root / "infra")
    assert r.returncode == 6
    hook = ws.root / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\nexit 0\n")
    r = run_agentops("guard", "install")
    assert r.returncode == 4 and "--force" in r.stderr
    assert run_agentops("guard", "install", "--force").returncode == 0
    assert "agentops guard" in hook.read_text()
