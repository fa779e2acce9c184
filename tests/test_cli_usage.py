"""Usage errors (issue 12 pts 7, 12): a bad option value exits 2 with one `Error:` line and the
--help hint, whichever layer finds it (typer, the command, the library); `-w/--workspace` works after
the subcommand; huge integers and arguments that are not UTF-8 are usage errors, not tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import run_agentops


def _usage_error(r, says: str, command: str):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("Error: ") and says in lines[0], r.stderr
    assert lines[1] == f"Try '{command} --help' for help.", r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("args, says", [
    (["status", "--format", "xml"], "--format: unknown format 'xml'"),
    (["roles", "graph", "--format", "svg"], "--format: unknown graph format 'svg'"),
    (["roles", "export", "--target", "cursor"], "--target: unknown export target 'cursor'"),
    (["orbit", "runs", "--since", "yesterday"], "--since: 'yesterday' is neither"),
    (["status", "--since", "yesterday"], "--since: 'yesterday' is neither"),
    (["orbit", "events", "--limit", "99999999999999999999"], "--limit: 99999999999999999999 is too large"),
    (["mail", "inbox", "devops", "--limit", "99999999999999999999"], "--limit: 99999999999999999999 is too large"),
    (["status", "--bogus"], "No such option: --bogus"),
    (["mail", "inbox", "devops", "--limit", "many"], "Invalid value for '--limit'"),
])
def test_a_bad_option_value_is_a_usage_error(ws, args, says):
    r = run_agentops(*args)
    _usage_error(r, says, "python -m agentops " + " ".join(a for a in args[:2] if not a.startswith("-")
                                                         and a not in ("devops",)))


def test_bad_priority_is_a_usage_error_on_both_mail_send_paths(ws, cli):
    args = ["mail", "send", "--from", "devops", "--to", "data-engineer", "-s", "x", "--body", "y", "--priority", "asap"]
    _usage_error(run_agentops(*args), "--priority: 'asap' is not one of", "agentops mail send")  # the fast path
    _usage_error(run_agentops(*args, "-w", ws.root), "--priority: 'asap' is not one of", "python -m agentops mail send")
    slow = cli(*args)
    assert slow.exit_code == 2


def test_workspace_option_after_the_subcommand(ws, tmp_path):
    env = {"AGENTOPS_WORKSPACE": ""}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = run_agentops("mail", "send", "--from", "devops", "--to", "data-engineer", "-s", "hello", "--body", "b",
                     "--workspace", ws.root, cwd=elsewhere, env=env)
    assert r.returncode == 0, r.stderr
    r = run_agentops("mail", "inbox", "data-engineer", "--json", "-w", ws.root, cwd=elsewhere, env=env)
    assert r.returncode == 0 and '"subject": "hello"' in r.stdout, r.stderr
    r = run_agentops("orbit", "-w", ws.root, "events", "--json", cwd=elsewhere, env=env)
    assert r.returncode == 0, r.stderr
    r = run_agentops("status", "--json", cwd=elsewhere, env=env)
    assert r.returncode == 3  # and without it there is no workspace here


def test_an_argument_that_is_not_utf8_is_refused(ws):
    argv = [sys.executable, "-m", "agentops", "mail", "send", "--from", "devops", "--to", "data-engineer",
            "-s", b"caf\xe9".decode("utf-8", "surrogateescape"), "--body", "b"]
    r = subprocess.run([os.fsencode(a) for a in argv], capture_output=True, text=True, timeout=60)
    assert r.returncode == 4 and r.stderr == ("Error: -s: the value is not UTF-8 text (byte 0xe9 at offset 3); "
                                              "give names and text in UTF-8\n"), r.stderr
    r = subprocess.run([os.fsencode(a) for a in [*argv[:3], "mail", "inbox", b"\xff".decode("utf-8", "surrogateescape")]],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 4 and r.stderr.startswith("Error: argument 3 is not UTF-8 text (byte 0xff"), r.stderr
    assert not [p for p in ws.inbox("data-engineer").rglob("*") if p.is_file()]


@pytest.mark.parametrize("value", ["[" * 100_000 + "]" * 100_000, "{a=" * 5_000 + "1" + "}" * 5_000])
def test_agentops_toml_nested_too_deeply_is_one_line(ws, value):
    ws.config_path.write_text(f"x = {value}\n")
    r = run_agentops("status")
    assert r.returncode == 3 and r.stderr == ("Error: agentops.toml: values nested too deeply to read (agentops.toml "
                                              "needs a few levels at most; see the Configuration section)\n"), r.stderr


def test_spec_and_role_files_that_are_not_utf8_give_no_traceback(ws):
    (ws.pipelines_dir / "broken.yaml").write_bytes(b"name: broken\nowner: dev\xff\xfe\n")
    (ws.roles_dir / "Broken.agent.md").write_bytes(b"---\nname: Broken\xff\n---\nbody\n")
    r = run_agentops("status", "--json")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    import json

    problems = json.loads(r.stdout)["problems"]
    assert "role file roles/Broken.agent.md: file: not valid UTF-8 (byte 0xff at offset 16); save it as UTF-8 " \
           "(see `agentops roles check`)" in problems
    r = run_agentops("prompt", "devops")
    assert r.returncode == 0 and "Traceback" not in r.stderr and "# You are DevOps" in r.stdout, r.stderr
    r = run_agentops("roles", "check")
    assert r.returncode == 1
    assert r.stdout.splitlines()[0] == ("roles/Broken.agent.md: file: not valid UTF-8 (byte 0xff at offset 16); "
                                        "save it as UTF-8")


def test_roles_check_names_a_duplicated_role_once_in_known(ws):
    src = ws.roles_dir / "Data Engineer.agent.md"
    (ws.roles_dir / "data-engineer-copy.agent.md").write_text(
        src.read_text().replace("agent: Database Engineer", "agent: Nobody", 1))
    r = run_agentops("roles", "check")
    assert r.returncode == 1
    [line] = [ln for ln in r.stdout.splitlines() if "unknown role 'Nobody'" in ln]
    assert line.count("Data Engineer,") == 1, line


@pytest.mark.parametrize("args, line", [
    (["pipeline", "lineage"], "Error: name a DATASET, or pass --list to see them"),
    (["orbit", "export"], "Error: orbit export: say which format (use --openlineage)"),
    (["pipeline", "backfill", "orders_daily", "--start", "x", "--end", "2026-01-01"],
     "Error: --start: 'x' is not a date (use YYYY-MM-DD)"),
])
def test_missing_or_conflicting_options_are_usage_errors(ws, args, line):
    import shutil

    from tests.conftest import REPO

    shutil.copy(REPO / ".agent" / "data" / "pipelines" / "orders_daily.yaml", ws.pipelines_dir)
    r = run_agentops(*args)
    assert r.returncode == 2 and r.stderr.splitlines()[0] == line, r.stderr
