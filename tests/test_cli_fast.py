"""`agentops mail send` parsed without typer (agentops.cli.fast): the option tables match the typer
commands, the fast path and typer give the same results and errors, and whatever the fast parser
does not read exactly goes to typer."""

from __future__ import annotations

import mailbox
import subprocess
import sys

import pytest

from agentops.cli.fast import ROOT_OPTIONS, SEND_DEFAULTS, SEND_OPTIONS, parse_send
from tests.conftest import run_agentops


def _options(command) -> dict:
    """{option string: (parameter, takes a value, repeats)} of a click command, as the fast tables say it."""
    out = {}
    for p in command.params:
        if p.param_type_name == "option":  # typer's own click (typer._click), so no isinstance
            for opt in p.opts + p.secondary_opts:
                out[opt] = (p.name, not p.is_flag, bool(p.multiple))
    return out


def _age_sources(ws):
    """Make agentops.toml and the roles a few seconds old: only then are they trusted to the caches
    in .agent/run/ (git's racy-second rule), as they are in any workspace not edited this second."""
    import os
    import time

    old = time.time() - 5
    for path in (ws.config_path, ws.roles_dir, *ws.roles_dir.iterdir()):
        os.utime(path, (old, old))


def test_the_tables_match_the_typer_commands():
    from agentops.cli.root import app, build_command
    import typer

    send = build_command("mail").commands["send"]
    skip = ("-h", "--help", "-w", "--workspace")  # every command takes -w after it too; typer reads that one
    assert {k: v for k, v in _options(send).items() if k not in skip} == SEND_OPTIONS
    assert {p.name: p.default for p in send.params if p.name in SEND_DEFAULTS} == SEND_DEFAULTS
    root = {k: v for k, v in _options(typer.main.get_group(app)).items() if k not in ("-h", "--help", "--version")}
    assert root == ROOT_OPTIONS


@pytest.mark.parametrize("argv, expected", [
    (["mail", "send", "--from", "a", "--to", "b", "--to", "c", "-s", "hi", "--body=x y", "--json"],
     (None, {"sender": "a", "to": ["b", "c"], "subject": "hi", "body": "x y", "as_json": True})),
    (["-w", "/tmp/w", "mail", "send", "--subject", "--not-an-option", "--cc", "d", "-p", "high"],
     ("/tmp/w", {"subject": "--not-an-option", "cc": ["d"], "priority": "high"})),
    (["--workspace=/w", "mail", "send", "--subject", "a", "--subject", "b"], ("/w", {"subject": "b"})),
])
def test_parse_send_reads_what_click_reads(argv, expected):
    workspace, changed = expected
    assert parse_send(argv) == (workspace, {**SEND_DEFAULTS, **changed})


@pytest.mark.parametrize("argv", [
    ["mail", "send", "--help"], ["mail", "send", "-h"], ["mail", "send", "-shi"], ["mail", "send", "--subject"],
    ["mail", "send", "--", "x"], ["mail", "send", "stray"], ["mail", "send", "--json=yes"], ["mail", "send", "--bogus", "x"],
    ["mail", "inbox", "devops"], ["--version", "mail", "send"], ["mail"], ["send"], ["-w"],
])
def test_anything_else_is_left_to_typer(argv):
    assert parse_send(argv) is None


def test_fast_and_typer_paths_deliver_the_same(ws, cli):
    fast = run_agentops("mail", "send", "--from", "devops", "--to", "data-engineer", "--cc", "developer",
                        "-s", "via the fast path", "--body", "one", "--json")
    assert fast.returncode == 0, fast.stderr
    slow = cli("mail", "send", "--from", "devops", "--to", "data-engineer", "--cc", "developer",
               "-s", "via typer", "--body", "two", "--json")
    assert slow.exit_code == 0, slow.output
    import json

    assert json.loads(fast.stdout)["routed_by"] == json.loads(slow.output)["routed_by"] == "now"
    for box in ("data-engineer", "developer"):
        msgs = {m["Subject"]: m for m in mailbox.Maildir(ws.inbox(box), create=False)}
        assert set(msgs) == {"via the fast path", "via typer"}
        a, b = msgs["via the fast path"], msgs["via typer"]
        assert [k for k, _ in a.items()] == [k for k, _ in b.items()]
        assert (a["From"], a["To"], a["Cc"]) == (b["From"], b["To"], b["Cc"]) == ("devops", "data-engineer", "developer")
    plain = run_agentops("mail", "send", "--from", "devops", "--to", "data-engineer", "-s", "plain", "--body", "x")
    assert plain.returncode == 0 and plain.stdout.strip().endswith("delivered")


def test_fast_and_typer_paths_fail_alike(ws, cli):
    cases = [(["--from", "user", "--to", "nobody", "-s", "x", "--body", "y"], 5),
             (["--from", "user", "--to", "devops", "-s", "x", "--body", "y", "--priority", "asap"], 2),
             (["--from", "user", "--to", "devops", "--body", "y"], 4),
             (["--from", "user", "--to", "devops", "-s", "x", "--body", "y", "--body-file", "f"], 4)]
    for args, code in cases:
        fast = run_agentops("mail", "send", *args)
        slow = cli("mail", "send", *args)
        assert fast.returncode == slow.exit_code == code, (args, fast.stderr, slow.output)
        assert fast.stderr.startswith("Error: ") and fast.stderr.strip() == slow.output.strip()
    r = run_agentops("mail", "send", "--from", "user", "--to", "devops", "-s", "x", "--bogus")
    assert r.returncode == 2 and "No such option" in r.stderr  # typer's own usage error
    r = run_agentops("mail", "send", "--help")
    assert r.returncode == 0 and "--body-file" in r.stdout


def test_body_from_stdin_on_the_fast_path(ws):
    r = run_agentops("-w", ws.root, "mail", "send", "--from", "user", "--to", "devops", "-s", "piped", input="from stdin\n")
    assert r.returncode == 0, r.stderr
    assert [m.get_payload() for m in mailbox.Maildir(ws.inbox("devops"), create=False)] == ["from stdin\n"]


def test_mail_send_imports_neither_typer_nor_pydantic(ws):
    code = ("import sys\nfrom agentops.cli.fast import run\n"  # what agentops.cli.main runs for it
            "assert run(['mail', 'send', '--from', 'user', '--to', 'devops', '-s', 'x', '--body', 'y']) == 0\n"
            "heavy = ('typer', 'click', 'pydantic', 'yaml', 'sqlite_utils', 'jinja2', 'networkx', 'watchdog', 'mcp')\n"
            "print(sorted(m for m in heavy if m in sys.modules))\n")
    _age_sources(ws)
    # a second run: the first validates agentops.toml and the roles (pydantic, YAML) and caches them
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ws.root)
        assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "[]"


def test_writing_a_drop_file_imports_no_parser(ws):
    """With a daemon running, `mail send` only composes and writes the drop file: no email parser,
    no dataclasses (inspect), no SQLite, no routing."""
    _age_sources(ws)
    code = ("import sys\nfrom agentops.workspace import Workspace\nfrom agentops.mail.outbox import compose, drop\n"
            f"ws = Workspace({str(ws.root)!r})\n"
            "mid, msg, name = compose(ws, sender='user', to=['devops'], subject='s', body='b')\n"
            "drop(ws, msg, name)\n"
            "heavy = ('email.parser', 'email.utils', 'dataclasses', 'inspect', 'typing', 'sqlite3', 'agentops.mail.route')\n"
            "print(sorted(m for m in heavy if m in sys.modules))\n")
    for _ in range(2):  # the first run fills the caches (validating with pydantic, parsing YAML)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    assert len(list(ws.email_dir.glob("to-devops-from-user-*.email"))) == 2
