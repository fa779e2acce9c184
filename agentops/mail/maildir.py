"""Maildir folders (tmp/ new/ cur/), as mutt, notmuch and Python's `mailbox.Maildir` read them.

A message file is named `<key>` in `new/` and `<key>:2,<flags>` in `cur/`. agentops uses the
standard flags: `S` seen (read) and `R` replied, which agentops sets when a message is acked.
Keys are derived from the message (see `route.py`), so writing the same message twice replaces the
first copy instead of adding a second one.

Spares: a file routing has finished with (a delivered message's spool file) may wait in a Maildir's
`tmp/` as `.spare-<token>` and be written over by a later delivery instead of a new file: on a
file system where making and freeing inodes is the costliest operation, that saves both. A spare is
only ever garbage (nothing reads it; removing it loses nothing), and it is used only when it is
still a plain file of ours, with one link, no extended attributes, and nobody else has it open.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from agentops.leases import sole_opener

SUBDIRS = ("tmp", "new", "cur")
SEEN, ACKED = "S", "R"
SPARE_PREFIX = ".spare-"
SPARE_MAX_BYTES = 64 * 1024  # bigger finished files are removed, not kept as spares
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
# no O_CREAT: the spare is there; O_NONBLOCK: fail at once instead of waiting on someone's lease
_ADOPT_FLAGS = os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
_MODE: list[int | None] = []


def ensure(box: Path) -> Path:
    for sub in SUBDIRS:
        (box / sub).mkdir(parents=True, exist_ok=True)
    return box


def write_new(box: Path | str, key: str, data: bytes, *, fsync: bool = True, spare: str | None = None) -> str:
    """Write `data` to `tmp/<key>` then rename it to `new/<key>` (replacing an earlier copy).
    `spare`: the path of a spare file to write into when it is safe to (else it is removed)."""
    base = os.fspath(box)
    tmp = f"{base}/tmp/{key}"
    fd = _adopt(spare, tmp) if spare else None
    reused = fd is not None
    if fd is None:
        fd = os.open(tmp, _WRITE_FLAGS, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if reused:  # (emptying it first, so the bytes land in new blocks, cost routing ~30%: see the README)
            os.ftruncate(fd, len(data))
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    dest = f"{base}/new/{key}"
    os.rename(tmp, dest)
    return dest


def new_file_mode() -> int | None:
    """The mode `write_new` gives a new file (0644 less the umask), or None where it is unknown."""
    if not _MODE:
        mode = None
        try:
            with open("/proc/self/status", encoding="ascii", errors="replace") as f:
                for line in f:
                    if line.startswith("Umask:"):
                        mode = 0o644 & ~int(line.split()[1], 8)
                        break
        except (OSError, ValueError):
            pass
        _MODE.append(mode)
    return _MODE[0]


def spares_allowed(box: Path | str) -> bool:
    """May spares wait in, and be written over in, this Maildir's `tmp/`? Only in a real folder (not
    a link), where a new file would get nothing a reused one would not: no set-group-id bit (a new
    file takes the folder's group) and no default ACL (a new file inherits it)."""
    tmp = f"{os.fspath(box)}/tmp"
    try:
        st = os.lstat(tmp)
        return (stat.S_ISDIR(st.st_mode) and not st.st_mode & stat.S_ISGID
                and "system.posix_acl_default" not in os.listxattr(tmp, follow_symlinks=False))
    except OSError:
        return False


def spares(box: Path | str) -> list[str]:
    """The spare files waiting in the Maildir's `tmp/` (regular files only)."""
    tmp = f"{os.fspath(box)}/tmp"
    try:
        with os.scandir(tmp) as it:
            return [f"{tmp}/{e.name}" for e in it
                    if e.name.startswith(SPARE_PREFIX) and e.is_file(follow_symlinks=False)]
    except OSError:
        return []


def _adopt(spare: str, tmp: str) -> int | None:
    """Move `spare` to `tmp` and open it for writing, when it is safe to write over: a regular file
    of ours (same owner and group as a new file), one link, no extended attributes (ACLs, labels),
    at most SPARE_MAX_BYTES, and nobody else has it open. Else remove it and return None."""
    mode = new_file_mode()
    try:
        if not stat.S_ISREG(os.lstat(spare).st_mode):
            return None  # not ours to move (a folder, a link): left where it is
        os.rename(spare, tmp)
    except OSError:
        discard(spare)
        return None
    fd = None
    try:
        fd = os.open(tmp, _ADOPT_FLAGS)
        st = os.fstat(fd)
        if (mode is not None and stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and st.st_uid == os.geteuid()
                and st.st_gid == os.getegid() and st.st_size <= SPARE_MAX_BYTES and not os.listxattr(fd)
                and sole_opener(fd)):
            if stat.S_IMODE(st.st_mode) != mode:
                os.fchmod(fd, mode)
            return fd
    except OSError:
        pass
    if fd is not None:
        os.close(fd)
    discard(tmp)
    return None


def discard(path: str) -> None:
    """Remove a spare (or what was one); anything that cannot be removed is left, never an error."""
    try:
        os.unlink(path)
    except OSError:
        pass


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
