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
        self._database = None

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
    check_db_files(root, path)
    real = safefs.real_path(root, path)
    try:
        conn = sqlite3.connect(str(real), timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        db = Store(conn, path, root)
        if pending_migrations(conn):
            _migrate(db, root, path)
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.DatabaseError as exc:
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
    from agentops.errors import WorkspaceError

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
