"""The mail and daemon paths against what agents (or accidents) leave or pass: state folders linked
outside the workspace, messages over the size limit, text that is not UTF-8, dead letters a sender
must hear about, edited `.reason` files. Real files, real `agentops` subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agentops.errors import WorkspaceError
from agentops.mail.dead import list_dead
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


# --- sending never says "delivered" for what was not; bad input is one Error: line -------------
def agentops_bytes(*args, cwd, input: bytes | None = None) -> subprocess.CompletedProcess:
    """The real command with raw bytes in argv / stdin (what a shell passes for $'\\xff')."""
    return subprocess.run([sys.executable, "-m", "agentops", *args], cwd=cwd, input=input, capture_output=True,
                          timeout=60)


def one_error_line(r, code: int) -> str:
    err = r.stderr.decode() if isinstance(r.stderr, bytes) else r.stderr
    assert r.returncode == code, err
    assert "Traceback" not in err
    [line] = err.strip().splitlines()
    assert line.startswith("Error: ")
    return line


def nothing_queued(ws: Workspace) -> None:
    assert [p.name for p in ws.email_dir.iterdir() if p.is_file()] == []
    assert files_under(ws.dead_dir) == [] and files_under(ws.spool_dir) == []


def test_a_message_over_the_size_limit_is_refused_before_it_is_written(ws, tmp_path):
    ws.config_path.write_text("[mail]\nmax_bytes = 4096\n")
    big = tmp_path / "big.txt"
    big.write_text("x" * 5000)
    for args, stdin in ((["--body-file", str(big)], None), (["--body", "y" * 5000], None),
                        (["--body-file", "-"], b"z" * 5000)):
        r = agentops_bytes("mail", "send", "--from", "data-engineer", "--to", "devops", "-s", "big", *args,
                           cwd=ws.root, input=stdin)
        line = one_error_line(r, 4)
        assert "4096" in line and "limit" in line
    nothing_queued(ws)
    from agentops.errors import ValidationError
    from agentops.mail.outbox import compose

    with pytest.raises(ValidationError, match=r"is 5\d{3} bytes, over the limit of 4096 bytes"):
        compose(Workspace(ws.root), sender="data-engineer", to="devops", subject="s", body="b" * 5000)


def test_body_file_dev_zero_reads_only_up_to_the_limit(ws):
    r = agentops_bytes("mail", "send", "--from", "data-engineer", "--to", "devops", "-s", "zero",
                       "--body-file", "/dev/zero", cwd=ws.root)
    assert "over the limit of 10485760 bytes" in one_error_line(r, 4)
    nothing_queued(ws)


def test_send_reports_a_dead_letter_instead_of_delivered(ws, tmp_path):
    outside = tmp_path / "out"
    outside.mkdir()
    ws.inbox_root.mkdir(parents=True, exist_ok=True)
    os.symlink(outside, ws.inbox("devops"))
    r = agentops_bytes("mail", "send", "--from", "data-engineer", "--to", "devops", "-s", "s", "--body", "b",
                       cwd=ws.root)
    line = one_error_line(r, 1)
    [dead] = list_dead(Workspace(ws.root))
    assert "was not delivered" in line and f"dead letter {dead['id']}" in line and "unsafe_mailbox" in line
    assert f"agentops mail retry {dead['id']}" in line and b"delivered\n" not in r.stdout
    assert files_under(outside) == []


@pytest.mark.parametrize("args, stdin, what", [
    ([], b"\xff\xfe", "stdin"),
    ([b"--body", b"\xff"], None, "--body: the value"),  # refused before parsing (issue 12.7)
    ([b"--body", b"ok", b"--subject", b"caf\xe9"], None, "--subject: the value"),
    ([b"--body-file", b"-"], b"ok \xc3", "stdin"),
])
def test_text_that_is_not_utf8_is_one_error_line(ws, args, stdin, what):
    base = [b"mail", b"send", b"--from", b"user", b"--to", b"devops"]
    if b"--subject" not in args:
        base += [b"-s", b"bin"]
    r = agentops_bytes(*base, *args, cwd=ws.root, input=stdin if stdin is not None else b"")
    line = one_error_line(r, 4)
    assert what in line and "UTF-8" in line
    nothing_queued(ws)


def dead_letter(ws) -> dict:
    drop = ws.email_dir / "to-ingrid-from-devops-welcome.email"
    drop.write_text("welcome\n")
    route_pending(ws, [drop])
    [dead] = list_dead(ws)
    return dead


def test_retry_uses_orbits_name_not_an_edited_reason_file(ws):
    dead = dead_letter(ws)
    reason = ws.dead_dir / f"{dead['id']}.reason"
    info = json.loads(reason.read_text())
    reason.write_text(json.dumps({**info, "name": "sub/dir.email"}))
    ws.config_path.write_text('[[agents]]\nname = "ingrid"\nrole = "Developer"\n'
                              '[[agents]]\nname = "devops"\nrole = "DevOps"\n')
    r = run_agentops("mail", "retry", dead["id"], cwd=ws.root)
    assert r.returncode == 0 and "delivered" in r.stdout, r.stderr
    assert list_dead(Workspace(ws.root)) == []


def test_retry_refuses_a_name_that_is_not_one_file_name(ws):
    dead = dead_letter(ws)
    db = ws.db()
    with db.conn:
        db.conn.execute("DELETE FROM dead_letters")  # e.g. orbit.db was removed and rebuilt
    db.conn.close()
    reason = ws.dead_dir / f"{dead['id']}.reason"
    for bad in ("sub/dir.email", "", "a\x00b.email"):
        reason.write_text(json.dumps({**json.loads(reason.read_text()), "name": bad}))
        r = run_agentops("mail", "retry", dead["id"], cwd=ws.root)
        line = one_error_line(r, 4)
        assert "no usable file name" in line and "set \"name\"" in line
        assert [d["id"] for d in list_dead(Workspace(ws.root))] == [dead["id"]]  # nothing lost
    assert (ws.dead_dir / dead["id"]).read_text() == "welcome\n"
