"""State under the workspace is touched without following links out of it (issue 12 point 5).

Each test plants a symbolic link to an outside folder or file (or a hard link) at one place agentops
writes or reads, runs the real command, and checks that nothing outside changed or was read and that
the command failed with one clear line (or set the item aside)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys

import pytest

from agentops import safefs
from agentops.errors import StorageError, UnsafePathError
from agentops.workspace import Workspace, init_workspace

from conftest import run_agentops

SECRET = "top secret outside the workspace\n"


def snapshot(folder) -> dict:
    """Every file under `folder` with its bytes (to prove nothing outside changed)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            p = os.path.join(dirpath, name)
            out[os.path.relpath(p, folder)] = open(p, "rb").read() if os.path.isfile(p) else "link"
    return out


@pytest.fixture
def outside(tmp_path):
    d = tmp_path / "outside"
    d.mkdir()
    (d / "secret.txt").write_text(SECRET)
    return d


def one_line(r, code):
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


def replace_with_link(path, target):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, path)


# the helper itself -------------------------------------------------------------------------------

def test_helper_refuses_links_out_hard_links_and_odd_files(ws, outside):
    replace_with_link(ws.logs_dir, outside)
    with pytest.raises(UnsafePathError, match=r"^\.agent/logs is a symbolic link leading outside"):
        safefs.write_atomic(ws, ws.logs_dir / "dana" / "x.log", "x")
    with pytest.raises(UnsafePathError):
        safefs.listdir(ws, ws.logs_dir)
    os.symlink(outside / "secret.txt", ws.run_dir / "a.json")
    with pytest.raises(UnsafePathError, match="is a symbolic link"):
        safefs.read_text(ws, ws.run_dir / "a.json")
    os.link(outside / "secret.txt", ws.run_dir / "b.json")
    with pytest.raises(UnsafePathError, match="has 2 hard links"):
        safefs.read_text(ws, ws.run_dir / "b.json")
    os.mkfifo(ws.run_dir / "c.json")
    with pytest.raises(UnsafePathError, match="is a FIFO, not a regular file"):
        safefs.read_text(ws, ws.run_dir / "c.json")  # and never blocks
    (ws.run_dir / "d.json").mkdir()
    with pytest.raises(UnsafePathError, match="is a folder, not a regular file"):
        safefs.write_atomic(ws, ws.run_dir / "d.json", "x")
    assert snapshot(outside) == {"secret.txt": SECRET.encode()}
    assert not [n for n in os.listdir(ws.run_dir) if n.endswith(".tmp")]


def test_helper_follows_a_folder_link_that_stays_inside_and_writes_atomically(ws):
    real = ws.root / "elsewhere"
    real.mkdir()
    replace_with_link(ws.reports_dir, real)
    safefs.write_atomic(ws, ws.reports_dir / "r.md", "one", sync=True)
    safefs.write_atomic(ws, ws.reports_dir / "r.md", "two")
    assert os.listdir(real) == ["r.md"] and (real / "r.md").read_text() == "two"
    # a link planted where the file goes is replaced, never written through
    os.unlink(real / "r.md")
    os.symlink(ws.root / "agentops.toml", real / "r.md")
    before = (ws.root / "agentops.toml").read_text()
    safefs.write_atomic(ws, ws.reports_dir / "r.md", "three")
    assert (ws.root / "agentops.toml").read_text() == before and not os.path.islink(real / "r.md")


def test_temp_names_are_random_so_a_planted_link_is_never_written_through(ws, outside):
    """The old writers used `.name.tmp-<pid>`: a link planted under that name was followed."""
    from agentops.cache import cached
    from agentops.daemon.heartbeat import write_state
    from agentops.pipelines.watch import _write_state

    pid = os.getpid()
    planted = [ws.run_dir / f".daemon.json.tmp-{pid}", ws.run_dir / f".x.json.{pid}.tmp",
               ws.reports_dir / f".status.md.tmp-{pid}"]
    from agentops.pipelines import watch
    planted.append(ws.run_dir / f".{watch.STATE_FILE}.{pid}.tmp")
    for i, p in enumerate(planted):
        p.parent.mkdir(parents=True, exist_ok=True)
        (outside / f"t{i}").write_text(SECRET)
        os.symlink(outside / f"t{i}", p)
    before = snapshot(outside)
    write_state(ws, {"pid": pid, "state": "running"})
    _write_state(ws, {"x": 1})
    old = ws.config_path.stat().st_mtime_ns
    os.utime(ws.config_path, ns=(old - 5 * 10**9, old - 5 * 10**9))
    assert cached(ws, "x.json", 1, lambda: [[ws.config_path.name, os.stat(ws.config_path).st_mtime_ns]],
                  lambda: {"v": 1}, lambda v: v, lambda v: v) == {"v": 1}
    r = run_agentops("status", "--format", "markdown", cwd=ws.root)
    assert r.returncode == 0, r.stderr
    assert snapshot(outside) == before
    assert json.loads((ws.run_dir / "daemon.json").read_text())["pid"] == pid
    assert json.loads((ws.run_dir / "x.json").read_text())["value"] == {"v": 1}


# lock files ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("lock, argv", [
    ("run/daemon.lock", ["daemon", "--once"]),
    ("run/mail.lock", ["mail", "send", "--from", "developer", "--to", "devops", "-s", "s", "--body", "b"]),
    ("orbit.db-migrate.lock", ["orbit", "log", "note", "--text", "hi"]),
])
def test_a_lock_file_linked_outside_is_refused(ws, outside, lock, argv):
    if lock.startswith("orbit.db"):
        os.unlink(ws.db_path) if ws.db_path.exists() else None
    (ws.email_dir / "to-devops-from-developer-x.email").write_text("hello\n")
    replace_with_link(ws.agent_dir / lock, outside / "secret.txt")
    line = one_line(run_agentops(*argv, cwd=ws.root), 3)
    assert f".agent/{lock} is a symbolic link" in line
    assert snapshot(outside) == {"secret.txt": SECRET.encode()}


def test_dispatch_lock_prompts_and_logs_linked_outside_are_refused(ws, outside, tmp_path):
    with open(ws.config_path, "a") as fh:
        fh.write(f'\n[[agents]]\nname = "dana"\nrole = "Data Engineer"\n'
                 f'on_mail = {json.dumps([sys.executable, "-c", "print(1)"])}\n')
    (outside / "dana-2020-01-01T000000.000000Z.md").write_text("old prompt")  # prune must not delete it
    (outside / "2020-01-01T000000.000000Z.log").write_text("old log")
    before = snapshot(outside)
    for planted in (ws.run_dir / "dispatch" / "dana.lock", ws.run_dir / "prompts", ws.logs_dir / "dana"):
        target = outside / "secret.txt" if planted.name.endswith(".lock") else outside
        replace_with_link(planted, target)
        r = run_agentops("dispatch", "dana", cwd=ws.root)
        line = one_line(r, 3)
        assert str(planted.relative_to(ws.root)) in line and "symbolic link" in line
        assert snapshot(outside) == before
        os.unlink(planted)
    r = run_agentops("dispatch", "dana", cwd=ws.root)
    assert r.returncode == 0, r.stderr


# the Orbit store ---------------------------------------------------------------------------------

def test_a_hard_linked_orbit_db_is_refused(ws, outside, cli):
    run_agentops("orbit", "log", "note", "--text", "first", cwd=ws.root)
    os.link(ws.db_path, outside / "copy.db")
    before = snapshot(outside)
    line = one_line(run_agentops("orbit", "log", "note", "--text", "second", cwd=ws.root), 3)
    assert ".agent/orbit.db has 2 hard links" in line
    line = one_line(run_agentops("mail", "send", "--from", "developer", "--to", "devops", "-s", "s", "--body", "b",
                                 cwd=ws.root), 3)
    assert "orbit.db has 2 hard links" in line
    assert snapshot(outside) == before


@pytest.mark.parametrize("what", ["folder", "fifo", "link"])
def test_an_orbit_db_that_is_not_a_file_is_one_line(ws, outside, what):
    if ws.db_path.exists():
        os.unlink(ws.db_path)
    if what == "folder":
        ws.db_path.mkdir()
    elif what == "fifo":
        os.mkfifo(ws.db_path)
    else:
        shutil.copy(outside / "secret.txt", outside / "x.db")
        os.symlink(outside / "x.db", ws.db_path)
    for argv in (["orbit", "log", "note", "--text", "x"], ["mail", "inbox", "devops"],
                 ["mail", "send", "--from", "developer", "--to", "devops", "-s", "s", "--body", "b"]):
        line = one_line(run_agentops(*argv, cwd=ws.root, timeout=30), 3)
        assert ".agent/orbit.db is " in line
    assert (outside / "x.db").read_text() == SECRET if what == "link" else True


# dead letters, rejected Orbit lines, reports, inbox cur/ ---------------------------------------------

def test_mail_dead_never_prints_a_reason_file_linked_outside(ws, outside):
    (ws.email_dir / "to-nobody-from-developer-x.email").write_text("hello\n")
    assert run_agentops("daemon", "--once", cwd=ws.root).returncode == 0
    [reason] = [p for p in ws.dead_dir.iterdir() if p.name.endswith(".reason")]
    os.unlink(reason)
    os.symlink(outside / "secret.txt", reason)
    r = run_agentops("mail", "dead", cwd=ws.root)
    assert r.returncode == 0 and "top secret" not in r.stdout + r.stderr
    assert "was not read" in r.stdout
    os.unlink(reason)
    os.link(outside / "secret.txt", reason)
    r = run_agentops("mail", "dead", "--json", cwd=ws.root)
    assert r.returncode == 0 and "top secret" not in r.stdout + r.stderr


def test_orbit_rejected_folder_linked_outside(ws, outside):
    replace_with_link(ws.orbit_dir / "rejected", outside)
    (ws.orbit_dir / "bad.jsonl").write_text('{"kind": "nope"}\n')
    os.mkfifo(ws.orbit_dir / "fifo.jsonl")
    before = snapshot(outside)
    r = run_agentops("daemon", "--once", cwd=ws.root)
    assert snapshot(outside) == before
    assert r.returncode == 3 and ".agent/orbit/rejected is a symlink leading outside the workspace" in r.stderr
    assert (ws.orbit_dir / "bad.jsonl").exists()  # kept for the next pass, nothing lost


def test_reports_folder_linked_outside(ws, outside):
    replace_with_link(ws.reports_dir, outside)
    line = one_line(run_agentops("status", "--format", "markdown", cwd=ws.root), 3)
    assert ".agent/data/reports is a symbolic link leading outside" in line
    assert snapshot(outside) == {"secret.txt": SECRET.encode()}


def test_inbox_cur_linked_outside(ws, outside, cli):
    r = run_agentops("mail", "send", "--from", "developer", "--to", "devops", "-s", "s", "--body", "b", cwd=ws.root)
    assert r.returncode == 0, r.stderr
    mid = r.stdout.split()[0]
    replace_with_link(ws.inbox("devops") / "cur", outside)
    line = one_line(run_agentops("mail", "read", mid, cwd=ws.root), 3)
    assert ".agent/email/inbox/devops/cur is a symbolic link leading outside" in line
    assert snapshot(outside) == {"secret.txt": SECRET.encode()}
    assert len(os.listdir(ws.inbox("devops") / "new")) == 1  # the message stayed where it was


# init ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("folder", ["roles", "templates"])
@pytest.mark.parametrize("force", [False, True])
def test_init_never_writes_through_a_linked_folder(tmp_path, outside, folder, force):
    target = tmp_path / "w"
    target.mkdir()
    (outside / "Developer.agent.md").write_text("mine")
    os.symlink(outside, target / folder)
    before = snapshot(outside)
    r = run_agentops("init", *(["--force"] if force else []), target, env={"AGENTOPS_WORKSPACE": ""})
    line = one_line(r, 3)
    assert f"{folder} is a symbolic link leading outside the workspace" in line
    assert snapshot(outside) == before


def test_init_keeps_a_role_file_that_is_a_link_or_hard_link(tmp_path, outside):
    target = tmp_path / "w"
    init_workspace(target)
    role = target / "roles" / "Developer.agent.md"
    os.unlink(role)
    os.link(outside / "secret.txt", role)
    init_workspace(target, force=True)  # replaced by a file of its own, never written through
    assert (outside / "secret.txt").read_text() == SECRET and role.read_text() != SECRET
    assert os.stat(role).st_nlink == 1


@pytest.mark.parametrize("path, says", [("/etc/passwd", "/etc/passwd is a file, not a folder"),
                                        ("/etc/passwd/x", "part of that path is a file")])
def test_init_on_a_file_is_one_line(path, says):
    line = one_line(run_agentops("init", path, env={"AGENTOPS_WORKSPACE": ""}), 3)
    assert says in line


@pytest.mark.parametrize("how", ["symlink", "hardlink"])
def test_the_warehouse_linked_outside_is_refused(ws, outside, how):
    """DuckDB opens the embedded warehouse by path, so it is checked like orbit.db first."""
    import duckdb

    from agentops.data import warehouse_path

    target = outside / "w.duckdb"
    duckdb.connect(str(target)).close()
    before = snapshot(outside)
    ws.data_dir.mkdir(parents=True, exist_ok=True)
    (os.symlink if how == "symlink" else os.link)(target, ws.data_dir / "warehouse.duckdb")
    with pytest.raises(UnsafePathError, match="warehouse.duckdb"):
        warehouse_path(ws)
    assert snapshot(outside) == before


def test_rendered_documents_never_write_through_a_link(ws, outside):
    from tests.pipeline_helpers import add_examples

    add_examples(ws)
    replace_with_link(ws.data_dir / "orders_daily", outside)
    before = snapshot(outside)
    line = one_line(run_agentops("pipeline", "render", "orders_daily", "--template", "design", cwd=ws.root), 4)
    assert ".agent/data/orders_daily is outside the workspace" in line
    os.unlink(ws.data_dir / "orders_daily")
    (ws.data_dir / "orders_daily").mkdir()
    os.symlink(outside / "secret.txt", ws.data_dir / "orders_daily" / "design.md")
    r = run_agentops("pipeline", "render", "orders_daily", "--template", "design", cwd=ws.root)
    assert r.returncode == 0, r.stderr
    written = ws.data_dir / "orders_daily" / "design.md"
    assert not written.is_symlink() and "orders_daily" in written.read_text()
    assert [p.name for p in written.parent.iterdir()] == ["design.md"]  # no temp file left
    assert snapshot(outside) == before
