"""Docs that cannot go stale: every command has help text and appears in the README."""

from __future__ import annotations

import typer

from agentops.cli import app
from tests.conftest import REPO, run_agentops


def _commands(cmd, prefix=()):
    for name, sub in sorted(getattr(cmd, "commands", {}).items()):
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
