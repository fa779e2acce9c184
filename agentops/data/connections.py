"""Connections to the engines data lives in: one factory per engine (DuckDB, sqlite3, psycopg) and
the small `Engine` wrapper the checks and profiles compile their SQL for.

`[connections.NAME]` in agentops.toml names a database (`kind = "duckdb" | "sqlite" | "postgres"`,
`path` for the first two, `dsn_env` for Postgres). `warehouse` needs no entry: it is the embedded
DuckDB file `.agent/data/warehouse.duckdb`. Files (Parquet, CSV, JSON) are read by DuckDB.

SQL is code, values are data: identifiers from specs are quoted with the engine's own quoting
(`Engine.quote`), values are bound as parameters (`Engine.param` is the placeholder).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from agentops.errors import DataError

WAREHOUSE = "warehouse"
WAREHOUSE_FILE = "warehouse.duckdb"


class ConnectionInfo:
    """One resolved connection: its name, kind and where it is (a path or the DSN's variable)."""

    def __init__(self, name: str, kind: str, path: Path | None = None, dsn_env: str | None = None,
                 read_only: bool = False):
        self.name, self.kind, self.path, self.dsn_env, self.read_only = name, kind, path, dsn_env, read_only

    def __repr__(self) -> str:
        return f"ConnectionInfo({self.name!r}, {self.kind!r}, path={self.path}, dsn_env={self.dsn_env})"

    def describe(self) -> str:
        return f"{self.kind} {self.path}" if self.path else f"{self.kind} ${self.dsn_env}"


def warehouse_path(ws) -> Path:
    """The embedded warehouse, checked as `orbit.db` is before DuckDB opens it by path: reached
    without following a link out of the workspace, and it and its WAL each a regular file with one
    hard link (safefs raises UnsafePathError otherwise)."""
    from agentops import safefs

    path = ws.data_dir / WAREHOUSE_FILE
    safefs.makedirs(ws, ws.data_dir)
    for name in (WAREHOUSE_FILE, WAREHOUSE_FILE + ".wal"):
        safefs.check_state_file(ws, ws.data_dir / name)
    return path


def connections(ws) -> dict[str, ConnectionInfo]:
    """Every connection of the workspace, `warehouse` included (configured or the embedded default)."""
    out = {WAREHOUSE: ConnectionInfo(WAREHOUSE, "duckdb", warehouse_path(ws))}
    for name, c in (getattr(ws.config, "connections", None) or {}).items():
        path = None
        if c.get("path"):
            path = Path(os.path.expanduser(c["path"]))
            path = path if path.is_absolute() else ws.root / path
        out[name] = ConnectionInfo(name, c["kind"], path, c.get("dsn_env"), bool(c.get("read_only")))
    return out


def connection(ws, name: str) -> ConnectionInfo:
    found = connections(ws)
    if name not in found:
        raise DataError(f"no connection '{name}' (known: {', '.join(sorted(found))})",
                        hint="add [connections." + name + "] to agentops.toml with kind and path or dsn_env")
    return found[name]


# factories --------------------------------------------------------------------------------------------
def duckdb_connect(path: Path | str | None = None, *, read_only: bool = False):
    """A DuckDB connection: in memory (None) or a database file."""
    import duckdb

    if path is None:
        return duckdb.connect()
    try:
        return duckdb.connect(str(path), read_only=read_only)
    except duckdb.Error as exc:
        raise DataError(f"cannot open DuckDB database {path}: {first_line(exc)}") from None


def sqlite_connect(path: Path, *, read_only: bool = True, create: bool = False):
    """A sqlite3 connection to an existing file (read-only unless asked; `create`: a missing file is
    made, for a runner writing a table)."""
    import sqlite3

    if not (create and not read_only) and not Path(path).is_file():
        raise DataError(f"no SQLite database at {path}")
    from urllib.parse import quote

    mode = "ro" if read_only else ("rwc" if create else "rw")
    try:
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode={mode}", uri=True, check_same_thread=False)
        conn.execute("PRAGMA query_only = 1" if read_only else "SELECT 1")
        return conn
    except sqlite3.Error as exc:
        raise DataError(f"cannot open SQLite database {path}: {exc}") from None


def postgres_connect(dsn_env: str, *, read_only: bool = True):
    """A psycopg connection from the DSN in environment variable `dsn_env`: autocommit and read only
    for checks and reads; `read_only=False` (a runner writing a table): transactions, writable."""
    dsn = os.environ.get(dsn_env)
    if not dsn:
        raise DataError(f"environment variable {dsn_env} is not set", hint=f"export {dsn_env}='postgresql://...'")
    import psycopg

    try:
        conn = psycopg.connect(dsn, autocommit=read_only, connect_timeout=10)
        if read_only:
            conn.execute("SET default_transaction_read_only = on")  # checks and reads only, whatever the SQL
    except psycopg.Error as exc:
        # the DSN may hold a password: name the variable, never echo its value
        raise DataError(f"cannot connect to Postgres (${dsn_env}): {_scrub(first_line(exc), dsn)}") from None
    return conn


def _scrub(text: str, secret: str) -> str:
    return text.replace(secret, "$DSN") if secret else text


def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0].strip()


# engines ------------------------------------------------------------------------------------------------
class Engine:
    """One open database and its SQL dialect: quoting, placeholders, types, running a query."""

    name = "?"
    param = "?"

    def __init__(self, conn):
        self.conn = conn

    @staticmethod
    def quote(ident: str) -> str:
        return '"' + str(ident).replace('"', '""') + '"'

    def run(self, sql: str, params: list | tuple = ()) -> tuple[list[str], list[tuple]]:
        cur = self.conn.execute(sql, list(params)) if params else self.conn.execute(sql)
        names = [d[0] for d in cur.description] if cur.description else []
        return names, cur.fetchall()

    def run_limit(self, sql: str, params: list | tuple, limit: int) -> tuple[list[str], list[tuple]]:
        cur = self.conn.execute(sql, list(params)) if params else self.conn.execute(sql)
        names = [d[0] for d in cur.description] if cur.description else []
        return names, cur.fetchmany(limit)

    def columns(self, relation: str) -> list[tuple[str, str]]:
        raise NotImplementedError

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001 - closing is best effort
            pass

    # dialect ----------------------------------------------------------------------------------
    def approx_distinct(self, expr: str) -> str:
        return f"COUNT(DISTINCT {expr})"

    def distinct_rows(self, exprs: list[str]) -> str | None:
        """COUNT of distinct non-null key tuples in one aggregate, or None when the engine cannot."""
        if len(exprs) == 1:
            return f"COUNT(DISTINCT {exprs[0]})"
        return None

    def as_float(self, expr: str) -> str:
        return f"CAST({expr} AS DOUBLE PRECISION)"

    def as_text(self, expr: str) -> str:
        return f"CAST({expr} AS VARCHAR)"


class DuckEngine(Engine):
    name = "duckdb"
    param = "?"

    def columns(self, relation: str) -> list[tuple[str, str]]:
        _, rows = self.run(f"DESCRIBE SELECT * FROM {relation}")
        return [(r[0], str(r[1])) for r in rows]

    def approx_distinct(self, expr: str) -> str:
        return f"approx_count_distinct({expr})"

    def distinct_rows(self, exprs: list[str]) -> str | None:
        if len(exprs) == 1:
            return f"COUNT(DISTINCT {exprs[0]})"
        nonnull = " AND ".join(f"{e} IS NOT NULL" for e in exprs)
        return f"COUNT(DISTINCT ({', '.join(exprs)})) FILTER (WHERE {nonnull})"

    def as_float(self, expr: str) -> str:
        return f"CAST({expr} AS DOUBLE)"


class SqliteEngine(Engine):
    name = "sqlite"
    param = "?"

    def columns(self, relation: str) -> list[tuple[str, str]]:
        cur = self.conn.execute(f"SELECT * FROM {relation} LIMIT 0")
        names = [d[0] for d in cur.description]
        schema, table = _sqlite_parts(relation)
        types = {r[1]: (r[2] or "").upper() for r in self.conn.execute(
            f"PRAGMA {schema}.table_info({table})").fetchall()}
        return [(n, types.get(n, "")) for n in names]

    def as_float(self, expr: str) -> str:
        return f"CAST({expr} AS REAL)"

    def as_text(self, expr: str) -> str:
        return f"CAST({expr} AS TEXT)"


def _sqlite_parts(relation: str) -> tuple[str, str]:
    m = re.match(r'^("(?:[^"]|"")*")\.("(?:[^"]|"")*")$', relation)
    return (m.group(1), m.group(2)) if m else ('"main"', relation)


class PostgresEngine(Engine):
    name = "postgres"
    param = "%s"

    def columns(self, relation: str) -> list[tuple[str, str]]:
        with self.conn.cursor() as cur:
            cur.execute(f"SELECT * FROM {relation} LIMIT 0")
            oids = [(d.name, d.type_code) for d in cur.description]
            types = {}
            for name, oid in oids:
                if oid not in types:
                    cur.execute("SELECT format_type(%s, NULL)", (oid,))
                    types[oid] = cur.fetchone()[0]
        return [(n, types[o]) for n, o in oids]

    def run(self, sql: str, params: list | tuple = ()) -> tuple[list[str], list[tuple]]:
        with self.conn.cursor() as cur:
            cur.execute(sql, list(params) if params else None)
            names = [d.name for d in cur.description] if cur.description else []
            return names, cur.fetchall() if cur.description else []

    def run_limit(self, sql: str, params: list | tuple, limit: int) -> tuple[list[str], list[tuple]]:
        with self.conn.cursor() as cur:
            cur.execute(sql, list(params) if params else None)
            names = [d.name for d in cur.description] if cur.description else []
            return names, cur.fetchmany(limit) if cur.description else []

    def distinct_rows(self, exprs: list[str]) -> str | None:
        if len(exprs) == 1:
            return f"COUNT(DISTINCT {exprs[0]})"
        nonnull = " AND ".join(f"{e} IS NOT NULL" for e in exprs)
        return f"COUNT(DISTINCT ({', '.join(exprs)})) FILTER (WHERE {nonnull})"


def qualified(table: str, quote=Engine.quote) -> str:
    """`mart.daily_revenue` -> `"mart"."daily_revenue"`."""
    return ".".join(quote(p) for p in table.split("."))


def engine_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a query on any engine raises for bad SQL, missing tables or unreadable data."""
    import sqlite3

    import duckdb

    out: list[type[BaseException]] = [duckdb.Error, sqlite3.Error]
    try:
        import psycopg

        out.append(psycopg.Error)
    except ImportError:  # pragma: no cover - psycopg is a dependency
        pass
    return tuple(out)


def literal(value: Any) -> str:
    """A SQL string literal (for DDL, where DuckDB takes no parameters: CREATE VIEW ... read_parquet('x'))."""
    return "'" + str(value).replace("'", "''") + "'"
