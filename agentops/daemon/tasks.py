"""Daemon tasks: what the daemon does with the files it watches. Other concepts plug in here.

A task names the folders it needs watched, says which paths it handles, lists its candidates on
disk (at start and at every rescan), and handles a batch of settled paths on the worker thread:

    class DaemonTask(Protocol):
        name: str
        def dirs(self) -> list[Path]: ...             # folders to watch (not recursive)
        def wants(self, path: Path) -> bool: ...      # a path this task handles
        def start(self) -> None: ...                  # on the worker, before anything else
        def scan(self) -> list[Path]: ...             # candidates on disk (start, every rescan)
        def handle(self, paths: list[Path]) -> None: ...  # on the worker, after the settle time
        def close(self) -> None: ...

`Task` gives no-op defaults. Built-in tasks: mail routing, Orbit ingest, spec re-check. A new one
is added with `register_task(factory)`, where `factory(daemon)` returns the task (or None to stay
out); the daemon builds every registered task when it starts, so the core is never edited.

Waking agents (`agentops.dispatch.daemon_task`) hooks in the same way: its task calls
`daemon.on_mail(callback)` in `start`, and the mail task calls `callback(inboxes)` after each batch
with the set of agent names whose inbox received new mail.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Protocol, runtime_checkable

from agentops.daemon.logs import log
from agentops.errors import AgentOpsError

if TYPE_CHECKING:
    from agentops.daemon.core import Daemon
    from agentops.mail.route import RouteReport
    from agentops.orbit.log import IngestReport


@runtime_checkable
class DaemonTask(Protocol):
    name: str

    def dirs(self) -> list[Path]: ...
    def wants(self, path: Path) -> bool: ...
    def start(self) -> None: ...
    def scan(self) -> list[Path]: ...
    def handle(self, paths: list[Path]) -> None: ...
    def close(self) -> None: ...


class InactiveTask(Exception):
    """Raised by a task's `start` when what it needs is not there (it is then skipped)."""


class Task:
    """Base class with no-op defaults. `self.daemon` gives the workspace, the logger and stats."""

    name = "task"

    def __init__(self, daemon: "Daemon"):
        self.daemon = daemon
        self.ws = daemon.ws

    def dirs(self) -> list[Path]:
        return []

    def wants(self, path: Path) -> bool:
        return False

    def start(self) -> None:
        pass

    def scan(self) -> list[Path]:
        return []

    def handle(self, paths: list[Path]) -> None:
        pass

    def close(self) -> None:
        pass

    # helpers ------------------------------------------------------------------------------
    def log(self, level: int, event: str, **fields: Any) -> None:
        log(self.daemon.logger, level, event, task=self.name, **fields)

    @staticmethod
    def listdir(folder: Path, match: Callable[[Path], bool]) -> list[Path]:
        try:
            with os.scandir(folder) as entries:
                names = sorted(e.name for e in entries)  # sorting strings, not paths: 5,000 files cost
        except (FileNotFoundError, NotADirectoryError):
            return []
        return [p for p in (folder / name for name in names) if match(p)]


def _is_drop(path: Path, folder: Path, suffixes: Iterable[str]) -> bool:
    name = path.name
    return path.parent == folder and not name.startswith(".") and name.endswith(tuple(suffixes))


# mail ---------------------------------------------------------------------------------------
class MailTask(Task):
    """Routes `.agent/email/*.email` into the inboxes (`agentops.mail.route.route_pending`), and
    agentops' own messages (`agentops.mail.notify`), which arrive in the spool as `<token>^<name>`
    (every routing pass finishes the spool first)."""

    name = "mail"

    def __init__(self, daemon):
        super().__init__(daemon)
        self._db = None
        self._route = None

    def dirs(self):
        return [self.ws.email_dir, self.ws.spool_dir]

    def wants(self, path):
        return _is_drop(path, self.ws.email_dir, (".email",)) or (
            path.parent == self.ws.spool_dir and "^" in path.name and not path.name.startswith("."))

    def start(self):
        from agentops.mail.route import recover, route_pending

        self._route = route_pending
        report = recover(self.ws, db=self._database())
        if report.recovered:
            self.log(logging.INFO, "recovered", entries=report.recovered, delivered=report.delivered,
                     dead=report.dead)
        self._account(report, 0)

    def scan(self):
        """The drop files; and, at every rescan, a pass over what an earlier pass claimed and could not
        finish (the disk was full, the store was gone): it is delivered once space returns, without
        waiting for a new drop file or a restart."""
        if self._route is not None and self._spool_waiting():
            self.handle([])
        return self.listdir(self.ws.email_dir, self.wants)

    def _spool_waiting(self) -> bool:
        from agentops import safefs

        try:
            return any(not n.startswith(".") for n in safefs.listdir(self.ws, self.ws.spool_dir))
        except (OSError, AgentOpsError):
            return False

    def _database(self):
        """The open store; reopened when `orbit.db` was deleted or replaced since (checked at each
        batch: a connection to a deleted file would index deliveries nobody can see)."""
        if self._db is not None and self._db.replaced():
            self.log(logging.WARNING, "orbit-db-replaced", action="reopened")
            self.close()
        if self._db is None:
            self._db = self.ws.db()
        return self._db

    def handle(self, paths):
        try:
            report = self._route(self.ws, paths, db=self._database())
        except BaseException:
            self.close()  # a pass that failed half-way (a full disk) leaves no open statement or transaction
            raise
        self._account(report, len(paths))

    def _account(self, report: "RouteReport", files: int) -> None:
        self.daemon.stats.routed(report.delivered, report.dead)
        if files and (report.delivered or report.dead):
            self.log(logging.INFO, "routed", files=files, delivered=report.delivered, dead=report.dead,
                     ms=round(report.seconds * 1000, 1))
        for entry in report.dead_letters:
            self.log(logging.WARNING, "dead-letter",
                     **{k: v for k, v in entry.items() if k in ("id", "cause", "reason", "name", "sender")})
        if report.inboxes or report.queues:  # dispatch wakes the agents and the role queues' members
            self.daemon.mail_arrived(report.inboxes | report.queues)

    def close(self):
        if self._db is not None:
            try:
                self._db.conn.close()
            finally:
                self._db = None


# orbit --------------------------------------------------------------------------------------
class OrbitIngestTask(Task):
    """Ingests `.agent/orbit/*.jsonl` (`agentops.orbit.ingest.ingest_pending`)."""

    name = "orbit-ingest"

    def dirs(self):
        return [self.ws.orbit_dir]

    def wants(self, path):
        return _is_drop(path, self.ws.orbit_dir, (".jsonl",))

    def start(self):
        from agentops.orbit.ingest import ingest_pending

        self._ingest = ingest_pending

    def scan(self):
        return self.listdir(self.ws.orbit_dir, self.wants)

    def handle(self, paths):
        report: IngestReport = self._ingest(self.ws, paths=paths)
        rejected, aside = report.rejected, report.set_aside
        self.log(logging.WARNING if rejected or aside else logging.INFO, "ingested", files=len(paths),
                 accepted=report.accepted, duplicates=report.duplicates, rejected=len(rejected),
                 set_aside=len(aside))
        for line, reason in rejected[:20]:
            self.log(logging.WARNING, "rejected-line", line=line, reason=reason)
        for name, reason in aside[:20]:
            self.log(logging.WARNING, "rejected-file", file=name, reason=reason, moved_to="rejected/")


# pipelines and roles ------------------------------------------------------------------------
class SpecCheckTask(Task):
    """Re-validates changed `.agent/data/pipelines/*.yaml`, `roles/*.agent.md` and `agentops.toml`
    (`agentops.pipelines.watch.recheck`; a spec owner is mailed once per new problem). A deleted
    file is noticed at the next rescan."""

    name = "spec-check"

    def __init__(self, daemon):
        super().__init__(daemon)
        self._seen: dict[Path, tuple[int, int]] = {}
        self._scanned = False

    def dirs(self):
        return [self.ws.pipelines_dir, self.ws.roles_dir, self.ws.root]

    def wants(self, path):
        return (_is_drop(path, self.ws.pipelines_dir, (".yaml", ".yml"))
                or _is_drop(path, self.ws.roles_dir, (".agent.md",))
                or path == self.ws.config_path)

    def start(self):
        from agentops.pipelines.watch import recheck

        self._recheck = recheck

    def _files(self) -> dict[Path, tuple[int, int]]:
        found = {}
        for folder in (self.ws.pipelines_dir, self.ws.roles_dir, self.ws.root):
            for path in self.listdir(folder, self.wants):
                try:
                    st = path.stat()
                except OSError:
                    continue
                found[path] = (st.st_mtime_ns, st.st_size)
        return found

    def scan(self):
        now = self._files()
        first, self._scanned = not self._scanned, True
        changed = [p for p, sig in now.items() if first or self._seen.get(p) != sig]
        gone = [p for p in self._seen if p not in now]
        self._seen = now
        if gone:
            self.handle(gone)
        return changed

    def handle(self, paths):
        if any(p == self.ws.config_path or p.parent == self.ws.roles_dir for p in paths):
            self.ws.refresh()  # a roster or role change takes effect without a restart
        for p in paths:
            try:
                st = p.stat()
                self._seen[p] = (st.st_mtime_ns, st.st_size)
            except OSError:
                self._seen.pop(p, None)
        results = self._recheck(self.ws, paths)
        problems = sum(len(r.problems) for r in results)
        mailed = [f"{r.file}: {r.mailed}" for r in results if r.mailed]
        self.log(logging.WARNING if problems else logging.INFO, "spec-check", files=len(paths),
                 checked=len(results), problems=problems, mailed=mailed)
        for r in results:
            if r.error:
                self.log(logging.WARNING, "spec-check-mail-failed", file=r.file, error=r.error)


# dispatch -----------------------------------------------------------------------------------
def dispatch_task(daemon):
    """Wake agents with `on_mail` when their mail arrives (`agentops.dispatch`)."""
    from agentops.dispatch import daemon_task

    return daemon_task(daemon)


def reservations_task(daemon):
    """Mail the holder when a file reserved exclusively changes (`agentops.reservations`)."""
    from agentops.reservations import daemon_task

    return daemon_task(daemon)


# registry -----------------------------------------------------------------------------------
TaskFactory = Callable[["Daemon"], "DaemonTask | None"]
_FACTORIES: list[TaskFactory] = []


def register_task(factory: TaskFactory) -> TaskFactory:
    """Add a task to every daemon started after this call (usable as a class decorator)."""
    if factory not in _FACTORIES:
        _FACTORIES.append(factory)
    return factory


def registered_tasks() -> list[TaskFactory]:
    return list(_FACTORIES)


for _builtin in (MailTask, OrbitIngestTask, SpecCheckTask, dispatch_task, reservations_task):
    register_task(_builtin)
