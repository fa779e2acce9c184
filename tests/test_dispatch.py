"""Dispatch: waking agents. Real subprocesses running a fake agent script; no model, no network."""

from __future__ import annotations

import json
import shlex
import sys
import threading
import time
from pathlib import Path

import pytest

from agentops import dispatch
from agentops.workspace import Workspace, init_workspace

FAKE_AGENT = r'''
import json, os, subprocess, sys, time

mode, out = sys.argv[1], sys.argv[2]
rest = sys.argv[3:]
start = time.time()
if mode == "hang":
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    with open(out, "w") as fh:
        fh.write(str(child.pid))
    time.sleep(60)
lock = out + ".lock"
try:
    fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    os.close(fd)
    overlap = False
except FileExistsError:
    overlap = True
sleep = float(os.environ.get("FAKE_SLEEP", "0"))
time.sleep(sleep)
count_file = out + ".count"
n = int(open(count_file).read()) + 1 if os.path.exists(count_file) else 1
with open(count_file, "w") as fh:
    fh.write(str(n))
with open(out, "a") as fh:
    fh.write(json.dumps({"start": start, "end": time.time(), "overlap": overlap, "n": n,
                         "argv": rest, "env_agent": os.environ.get("AGENTOPS_AGENT")}) + "\n")
if not overlap:
    os.unlink(lock)
print("fake agent ran", n, flush=True)
if mode == "fail":
    sys.exit(3)
if mode == "fail-twice" and n <= 2:
    sys.exit(1)
'''


@pytest.fixture
def fake(tmp_path) -> Path:
    script = tmp_path / "fake_agent.py"
    script.write_text(FAKE_AGENT)
    return script


def configure(root: Path, agents: dict[str, list[str] | None], role="Data Engineer", **settings) -> Workspace:
    """Append a roster and a [dispatch] section to the workspace's agentops.toml."""
    lines = []
    for name, argv in agents.items():
        lines += ["[[agents]]", f"name = {json.dumps(name)}", f"role = {json.dumps(role)}"]
        if argv is not None:
            lines.append(f"on_mail = {json.dumps(argv)}")
    defaults = {"coalesce_seconds": 0.1, "backoff_seconds": 0.05, "retries": 0, "timeout_seconds": 20,
                "max_concurrent": 2}
    lines.append("[dispatch]")
    lines += [f"{k} = {v}" for k, v in {**defaults, **settings}.items()]
    with open(root / "agentops.toml", "a") as fh:
        fh.write("\n" + "\n".join(lines) + "\n")
    return Workspace(root)


def argv_for(fake: Path, mode: str, out: Path, *extra: str) -> list[str]:
    return [sys.executable, str(fake), mode, str(out), *extra]


def runs(out: Path) -> list[dict]:
    if not out.exists():
        return []
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


def drop_mail(ws: Workspace, agent: str, subject: str = "hello", body: str = "please look") -> Path:
    """Send a message to the agent through the mail library; return the delivered Maildir file."""
    from agentops.mail import send
    from agentops.mail.inbox import inbox
    from agentops.mail.maildir import locate

    (mid,) = send(ws, sender="user", to=[agent], subject=subject, body=body)
    # the whole inbox, not the newest few: "newest" is by delivery time, which a clock step can reorder
    (row,) = [r for r in inbox(ws, agent) if r["message_id"] == mid]
    return locate(ws.inbox(agent), row["key"])


def events(ws: Workspace, kind="dispatch") -> list[dict]:
    db = ws.db()
    try:
        return [json.loads(r[0]) for r in db.execute("SELECT data FROM events WHERE kind = ? ORDER BY seq", [kind])]
    finally:
        db.conn.close()


def dispatch_row(ws: Workspace, agent: str) -> dict:
    """The agent's `dispatch_runs` row (derived from its dispatch events; `status` shows it)."""
    db = ws.db()
    try:
        return next(r for r in db["dispatch_runs"].rows if r["agent"] == agent)
    finally:
        db.conn.close()


def wait_for(predicate, timeout=10.0, step=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def pid_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as fh:
            return any(line.startswith("State:") and "Z" in line.split()[1] for line in fh)
    except FileNotFoundError:
        return True


# placeholders and the argv ----------------------------------------------------------------------

def test_substitute_is_one_pass_and_literal():
    hostile = 'x; rm -rf / $(touch pwned) `id` "q\' \n{agent}{prompt_file}'
    argv = ["cmd", "--agent={agent}", "{prompt_file}", "{message_file}", "{{agent}}", "plain"]
    out = dispatch.substitute(argv, {"agent": hostile, "prompt_file": "{agent}", "message_file": ""})
    assert out == ["cmd", f"--agent={hostile}", "{agent}", "", "{agent}", "plain"]


def test_hostile_values_stay_one_argument_and_run_nothing(tmp_path, fake, monkeypatch):
    root = tmp_path / "ws; $(touch pwned) `touch pwned2` 'q\" \nline2"
    root.mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AGENTOPS_WORKSPACE", str(root))
    init_workspace(root)
    out = tmp_path / "out.jsonl"
    ws = configure(root, {"dana": argv_for(fake, "ok", out, "{agent}", "{prompt_file}", "{message_file}")})
    message = drop_mail(ws, "dana", subject="$(touch pwned3); echo 'hi' \"x\"",
                        body="`touch pwned4`\n{agent} {prompt_file}")
    result = dispatch.run_once(ws, "dana")
    assert result.ok, result.log.read_text()
    (run,) = runs(out)
    agent, prompt_file, message_file = run["argv"]
    assert agent == "dana"
    assert prompt_file == str(result.prompt_file) and Path(prompt_file).is_file()
    assert prompt_file.startswith(str(root))  # the hostile folder name arrived whole, as one argument
    assert message_file == str(message)
    assert "$(touch pwned3)" in Path(prompt_file).read_text()
    for name in ("pwned", "pwned2", "pwned3", "pwned4"):
        assert not list(tmp_path.rglob(name)), f"{name} was created: something ran a shell"


# one run ----------------------------------------------------------------------------------------

def test_run_once_writes_prompt_log_and_events(ws, fake, tmp_path):
    out = tmp_path / "out.jsonl"
    ws = configure(ws.root, {"dana": argv_for(fake, "ok", out, "{prompt_file}")})
    drop_mail(ws, "dana", subject="orders_daily failed")
    result = dispatch.run_once(ws, "dana")
    assert result.ok and result.status == 0
    assert result.prompt_file.parent == ws.run_dir / "prompts"
    assert result.prompt_file.name.startswith("dana-") and result.prompt_file.suffix == ".md"
    assert "orders_daily failed" in result.prompt_file.read_text()
    assert result.log.parent == ws.logs_dir / "dana" and result.log.suffix == ".log"
    assert "fake agent ran 1" in result.log.read_text()
    (run,) = runs(out)
    assert run["env_agent"] == "dana"
    evs = events(ws)
    assert [e["action"] for e in evs] == ["started", "succeeded"]
    assert evs[1]["exit_code"] == 0 and evs[1]["attempt"] == 1 and evs[1]["duration_s"] >= 0
    assert evs[1]["log"] == str(result.log.relative_to(ws.root))
    last = dispatch_row(ws, "dana")
    assert last["action"] == "succeeded" and last["runs"] == 1 and last["failures"] == 0
    assert last["log"] == evs[1]["log"]


def test_missing_command_is_a_failed_run(ws):
    ws = configure(ws.root, {"dana": ["/nonexistent/agent-cli", "{prompt_file}"]})
    result = dispatch.run_once(ws, "dana")
    assert not result.ok and result.exit_code == 127
    assert "cannot start" in result.log.read_text()
    assert [e["action"] for e in events(ws)] == ["started", "failed"]


def test_hang_is_killed_at_timeout_with_its_children(ws, fake, tmp_path):
    out = tmp_path / "child.pid"
    ws = configure(ws.root, {"dana": argv_for(fake, "hang", out)}, timeout_seconds=1.0)
    started = time.monotonic()
    result = dispatch.run_once(ws, "dana")
    took = time.monotonic() - started
    assert result.timed_out and not result.ok and result.status == dispatch.TIMED_OUT_EXIT
    assert 1.0 <= took < 1.0 + dispatch.KILL_GRACE_SECONDS + 2
    child = int(out.read_text())
    assert wait_for(lambda: pid_gone(child), 5), f"child {child} outlived the timeout"
    assert "timeout" in result.log.read_text()
    assert [e["action"] for e in events(ws)] == ["started", "timed_out"]


# the dispatcher ---------------------------------------------------------------------------------

def test_burst_of_mail_is_coalesced_and_never_overlaps(ws, fake, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_SLEEP", "0.15")
    out = tmp_path / "out.jsonl"
    ws = configure(ws.root, {"dana": argv_for(fake, "ok", out)}, coalesce_seconds=0.2)
    with dispatch.Dispatcher(ws) as d:
        last_mail = 0.0
        first_mail = time.time()
        for i in range(50):
            drop_mail(ws, "dana", subject=f"mail {i}")
            assert d.notify({"dana"}) == {"dana"}
            last_mail = time.time()
            time.sleep(0.02)
        assert d.wait_idle(20)
    got = runs(out)
    # runs never overlap and each takes at least FAKE_SLEEP, so however slow the machine is, a burst
    # of 50 mails wakes dana at most once per 0.15 s of the burst, plus once after it
    bound = 2 + int((last_mail - first_mail) / 0.15)
    assert 1 <= len(got) <= min(bound, 49), f"{len(got)} runs for a burst of 50 mails in {last_mail - first_mail:.2f} s"
    assert not any(r["overlap"] for r in got)
    spans = sorted((r["start"], r["end"]) for r in got)
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:]))
    assert spans[-1][0] >= last_mail  # the last mail was seen by a run that started after it
    assert all(r.ok for r in d.results)


def test_mail_during_a_run_gives_exactly_one_follow_up(ws, fake, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_SLEEP", "0.5")
    out = tmp_path / "out.jsonl"
    ws = configure(ws.root, {"dana": argv_for(fake, "ok", out)}, coalesce_seconds=0.05)
    with dispatch.Dispatcher(ws) as d:
        d.notify({"dana"})
        assert wait_for(lambda: (out.with_name(out.name + ".lock")).exists(), 10)
        for _ in range(5):
            d.notify({"dana"})
        assert d.wait_idle(20)
    assert len(runs(out)) == 2


def test_global_limit(ws, fake, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_SLEEP", "0.2")
    outs = {n: tmp_path / f"{n}.jsonl" for n in ("ann", "bea", "cal")}
    ws = configure(ws.root, {n: argv_for(fake, "ok", o) for n, o in outs.items()},
                   max_concurrent=1, coalesce_seconds=0)
    with dispatch.Dispatcher(ws) as d:
        d.notify({"ann", "bea", "cal", "user", "nobody"})
        assert d.wait_idle(20)
    spans = sorted((r["start"], r["end"]) for o in outs.values() for r in runs(o))
    assert len(spans) == 3
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:]))


def test_fails_twice_then_succeeds_with_growing_delays(ws, fake, tmp_path):
    out = tmp_path / "out.jsonl"
    ws = configure(ws.root, {"dana": argv_for(fake, "fail-twice", out)}, retries=3, backoff_seconds=0.3)
    with dispatch.Dispatcher(ws) as d:
        d.notify({"dana"})
        assert wait_for(lambda: len(d.results) >= 3, 20)
        assert d.wait_idle(10)
    got = runs(out)
    assert [r["n"] for r in got] == [1, 2, 3]
    gap1 = got[1]["start"] - got[0]["end"]
    gap2 = got[2]["start"] - got[1]["end"]
    assert gap1 >= 0.3 and gap2 >= 0.6 and gap2 > gap1
    actions = [(e["action"], e.get("attempt")) for e in events(ws)]
    assert actions == [("started", 1), ("failed", 1), ("retrying", 2), ("started", 2), ("failed", 2),
                       ("retrying", 3), ("started", 3), ("succeeded", 3)]
    assert [r.attempt for r in d.results] == [1, 2, 3]


def test_always_fails_gives_up_and_mails_user(ws, fake, tmp_path):
    out = tmp_path / "out.jsonl"
    ws = configure(ws.root, {"dana": argv_for(fake, "fail", out)}, retries=2, backoff_seconds=0.05)
    with dispatch.Dispatcher(ws) as d:
        d.notify({"dana"})
        assert wait_for(lambda: any(e["action"] == "gave_up" for e in events(ws)), 20)
        assert d.wait_idle(10)
    assert len(runs(out)) == 3
    gave_up = [e for e in events(ws) if e["action"] == "gave_up"]
    assert len(gave_up) == 1 and gave_up[0]["attempt"] == 3 and gave_up[0]["exit_code"] == 3
    log = gave_up[0]["log"]
    assert (ws.root / log).is_file()
    import mailbox

    box = mailbox.Maildir(str(ws.inbox("user")), create=False)
    msgs = [m for m in box if "dispatch gave up on dana" in str(m["Subject"])]
    assert len(msgs) == 1
    assert log in msgs[0].get_payload(decode=True).decode()
    assert "postmaster" in str(msgs[0]["From"])
    assert dispatch_row(ws, "dana")["gave_up"] == 1


def test_stop_kills_running_agents_and_joins(ws, fake, tmp_path):
    out = tmp_path / "child.pid"
    ws = configure(ws.root, {"dana": argv_for(fake, "hang", out)}, coalesce_seconds=0, retries=3)
    d = dispatch.Dispatcher(ws).start()
    try:
        d.notify({"dana"})
        assert wait_for(out.exists, 10)
    finally:
        started = time.monotonic()
        d.stop(grace=0.1)
    assert time.monotonic() - started < dispatch.KILL_GRACE_SECONDS + 2
    assert wait_for(lambda: pid_gone(int(out.read_text())), 5)
    (result,) = d.results
    assert result.stopped and not result.ok
    assert [e["action"] for e in events(ws)] == ["started", "failed"]  # no retry while stopping
    assert not [t for t in threading.enumerate() if t.name.startswith("agentops-dispatch")]


def test_notify_resolves_role_queues_and_skips_agents_without_on_mail(ws, fake, tmp_path):
    ws = configure(ws.root, {"ann": ["true"], "bea": ["true"], "cal": None})
    assert dispatch.dispatchable(ws, ["data-engineer"]) == {"ann", "bea"}
    assert dispatch.dispatchable(ws, ["cal", "user", "postmaster", "nobody"]) == set()
    assert dispatch.dispatchable(ws, ["ANN"]) == {"ann"}


# the CLI ----------------------------------------------------------------------------------------

def test_cli_dry_run_prints_argv_and_prompt_and_runs_nothing(ws, cli, fake, tmp_path):
    out = tmp_path / "out.jsonl"
    ws = configure(ws.root, {"dana": argv_for(fake, "ok", out, "Read {prompt_file}; do it", "{agent}")})
    drop_mail(ws, "dana", subject="check the orders table")
    result = cli("dispatch", "dana", "--dry-run")
    assert result.exit_code == 0, result.output
    argv_line = next(line for line in result.output.splitlines() if str(fake) in line)
    argv = shlex.split(argv_line)
    assert argv[:4] == argv_for(fake, "ok", out)
    assert argv[4].startswith("Read ") and argv[4].endswith(".md; do it") and argv[5] == "dana"
    assert "check the orders table" in result.output
    assert not out.exists() and not (ws.logs_dir / "dana").exists()
    assert not (ws.run_dir / "prompts").exists()


def test_cli_runs_by_hand_with_retries_and_exit_status(ws, cli, fake, tmp_path):
    ok, bad = tmp_path / "ok.jsonl", tmp_path / "bad.jsonl"
    configure(ws.root, {"dana": argv_for(fake, "ok", ok), "bob": argv_for(fake, "fail", bad), "cal": None},
              retries=1, backoff_seconds=0.05)
    result = cli("dispatch", "dana")
    assert result.exit_code == 0, result.output
    assert "dana: succeeded" in result.output and len(runs(ok)) == 1
    result = cli("dispatch", "bob")
    assert result.exit_code == 3
    assert "after 2 attempt(s)" in result.output and ".agent/logs/bob/" in result.output
    assert len(runs(bad)) == 2
    assert [e["action"] for e in events(Workspace(ws.root)) if e["agent"] == "bob"] == \
        ["started", "failed", "retrying", "started", "failed", "gave_up"]


def test_cli_errors(ws, cli):
    configure(ws.root, {"cal": None})
    result = cli("dispatch", "nobody")
    assert result.exit_code == 5 and "no agent 'nobody'" in result.output
    result = cli("dispatch", "cal")
    assert result.exit_code == 4 and "has no on_mail" in result.output


def test_one_run_per_agent_across_processes(ws, cli, fake, tmp_path):
    out = tmp_path / "out.jsonl"
    ws = configure(ws.root, {"dana": argv_for(fake, "ok", out)})
    with dispatch.agent_lock(ws, "dana"):  # as if the daemon were running dana right now
        result = cli("dispatch", "dana")
        assert result.exit_code == 6 and "already being run" in result.output
        assert not out.exists()
    assert cli("dispatch", "dana").exit_code == 0 and len(runs(out)) == 1


def test_old_prompt_files_and_logs_are_pruned_per_agent(ws, fake, tmp_path):
    out = tmp_path / "out.jsonl"
    ws = configure(ws.root, {"dana": argv_for(fake, "ok", out), "dan": argv_for(fake, "ok", out)}, keep_runs=3)
    for _ in range(5):
        assert dispatch.run_once(ws, "dana").ok
    assert dispatch.run_once(ws, "dan").ok
    prompts = sorted(p.name for p in (ws.run_dir / "prompts").iterdir())
    assert len([p for p in prompts if p.startswith("dana-")]) == 3
    assert len([p for p in prompts if p.startswith("dan-")]) == 1  # another agent's files are its own
    logs = sorted((ws.logs_dir / "dana").iterdir())
    assert len(logs) == 3
    last = [e for e in events(ws) if e["action"] == "succeeded" and e["agent"] == "dana"][-1]
    assert (ws.root / last["log"]).exists()  # the newest run's log is kept
    (ws.logs_dir / "dana" / "notes.txt").write_text("mine")  # not a run file: never touched
    assert dispatch.prune_runs(ws, "dana", 1) == 4
    assert sorted(p.name for p in (ws.logs_dir / "dana").iterdir())[-1] == "notes.txt"
