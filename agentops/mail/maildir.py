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


def ensure(box: Path, ws) -> Path:
    """Make the Maildir's folders (through `agentops.safefs`: never through a link out of `ws`)."""
    from agentops import safefs

    for sub in SUBDIRS:
        safefs.makedirs(ws, box / sub)
    return box


def write_new(tmp_dir: int, new_dir: int, key: str, data: bytes, *, fsync: bool = True) -> None:
    """Write `data` to a new file `tmp/<key>.<pid>_<n>` (O_EXCL: never one that exists), then rename
    it to `new/<key>` (replacing an earlier copy of the same message). `tmp_dir`, `new_dir`: the
    Maildir's `tmp/` and `new/` folder descriptors (checked by `agentops.safefs`)."""
    while True:
        tmp = f"{key}.{os.getpid()}_{next(_tmp_counter)}"
        try:
            fd = os.open(tmp, _CREATE_FLAGS, 0o644, dir_fd=tmp_dir)
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
        _unlink(tmp, tmp_dir)
        raise
    os.close(fd)
    os.rename(tmp, key, src_dir_fd=tmp_dir, dst_dir_fd=new_dir)


def remove_old_spares(tmp_dir: int) -> int:
    """Remove the `.spare-*` files earlier versions left in the Maildir's `tmp/` (its descriptor;
    regular files only, anything else is left alone). Returns how many were removed."""
    removed = 0
    try:
        with os.scandir(tmp_dir) as it:
            for e in it:
                if e.name.startswith(OLD_SPARE_PREFIX) and e.is_file(follow_symlinks=False):
                    removed += _unlink(e.name, tmp_dir)
    except OSError:
        pass
    return removed


def remove_new(new_dir: int, key: str) -> None:
    """Remove `new/<key>` (a copy written by a delivery that did not happen), if there."""
    _unlink(key, new_dir)


def _unlink(name: str, folder: int) -> bool:
    try:
        os.unlink(name, dir_fd=folder)
        return True
    except OSError:
        return False


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


def in_cur(box: Path, key: str, ws=None) -> bool:
    p = locate(box, key, ws)
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
