"""Maildir folders (tmp/ new/ cur/), as mutt, notmuch and Python's `mailbox.Maildir` read them.

A message file is named `<key>` in `new/` and `<key>:2,<flags>` in `cur/`. agentops uses the
standard flags: `S` seen (read) and `R` replied, which agentops sets when a message is acked.
Keys are derived from the message (see `route.py`), so writing the same message twice replaces the
first copy instead of adding a second one.
"""

from __future__ import annotations

import os
from pathlib import Path

SUBDIRS = ("tmp", "new", "cur")
SEEN, ACKED = "S", "R"
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def ensure(box: Path) -> Path:
    for sub in SUBDIRS:
        (box / sub).mkdir(parents=True, exist_ok=True)
    return box


def write_new(box: Path | str, key: str, data: bytes, *, fsync: bool = True) -> str:
    """Write `data` to `tmp/<key>` then rename it to `new/<key>` (replacing an earlier copy)."""
    base = os.fspath(box)
    tmp = f"{base}/tmp/{key}"
    fd = os.open(tmp, _WRITE_FLAGS, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    dest = f"{base}/new/{key}"
    os.rename(tmp, dest)
    return dest


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
    return out


def locate(box: Path, key: str) -> Path | None:
    """The file holding `key` in `new/` or `cur/`, or None."""
    p = box / "new" / key
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


def add_flags(box: Path, key: str, flags: str) -> tuple[Path, bool]:
    """Move the message to `cur/` with `flags` added. Returns (its new path, whether it changed)."""
    for _ in range(5):
        path = locate(box, key)
        if path is None:
            raise FileNotFoundError(key)
        _, old = split_name(path.name)
        merged = "".join(sorted(set(old) | set(flags)))
        dest = box / "cur" / f"{key}:2,{merged}"
        if path == dest:
            return dest, False
        try:
            os.rename(path, dest)
        except FileNotFoundError:
            continue  # someone else moved it meanwhile: look again
        return dest, True
    raise FileNotFoundError(key)
