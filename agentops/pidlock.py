"""One process of a kind per workspace (the daemon): an flock'd pid file under `.agent/run/`.

The kernel drops the lock when the holder dies, even by SIGKILL, so a stale file never blocks.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from agentops.errors import ConflictError


class PidLock:
    def __init__(self, path: Path, what: str = "daemon"):
        self.path = Path(path)
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> "PidLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise ConflictError(f"another agentops {self.what} is running on this workspace (pid {pid})",
                                hint=f"stop it first (kill {pid})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> "PidLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or 0) or None
    except ValueError:
        return None


def holder(path: Path) -> int | None:
    """The pid holding the lock at `path`, or None when nobody holds it."""
    try:
        fd = os.open(path, os.O_RDONLY)
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


def daemon_pid(ws) -> int | None:
    """The running daemon's pid for this workspace, or None when no daemon runs."""
    return holder(daemon_lock_path(ws))
