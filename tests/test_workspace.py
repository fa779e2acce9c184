"""Workspace discovery, init and config."""

from __future__ import annotations

import contextlib
import json

import pytest

from agentops.errors import WorkspaceError
from agentops.workspace import Workspace, find_workspace, init_workspace
from tests.conftest import run_agentops


def test_discovery_walks_up_from_nested_folders(tmp_path, monkeypatch):
    monkeypatch.delenv("AGENTOPS_WORKSPACE")
    root = tmp_path / "proj"
    (root / ".agent").mkdir(parents=True)
    deep = root / "a" / "b" / "c"
    deep.mkdir(parents=True)
    assert find_workspace(start=deep).root == root.resolve()
    other = tmp_path / "other"
    other.mkdir()
    (other / "agentops.toml").write_text("")
    assert find_workspace(start=other).root == other.resolve()


def test_explicit_and_env_override_discovery(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        (d / ".agent").mkdir(parents=True)
    monkeypatch.setenv("AGENTOPS_WORKSPACE", str(b))
    assert find_workspace(start=a).root == b.resolve()
    assert find_workspace(str(a), start=b).root == a.resolve()


def test_no_workspace_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("AGENTOPS_WORKSPACE")
    with pytest.raises(WorkspaceError, match="no agentops workspace.*agentops init"):
        find_workspace(start=tmp_path)
    r = run_agentops("roles", "list", cwd=tmp_path, env={"AGENTOPS_WORKSPACE": ""})
    assert r.returncode == 3
    assert r.stderr.startswith("Error: no agentops workspace")
    assert "Traceback" not in r.stderr


def test_init_creates_a_complete_workspace(tmp_path):
    target = tmp_path / "w"
    result = init_workspace(target)
    ws = Workspace(target)
    assert {p.name for p in ws.roles_dir.glob("*.agent.md")} == {
        "Data Engineer.agent.md", "Database Engineer.agent.md", "DevOps.agent.md", "Developer.agent.md"}
    for d in (ws.email_dir, ws.inbox_root, ws.dead_dir, ws.pipelines_dir, ws.orbit_dir, ws.reports_dir):
        assert d.is_dir(), d
    assert (target / "agentops.toml").is_file()
    assert ".agent/orbit.db" in (target / ".gitignore").read_text()
    # the Orbit store is there, migrated: the first command after init does not migrate
    import sqlite3

    from agentops.store import pending_migrations

    assert ws.db_path in result.created
    with contextlib.closing(sqlite3.connect(ws.db_path)) as conn:
        assert pending_migrations(conn) == []
    vscode = json.loads((target / ".vscode" / "mcp.json").read_text())
    assert vscode["servers"]["orbit"]["args"] == ["mcp"]
    claude = json.loads((target / ".mcp.json").read_text())
    assert claude["mcpServers"]["orbit"]["args"] == ["mcp"]
    assert result.created and not result.overwritten
    assert ws.config.agents == []


def test_init_is_idempotent_and_never_overwrites_without_force(tmp_path):
    target = tmp_path / "w"
    init_workspace(target)
    role = target / "roles" / "DevOps.agent.md"
    role.write_text(role.read_text().replace("name: DevOps", "name: DevOps\nmine: true"))
    mine = role.read_text()
    again = init_workspace(target)
    assert not again.created and not again.overwritten
    assert role.read_text() == mine
    forced = init_workspace(target, force=True)
    assert role in forced.overwritten
    assert "mine: true" not in role.read_text()


def test_init_never_writes_through_a_symlink(tmp_path):
    target = tmp_path / "w"
    target.mkdir()
    outside = tmp_path / "outside.toml"
    outside.write_text("precious")
    (target / "agentops.toml").symlink_to(outside)
    init_workspace(target, force=True)
    assert outside.read_text() == "precious"


def test_init_cli_then_roles_check(tmp_path):
    target = tmp_path / "fresh"
    r = run_agentops("init", target, env={"AGENTOPS_WORKSPACE": ""})
    assert r.returncode == 0, r.stderr
    assert "Workspace ready" in r.stdout
    r = run_agentops("roles", "check", cwd=target, env={"AGENTOPS_WORKSPACE": ""})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "4 role(s), 0 problem(s)" in r.stdout


@pytest.mark.parametrize("toml, expected", [
    ("[mail]\nmax_byts = 3\n", "agentops.toml:mail.max_byts: Extra inputs are not permitted"),
    ("[[agents]]\nname = 'x'\n", "agentops.toml:agents[0].role: Field required"),
    ("[[agents]]\nname='x'\nrole='DevOps'\non_mail='claude -p'\n", "argv list"),
    ("[[agents]]\nname='x'\nrole='DevOps'\non_mail=[]\n", "must not be empty"),
    ("[[agents]]\nname='x'\nrole='DevOps'\non_mail=['a', '{prompt}']\n", "unknown placeholder {prompt}"),
    ("[mail\n", "TOML error"),
])
def test_bad_config_is_one_clear_error(ws, cli, toml, expected):
    ws.config_path.write_text(toml)
    r = run_agentops("roles", "list")
    assert r.returncode == 3
    assert expected in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_roster_config_loads(ws):
    ws.config_path.write_text(
        "[[agents]]\nname = 'Dana'\nrole = 'Data Engineer'\n"
        "on_mail = ['my-agent', '--name', '{agent}', '{prompt_file}']\n"
        "[orbit.anomaly]\nthreshold = 4\n")
    ws = Workspace(ws.root)
    assert ws.config.agents[0].on_mail == ["my-agent", "--name", "{agent}", "{prompt_file}"]
    assert ws.config.orbit.anomaly.threshold == 4
    assert ws.addresses.resolve("dana").agents == ("dana",)


def test_init_dot_from_inside_the_folder(tmp_path):
    target = tmp_path / "here"
    target.mkdir()
    r = run_agentops("init", ".", cwd=target, env={"AGENTOPS_WORKSPACE": ""})
    assert r.returncode == 0, r.stderr
    assert "created      roles/DevOps.agent.md" in r.stdout


@pytest.mark.parametrize("roster, expected", [
    ("[[agents]]\nname='???'\nrole='DevOps'\n", "agentops.toml:agents: Value error, [0] name '???' has no letters or digits"),
    ("[[agents]]\nname='all'\nrole='DevOps'\n", "is the built-in address 'all'"),
    ("[[agents]]\nname='ann'\nrole='DevOps'\n[[agents]]\nname='Ann'\nrole='Developer'\n",
     "[1] name 'Ann' has the same address 'ann' as [0] 'ann'"),
])
def test_roster_addresses_must_be_usable(ws, roster, expected):
    ws.config_path.write_text(roster)
    r = run_agentops("mail", "inbox", "devops")
    assert r.returncode == 3 and expected in r.stderr, r.stderr


@pytest.mark.parametrize("roster, expected", [
    ("[[agents]]\nname='x'\nrole='Nonexistent Role'\n", "agentops.toml: agents[0].role: unknown role 'Nonexistent Role'"),
    ("[[agents]]\nname='devops'\nrole='Developer'\n", "agentops.toml: agents[0].name: 'devops' is the address of role 'DevOps'"),
])
def test_roster_roles_are_checked(ws, cli, roster, expected):
    ws.config_path.write_text(roster)
    r = cli("roles", "check")
    assert r.exit_code == 1 and expected in r.output, r.output
    r = run_agentops("mail", "send", "--from", "user", "--to", "x", "--subject", "s", "--body", "b")
    assert r.returncode == 3 and expected.replace("agentops.toml: ", "agentops.toml:") in r.stderr, r.stderr
