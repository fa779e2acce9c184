"""Maildir folders (tmp/ new/ cur/), as mutt, notmuch and Python's `mailbox.Maildir` read them.

A message file is named `<key>` in `new/` and `<key>:2,<flags>` in `cur/`. agentops uses the
standard flags: `S` seen (read) and `R` replied, which agentops sets when a message is acked.
Keys are derived from the message (see `route.py`), so writing the same message twice replaces the
first copy instead of adding a second one.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

SUBDIRS = ("tmp", "new", "cur")
SEEN, ACKED = "S", "R"
OLD_SPARE_PREFIX = ".spare-"  # files earlier versions kept in tmp/ for reuse: removed when seen
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_tmp_counter = itertools.count(1)


def ensure(box: Path) -> Path:
    for sub in SUBDIRS:
        (box / sub).mkdir(parents=True, exist_ok=True)
    return box


def write_new(box: Path | str, key: str, data: bytes, *, fsync: bool = True) -> str:
    """Write `data` to a new file `tmp/<key>.<pid>_<n>` (O_EXCL: never one that exists), then rename
    it to `new/<key>` (replacing an earlier copy of the same message)."""
    base = os.fspath(box)
    while True:
        tmp = f"{base}/tmp/{key}.{os.getpid()}_{next(_tmp_counter)}"
        try:
            fd = os.open(tmp, _CREATE_FLAGS, 0o644)
            break
        except FileExistsError:
            continue  # left by a crashed process with our pid: take the next name
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if fsync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink(tmp)
        raise
    os.close(fd)
    dest = f"{base}/new/{key}"
    os.rename(tmp, dest)
    return dest


def remove_old_spares(box: Path | str) -> int:
    """Remove the `.spare-*` files earlier versions left in the Maildir's `tmp/` (regular files
    only; anything else is left alone). Returns how many were removed."""
    tmp = f"{os.fspath(box)}/tmp"
    removed = 0
    try:
        with os.scandir(tmp) as it:
            for e in it:
                if e.name.startswith(OLD_SPARE_PREFIX) and e.is_file(follow_symlinks=False):
                    removed += _unlink(e.path)
    except OSError:
        pass
    return removed


def remove_new(box: Path | str | None, key: str) -> None:
    """Remove `new/<key>` (a copy written by a delivery that did not happen), if there."""
    if box is not None:
        _unlink(f"{os.fspath(box)}/new/{key}")


def _unlink(path: str) -> bool:
    try:
        os.unlink(path)
        return True
    except OSError:
        return False


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def split_name(name: str) -> tuple[str, str]:
    """`key:2,RS` -> (`key`, `RS`); `key` -> (`key`, ``)."""
    key, sep, info = name.partition(":")
    return key, (info[2:] if sep and info.startswith("2,") else "")


def listing(box: Path) -> dict[str, tuple[str, str]]:
    """key -> (`new`|`cur`, flags) for every message in the Maildir."""
    out: dict[str, tuple[str, str]] = {}
    for sub in ("new", "cur"):
        try:
            with os.scandir(box / sub) as it:
                for entry in it:
                    if entry.name.startswith("."):
                        continue
                    key, flags = split_name(entry.name)
                    out[key] = (sub, flags)
        except FileNotFoundError:
            pass
        except NotADirectoryError:
            from agentops.errors import UnsafePathError

            raise UnsafePathError(f"{box / sub} is a file, not a folder",
                                  hint="move the file away; agentops recreates the Maildir folders") from None
    return out


def locate(box: Path, key: str, ws=None) -> Path | None:
    """The file holding `key` in `new/` or `cur/`, or None. With `ws`, the folders are walked
    through `agentops.safefs` (UnsafePathError when one is linked outside the workspace)."""
    p = box / "new" / key
    if ws is not None:
        from agentops import safefs

        try:
            safefs.lstat(ws, p)
            return p
        except FileNotFoundError:
            pass
        try:
            names = safefs.listdir(ws, box / "cur")
        except FileNotFoundError:
            return None
        return next((box / "cur" / n for n in names if n == key or n.startswith(key + ":")), None)
    if os.path.lexists(p):
        return p
    try:
        with os.scandir(box / "cur") as it:
            for entry in it:
                if entry.name == key or entry.name.startswith(key + ":"):
                    return Path(entry.path)
    except FileNotFoundError:
        pass
    return None


def in_cur(box: Path, key: str) -> bool:
    p = locate(box, key)
    return p is not None and p.parent.name == "cur"


def add_flags(box: Path, key: str, flags: str, ws=None) -> tuple[Path, bool]:
    """Move the message to `cur/` with `flags` added. Returns (its new path, whether it changed).
    With `ws`, through `agentops.safefs` (never into or out of a folder linked outside)."""
    for _ in range(5):
        path = locate(box, key, ws)
        if path is None:
            raise FileNotFoundError(key)
        _, old = split_name(path.name)
        merged = "".join(sorted(set(old) | set(flags)))
        dest = box / "cur" / f"{key}:2,{merged}"
        if path == dest:
            return dest, False
        try:
            if ws is not None:
                from agentops import safefs

                safefs.rename(ws, path, dest, create_parents=True)
            else:
                os.rename(path, dest)
        except FileNotFoundError:
            continue  # someone else moved it meanwhile: look again
        return dest, True
    raise FileNotFoundError(key)
