"""Locks: one flock'd file under the workspace per thing that must happen one at a time.

The daemon lock (`.agent/run/daemon.lock`), the routing lock (`.agent/run/mail.lock`), each
agent's dispatch lock (`.agent/run/dispatch/<agent>.lock`) and the migration lock
(`.agent/orbit.db-migrate.lock`) are all a `FileLock`: the file is opened through
`agentops.safefs` (never through a link, never a hard-linked file), locked with `flock`, and holds
the holder's pid. The kernel drops the lock when the holder dies, even by SIGKILL, so a stale file
never blocks.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from agentops.errors import ConflictError

POLL_SECONDS = 0.05


class FileLock:
    """An exclusive flock on the state file `path` of workspace `ws`.

    `acquire(wait=False)` raises ConflictError at once when another process holds it (`conflict`
    builds that error from the holder's pid); `wait=True` blocks until it is free, or, with
    `cancel`, polls until it is free or `cancel` is set (then ConflictError)."""

    def __init__(self, ws, path: Path, what: str = "daemon", *, record_pid: bool = True,
                 conflict: Callable[[int | None], ConflictError] | None = None):
        self.ws = ws
        self.path = Path(path)
        self.what = what
        self.record_pid = record_pid
        self.conflict = conflict
        self._fd: int | None = None

    def acquire(self, *, wait: bool = False, cancel: threading.Event | None = None) -> "FileLock":
        from agentops import safefs

        fd = safefs.open_file(self.ws, self.path, os.O_RDWR | os.O_CREAT, 0o644, create_parents=True)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait and cancel is None else fcntl.LOCK_NB))
                    break
                except BlockingIOError:
                    if not wait or (cancel is not None and cancel.is_set()):
                        raise self._conflict(_read_pid(fd)) from None
                    time.sleep(POLL_SECONDS)
            if self.record_pid:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def _conflict(self, pid: int | None) -> ConflictError:
        if self.conflict is not None:
            return self.conflict(pid)
        return ConflictError(f"another agentops {self.what} is running on this workspace (pid {pid})",
                             hint=f"stop it first (kill {pid})")

    def release(self) -> None:
        if self._fd is not None:
            try:
                if self.record_pid:
                    os.ftruncate(self._fd, 0)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> "FileLock":
        return self.acquire(wait=True)

    def __exit__(self, *exc) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or 0) or None
    except ValueError:
        return None


def holder(ws, path: Path) -> int | None:
    """The pid holding the lock at `path`, or None when nobody holds it (-1: held, pid unknown)."""
    from agentops import safefs

    try:
        fd = safefs.open_file(ws, path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd) or -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def daemon_lock_path(ws) -> Path:
    return ws.run_dir / "daemon.lock"


def daemon_lock(ws) -> FileLock:
    return FileLock(ws, daemon_lock_path(ws), "daemon")


def daemon_pid(ws) -> int | None:
    """The running daemon's pid for this workspace, or None when no daemon runs."""
    return holder(ws, daemon_lock_path(ws))
