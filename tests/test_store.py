"""The Orbit store file: one record of the schema version, one lock helper (issue 13 point 6)."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from agentops import store
from agentops.errors import ConflictError
from agentops.migrations import NAMES, migrations
from agentops.pidlock import FileLock, holder

from conftest import run_agentops


def test_the_schema_version_is_only_sqlite_utils_migrations_table(tmp_path):
    db = store.open_db(tmp_path / "orbit.db")
    assert db.conn.execute("PRAGMA user_version").fetchone()[0] == 0
    applied = [r[0] for r in db.conn.execute("SELECT name FROM _sqlite_migrations WHERE migration_set = 'agentops'")]
    assert applied == NAMES and store.pending_migrations(db.conn) == []
    db.conn.close()


def test_a_store_made_before_the_change_opens_as_before(ws, cli):
    """A store as the code before m007 left it: every earlier migration applied, PRAGMA user_version
    = 5 (the second counter), events in it. It opens, keeps its data, and drops the counter."""
    from sqlite_utils import Database

    path = ws.root / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    migrations().apply(Database(conn), stop_before="m007_one_schema_version")
    conn.execute("PRAGMA user_version = 5")
    conn.execute("INSERT INTO events (ts, kind, data) VALUES ('2026-01-01T00:00:00+00:00', 'note',"
                 " '{\"kind\": \"note\", \"text\": \"old\"}')")
    conn.commit()
    conn.close()
    path.rename(ws.db_path)
    r = run_agentops("orbit", "events", "--json", cwd=ws.root)
    assert r.returncode == 0 and '"old"' in r.stdout, r.stderr
    conn = sqlite3.connect(ws.db_path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
    assert [r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations ORDER BY rowid")] == NAMES
    conn.close()


def test_one_lock_helper_conflict_wait_and_cancel(ws):
    path = ws.run_dir / "x.lock"
    first = FileLock(ws, path, "thing").acquire()
    assert holder(ws, path) is not None
    with pytest.raises(ConflictError, match="another agentops thing is running"):
        FileLock(ws, path, "thing").acquire()
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(ConflictError):
        FileLock(ws, path, "thing").acquire(wait=True, cancel=cancel)
    got = []
    t = threading.Thread(target=lambda: got.append(FileLock(ws, path, "thing").acquire(wait=True)))
    t.start()
    first.release()
    t.join(10)
    assert got and holder(ws, path) is not None
    got[0].release()
    assert holder(ws, path) is None
