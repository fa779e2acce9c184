"""Opening the Orbit store: SQLite in WAL mode with a busy timeout, migrated on open."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from datetime import datetime, timezone
from collections.abc import Iterator
from pathlib import Path

BUSY_TIMEOUT_MS = 60_000


def utcnow() -> str:
    """Now as ISO 8601 UTC with microseconds (sorts as text)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


class Store:
    """The open store: `conn`, the sqlite3 connection every hot path uses, and the sqlite-utils
    `Database` over it (`db["table"]`, `db.execute`, ...) made on first use: importing sqlite-utils
    costs more start-up time than most commands' whole work."""

    def __init__(self, conn: sqlite3.Connection, path: Path | None = None, root: Path | None = None):
        self.conn = conn
        self.path = path
        self.root = root
        self.identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the file opened
        self._database = None

    def replaced(self) -> bool:
        """True when the file at `path` is no longer the one this store opened (deleted, or
        swapped): a long-lived writer (the daemon) checks at each batch and reopens."""
        if self.path is None or self.identity is None:
            return False
        try:
            st = check_db_files(self.root, self.path)
        except Exception:
            return True
        return st is None or (st.st_dev, st.st_ino) != self.identity

    @property
    def database(self):
        if self._database is None:
            from sqlite_utils import Database

            self._database = Database(self.conn, execute_plugins=False)
        return self._database

    def __getattr__(self, name: str):
        return getattr(self.database, name)

    def __getitem__(self, name: str):
        return self.database[name]


def check_db_files(root: Path, path: Path) -> os.stat_result | None:
    """Refuse a store SQLite would open through a link or share with another file: `path` and its
    `-wal`/`-shm` must each be a regular file with one hard link, reached without leaving `root`
    (SQLite opens by path, so this is checked right before connecting). Returns the db's stat."""
    from agentops import safefs

    st = safefs.check_state_file(root, path)
    for suffix in ("-wal", "-shm"):
        safefs.check_state_file(root, path.with_name(path.name + suffix))
    return st


def open_db(path: Path, root: Path | None = None) -> Store:
    """Open (and create and migrate) the store at `path`, inside the workspace `root` (default: the
    store's own folder), after `check_db_files`.

    WAL lets readers run beside the one writer; synchronous=NORMAL keeps every committed
    transaction across a process crash (the WAL is fsynced at checkpoints, not each commit).
    """
    from agentops import safefs

    path = Path(path)
    root = Path(root) if root is not None else path.resolve().parent
    if check_db_files(root, path) is None:
        # the store was deleted: a `-wal`/`-shm` left behind belongs to the old file (perhaps still
        # open in a daemon), and SQLite would read its pages into the new one
        for suffix in ("-wal", "-shm"):
            safefs.unlink(root, path.with_name(path.name + suffix))
    real = safefs.real_path(root, path)
    conn = None
    try:
        conn = sqlite3.connect(str(real), timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        db = Store(conn, path, root)
        if pending_migrations(conn):
            _migrate(db, root, path)
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        st = check_db_files(root, path)
        db.identity = (st.st_dev, st.st_ino) if st is not None else None
    except sqlite3.DatabaseError as exc:
        if conn is not None:
            conn.close()
        raise _store_error(path, root, exc) from None
    return db


def applied_migrations(conn: sqlite3.Connection) -> set[str]:
    """The names sqlite-utils' migrations table records as applied: the one record of the schema
    version (a store made before it was the only one also has PRAGMA user_version set; the
    migration m007 clears that)."""
    try:
        rows = conn.execute("SELECT name FROM _sqlite_migrations WHERE migration_set = 'agentops'").fetchall()
    except sqlite3.OperationalError:
        return set()  # a new store: not even the table yet
    return {r[0] for r in rows}


def pending_migrations(conn: sqlite3.Connection) -> list[str]:
    from agentops.migrations import NAMES

    done = applied_migrations(conn)
    return [n for n in NAMES if n not in done]


def _migrate(db: Store, root: Path, path: Path) -> None:
    """Apply pending migrations under the migration lock, so concurrent first opens do not race."""
    from agentops.migrations import migrations
    from agentops.pidlock import FileLock

    with FileLock(root, path.with_name(path.name + "-migrate.lock"), "migration", record_pid=False):
        if not pending_migrations(db.conn):
            return
        if db.conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            db.conn.execute("PRAGMA journal_mode = WAL")
        migrations().apply(db.database)


def _store_error(path: Path, root: Path, exc: Exception):
    from agentops.errors import StorageError, WorkspaceError, storage_error

    full = storage_error(exc)
    if full is None:
        try:  # SQLite says "unable to open" or "disk I/O error" when it cannot create its -wal or -shm
            vfs = os.statvfs(path.parent)
            if vfs.f_bavail == 0 or vfs.f_favail == 0:
                full = StorageError("x")
        except OSError:
            pass
    if full is not None:
        return StorageError(f"the disk holding {path.name} is full (no space or no inodes left)",
                            hint="free space on that file system and run the command again; nothing was lost")

    try:
        shown = path.relative_to(root)
    except ValueError:
        shown = path
    return WorkspaceError(f"{shown}: cannot open the Orbit store: {exc}",
                          hint="move the file away to start a new log, or restore it from a backup")


@contextlib.contextmanager
def write_tx(db: Store) -> Iterator[sqlite3.Connection]:
    """A write transaction that takes the write lock up front (BEGIN IMMEDIATE), so a transaction
    that reads before it writes can never fail half-way with 'database is locked'."""
    conn = db.conn
    if conn.in_transaction:
        yield conn
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.rollback()
        raise
    else:
        conn.commit()
