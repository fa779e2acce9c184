"""Safety of the mail and daemon paths against what agents (or accidents) leave in the workspace:
state folders linked outside it. Real files, real `agentops` subprocesses."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from agentops.errors import WorkspaceError
from agentops.mail.route import route_pending
from agentops.workspace import Workspace
from conftest import run_agentops

STATE = [".agent/email/inbox", ".agent/email/dead", ".agent/email/.queue", ".agent/email",
         ".agent/email/drafts", ".agent/email/queues", ".agent/orbit", ".agent/run", ".agent/logs",
         ".agent/orbit.db"]


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def link_outside(ws: Workspace, rel: str, outside: Path) -> Path:
    """Replace the state folder (or file) `rel` with a symlink to `outside`/<its name>."""
    path = ws.root / rel
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
    target = outside / path.name
    if rel.endswith(".db"):
        outside.mkdir(parents=True, exist_ok=True)  # a dangling link: the file would be created there
    else:
        target.mkdir(parents=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, path)
    return target


@pytest.mark.parametrize("rel", STATE)
def test_mail_send_refuses_a_state_folder_linked_outside(ws, tmp_path, rel):
    outside = tmp_path / "out"
    link_outside(ws, rel, outside)
    before = files_under(outside)
    r = run_agentops("mail", "send", "--from", "data-engineer", "--to", "devops", "-s", "s", "--body", "b",
                     cwd=ws.root)
    assert r.returncode == 3, r.stderr
    [line] = r.stderr.strip().splitlines()
    assert line.startswith("Error: ") and f"{rel} is a symlink leading outside the workspace" in line
    assert "replace it with a real" in line and "Traceback" not in r.stderr
    assert files_under(outside) == before  # nothing read from or written there


@pytest.mark.parametrize("rel", [".agent/email/inbox", ".agent/run", ".agent/orbit", ".agent/orbit.db"])
def test_daemon_and_ingest_refuse_a_state_folder_linked_outside(ws, tmp_path, rel):
    outside = tmp_path / "out"
    link_outside(ws, rel, outside)
    (ws.root / ".agent" / "orbit").mkdir(exist_ok=True)
    before = files_under(outside)
    for args in (("daemon", "--once"), ("status",)):
        r = run_agentops(*args, cwd=ws.root)
        assert r.returncode == 3, (args, r.stdout, r.stderr)
        assert "symlink leading outside the workspace" in r.stderr and "Traceback" not in r.stderr
    with pytest.raises(WorkspaceError, match="symlink leading outside"):
        route_pending(Workspace(ws.root))
    from agentops.orbit.ingest import ingest_pending

    with pytest.raises(WorkspaceError, match="symlink leading outside"):
        ingest_pending(Workspace(ws.root))
    assert files_under(outside) == before


def test_a_link_that_stays_inside_the_workspace_is_fine(ws, cli):
    elsewhere = ws.root / "state" / "dead"
    elsewhere.mkdir(parents=True)
    shutil.rmtree(ws.dead_dir)
    os.symlink(elsewhere, ws.dead_dir)
    r = run_agentops("mail", "send", "--from", "data-engineer", "--to", "devops", "-s", "s", "--body", "b",
                     cwd=ws.root)
    assert r.returncode == 0, r.stderr


def test_one_agents_inbox_linked_outside_is_a_dead_letter_not_a_delivery(ws, tmp_path):
    """Per-agent inboxes are checked when delivering, whether the link exists yet or not."""
    outside = tmp_path / "out"
    outside.mkdir()
    ws.inbox_root.mkdir(parents=True, exist_ok=True)
    os.symlink(outside, ws.inbox("devops"))
    drop = ws.email_dir / "to-devops-from-data-engineer-hi.email"
    drop.write_text("hello\n")
    report = route_pending(ws, [drop])
    assert report.delivered == 0 and [d["cause"] for d in report.dead_letters] == ["unsafe_mailbox"]
    assert files_under(outside) == []
    r = run_agentops("mail", "inbox", "devops", cwd=ws.root)
    assert r.returncode == 3 and "inbox/devops is a symlink leading outside" in r.stderr
