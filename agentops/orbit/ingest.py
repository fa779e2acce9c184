"""Bulk ingest of JSONL files: `orbit ingest FILE` and the `.agent/orbit/*.jsonl` drop zone.

A drop file is ingested in chunks; each chunk's transaction also records how many lines of that
file are done (meta `orbit.ingest:<name>:<size>:<mtime>`), so a crash mid-file resumes where it
stopped instead of logging lines twice. Then the file moves to `.agent/orbit/processed/` and its
rejected lines, each with its line number and reason, go to `.agent/orbit/rejected/<name>.rejected.jsonl`.

A drop-zone entry that is not a regular file (a symlink, a directory, a FIFO...) or is a hard link to
another file (which may live outside the workspace) is never read: the entry itself (the link, never
its target; a directory as a whole) moves to `.agent/orbit/rejected/` with `<name>.reason` (JSON:
file, reason, time) beside it, and the report lists it in `set_aside`. (As mail does with drop files.)
"""

from __future__ import annotations

import errno
import gc
import json
import os
import sqlite3
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator

from agentops.errors import AgentOpsError, NotFoundError, ValidationError
from agentops.orbit.log import IngestReport, Orbit
from agentops.store import utcnow

HINT = "give the path of a .jsonl file"
HARD_LINK = "a hard link to another file (never read)"
BAD_NAME = "its name is not valid UTF-8 (never read; rename it and drop it again)"


def shown(name: str) -> str:
    """A file name as text that can be written anywhere (bytes that are not UTF-8 as \\xNN)."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def not_regular(mode: int) -> str | None:
    """Why an entry with this (lstat) mode cannot be read as a JSONL file; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return "a symbolic link (never followed)"
    if stat.S_ISDIR(mode):
        return "not a regular file (a directory)"
    if stat.S_ISFIFO(mode):
        return "not a regular file (a FIFO)"
    return "not a regular file (a socket or device)"


def open_jsonl(path: Path, *, follow_symlinks: bool = True) -> tuple[BinaryIO, os.stat_result]:
    """Open a regular file for reading, checked on the open descriptor (no race with a swap).

    `follow_symlinks=False` (the drop zone) refuses a link, symbolic or hard; a link the user names on
    the command line is followed (their choice), and what is wrong is said of its target. Never blocks
    on a FIFO.
    """
    path = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | (0 if follow_symlinks else getattr(os, "O_NOFOLLOW", 0))
    link = f" (a symbolic link to {os.readlink(path)})" if os.path.islink(path) else ""
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        if link:
            raise NotFoundError(f"{path}{link}: its target does not exist", hint=HINT) from None
        raise NotFoundError(f"{path}: no such file", hint=HINT) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow_symlinks:
            raise ValidationError(f"{path}: {not_regular(stat.S_IFLNK)}", hint=HINT) from None
        raise AgentOpsError(f"{path}{link}: cannot read: {exc.strerror}", hint=HINT) from None
    try:
        st = os.fstat(fd)
        why = not_regular(st.st_mode) or (HARD_LINK if not follow_symlinks and st.st_nlink > 1 else None)
        if why:
            raise ValidationError(f"{path}{link}: {why}", hint=HINT)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb"), st
    except BaseException:
        os.close(fd)
        raise


@contextmanager
def gc_paused():
    """No cyclic garbage collection during one bulk `orbit ingest` (the CLI command only; never the
    daemon's worker or a library call). A bulk write allocates millions of objects that live until
    their chunk is written (models, rows) or for the whole write (the run and series caches), so the
    collector would run thousands of times and find nothing (about 1/8 of a million-event ingest);
    nothing an ingest makes is cyclic, so reference counting frees it."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _lines(f: BinaryIO) -> Iterator[bytes]:
    with f:
        for line in f:
            yield line.rstrip(b"\r\n")


def ingest_file(orbit: Orbit, path: Path, *, progress: Callable[[int], None] | None = None,
                checkpoint: bool = False, follow_symlinks: bool = True) -> IngestReport:
    """Log every line of a JSONL file; bad lines are reported (line, reason) and skipped. A path
    that is not a regular file raises (ValidationError; NotFoundError when there is nothing)."""
    path = Path(path)
    f, st = open_jsonl(path, follow_symlinks=follow_symlinks)
    key, skip = None, 0
    if checkpoint:
        key = f"orbit.ingest:{path.name}:{st.st_size}:{st.st_mtime_ns}"
        got = orbit.db.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        skip = int(got[0]) if got else 0
    return orbit.log_many(_lines(f), progress=progress, source=str(path), checkpoint=key, skip=skip,
                          file_name=path.name)


def _unique(dest_dir: Path, name: str) -> Path:
    dest = dest_dir / name
    n = 1
    while os.path.lexists(dest):  # a dangling link there is taken too
        stem, dot, ext = name.partition(".")
        dest = dest_dir / f"{stem}.{n}{dot}{ext}"
        n += 1
    return dest


def pending_files(ws) -> list[Path]:
    """Every `*.jsonl` entry of the drop zone (by name: links, folders and FIFOs too; never followed)."""
    try:
        with os.scandir(ws.orbit_dir) as entries:
            return sorted(Path(e.path) for e in entries if e.name.endswith(".jsonl") and not e.name.startswith("."))
    except (FileNotFoundError, NotADirectoryError):
        return []


def set_aside(ws, path: Path, reason: str) -> Path:
    """Move a drop-zone entry that cannot be read (the entry itself, never a link's target) to
    `rejected/`, with `<name>.reason` beside it. Returns where it went."""
    from agentops import safefs

    rejected_dir = ws.orbit_dir / "rejected"
    safefs.makedirs(ws, rejected_dir)
    dest = _unique(rejected_dir, path.name)
    safefs.rename(ws, path, dest)
    safefs.write_atomic(ws, rejected_dir / f"{dest.name}.reason",
                        json.dumps({"file": shown(path.name), "reason": reason, "time": utcnow()},
                                   ensure_ascii=False) + "\n")
    return dest


def ingest_pending(ws, paths: Iterable[os.PathLike | str] | None = None) -> IngestReport:
    """Ingest the drop files (`paths`, or every `*.jsonl` in `.agent/orbit/`): good lines are logged,
    processed files move to `processed/`, rejected lines are kept with reasons in `rejected/`, and
    entries that are not regular files are set aside there unread (`report.set_aside`)."""
    ws.check_layout()
    total = IngestReport(source=str(ws.orbit_dir))
    candidates = pending_files(ws) if paths is None else [Path(p) for p in paths]
    drop = os.path.realpath(ws.orbit_dir)
    files = []
    for p in candidates:  # the folder holding the entry is checked, never the entry (it may be a link)
        if p.name.startswith(".") or not p.name.endswith(".jsonl") or os.path.realpath(p.parent) != drop:
            continue
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            continue
        why = (not_regular(st.st_mode) or (HARD_LINK if st.st_nlink > 1 else None)
               or (BAD_NAME if shown(p.name) != p.name else None))
        if why:
            set_aside(ws, p, why)
            total.set_aside.append((shown(p.name), why))
        else:
            files.append(p)
    if not files:
        return total
    files.sort(key=lambda p: os.fsencode(p.name))  # a batch is applied in file-name order (producers name files to sort in event order)
    from agentops import safefs

    processed, rejected_dir = ws.orbit_dir / "processed", ws.orbit_dir / "rejected"
    with Orbit.open(ws) as orbit:
        for path in files:
            try:
                report = ingest_file(orbit, path, checkpoint=True, follow_symlinks=False)
            except ValidationError as exc:  # swapped for a link or a FIFO since the lstat above
                why = exc.message.removeprefix(f"{path}: ")
                set_aside(ws, path, why)
                total.set_aside.append((path.name, why))
                continue
            except NotFoundError:
                continue
            except sqlite3.OperationalError:
                raise  # the database (locked, full disk): the file stays for the next pass
            except Exception as exc:  # anything else about this file: set aside, never retried forever
                why = f"could not be ingested: {type(exc).__name__}: {exc}"
                set_aside(ws, path, why)
                total.set_aside.append((path.name, why))
                continue
            total.merge(report)
            if report.rejected:
                safefs.makedirs(ws, rejected_dir)
                lines = _line_texts(path, {n for n, _ in report.rejected})
                out = _unique(rejected_dir, f"{path.name}.rejected.jsonl")
                safefs.create_exclusive(ws, out, "".join(
                    json.dumps({"file": path.name, "line": n, "reason": reason, "text": lines.get(n, "")},
                               ensure_ascii=False) + "\n" for n, reason in report.rejected))
            safefs.makedirs(ws, processed)
            st = os.lstat(path)
            safefs.rename(ws, path, _unique(processed, path.name))
            with orbit.db.conn:
                orbit.db.conn.execute("DELETE FROM meta WHERE key = ?",
                                      (f"orbit.ingest:{path.name}:{st.st_size}:{st.st_mtime_ns}",))
    return total


def _line_texts(path: Path, wanted: set[int], cap: int = 4096) -> dict[int, str]:
    out = {}
    for n, line in enumerate(_lines(open_jsonl(path, follow_symlinks=False)[0]), 1):
        if n in wanted:
            out[n] = line[:cap].decode("utf-8", "replace")
    return out
