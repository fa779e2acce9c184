"""Docs that cannot go stale: every command has help text and appears in the README."""

from __future__ import annotations

import typer

from agentops.cli import app
from tests.conftest import REPO, run_agentops


def _commands(cmd, prefix=()):
    if not hasattr(cmd, "list_commands"):
        return
    ctx = typer.Context(cmd)
    for name in sorted(cmd.list_commands(ctx)):  # the click API: the root builds its commands lazily
        sub = cmd.get_command(ctx, name)
        path = (*prefix, name)
        yield path, sub
        yield from _commands(sub, path)


def test_every_command_has_help_and_is_in_the_readme():
    readme = (REPO / "README.md").read_text()
    root = typer.main.get_command(app)
    missing_help, missing_doc = [], []
    for path, cmd in _commands(root):
        if not (cmd.help or "").strip():
            missing_help.append(" ".join(path))
        if f"agentops {' '.join(path)}" not in readme:
            missing_doc.append(" ".join(path))
        for param in cmd.params:
            if param.param_type_name == "option" and not getattr(param, "help", None):
                missing_help.append(f"{' '.join(path)} {param.opts[0]}")
    assert not missing_help, f"commands/options without help: {missing_help}"
    assert not missing_doc, f"commands missing from README.md: {missing_doc}"


def test_version_and_help_run_as_processes():
    r = run_agentops("--version")
    assert r.returncode == 0 and r.stdout.startswith("agentops ")
    r = run_agentops("--help")
    assert r.returncode == 0 and "Commands:" in r.stdout
    r = run_agentops("no-such-command")
    assert r.returncode == 2


def test_each_summary_is_declared_once_and_shown_whole():
    """A command's one-line summary is written only in agentops.cli.COMMANDS: `agentops --help`
    shows it whole (no "..."), the command's own help starts with it, and the details after it,
    which the command's module declares, do not say it again."""
    from agentops.cli import COMMANDS
    from agentops.cli.root import build_command

    limit = 78 - 6 - max(len(n) for n in COMMANDS)  # click's short-help width on an 80-column terminal
    listed = run_agentops("--help", env={"COLUMNS": "80"}).stdout
    for name, (_, summary) in COMMANDS.items():
        assert len(summary) <= limit and summary.endswith(".") and not summary.endswith("..."), name
        assert f"  {name:<12}  {summary}\n" in listed, name
        command = build_command(name)
        assert command.get_short_help_str(limit) == summary, name
        head, _, details = command.help.partition("\n\n")
        assert head == summary and summary not in details, name


def test_fast_root_help_is_typers_own(monkeypatch):
    from typer.testing import CliRunner

    from agentops.cli import root_help

    monkeypatch.setenv("COLUMNS", "100")
    assert CliRunner().invoke(app, ["--help"]).output == root_help()
    r = run_agentops("--help", env={"COLUMNS": "100"})
    assert r.returncode == 0 and r.stdout == root_help()
    r = run_agentops("-h", env={"COLUMNS": "60"})  # narrow: typer itself wraps the text
    assert r.returncode == 0 and "Commands:" in r.stdout and "pipeline" in r.stdout
