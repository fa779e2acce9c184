"""The runner's DuckDB session: one in-memory DuckDB instance per process, with the DuckDB database
files a run reads and writes (the warehouse first) attached once and kept attached from stage to
stage while a run holds the session, instead of opened (~40 ms) and closed with a checkpoint by
every stage, check and row count.

DuckDB lets one instance of a process open a database file (a second ATTACH of the same file in
the same process fails) and one process write it (another process gets a lock error: it waits and
retries, as `use` does). So every DuckDB use of the runner goes through here, one at a time
(`LOCK`):

    with duckdb_session.hold():                       # execute(): keep files attached until the run ends
        with duckdb_session.use([(alias, path, False)], timeout=60) as con, \\
                duckdb_session.scratch(con) as cur:   # a fresh catalog for one stage's relations
            cur.execute("SELECT ...")

- `use(attach)` attaches what the caller needs, read-only or read-write (a read-only attachment is
  reattached read-write when a writer needs it; a file another process holds is waited for until
  `timeout`). After the block everything is closed (DuckDB checkpoints) unless a run holds the
  session: then the files stay attached until the last holder leaves.
- `scratch(con)`: a cursor whose default catalog is a fresh in-memory database (`USE`d), so one
  stage's input views and result never meet another stage's; its temporary objects go with it.
- `lend()`: while a `command:` stage runs (its process may open the same files), the session
  closes and attaches nothing between uses, as if no run held it.
- An error escaping `use` closes the session (a DuckDB error may have invalidated the instance);
  the next use opens a new one.

Holding the files opens no durability or isolation window: a table output is still replaced in one
DuckDB transaction, and DuckDB writes and syncs its WAL at every COMMIT, so a runner killed at any
instant leaves the last committed state, which the next open replays. Other processes see the
committed state once the run ends (they wait for the file while it runs, as they waited for each
stage before).
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Iterable, Iterator

LOCK = threading.RLock()  # one thread at a time uses the session (and so the DuckDB files)
CHECKPOINT_THRESHOLD = "256MB"  # WAL size that triggers a checkpoint while the session is open


class _State:
    con = None      # the in-memory DuckDB connection, or None when closed
    holders = 0     # runs of this process holding the session
    lent = 0        # command stages running, which may open the files themselves
    scratches = 0   # a counter naming scratch catalogs
    depth = 0       # nested `use` blocks of the thread holding LOCK
    broken = False  # an error escaped a nested `use`: close at the outermost
    attached: dict = {}  # alias -> read_only, for what `_attach` attached to the open connection
    rows: dict = {}      # (alias, schema, table, partition) -> rows, as the session last loaded them


_s = _State()


@contextlib.contextmanager
def hold() -> Iterator[None]:
    """Keep what `use` attaches attached between uses, until the last holder leaves (a run)."""
    with LOCK:
        _s.holders += 1
    try:
        yield
    finally:
        with LOCK:
            _s.holders -= 1
            if _s.holders == 0:
                close()


@contextlib.contextmanager
def lend() -> Iterator[None]:
    """While the block runs (a `command:` stage), nothing stays attached between uses."""
    with LOCK:
        _s.lent += 1
        close()
    try:
        yield
    finally:
        with LOCK:
            _s.lent -= 1


@contextlib.contextmanager
def use(attach: Iterable[tuple[str, Path, bool]] = (), timeout: float = 600.0):
    """The session's connection, with each (alias, DuckDB file, read_only) attached; for this
    thread alone while the block runs. Raises DataError when a file cannot be attached (another
    process holding it past `timeout`, or not a DuckDB database)."""
    with LOCK:
        _s.depth += 1
        try:
            con = _connection()
            deadline = time.monotonic() + timeout
            for alias, path, read_only in attach:
                _attach(con, alias, Path(path), read_only, deadline)
            yield con
        except BaseException:
            _s.broken = True
            raise
        finally:
            _s.depth -= 1
            if _s.depth == 0 and (_s.broken or _s.holders == 0 or _s.lent):
                close()


@contextlib.contextmanager
def scratch(con):
    """A cursor on `con` whose default catalog is a new in-memory database, dropped afterwards."""
    _s.scratches += 1
    name = f"agentops_scratch_{_s.scratches}"
    con.execute(f'ATTACH \':memory:\' AS "{name}"')
    cur = con.cursor()
    try:
        cur.execute(f'USE "{name}"')
        yield cur
    finally:
        cur.close()
        con.execute(f'DETACH "{name}"')


def close() -> None:
    """Close the session now: attached files are checkpointed and released."""
    with LOCK:
        con, _s.con, _s.broken, _s.attached, _s.rows = _s.con, None, False, {}, {}
        if con is not None:
            try:
                con.close()
            except Exception:  # noqa: BLE001 - an invalidated instance: it is gone either way
                pass


def remember_rows(key: tuple[str, str, str, str], rows: int) -> None:
    """An intermediate table's partition (alias, schema, table, partition) was just loaded, in a
    committed transaction, with `rows` rows. Nothing else writes the file while the session holds it
    (DuckDB's lock keeps other processes out; in this process every use goes through here, and a
    `command:` stage gets the files only after `lend` closed the session, which forgets this), so a
    stage reading that partition later in the run knows its rows without counting them again."""
    with LOCK:
        if _s.con is not None:
            _s.rows[key] = rows


def known_rows(key: tuple[str, str, str, str]) -> int | None:
    """The rows `remember_rows` recorded for the partition while the session stayed open, or None."""
    return _s.rows.get(key)


def is_open() -> bool:
    return _s.con is not None


def _connection():
    if _s.con is None:
        import duckdb

        con = duckdb.connect()
        # checkpoint after 256 MB of WAL, not DuckDB's 16 MB: a backfill appending partition after
        # partition to intermediate tables otherwise recompresses their growing last row groups at
        # every few commits (~1.2 s of the benchmark's 5.8 s). Each COMMIT still syncs the WAL;
        # the files are checkpointed when the session closes.
        con.execute(f"SET checkpoint_threshold = '{CHECKPOINT_THRESHOLD}'")
        _s.con = con
    return _s.con


def _attach(con, alias: str, path: Path, read_only: bool, deadline: float) -> None:
    from agentops.data.datasets import attach_duckdb
    from agentops.errors import DataError

    if alias in _s.attached:  # attached here before (the catalog is asked only about others)
        found = (_s.attached[alias],)
    else:
        found = con.execute("SELECT readonly FROM duckdb_databases() WHERE database_name = ?", [alias]).fetchone()
    if found is not None:
        if read_only or not found[0]:
            return
        con.execute(f'DETACH "{alias}"')  # attached read-only, now written: reattach read-write
        _s.attached.pop(alias, None)
    if read_only and not path.is_file():
        return  # nothing written there yet: the reader says so (`attach_duckdb`)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    delay = 0.01
    while True:
        try:
            attach_duckdb(con, alias, path, read_only=read_only)
            _s.attached[alias] = read_only
            return
        except DataError as exc:
            if "lock" not in exc.message.lower() or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
