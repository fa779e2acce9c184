"""Touching state under a workspace without following links out of it.

Every open, create, rename, delete, listing and mkdir under `.agent/` (and `init`'s writes into
`roles/` and `templates/`) goes through this module. It walks from the workspace root one
component at a time with `os.open(name, O_DIRECTORY | O_NOFOLLOW, dir_fd=parent)` (openat
semantics), so no path is ever re-resolved by the kernel after it was checked:

- a folder that is a symbolic link is followed only when its target, fully resolved, is inside
  the workspace (the walk then restarts from the root along the resolved path); a link leading
  outside is refused with `UnsafePathError`;
- the last component of a file is opened with `O_NOFOLLOW`: a state file that is a link is
  refused, as is one that is not a regular file (a folder, a FIFO) or one with more than one
  hard link (its content would be another file's);
- writes go to a fresh `O_EXCL` temp file with a random name in the same folder, are synced when
  the caller asks, and are renamed over the target (`write_atomic`).

`ws` is a `Workspace` or a root folder (already resolved); `path` is absolute under it or relative
to it. Errors are `UnsafePathError` (exit 3) naming the path relative to the root and what to do,
and `StorageError` (exit 1) for a full disk or no inodes left; a missing file is the plain
`FileNotFoundError`, which callers expect.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from agentops.errors import StorageError, UnsafePathError

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW | _CLOEXEC
_FILE_EXTRA = _NOFOLLOW | _CLOEXEC | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_NONBLOCK", 0)
_MAX_HOPS = 16
SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_KIND = {stat.S_IFREG: "a file", stat.S_IFDIR: "a folder", stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a device",
         stat.S_IFBLK: "a device", stat.S_IFLNK: "a symbolic link"}


def root_of(ws) -> Path:
    return Path(ws) if isinstance(ws, (str, os.PathLike)) else ws.root


def _parts(root: Path, path) -> list[str]:
    if isinstance(path, list):
        return path
    p = Path(path)
    rel = p.relative_to(root) if p.is_absolute() else p
    parts = [x for x in rel.parts if x not in ("", ".")]
    if ".." in parts:
        raise UnsafePathError(f"{rel}: '..' is not allowed in a state path", hint="use a path inside the workspace")
    return parts


def _show(parts) -> str:
    return "/".join(parts) or "."


def kind(mode: int) -> str:
    return _KIND.get(stat.S_IFMT(mode), "not a regular file")


def _outside(root: Path, parts: list[str]) -> UnsafePathError:
    real = os.path.realpath(root.joinpath(*parts))
    return UnsafePathError(f"{_show(parts)} is a symbolic link leading outside the workspace ({real})",
                           hint="replace it with a real folder or file; agentops never follows state out of the workspace")


def _open_dir(root: Path, parts: list[str], create: bool, hops: int = 0) -> int:
    """A descriptor for the folder root/parts, walked without following links out of root."""
    fd = os.open(root, _DIR_FLAGS & ~_NOFOLLOW)
    try:
        for i, name in enumerate(parts):
            try:
                nxt = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    os.mkdir(name, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
                except OSError as exc:
                    raise _storage(exc, parts[: i + 1]) from None
                nxt = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                    raise
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if not stat.S_ISLNK(st.st_mode):
                    raise UnsafePathError(f"{_show(parts[: i + 1])} is {kind(st.st_mode)}, not a folder",
                                          hint="move it away; agentops needs a folder there") from None
                real = Path(os.path.realpath(root.joinpath(*parts[: i + 1])))
                try:
                    inside = list(real.relative_to(root).parts)
                except ValueError:
                    raise _outside(root, parts[: i + 1]) from None
                if hops >= _MAX_HOPS:
                    raise _outside(root, parts[: i + 1]) from None
                os.close(fd)
                fd = -1
                return _open_dir(root, inside + parts[i + 1:], create, hops + 1)
            os.close(fd)
            fd = nxt
        result, fd = fd, -1
        return result
    finally:
        if fd >= 0:
            os.close(fd)


@contextlib.contextmanager
def opendir(ws, path, *, create: bool = False) -> Iterator[int]:
    """A checked descriptor for the folder `path` (made, with its parents, when `create`)."""
    root = root_of(ws)
    fd = _open_dir(root, _parts(root, path), create)
    try:
        yield fd
    finally:
        os.close(fd)


def makedirs(ws, path) -> None:
    with opendir(ws, path, create=True):
        pass


def _storage(exc: OSError, parts) -> OSError:
    if exc.errno in SPACE_ERRNOS:
        return StorageError(f"cannot write {_show(parts)}: {os.strerror(exc.errno).lower()}",
                            hint="free space or inodes on that file system and retry; nothing was lost")
    return exc


def _check_fd(fd: int, parts, *, single_link: bool) -> os.stat_result:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePathError(f"{_show(parts)} is {kind(st.st_mode)}, not a regular file",
                              hint="move it away; agentops recreates its state files")
    if single_link and st.st_nlink > 1:
        raise UnsafePathError(f"{_show(parts)} has {st.st_nlink} hard links; a state file must have one",
                              hint="give it its own copy: cp FILE FILE.new && mv FILE.new FILE")
    return st


def open_file(ws, path, flags: int = os.O_RDONLY, mode: int = 0o644, *, create_parents: bool = False,
              single_link: bool = True) -> int:
    """`os.open` of a state file, never through a link; the file must be a regular file with one
    hard link (unless `single_link=False`). The descriptor is blocking (O_NONBLOCK is only used so
    that opening a FIFO never waits)."""
    root = root_of(ws)
    parts = _parts(root, path)
    if not parts:
        raise UnsafePathError("the workspace root is not a file")
    with opendir(root, parts[:-1], create=create_parents) as d:
        try:
            fd = os.open(parts[-1], flags | _FILE_EXTRA, mode, dir_fd=d)
        except OSError as exc:
            if exc.errno == errno.ELOOP or (exc.errno == errno.EMLINK and _NOFOLLOW):
                raise UnsafePathError(f"{_show(parts)} is a symbolic link; agentops never follows links in its state",
                                      hint="remove the link; agentops recreates the file") from None
            if exc.errno in (errno.EISDIR, errno.ENXIO):
                st = os.stat(parts[-1], dir_fd=d, follow_symlinks=False)
                raise UnsafePathError(f"{_show(parts)} is {kind(st.st_mode)}, not a regular file",
                                      hint="move it away; agentops recreates its state files") from None
            raise _storage(exc, parts) from None
    try:
        _check_fd(fd, parts, single_link=single_link)
        if flags & os.O_NONBLOCK == 0:
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_bytes(ws, path, *, single_link: bool = True) -> bytes:
    fd = open_file(ws, path, os.O_RDONLY, single_link=single_link)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_text(ws, path, encoding: str = "utf-8") -> str:
    return read_bytes(ws, path).decode(encoding)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def temp_name(name: str) -> str:
    return f".{name}.{os.urandom(6).hex()}.tmp"  # (not `secrets`: mail send imports this module)


def write_atomic(ws, path, data: bytes | str, *, sync: bool = False, mode: int = 0o644,
                 create_parents: bool = True) -> None:
    """Replace the file at `path` with `data`: a random `O_EXCL` temp file in the same folder,
    fsynced when `sync`, renamed over the target (a link there is replaced, never written through)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    root = root_of(ws)
    parts = _parts(root, path)
    with opendir(root, parts[:-1], create=create_parents) as d:
        tmp = temp_name(parts[-1])
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, mode, dir_fd=d)
        except OSError as exc:
            raise _storage(exc, parts) from None
        try:
            try:
                write_all(fd, data)
                if sync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.rename(tmp, parts[-1], src_dir_fd=d, dst_dir_fd=d)
            except IsADirectoryError:
                raise UnsafePathError(f"{_show(parts)} is a folder, not a regular file",
                                      hint="move it away; agentops recreates its state files") from None
            if sync:
                os.fsync(d)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=d)
            raise _storage(exc, parts) from None
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=d)
            raise


def create_exclusive(ws, path, data: bytes | str, *, sync: bool = False, mode: int = 0o644,
                     create_parents: bool = True) -> None:
    """Create a new file `path` holding `data` (FileExistsError when something is there already)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    fd = open_file(ws, path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode, create_parents=create_parents)
    try:
        try:
            write_all(fd, data)
            if sync:
                os.fsync(fd)
        except OSError as exc:
            raise _storage(exc, _parts(root_of(ws), path)) from None
    finally:
        os.close(fd)


def rename(ws, src, dst, *, create_parents: bool = False, replace: bool = True) -> None:
    """Rename `src` to `dst` (both under the workspace) relative to checked folder descriptors. A
    link at `src` is moved itself, never what it points to. `replace=False`: FileExistsError when
    `dst` exists (checked right before; not atomic against another writer)."""
    root = root_of(ws)
    sp, dp = _parts(root, src), _parts(root, dst)
    with opendir(root, sp[:-1]) as s, opendir(root, dp[:-1], create=create_parents) as d:
        if not replace:
            try:
                os.stat(dp[-1], dir_fd=d, follow_symlinks=False)
                raise FileExistsError(errno.EEXIST, "exists", _show(dp))
            except FileNotFoundError:
                pass
        try:
            os.rename(sp[-1], dp[-1], src_dir_fd=s, dst_dir_fd=d)
        except OSError as exc:
            raise _storage(exc, dp) from None


def unlink(ws, path, *, missing_ok: bool = True) -> bool:
    """Delete the file (or link) `path`; never what a link points to. False when it was not there."""
    root = root_of(ws)
    parts = _parts(root, path)
    try:
        with opendir(root, parts[:-1]) as d:
            os.unlink(parts[-1], dir_fd=d)
        return True
    except FileNotFoundError:
        if missing_ok:
            return False
        raise


def rmdir(ws, path) -> None:
    root = root_of(ws)
    parts = _parts(root, path)
    with opendir(root, parts[:-1]) as d:
        os.rmdir(parts[-1], dir_fd=d)


def listdir(ws, path) -> list[str]:
    """The names in folder `path` (FileNotFoundError when it is missing)."""
    with opendir(ws, path) as d:
        return os.listdir(d)


def lstat(ws, path) -> os.stat_result:
    """`lstat` of `path` with its folders walked safely (FileNotFoundError when missing)."""
    root = root_of(ws)
    parts = _parts(root, path)
    with opendir(root, parts[:-1]) as d:
        return os.stat(parts[-1], dir_fd=d, follow_symlinks=False)


def scan(ws, path) -> list[tuple[str, os.stat_result]]:
    """(name, lstat) of every entry in folder `path`; entries that vanish meanwhile are skipped."""
    out = []
    with opendir(ws, path) as d:
        for name in os.listdir(d):
            try:
                out.append((name, os.stat(name, dir_fd=d, follow_symlinks=False)))
            except FileNotFoundError:
                continue
    return out


def check_state_file(ws, path) -> os.stat_result | None:
    """For files opened by path by someone else (SQLite): the folders leading to `path` are walked
    safely and `path` itself, when present, must be a regular file with one hard link and not a
    link. Returns its stat, or None when it does not exist yet."""
    root = root_of(ws)
    parts = _parts(root, path)
    with opendir(root, parts[:-1]) as d:
        try:
            st = os.stat(parts[-1], dir_fd=d, follow_symlinks=False)
        except FileNotFoundError:
            return None
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePathError(f"{_show(parts)} is a symbolic link; agentops never follows links in its state",
                              hint="replace it with the real file")
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePathError(f"{_show(parts)} is {kind(st.st_mode)}, not a regular file",
                              hint="move it away; agentops recreates it")
    if st.st_nlink > 1:
        raise UnsafePathError(f"{_show(parts)} has {st.st_nlink} hard links; a state file must have one",
                              hint="give it its own copy: cp FILE FILE.new && mv FILE.new FILE")
    return st


def real_path(ws, path) -> Path:
    """The path of `path` with inside-workspace folder links resolved, after a safe walk (for code
    that must hand a path to something else, such as SQLite or a child process)."""
    root = root_of(ws)
    parts = _parts(root, path)
    with opendir(root, parts[:-1]):
        pass
    return Path(os.path.realpath(root.joinpath(*parts[:-1]))) / parts[-1] if parts else root
