"""Opening the Orbit store: SQLite in WAL mode with a busy timeout, migrated on open."""

from __future__ import annotations

import contextlib
import fcntl
import json
import sqlite3
from datetime import datetime, timezone
from collections.abc import Iterator
from pathlib import Path

BUSY_TIMEOUT_MS = 60_000
SCHEMA_VERSION = 5  # how many migrations agentops/migrations.py holds (checked when migrating)


def utcnow() -> str:
    """Now as ISO 8601 UTC with microseconds (sorts as text)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


class Store:
    """The open store: `conn`, the sqlite3 connection every hot path uses, and the sqlite-utils
    `Database` over it (`db["table"]`, `db.execute`, ...) made on first use: importing sqlite-utils
    costs more start-up time than most commands' whole work."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
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


def open_db(path: Path) -> Store:
    """Open (and create and migrate) the store at `path`.

    WAL lets readers run beside the one writer; synchronous=NORMAL keeps every committed
    transaction across a process crash (the WAL is fsynced at checkpoints, not each commit).
    """
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    db = Store(conn)
    if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
        _migrate(db, path, SCHEMA_VERSION)
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    return db


def _migrate(db: Store, path: Path, wanted: int) -> None:
    """Apply pending migrations under a file lock, so concurrent first opens do not race."""
    from agentops.migrations import migrations

    assert len(migrations._migrations) == wanted, "store.SCHEMA_VERSION must count the migrations"
    lock_path = path.with_name(path.name + "-migrate.lock")
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if db.conn.execute("PRAGMA user_version").fetchone()[0] == wanted:
                return
            if db.conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.conn.execute("PRAGMA journal_mode = WAL")
            migrations.apply(db.database)
            db.conn.execute(f"PRAGMA user_version = {wanted}")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


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
