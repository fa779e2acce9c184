"""The daemon: a watchdog observer whose handler only enqueues paths, and one worker thread that
settles them and hands them to the tasks in batches.

Life of a path: the handler puts `(path, kind, time)` on a queue. The worker drains the queue,
keeps each path pending until it has settled, then calls the task that wants it with every ready
path at once (`task.handle(paths)`), so a burst is routed in a few large batches while a single file
goes through as soon as its settle time is over.

A path has settled when:
- its writer closed it (inotify close-after-write) or it was renamed in, `settle_seconds` have
  passed since, and nobody has it open for writing; or
- (created/modified without a close, a poll-mode event, a file found by a scan) nobody has it open
  for writing and it has not changed for `settle_seconds`: judged by observed change (its size,
  mtime, ctime and inode as seen at each look, and the kernel's ctime), never by the mtime against
  the clock, which a writer may set to any time (one in the future would wait forever).
"Nobody has it open for writing" is asked of the kernel on Linux (a read lease is refused while a
writer holds the file). Where that cannot be asked (other systems, network mounts), a file must
be quiet for `max(settle_seconds, UNKNOWN_QUIET)` instead.

At start the worker runs each task's `start` (mail: recover the private queue), then its `scan`
(files written while the daemon was down); every `rescan_seconds`, and when the kernel says its
inotify queue overflowed, it scans again.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TextIO

from agentops.daemon import heartbeat
from agentops.daemon.logs import drop_handlers, log, make_logger
from agentops.daemon.tasks import InactiveTask, registered_tasks
from agentops.errors import AgentOpsError
from agentops.leases import open_for_writing
from agentops.store import utcnow

MAX_BATCH = 250           # paths per task call: bounds the work in hand (a stop waits for it)
FIRST_BATCH = 25          # slow start: batches double from this up to MAX_BATCH, so a daemon that is
                          # restarted again and again (a crash loop) still finishes work each time
UNKNOWN_QUIET = 1.0       # quiet time when the kernel cannot say whether a writer has the file
BUSY_RECHECK = 0.05       # how soon to look again at a file a writer still has open
ONCE_MAX_WAIT = 10.0      # --once: how long to wait for files still being written
POLL_INTERVAL = 0.5       # --poll: seconds between directory snapshots

def _lease_breaks_ignored() -> bool:
    """Only ask the kernel about leases when a lease break (SIGIO) cannot end the process."""
    sigio = getattr(signal, "SIGIO", None)
    return sigio is None or signal.getsignal(sigio) == signal.SIG_IGN


class Stats:
    """Counters for the heartbeat file (updated on the worker, read anywhere)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.delivered = 0
        self.dead = 0
        self.batches = 0
        self.errors = 0
        self.rescans = 0
        self.last_error: str | None = None
        self.last_routed: str | None = None

    def routed(self, delivered: int, dead: int) -> None:
        with self._lock:
            self.delivered += delivered
            self.dead += dead
            if delivered:
                self.last_routed = utcnow()

    def error(self, text: str) -> None:
        with self._lock:
            self.errors += 1
            self.last_error = text


@dataclass
class _Pending:
    task: Any
    due: float            # monotonic time to look at it next
    closed: bool          # its writer closed it (or it was renamed in)
    first: float          # monotonic time first seen
    seen: tuple | None = None   # (inode, size, mtime, ctime) at the last look
    changed: float = 0.0  # monotonic time a look last found it changed (else `first`)


class _Enqueue:
    """The watchdog handler: turns an event into `(path, kind, time)` on the queue. Nothing else."""

    def __init__(self, put: Callable[[tuple], None], lost: Callable[[], None] = lambda: None):
        self._put = put
        self._lost = lost

    def dispatch(self, event) -> None:
        kind = event.event_type
        if kind == "events_lost":  # the kernel's inotify queue overflowed: scan again
            self._lost()
        elif kind == "moved":
            self._put((os.fsdecode(event.dest_path), "moved", time.monotonic()))
        elif kind in ("closed", "created") or (kind == "modified" and not event.is_directory):
            self._put((os.fsdecode(event.src_path), kind, time.monotonic()))


def _handler(put, lost):
    """A real `FileSystemEventHandler` subclass (watchdog imported only when the daemon runs)."""
    from watchdog.events import FileSystemEventHandler

    class EnqueueHandler(FileSystemEventHandler):
        def __init__(self):
            self._enqueue = _Enqueue(put, lost)

        def dispatch(self, event):
            self._enqueue.dispatch(event)

    return EnqueueHandler()


def _native_observer():
    """The platform's observer. On Linux, one that does not ask inotify for IN_MOVED_FROM: watchdog
    holds each of those for 0.5 s to pair it with an IN_MOVED_TO, and every event queued behind it
    waits too. Routing renames each drop file out of the drop zone (into the spool, a folder not
    watched), so the held events would add up to half a second to every delivery. We need only
    what arrives: a file renamed in then comes as an unpaired IN_MOVED_TO, i.e. a created event.

    Only watchdog's public API (the range pinned in pyproject.toml): an `InotifyEmitter` subclass
    overriding `get_event_mask_from_filter`, given to `BaseObserver(emitter_class, **emitter
    kwargs)` with the observer's own `InotifyFD` reader, started and stopped with the observer."""
    from watchdog.observers import Observer

    try:
        from watchdog.observers.api import DEFAULT_OBSERVER_TIMEOUT, BaseObserver
        from watchdog.observers.inotify import InotifyEmitter
        from watchdog.observers.inotify_c import InotifyConstants, InotifyFD
    except ImportError:                 # not Linux
        return Observer()

    class ArrivalsEmitter(InotifyEmitter):
        def get_event_mask_from_filter(self):
            return type(InotifyConstants.IN_MOVED_FROM)(
                super().get_event_mask_from_filter() & ~InotifyConstants.IN_MOVED_FROM)

    class ArrivalsObserver(BaseObserver):
        def __init__(self):
            self.reader = InotifyFD()
            super().__init__(ArrivalsEmitter, timeout=DEFAULT_OBSERVER_TIMEOUT, inotify_fd=self.reader)

        def start(self):
            self.reader.start()
            super().start()

        def on_thread_stop(self):
            super().on_thread_stop()
            self.reader.stop()
            self.reader.join()

    return ArrivalsObserver()


class Daemon:
    """`Daemon(ws).run()` watches the workspace until SIGINT/SIGTERM; `run_once()` routes what is
    pending and returns. `start()` / `stop()` / `join()` for embedding (tests, `agentops demo`)."""

    def __init__(self, ws, poll: bool = False, log_format: str = "text", *, log_stream: TextIO | None = None,
                 tasks: list | None = None):
        self.ws = ws
        self.poll = poll
        self.log_format = log_format
        self.logger = make_logger(log_format, log_stream)
        self.settle = float(ws.config.mail.settle_seconds)
        self.rescan_seconds = float(ws.config.daemon.rescan_seconds)
        self.stats = Stats()
        self._factories = tasks
        self.tasks: list = []
        self._task_state: dict[str, str] = {}
        self._mail_listeners: list[Callable[[set[str]], None]] = []
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._pending: dict[Path, _Pending] = {}
        self._stopping = threading.Event()
        self._rescan_reason: str | None = None
        self._signal: int | None = None
        self._lock = None
        self._observer = None
        self._worker: threading.Thread | None = None
        self._started_at: str | None = None
        self._mode = "poll" if poll else "inotify"
        self._last_beat = 0.0
        self._dirty = False
        self._batch = FIRST_BATCH

    @property
    def mode(self) -> str:
        """inotify | poll | once"""
        return self._mode

    # hooks for tasks ------------------------------------------------------------------------
    def on_mail(self, callback: Callable[[set[str]], None]) -> None:
        """Call `callback(inboxes)` (on the worker) whenever mail lands in agents' inboxes."""
        self._mail_listeners.append(callback)

    def mail_arrived(self, inboxes: set[str]) -> None:
        for callback in list(self._mail_listeners):
            try:
                callback(set(inboxes))
            except Exception as exc:
                self.stats.error(f"mail listener: {type(exc).__name__}: {exc}")
                log(self.logger, logging.ERROR, "listener-error", exc_info=True, inboxes=sorted(inboxes))

    def request_rescan(self, reason: str = "requested") -> None:
        self._rescan_reason = reason
        self._queue.put(None)

    # life cycle -----------------------------------------------------------------------------
    def _begin(self) -> None:
        from agentops.pidlock import daemon_lock

        self.ws.check_layout()   # before the pid file is written under .agent/run/
        self._lock = daemon_lock(self.ws).acquire()   # ConflictError: another daemon
        self._started_at = utcnow()
        self.ws.ensure_layout()
        factories = self._factories if self._factories is not None else registered_tasks()
        for factory in factories:
            try:
                task = factory(self)
            except Exception:
                log(self.logger, logging.ERROR, "task-error", exc_info=True, task=repr(factory), stage="create")
                continue
            if task is not None:
                self.tasks.append(task)
                self._task_state[task.name] = "starting"

    def start(self) -> None:
        """Take the lock, start the observer and the worker (which recovers, then scans)."""
        self._begin()
        try:
            self._start_observer()
            self._worker = threading.Thread(target=self._work, name="agentops-daemon-worker", daemon=True)
            self._worker.start()
        except BaseException:
            self._finish()
            raise

    def stop(self, signum: int | None = None) -> None:
        """Ask the daemon to stop: the worker finishes the batch in hand. Safe from a signal handler."""
        if signum is not None and self._signal is None:
            self._signal = signum
        self._stopping.set()
        self._queue.put(None)

    def join(self, timeout: float | None = None) -> None:
        try:
            if self._observer is not None:
                self._observer.stop()
                self._observer.join(timeout)
            if self._worker is not None:
                self._worker.join(timeout)
        finally:
            self._finish()

    def run(self, install_signals: bool = True) -> int:
        """Run until SIGTERM (returns 0) or SIGINT (returns 130)."""
        self.start()
        previous = self._install_signals() if install_signals else {}
        try:
            log(self.logger, logging.INFO, "started", pid=os.getpid(), mode=self._mode, workspace=str(self.ws.root),
                settle_seconds=self.settle, rescan_seconds=self.rescan_seconds)
            while not self._stopping.wait(1.0):
                if self._worker is not None and not self._worker.is_alive():
                    break
        except KeyboardInterrupt:
            self._signal = self._signal or signal.SIGINT
        finally:
            self.stop()
            self.join()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        log(self.logger, logging.INFO, "stopped", signal=signal.Signals(self._signal).name if self._signal else None,
            routed=self.stats.delivered, dead=self.stats.dead)
        drop_handlers(self.logger)
        return 130 if self._signal == signal.SIGINT else 0

    def run_once(self, install_signals: bool = True) -> Stats:
        """Recover, scan, route everything pending (waiting up to ONCE_MAX_WAIT for files still
        being written), and return the counters. No observer."""
        self._mode = "once"
        self._begin()
        previous = self._install_signals() if install_signals else {}
        try:
            self._start_tasks()
            self._scan("start")
            deadline = time.monotonic() + ONCE_MAX_WAIT
            while self._pending and not self._stopping.is_set():
                wait = self._process()
                if not self._pending:
                    break
                if time.monotonic() > deadline:
                    log(self.logger, logging.WARNING, "left-pending", count=len(self._pending),
                        reason="still being written", paths=[str(p) for p in list(self._pending)[:10]])
                    break
                time.sleep(min(max(wait, 0.005), 0.2))
            log(self.logger, logging.INFO, "once", routed=self.stats.delivered, dead=self.stats.dead,
                batches=self.stats.batches, errors=self.stats.errors)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._finish()
            drop_handlers(self.logger)
        return self.stats

    def _install_signals(self) -> dict:
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                previous[signum] = signal.signal(signum, lambda s, f: self.stop(s))
            sigio = getattr(signal, "SIGIO", None)
            if sigio is not None and signal.getsignal(sigio) == signal.SIG_DFL:
                # a writer opening a file while the worker holds its lease for an instant breaks
                # the lease, and the kernel says so with SIGIO, whose default would end the daemon
                previous[sigio] = signal.signal(sigio, signal.SIG_IGN)
        return previous

    def _finish(self) -> None:
        for task in self.tasks:
            try:
                task.close()
            except Exception:
                log(self.logger, logging.ERROR, "task-error", exc_info=True, task=task.name, stage="close")
        if self._lock is not None:
            try:
                self._beat(force=True, state="stopped")
            except OSError:
                pass
            self._lock.release()
            self._lock = None

    # observer ---------------------------------------------------------------------------------
    def _start_observer(self) -> None:
        from watchdog.events import (DirCreatedEvent, DirMovedEvent, EventsLostEvent, FileClosedEvent,
                                     FileCreatedEvent, FileModifiedEvent, FileMovedEvent)

        if self.poll:
            from watchdog.observers.polling import PollingObserver

            observer = PollingObserver(timeout=POLL_INTERVAL)
        else:
            observer = _native_observer()
        handler = _handler(self._queue.put, lambda: self.request_rescan("inotify-overflow"))
        wanted = [FileCreatedEvent, FileModifiedEvent, FileMovedEvent, FileClosedEvent, DirCreatedEvent, DirMovedEvent,
                  EventsLostEvent]
        seen = set()
        for task in self.tasks:
            for folder in task.dirs():
                folder = Path(folder)
                if folder in seen or not folder.is_dir():
                    continue
                seen.add(folder)
                observer.schedule(handler, str(folder), recursive=False, event_filter=wanted)
        observer.daemon = True
        observer.start()
        self._observer = observer

    # worker -----------------------------------------------------------------------------------
    def _work(self) -> None:
        try:
            self._start_tasks()
            self._scan("start")
        except Exception:
            log(self.logger, logging.ERROR, "worker-error", exc_info=True, stage="start")
        next_rescan = time.monotonic() + self.rescan_seconds
        while not self._stopping.is_set():
            try:
                now = time.monotonic()
                if now >= next_rescan or self._rescan_reason:
                    reason, self._rescan_reason = self._rescan_reason or "periodic", None
                    self._retry_failed_starts()
                    self._scan(reason)
                    next_rescan = time.monotonic() + self.rescan_seconds
                wait = self._process()
                if self._stopping.is_set():
                    break
                self._beat()
                beat_every = heartbeat.MIN_WRITE_INTERVAL if self._dirty else heartbeat.HEARTBEAT_SECONDS
                timeout = min(wait, next_rescan - time.monotonic(), beat_every - (time.monotonic() - self._last_beat))
                self._drain(max(timeout, 0.0))
            except Exception:
                self.stats.error("worker: see log")
                log(self.logger, logging.ERROR, "worker-error", exc_info=True)
                self._stopping.wait(0.1)

    def _drain(self, timeout: float) -> None:
        """Wait up to `timeout` for an event, then take everything queued."""
        try:
            item = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
        except queue.Empty:
            return
        while True:
            if item is not None:
                self._note(*item)
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return

    def _start_tasks(self) -> None:
        for task in self.tasks:
            self._start_task(task)

    def _start_task(self, task) -> None:
        try:
            task.start()
        except InactiveTask as exc:
            self._task_state[task.name] = f"inactive: {exc}"
            log(self.logger, logging.INFO, "task-inactive", task=task.name, reason=str(exc))
        except Exception as exc:
            state = f"error: {type(exc).__name__}: {exc}"
            if self._task_state.get(task.name) == state:
                return  # the retry at each rescan failed as before: said once already
            self._task_state[task.name] = state
            self.stats.error(f"{task.name}: {type(exc).__name__}: {exc}")
            if isinstance(exc, AgentOpsError):  # a problem to fix in the workspace (a roster naming an
                # unknown role): one clear line, no traceback; the task starts once it is fixed
                log(self.logger, logging.ERROR, "task-error", task=task.name, stage="start", error=str(exc))
            else:
                log(self.logger, logging.ERROR, "task-error", exc_info=True, task=task.name, stage="start")
        else:
            self._task_state[task.name] = "active"

    def _retry_failed_starts(self) -> None:
        for task in self.tasks:
            if self._task_state.get(task.name, "").startswith("error"):
                self._start_task(task)

    def _active(self):
        return [t for t in self.tasks if self._task_state.get(t.name) == "active"]

    def _scan(self, reason: str) -> None:
        self.stats.rescans += reason != "start"
        if reason not in ("start", "periodic"):
            log(self.logger, logging.INFO, "rescan", reason=reason)
        found = 0
        for task in self._active():
            try:
                paths = task.scan()
            except Exception as exc:
                self.stats.error(f"{task.name}: {type(exc).__name__}: {exc}")
                log(self.logger, logging.ERROR, "task-error", exc_info=True, task=task.name, stage="scan")
                continue
            now = time.monotonic()
            for path in paths:
                path = path if isinstance(path, Path) else Path(path)
                if path not in self._pending:
                    # first look once it has been seen for the settle time: `_settled` cannot say yes before
                    self._pending[path] = _Pending(task, now + self.settle, False, now)
                    found += 1
        if found or reason != "periodic":
            log(self.logger, logging.INFO, "scan", reason=reason, found=found)

    def _note(self, path: str, kind: str, at: float) -> None:
        p = Path(path)
        entry = self._pending.get(p)
        if entry is None:
            task = next((t for t in self._active() if t.wants(p)), None)
            if task is None:
                return
            self._pending[p] = _Pending(task, at + self.settle, kind in ("closed", "moved"), at)
        else:
            entry.due = max(entry.due, at + self.settle)
            entry.closed = kind in ("closed", "moved")

    def _settled(self, path: Path, entry: _Pending, now: float) -> float | None | bool:
        """None: ready. False: gone. A float: look again after that many seconds."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return False
        except OSError:
            return None            # let the task decide (it dead-letters what it cannot read)
        if not stat.S_ISREG(st.st_mode):
            return None            # symlinks, folders, fifos: the task dead-letters them
        writing = open_for_writing(path) if _lease_breaks_ignored() else None
        if writing:
            return BUSY_RECHECK
        if entry.closed and writing is False:
            return None
        quiet = self.settle if writing is False else max(self.settle, UNKNOWN_QUIET)
        seen = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if entry.seen is not None and seen != entry.seen:
            entry.changed = now
        entry.seen = seen
        # quiet since the last change seen (by us, or by the kernel: the ctime, unless it is ahead of
        # the clock), and seen for at least as long (an old file just found too)
        age = now - max(entry.first, entry.changed)
        since_ctime = time.time() - st.st_ctime
        if since_ctime >= 0:
            age = min(age, since_ctime)
        return None if age >= quiet else quiet - age

    def _process(self) -> float:
        """Handle every pending path that has settled. Returns seconds until the next is due."""
        now = time.monotonic()
        batches: dict[int, tuple[Any, list[Path]]] = {}
        for path, entry in list(self._pending.items()):
            if entry.due > now:
                continue
            verdict = self._settled(path, entry, now)
            if verdict is False:
                del self._pending[path]
            elif verdict is None:
                del self._pending[path]
                batches.setdefault(id(entry.task), (entry.task, []))[1].append(path)
            else:
                entry.due = now + verdict
        for task, paths in batches.values():
            while paths:
                if self._stopping.is_set():
                    return 0.0
                chunk, paths = paths[:self._batch], paths[self._batch:]
                if self._handle(task, chunk) and len(chunk) == self._batch:
                    self._batch = min(self._batch * 2, MAX_BATCH)
        if not self._pending:
            return 3600.0
        return max(min(e.due for e in self._pending.values()) - time.monotonic(), 0.0)

    def _handle(self, task, paths: list[Path]) -> bool:
        try:
            task.handle(paths)
            self.stats.batches += 1
            return True
        except Exception as exc:
            self.stats.error(f"{task.name}: {type(exc).__name__}: {exc}")
            log(self.logger, logging.ERROR, "task-error", exc_info=True, task=task.name, stage="handle",
                files=len(paths), first=str(paths[0]))
            if len(paths) > 1:     # isolate the bad file: the others go through one by one
                for path in paths:
                    if os.path.lexists(path):
                        self._handle(task, [path])
            return False
        finally:
            self._beat()

    def _beat(self, force: bool = False, state: str = "running") -> None:
        now = time.monotonic()
        if not force and now - self._last_beat < heartbeat.MIN_WRITE_INTERVAL:
            self._dirty = True       # the worker writes it when the interval is over
            return
        self._last_beat, self._dirty = now, False
        s = self.stats
        heartbeat.write_state(self.ws, {
            "pid": os.getpid(), "state": state, "mode": self._mode, "workspace": str(self.ws.root),
            "started": self._started_at, "updated": utcnow(), "last_routed": s.last_routed,
            "routed": s.delivered, "dead": s.dead, "queue": len(self._pending) + self._queue.qsize(),
            "batches": s.batches, "errors": s.errors, "last_error": s.last_error, "rescans": s.rescans,
            "tasks": dict(self._task_state),
        })
