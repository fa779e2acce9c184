"""Is a file still being written? Linux answers through a file lease: a read lease is refused
while any other open file description has the file open for writing. Used by the daemon (to
know a drop file has settled) and by routing without a daemon (to leave a file a writer still
holds for the next pass). Elsewhere, and where the kernel cannot say, the answer is None."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sys
from pathlib import Path

_F_SETLEASE = getattr(fcntl, "F_SETLEASE", None) if sys.platform.startswith("linux") else None
_OPEN = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NOCTTY", 0) \
    | getattr(os, "O_CLOEXEC", 0)


def open_for_writing(path: Path) -> bool | None:
    """True when some process has `path` open for writing, False when none has, None when the
    kernel cannot tell us (no lease support, not our file, a network mount, a link, gone)."""
    if _F_SETLEASE is None:
        return None
    try:
        fd = os.open(path, _OPEN)
    except OSError:
        return None
    try:
        granted = _lease_granted(fd, fcntl.F_RDLCK)  # a read lease: refused while anyone writes
        return None if granted is None else not granted
    finally:
        os.close(fd)


def _lease_granted(fd: int, kind: int) -> bool | None:
    """Take a lease of `kind` on `fd` and give it back at once: True when granted, False when
    refused because of another open file description, None when the kernel cannot say."""
    try:
        fcntl.fcntl(fd, _F_SETLEASE, kind)
    except OSError as exc:
        return False if exc.errno in (errno.EAGAIN, errno.EBUSY) else None
    fcntl.fcntl(fd, _F_SETLEASE, fcntl.F_UNLCK)
    return True


@contextlib.contextmanager
def lease_checks():
    """Whether `open_for_writing` may be asked here: Linux, with SIGIO ignored.
    Someone opening the file in the instant the lease is held breaks it, and the kernel tells us
    with SIGIO, whose default would end the process; so SIGIO is ignored for the duration (only
    the main thread may change it, and only when nobody else handles it). On another thread the
    answer is yes only when SIGIO is ignored already (the daemon ignores it for its lifetime)."""
    import signal
    import threading

    sigio = getattr(signal, "SIGIO", None)
    if _F_SETLEASE is None or sigio is None:
        yield False
        return
    if threading.current_thread() is not threading.main_thread():
        yield signal.getsignal(sigio) == signal.SIG_IGN
        return
    old = signal.getsignal(sigio)
    if old not in (signal.SIG_DFL, signal.SIG_IGN):
        yield False  # someone handles SIGIO: leave it alone
        return
    signal.signal(sigio, signal.SIG_IGN)
    try:
        yield True
    finally:
        signal.signal(sigio, old)
