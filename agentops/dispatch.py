"""Dispatch (SPEC §9): wake an agent when mail arrives by running its roster `on_mail` command.

`run_once` is one run: render the agent's prompt to a file, substitute the placeholders in the
argv (never through a shell), run it in its own process group with the output kept in
`.agent/logs/<agent>/<time>.log`, kill the whole group at the timeout. `run_with_retries` is what
`agentops dispatch AGENT` does by hand. `Dispatcher` is what the daemon owns: `notify(agents)` when
mail lands, and it coalesces bursts, runs one at a time per agent under a global limit, retries
with exponential backoff and jitter, and mails `user` when it gives up.

Every start, finish, failure, retry and give-up is an Orbit event of kind `dispatch`; the
`dispatch_runs` table keeps each agent's latest run for `status`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
import signal
import stat
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

from agentops.errors import ConflictError, NotFoundError, ValidationError

KILL_GRACE_SECONDS = 2.0  # after SIGTERM to the process group, before SIGKILL
STOP_GRACE_SECONDS = 5.0  # Dispatcher.stop(): how long running agents get to finish
POLL_SECONDS = 0.05
JITTER = 0.25  # a retry delay is stretched by up to this share (so delays still grow)
TIMED_OUT_EXIT = 124  # exit status reported for a run killed at the timeout (as timeout(1))

logging.getLogger("agentops.dispatch").addHandler(logging.NullHandler())

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{(agent|prompt_file|message_file)\}")


@dataclass
class RunResult:
    agent: str
    attempt: int
    argv: list[str]
    log: Path
    prompt_file: Path
    exit_code: int  # the process's status; negative -N when killed by signal N
    duration_s: float
    timed_out: bool = False
    stopped: bool = False  # killed because the dispatcher was stopping

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    @property
    def status(self) -> int:
        """A shell-style exit status for the CLI: 124 for a timeout, 128+N for signal N."""
        if self.timed_out:
            return TIMED_OUT_EXIT
        if self.exit_code < 0:
            return 128 - self.exit_code
        return min(self.exit_code, 255)


@dataclass
class Plan:
    """What a run would do: the argv with placeholders filled in, and where things go."""

    agent: str
    argv: list[str]
    prompt_file: Path
    message_file: Path | None
    log: Path
    prompt: str


# building a run ---------------------------------------------------------------------------------

def substitute(argv: Iterable[str], values: dict[str, str]) -> list[str]:
    """Fill `{agent}`, `{prompt_file}`, `{message_file}` in each argument, in one pass.

    A value is inserted literally and never scanned again, so a value holding `{agent}`, `;`,
    `$(...)`, quotes or newlines stays inside its one argument. `{{` and `}}` are literal braces
    (as the roster validator reads them). Nothing here ever reaches a shell.
    """
    def fill(match: re.Match) -> str:
        token = match.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        return values[match.group(1)]

    return [_PLACEHOLDER.sub(fill, arg) for arg in argv]


def agent_entry(ws, name: str):
    """The roster agent called `name`, which must have `on_mail`."""
    from agentops.addresses import slug

    book = ws.addresses
    agent = book.agents.get(slug(name))
    if agent is None:
        known = ", ".join(sorted(book.agents)) or "none"
        raise NotFoundError(f"no agent '{name}' in this workspace (known: {known})",
                            hint="check the name, or add it to [[agents]] in agentops.toml")
    if not agent.on_mail:
        raise ValidationError(f"agent '{agent.name}' has no on_mail command in agentops.toml",
                              hint='add on_mail = ["cmd", "{prompt_file}"] to its [[agents]] entry')
    return agent


def dispatchable(ws, names: Iterable[str]) -> set[str]:
    """The agents with `on_mail` among `names`: agent inboxes, or role queues (every member)."""
    from agentops.addresses import slug

    book = ws.addresses
    out: set[str] = set()
    for name in names:
        s = slug(str(name))
        if s in book.agents:
            candidates = [s]
        elif s in book.roles:
            candidates = book.members(s)
        else:
            continue
        out.update(a for a in candidates if book.agents[a].on_mail)
    return out


def newest_message(ws, agent) -> Path | None:
    """The newest message file in the agent's inbox (or its role's queue), or None."""
    dirs = [ws.inbox(agent.name) / sub for sub in ("new", "cur")]
    dirs += [ws.queues_root / agent.role_slug / sub for sub in ("new", "cur")]
    from agentops import safefs
    from agentops.errors import AgentOpsError

    best: tuple[float, str, Path] | None = None
    for d in dirs:
        try:
            entries = safefs.scan(ws, d)
        except (OSError, AgentOpsError):
            continue  # missing, or not a folder of the workspace's own
        for name, st in entries:
            if not stat.S_ISREG(st.st_mode):
                continue
            key = (st.st_mtime, name, d / name)
            if best is None or key[:2] > best[:2]:
                best = key
    return best[2] if best else None


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H%M%S.%fZ")


def _unique(path: Path) -> Path:
    n = 1
    candidate = path
    while os.path.lexists(candidate):
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
        n += 1
    return candidate


_RUN_FILE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{6}\.\d{6}Z(?:-\d+)?\.(?:md|log)")


def prune_runs(ws, agent: str, keep: int) -> int:
    """Delete all but the newest `keep` prompt files and logs of `agent` (their names sort by time).
    Returns how many files went."""
    from agentops import safefs

    gone = 0
    for folder, prefix in ((ws.run_dir / "prompts", f"{agent}-"), (ws.logs_dir / agent, "")):
        try:
            names = sorted(n for n in safefs.listdir(ws, folder)
                           if n.startswith(prefix) and _RUN_FILE.fullmatch(n[len(prefix):]))
        except FileNotFoundError:
            continue
        for name in names[:max(0, len(names) - keep)]:
            gone += safefs.unlink(ws, folder / name)
    return gone


def plan(ws, name: str) -> Plan:
    """Render the prompt and build the argv for one run of `name` (nothing is written)."""
    from agentops.prompt import build_prompt

    agent = agent_entry(ws, name)
    stamp = _stamp()
    prompt_file = _unique(ws.run_dir / "prompts" / f"{agent.name}-{stamp}.md")
    log = _unique(ws.logs_dir / agent.name / f"{stamp}.log")
    message = newest_message(ws, agent)
    values = {"agent": agent.name, "prompt_file": str(prompt_file),
              "message_file": str(message) if message else ""}
    return Plan(agent.name, substitute(agent.on_mail, values), prompt_file, message, log,
                build_prompt(ws, agent.name))


# running ----------------------------------------------------------------------------------------

def kill_group(proc: subprocess.Popen, grace: float = KILL_GRACE_SECONDS) -> None:
    """SIGTERM the process's whole group; SIGKILL the group once the leader is gone or `grace`
    seconds have passed, so no child it spawned outlives the run."""
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    _signal_group(proc.pid, signal.SIGKILL)
    proc.wait()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


@contextlib.contextmanager
def agent_lock(ws, agent: str, *, wait: bool = True, cancel: threading.Event | None = None):
    """Hold `.agent/run/dispatch/<agent>.lock`: one run per agent across processes (the daemon and
    `agentops dispatch`). `wait=False`: ConflictError at once when another process holds it."""
    from agentops.pidlock import FileLock

    def conflict(pid: int | None) -> ConflictError:
        return ConflictError(f"agent '{agent}' is already being run (pid {pid or '?'})",
                             hint=f"wait for it to finish; its output is in {_rel(ws, ws.logs_dir / agent)}/")

    lock = FileLock(ws, ws.run_dir / "dispatch" / f"{agent}.lock", conflict=conflict)
    lock.acquire(wait=wait, cancel=cancel if cancel is not None else (threading.Event() if wait else None))
    try:
        yield
    finally:
        lock.release()


def run_once(ws, name: str, *, attempt: int = 1, timeout: float | None = None,
             cancel: threading.Event | None = None, wait: bool = True,
             on_start: Callable[[subprocess.Popen], None] | None = None) -> RunResult:
    """One run of the agent's `on_mail` command; records `started` and its outcome in Orbit.

    Waits while another process runs the same agent (`wait=False`: ConflictError instead)."""
    agent = agent_entry(ws, name).name
    with agent_lock(ws, agent, wait=wait, cancel=cancel):
        return _run(ws, agent, attempt, timeout, cancel, on_start)


def _run(ws, name, attempt, timeout, cancel, on_start) -> RunResult:
    from agentops import safefs

    settings = ws.config.dispatch
    timeout = settings.timeout_seconds if timeout is None else timeout
    p = plan(ws, name)
    prune_runs(ws, p.agent, settings.keep_runs - 1)  # with this run's files: keep_runs of each
    safefs.create_exclusive(ws, p.prompt_file, p.prompt)
    log_fd = safefs.open_file(ws, p.log, os.O_WRONLY | os.O_CREAT | os.O_EXCL, create_parents=True)
    try:
        record(ws, p.agent, "started", attempt=attempt, log=p.log, prompt_file=p.prompt_file)
    except BaseException:
        os.close(log_fd)
        raise
    env = {**os.environ, "AGENTOPS_WORKSPACE": str(ws.root), "AGENTOPS_AGENT": p.agent}
    started = time.monotonic()
    timed_out = stopped = False
    with os.fdopen(log_fd, "wb") as log:
        try:
            proc = subprocess.Popen(p.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    cwd=ws.root, env=env, start_new_session=True, close_fds=True)
        except OSError as exc:
            log.write(f"agentops: cannot start {p.argv[0]!r}: {exc}\n".encode())
            code = 127 if isinstance(exc, FileNotFoundError) else 126
            result = RunResult(p.agent, attempt, p.argv, p.log, p.prompt_file, code,
                               time.monotonic() - started)
            record(ws, p.agent, "failed", attempt=attempt, exit_code=code, log=p.log,
                   duration_s=result.duration_s, error=str(exc))
            return result
        if on_start:
            on_start(proc)
        deadline = started + timeout
        try:
            while True:
                try:
                    code = proc.wait(timeout=max(0.0, min(POLL_SECONDS, deadline - time.monotonic())))
                    break
                except subprocess.TimeoutExpired:
                    if cancel is not None and cancel.is_set():
                        stopped = True
                    elif time.monotonic() >= deadline:
                        timed_out = True
                    else:
                        continue
                    kill_group(proc)
                    code = proc.wait()
                    break
        except BaseException:  # Ctrl-C on `agentops dispatch`: its own session would not get it
            kill_group(proc, grace=0.5)
            raise
        duration = time.monotonic() - started
        if timed_out:
            log.write(f"\nagentops: killed after the {timeout:g}s timeout\n".encode())
        elif stopped:
            log.write(b"\nagentops: killed because the daemon is stopping\n")
    result = RunResult(p.agent, attempt, p.argv, p.log, p.prompt_file, code, duration, timed_out, stopped)
    action = "succeeded" if result.ok else "timed_out" if timed_out else "failed"
    record(ws, p.agent, action, attempt=attempt, exit_code=code, log=p.log, duration_s=duration,
           **({"stopped": True} if stopped else {}))
    return result


def retry_delay(settings, retry: int) -> float:
    """Delay before retry number `retry` (1-based): backoff * 2**(retry-1), stretched by jitter."""
    return settings.backoff_seconds * (2 ** (retry - 1)) * (1 + random.uniform(0, JITTER))


def run_with_retries(ws, name: str, *, sleep: Callable[[float], None] = time.sleep) -> RunResult:
    """Run now, retrying a failed run with backoff as configured (what `agentops dispatch` does)."""
    settings = ws.config.dispatch
    attempt = 1
    while True:
        result = run_once(ws, name, attempt=attempt, wait=False)
        if result.ok:
            return result
        if attempt > settings.retries:
            record(ws, result.agent, "gave_up", attempt=attempt, exit_code=result.exit_code, log=result.log)
            return result
        delay = retry_delay(settings, attempt)
        record(ws, result.agent, "retrying", attempt=attempt + 1, delay_s=round(delay, 3), log=result.log)
        sleep(delay)
        attempt += 1


# Orbit ------------------------------------------------------------------------------------------

def record(ws, agent: str, action: str, **fields) -> None:
    """Log a `dispatch` event (its deriver updates `dispatch_runs` in the same transaction)."""
    from agentops.orbit import Orbit
    from agentops.orbit.events import DispatchEvent

    data = {}
    for key, value in fields.items():
        if isinstance(value, Path):
            value = _rel(ws, value)
        elif isinstance(value, float):
            value = round(value, 3)
        data[key] = value
    with Orbit.open(ws) as orbit:
        orbit.log(DispatchEvent(kind="dispatch", agent=agent, action=action, **data), send_alerts=False)


def _rel(ws, path: Path) -> str:
    try:
        return str(Path(path).relative_to(ws.root))
    except ValueError:
        return str(path)


def mail_gave_up(ws, result: RunResult, attempts: int) -> None:
    """Tell `user` that dispatch gave up on an agent, with the log path."""
    from agentops import mail

    log = _rel(ws, result.log)
    why = "timed out" if result.timed_out else f"exited with status {result.exit_code}"
    body = (f"agentops gave up waking {result.agent} after {attempts} attempts.\n\n"
            f"The last run {why}.\nLog: {log}\nPrompt: {_rel(ws, result.prompt_file)}\n\n"
            f"Fix the on_mail command in agentops.toml (try `agentops dispatch {result.agent} --dry-run`),\n"
            f"then run it by hand with `agentops dispatch {result.agent}`, or wait for the next mail.\n")
    mail.notify(ws, to="user", subject=f"dispatch gave up on {result.agent}", body=body)


# the daemon's dispatcher ------------------------------------------------------------------------

@dataclass
class _AgentState:
    due: float | None = None  # monotonic time the next run may start; None: nothing pending
    running: bool = False
    dirty_since: float | None = None  # mail arrived while running (first arrival)
    attempt: int = 1  # attempt number of the next run (>1: a retry is pending)
    proc: subprocess.Popen | None = None
    thread: threading.Thread | None = field(default=None, repr=False)


class Dispatcher:
    """Runs agents' `on_mail` commands when the daemon says their mail arrived.

    Thread model: `notify` only records what is due and wakes the scheduler thread; the scheduler
    starts one worker thread per run (at most `max_concurrent` at once, one per agent); a worker
    runs the process and reports back. `stop()` cancels what is pending, gives running agents
    `grace` seconds, kills their process groups, and joins every thread.
    """

    def __init__(self, ws, *, logger: logging.Logger | None = None, mail_on_give_up: bool = True,
                 stop_grace: float = STOP_GRACE_SECONDS):
        self.ws = ws
        self.settings = ws.config.dispatch
        self.logger = logger or logging.getLogger("agentops.dispatch")
        self.mail_on_give_up = mail_on_give_up
        self.stop_grace = stop_grace
        self._cond = threading.Condition()
        self._agents: dict[str, _AgentState] = {}
        self._running = 0
        self._stopping = False
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self.results: deque[RunResult] = deque(maxlen=200)  # the latest finished runs, oldest first

    # lifecycle
    def start(self) -> "Dispatcher":
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="agentops-dispatch", daemon=True)
            self._thread.start()
        return self

    def stop(self, grace: float | None = None) -> None:
        """Cancel pending runs, let running ones finish for `grace` seconds, kill the rest, join."""
        grace = self.stop_grace if grace is None else grace
        with self._cond:
            self._stopping = True
            for state in self._agents.values():
                state.due = None
                state.dirty_since = None
            self._cond.notify_all()
            deadline = time.monotonic() + grace
            while self._running and time.monotonic() < deadline:
                self._cond.wait(max(0.0, deadline - time.monotonic()))
        self._cancel.set()  # workers kill their process groups
        for thread in self._threads():
            thread.join()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> "Dispatcher":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _threads(self) -> list[threading.Thread]:
        with self._cond:
            return [s.thread for s in self._agents.values() if s.thread is not None]

    # the daemon's hook
    def notify(self, agents: Iterable[str]) -> set[str]:
        """New mail landed in these inboxes (agent names or role queues). Returns the agents woken."""
        try:
            names = dispatchable(self.ws, agents)
        except Exception:  # a broken roster must not stop mail delivery
            self.logger.exception("dispatch-notify-error")
            return set()
        now = time.monotonic()
        with self._cond:
            if self._stopping:
                return set()
            for name in names:
                state = self._agents.setdefault(name, _AgentState())
                if state.running:
                    if state.dirty_since is None:
                        state.dirty_since = now
                elif state.due is None:
                    state.due = now + self.settings.coalesce_seconds
                # else: already pending (coalescing, or a retry that will read the new mail too)
            self._cond.notify_all()
        return names

    def wait_idle(self, timeout: float | None) -> bool:
        """Wait until nothing runs and nothing is pending (retries included); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if not self._running and all(s.due is None and s.dirty_since is None
                                             for s in self._agents.values()):
                    return True
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(0.1 if left is None else min(left, 0.1))

    # scheduler
    def _loop(self) -> None:
        with self._cond:
            while not self._stopping:
                now = time.monotonic()
                wait = None
                for name, state in sorted(self._agents.items(), key=lambda kv: kv[1].due or 0):
                    if state.due is None or state.running:
                        continue
                    if state.due <= now:
                        if self._running >= self.settings.max_concurrent:
                            continue  # woken again when a run finishes
                        self._launch(name, state)
                    else:
                        wait = state.due - now if wait is None else min(wait, state.due - now)
                self._cond.wait(wait)

    def _launch(self, name: str, state: _AgentState) -> None:
        if state.thread is not None:
            state.thread.join()  # it has already reported back; reap it
        state.due = None
        state.running = True
        self._running += 1
        attempt = state.attempt
        state.thread = threading.Thread(target=self._work, args=(name, attempt),
                                        name=f"agentops-dispatch-{name}", daemon=True)
        state.thread.start()

    def _work(self, name: str, attempt: int) -> None:
        result: RunResult | None = None
        try:
            result = run_once(self.ws, name, attempt=attempt, cancel=self._cancel,
                              on_start=lambda proc: self._set_proc(name, proc))
        except Exception as exc:  # e.g. the prompt did not render: a failed attempt, retried
            self.logger.exception("dispatch-error", extra={"fields": {"agent": name, "attempt": attempt}})
            try:
                record(self.ws, name, "failed", attempt=attempt, error=f"{type(exc).__name__}: {exc}")
            except Exception:
                pass
        if result is not None:
            self._log(result)
        failed = result is None or not result.ok
        retry_at: float | None = None
        try:  # record the decision before the next run can start, so events stay in order
            if failed and not self._stopping:
                if attempt <= self.settings.retries:
                    delay = retry_delay(self.settings, attempt)
                    retry_at = time.monotonic() + delay
                    record(self.ws, name, "retrying", attempt=attempt + 1, delay_s=delay,
                           log=result.log if result else None)
                else:
                    self._give_up(name, result, attempt)
        except Exception:
            self.logger.exception("dispatch-record-error", extra={"fields": {"agent": name}})
        with self._cond:
            state = self._agents[name]
            state.running = False
            state.proc = None
            self._running -= 1
            if result is not None:
                self.results.append(result)
            if not self._stopping:
                if retry_at is not None:
                    state.attempt = attempt + 1
                    state.due = retry_at
                    state.dirty_since = None  # the retry renders a fresh prompt with the new mail
                else:
                    state.attempt = 1
                    if state.dirty_since is not None:  # exactly one follow-up run
                        state.due = max(time.monotonic(), state.dirty_since + self.settings.coalesce_seconds)
                        state.dirty_since = None
            self._cond.notify_all()

    def _give_up(self, name: str, result: RunResult | None, attempts: int) -> None:
        record(self.ws, name, "gave_up", attempt=attempts,
               exit_code=result.exit_code if result else None, log=result.log if result else None)
        self.logger.warning("dispatch-gave-up", extra={"fields": {
            "agent": name, "attempts": attempts, "log": _rel(self.ws, result.log) if result else None}})
        if self.mail_on_give_up and result is not None:
            mail_gave_up(self.ws, result, attempts)

    def _set_proc(self, name: str, proc: subprocess.Popen) -> None:
        with self._cond:
            self._agents[name].proc = proc

    def _log(self, result: RunResult) -> None:
        action = "succeeded" if result.ok else "timed-out" if result.timed_out else "failed"
        level = logging.INFO if result.ok else logging.WARNING
        self.logger.log(level, f"dispatch-{action}", extra={"fields": {
            "agent": result.agent, "attempt": result.attempt, "exit_code": result.exit_code,
            "duration_s": round(result.duration_s, 3), "log": _rel(self.ws, result.log)}})

    def flush(self) -> None:
        """Start everything pending now instead of at the end of its coalesce or backoff window."""
        with self._cond:
            now = time.monotonic()
            for state in self._agents.values():
                if state.due is not None:
                    state.due = now
            self._cond.notify_all()


# the daemon's task ------------------------------------------------------------------------------

def daemon_task(daemon):
    """The daemon task factory (registered in `agentops.daemon.tasks`): wake agents on mail."""
    from agentops.daemon.tasks import InactiveTask, Task

    class DispatchTask(Task):
        """Owns a `Dispatcher`; the daemon's mail task calls `wake` with the inboxes that got mail."""

        name = "dispatch"

        def __init__(self, daemon):
            super().__init__(daemon)
            self.dispatcher: Dispatcher | None = None

        def start(self):
            if self.dispatcher is not None:
                return
            agents = sorted(a.name for a in self.ws.addresses.agents.values() if a.on_mail)
            if not agents:
                raise InactiveTask("no agent has on_mail in agentops.toml")
            self.dispatcher = Dispatcher(self.ws, logger=self.daemon.logger).start()
            self.daemon.on_mail(self.wake)
            self.log(logging.INFO, "dispatch-ready", agents=agents,
                     max_concurrent=self.dispatcher.settings.max_concurrent)

        def wake(self, inboxes: set[str]) -> None:
            if self.dispatcher is not None:
                self.dispatcher.notify(inboxes)

        def close(self):
            if self.dispatcher is None:
                return
            if getattr(self.daemon, "_mode", None) == "once":  # --once: run what the mail asked for
                self.dispatcher.flush()
                self.dispatcher.wait_idle(None)
            self.dispatcher.stop()
            self.dispatcher = None

    return DispatchTask(daemon)
