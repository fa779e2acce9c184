"""`sql:` stages whose output is a table in SQLite or PostgreSQL (SPEC §12, issue 15 point 1).

When a `sql:` stage's one output is a table on a `sqlite` or `postgres` connection, its SELECT is
written in that database's dialect and runs in that database, reading that database's tables by
their own names. Its inputs must therefore be tables on the same connection (`check_spec` reports
any other input when a spec loads; the runner refuses it too). agentops materialises the result in
one transaction of that database:

1. the SELECT's result goes into a temporary table (`CREATE TEMP TABLE ... AS SELECT`), with
   `$partition`, `$start`, `$end` and `$watermark` bound as the driver's parameters (sqlite3 takes
   `$name` itself; for psycopg each becomes `%(name)s` outside string literals, quoted identifiers,
   comments and dollar quotes), never formatted into the text;
2. the output table is created from the result's columns when it is missing; a partitioned output
   (a destination with time partitioning) has only the run's partition deleted (the partition
   column's values in the result, and the values whose text starts with the partition key), any
   other output is emptied (or recreated when the SELECT's columns changed);
3. the result is inserted, by column name, and the transaction commits.

A failing SELECT, a killed runner or a dropped connection leave the table as it was. rows_in (the
rows of the input tables, counted in the same transaction), rows_out and the result's columns are
reported for the job event and OpenLineage like the DuckDB path's. The stage's timeout bounds the
statement (`statement_timeout` in PostgreSQL, a progress handler in SQLite).

A `command:` stage with such an output writes its Parquet file as for any table output;
`publish_file` (called by `outputs.publish_table`) loads it the same way: its rows, read by DuckDB
in batches, fill the temporary table (DuckDB's types mapped to the database's), then steps 2-3.
"""

from __future__ import annotations

import re
import time

KINDS = ("sqlite", "postgres")
RESULT = "agentops_result"  # the temporary table holding the SELECT's result


# --- which stages, and what they may read -----------------------------------------------------------
def connection_kind(ws, connection: str) -> str | None:
    """The kind of a configured connection (no file is touched), or None when it is not configured."""
    if connection == "warehouse":
        return "duckdb"
    from agentops.errors import AgentOpsError

    try:
        conf = (getattr(ws.config, "connections", None) or {}).get(connection) or {}
    except AgentOpsError:  # a broken agentops.toml is `agentops doctor`'s to report, not a spec's
        return None
    return conf.get("kind")


def output_table(ws, spec, stage):
    """(dataset, location, kind) when the stage is `sql:` and its one output is a table on a SQLite
    or PostgreSQL connection; else None (the DuckDB path)."""
    from agentops.pipelines.outputs import location_of

    if stage.sql is None or len(stage.outputs) != 1:
        return None
    name = stage.outputs[0]
    loc = location_of(spec, name)
    if loc is None or loc.kind != "table":
        return None
    kind = connection_kind(ws, loc.connection)
    return (name, loc, kind) if kind in KINDS else None


def input_problems(ws, spec, stage) -> list[tuple[int, str]]:
    """(index in stage.inputs, message) for each input that is not a table on the output's connection."""
    from agentops.data.datasets import describe
    from agentops.pipelines.outputs import location_of

    found = output_table(ws, spec, stage)
    if found is None:
        return []
    name, out, kind = found
    out_problems = []
    for j, d in enumerate(stage.inputs):
        loc = location_of(spec, d)
        if loc is not None and loc.kind == "table" and loc.connection == out.connection:
            continue
        where = "the warehouse table of that name" if loc is None else describe(d, loc)
        out_problems.append((j, f"stage '{stage.name}' writes {name} to {kind} table {out.connection}:{out.table}, "
                                f"so its sql: runs in that database and reads only its tables; input '{d}' is "
                                f"{where}: give '{d}' a location {{connection: {out.connection}, table: ...}}, "
                                f"or write {name} to DuckDB or files"))
    return out_problems


def check_spec(ws, spec, result=None) -> list:
    """Spec-load problems (`agentops pipeline check`): inputs of such stages that are not tables on
    the output's connection."""
    from agentops.pipelines.spec import Problem, _loc_text

    src = spec.source_file or spec.name
    problems = []
    for i, st in enumerate(spec.stages):
        for j, message in input_problems(ws, spec, st):
            loc = ("stages", i, "inputs", j)
            problems.append(Problem(src, _loc_text(loc), message, result.line_of(loc) if result else None))
    return problems


# --- running one -------------------------------------------------------------------------------------
def run_stage(ws, plan, pp, stage) -> dict:
    """Run the stage's SELECT in the output's database and materialise it for partition `pp`.
    Returns rows_in, rows_out, bytes (None: the database's business) and the output's columns.
    Raises StageFailed."""
    from agentops.data import connection
    from agentops.errors import AgentOpsError
    from agentops.pipelines.outputs import partition_column
    from agentops.pipelines.runner import StageFailed
    from agentops.pipelines.sqlstage import parameters, params_used

    spec = plan.spec
    name, loc, kind = output_table(ws, spec, stage)
    bad = input_problems(ws, spec, stage)
    if bad:
        raise StageFailed(f"stages.{stage.name}.inputs[{bad[0][0]}]: {bad[0][1]}", retry=False)
    select = stage.sql.strip().rstrip(";").rstrip()
    args = parameters(ws, spec, stage, pp, params_used(select))
    inputs = [spec.location(d).table for d in stage.inputs]
    try:
        info = connection(ws, loc.connection)
        db = (_Sqlite if kind == "sqlite" else _Postgres)(info, stage.timeout)
    except AgentOpsError as exc:  # a server that is down is worth the stage's retries; a missing DSN is not
        raise StageFailed(exc.message, retry=exc.message.startswith("cannot connect")) from None
    try:
        figures = db.materialise(select, args, loc.table, inputs, partition_column(spec, name, loc), pp.partition)
    except db.errors() as exc:
        raise StageFailed(f"sql: {_first(exc)}", retry=db.transient(exc)) from None
    except AgentOpsError as exc:
        raise StageFailed(exc.message, retry=False) from None
    finally:
        db.close()
    figures["schemas"] = {name: figures.pop("schema")}
    return figures


def publish_file(ws, spec, name: str, location, parquet, partition: str) -> bool:
    """A `command:` stage's staged Parquet file into its SQLite or PostgreSQL table output, in one
    transaction of that database. False when the output is no such table (the DuckDB path)."""
    from agentops.data import connection
    from agentops.errors import AgentOpsError
    from agentops.pipelines.outputs import partition_column

    kind = connection_kind(ws, location.connection) if location is not None and location.kind == "table" else None
    if kind not in KINDS:
        return False
    import duckdb

    db = (_Sqlite if kind == "sqlite" else _Postgres)(connection(ws, location.connection), 3600.0)
    try:
        db.load(parquet, location.table, partition_column(spec, name, location), partition)
    except (*db.errors(), duckdb.Error) as exc:
        raise AgentOpsError(f"dataset {name} ({location.describe()}): {_first(exc)}") from None
    finally:
        db.close()
    return True


def _first(exc) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _Database:
    """The steps every engine shares; subclasses give the dialect."""

    def __init__(self, info, timeout: float):
        self.info, self.timeout = info, timeout
        self.conn = self.connect()

    def materialise(self, select: str, args: dict, table: str, inputs: list[str], column: str | None,
                    partition: str) -> dict:
        """The SELECT's result replaces the partition (or the table), in one transaction."""
        def fill():
            rows_in = sum(self.scalar(f"SELECT count(*) FROM {self.relation(t)}") for t in dict.fromkeys(inputs))
            self.execute(f"CREATE TEMP TABLE {self.quote(RESULT)} AS {self.bind(select)}", args)
            return rows_in if inputs else 0

        return self.replace(fill, table, column, partition)

    def load(self, path, table: str, column: str | None, partition: str) -> dict:
        """A Parquet file (what a `command:` stage wrote) replaces the partition (or the table), in
        one transaction: its rows go into the temporary table, read by DuckDB in batches."""
        import duckdb

        from agentops.data.connections import literal

        src = duckdb.connect()
        try:
            rel = f"read_parquet({literal(path)})"
            cols = [(r[0], str(r[1])) for r in src.execute(f"DESCRIBE SELECT * FROM {rel}").fetchall()]

            def fill():
                self.execute(f"CREATE TEMP TABLE {self.quote(RESULT)} ("
                             + ", ".join(f"{self.quote(n)} {self.type_of(t)}" for n, t in cols) + ")")
                cur = src.execute(f"SELECT * FROM {rel}")
                while rows := cur.fetchmany(10_000):
                    self.insert_rows([n for n, _ in cols], rows)
                return None

            return self.replace(fill, table, column, partition)
        finally:
            src.close()

    def replace(self, fill, table: str, column: str | None, partition: str) -> dict:
        from agentops.errors import DataError

        q = self.quote
        target = self.relation(table)
        result = self.result_relation()
        self.begin()
        try:
            rows_in = fill()
            schema = self.columns(result)
            names = [c for c, _ in schema]
            rows_out = self.scalar(f"SELECT count(*) FROM {result}")
            existing = self.existing_columns(table)
            if column is not None and column not in names:
                raise DataError(f"the output is partitioned by {column} but the stage's result has no column "
                                f"{column}", hint=f"give the result a column {column} (the partition's time)")
            if existing is None:
                self.create(table, result)
            elif column is None:
                if set(existing) == set(names):
                    self.execute(f"DELETE FROM {target}")
                else:  # the SELECT's columns changed: the table follows them, like the DuckDB path's
                    self.execute(f"DROP TABLE {target}")
                    self.create(table, result)
            else:  # with parameters: a `%` in a name is doubled for psycopg
                c, t = self.with_params(q(column)), self.with_params(target)
                self.execute(f"DELETE FROM {t} WHERE {c} IN (SELECT DISTINCT {c} FROM {result}) "
                             f"OR {self.prefix_of(c)} = {self.text_param}", [partition, partition])
            cols = ", ".join(q(n) for n in names)
            self.execute(f"INSERT INTO {target} ({cols}) SELECT {cols} FROM {result}")
            self.execute(f"DROP TABLE {result}")
            self.commit()
        except BaseException:
            self.rollback()
            raise
        return {"rows_in": rows_in, "rows_out": int(rows_out), "bytes": None, "schema": schema}

    # the dialect ---------------------------------------------------------------------------------
    quote = staticmethod(lambda ident: '"' + str(ident).replace('"', '""') + '"')

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001 - closing is best effort
            pass


class _Sqlite(_Database):
    text_param = "?"

    def connect(self):
        from agentops.data.connections import sqlite_connect

        self.info.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite_connect(self.info.path, read_only=False, create=True)
        conn.isolation_level = None  # transactions are ours: BEGIN IMMEDIATE ... COMMIT
        deadline = time.monotonic() + self.timeout
        conn.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, 10_000)
        return conn

    @staticmethod
    def errors():
        import sqlite3

        return (sqlite3.Error,)

    @staticmethod
    def transient(exc) -> bool:
        text = str(exc).lower()
        return "locked" in text or "busy" in text

    def relation(self, table: str) -> str:
        """As `open_dataset` reads it: SQLite has one schema, `main.t` is `t`, other dots are in the name."""
        return f'"main".{self.quote(table[5:])}' if table.startswith("main.") else self.quote(table)

    def result_relation(self) -> str:
        return f'"temp".{self.quote(RESULT)}'

    def begin(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")  # the write lock now, not halfway through

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def bind(self, select: str) -> str:
        return select  # sqlite3 binds $partition itself (named parameters)

    def execute(self, sql: str, args=()):
        return self.conn.execute(sql, args)

    def scalar(self, sql: str):
        return self.conn.execute(sql).fetchone()[0]

    def columns(self, relation: str) -> list[tuple[str, str]]:
        """The result's columns; an expression's (no declared type) typed by its first value, so the
        table made from it has types the checks can use (`sum(amount)` is REAL, not untyped)."""
        from agentops.data.connections import SqliteEngine

        out = []
        for name, declared in SqliteEngine(self.conn).columns(relation):
            if not declared:
                c = self.quote(name)
                got = self.conn.execute(f"SELECT typeof({c}) FROM {relation} WHERE {c} IS NOT NULL LIMIT 1").fetchone()
                declared = {"integer": "INTEGER", "real": "REAL", "text": "TEXT", "blob": "BLOB"}.get(
                    got[0] if got else "", "")
            out.append((name, declared))
        return out

    def existing_columns(self, table: str) -> list[str] | None:
        name = table[5:] if table.startswith("main.") else table
        rows = self.conn.execute(f'PRAGMA "main".table_info({self.quote(name)})').fetchall()
        return [r[1] for r in rows] or None

    def create(self, table: str, result: str) -> None:
        cols = ", ".join(f"{self.quote(n)} {t}".rstrip() for n, t in self.columns(result))
        self.execute(f"CREATE TABLE {self.relation(table)} ({cols})")

    def prefix_of(self, col: str) -> str:
        return f"substr(CAST({col} AS TEXT), 1, length(?))"

    @staticmethod
    def with_params(text: str) -> str:
        return text

    @staticmethod
    def type_of(duck: str) -> str:
        t = duck.upper()
        if t in ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER", "BOOLEAN"):
            return "INTEGER"
        if t in ("FLOAT", "DOUBLE", "REAL") or t.startswith("DECIMAL"):
            return "REAL"
        return "BLOB" if t == "BLOB" else "TEXT"

    def insert_rows(self, names: list[str], rows: list) -> None:
        sql = (f"INSERT INTO {self.result_relation()} ({', '.join(map(self.quote, names))}) "
               f"VALUES ({', '.join('?' for _ in names)})")
        self.conn.executemany(sql, [tuple(map(_lite, r)) for r in rows])


def _lite(v):
    """A value DuckDB read, as SQLite stores it (dates and times as ISO text, decimals as REAL)."""
    import datetime
    import decimal

    if v is None or isinstance(v, (int, float, str, bytes)):
        return v
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, (datetime.date, datetime.time)):
        return v.isoformat(sep=" ") if isinstance(v, datetime.datetime) else v.isoformat()
    return str(v)


class _Postgres(_Database):
    text_param = "CAST(%s AS text)"

    def connect(self):
        from agentops.data.connections import postgres_connect

        return postgres_connect(self.info.dsn_env, read_only=False)

    @staticmethod
    def errors():
        import psycopg

        return (psycopg.Error,)

    @staticmethod
    def transient(exc) -> bool:
        from psycopg import OperationalError, errors

        return isinstance(exc, (errors.SerializationFailure, errors.DeadlockDetected, errors.LockNotAvailable)) or (
            type(exc) is OperationalError)  # the connection dropped: worth another attempt

    def relation(self, table: str) -> str:
        return ".".join(self.quote(p) for p in table.split("."))

    def result_relation(self) -> str:
        return f"pg_temp.{self.quote(RESULT)}"

    def begin(self) -> None:  # psycopg opened the transaction (autocommit off); bound the statements
        self.conn.execute("SELECT set_config('statement_timeout', %s, true)", [str(max(1, int(self.timeout * 1000)))])

    def commit(self) -> None:
        self.conn.commit()

    def rollback(self) -> None:
        try:
            self.conn.rollback()
        except Exception:  # noqa: BLE001 - a dropped connection has nothing to roll back
            pass

    def bind(self, select: str) -> str:
        return pg_placeholders(select)

    def execute(self, sql: str, args=None):
        return self.conn.execute(sql, args if args is not None else None)

    def scalar(self, sql: str):
        return self.conn.execute(sql).fetchone()[0]

    def columns(self, relation: str) -> list[tuple[str, str]]:
        cur = self.conn.execute(f"SELECT * FROM {relation} LIMIT 0")
        return [(d.name, d.type_display) for d in cur.description]

    def existing_columns(self, table: str) -> list[str] | None:
        oid = self.conn.execute("SELECT to_regclass(%s)::oid", [self.relation(table)]).fetchone()[0]
        if oid is None:
            return None
        return [r[0] for r in self.conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped "
            "ORDER BY attnum", [oid]).fetchall()]

    def create(self, table: str, result: str) -> None:
        parts = table.split(".")
        if len(parts) > 1:
            self.execute(f"CREATE SCHEMA IF NOT EXISTS {self.relation('.'.join(parts[:-1]))}")
        self.execute(f"CREATE TABLE {self.relation(table)} (LIKE {result})")

    def prefix_of(self, col: str) -> str:
        return f"left(CAST({col} AS text), length(CAST(%s AS text)))"

    @staticmethod
    def with_params(text: str) -> str:
        return text.replace("%", "%%")

    @staticmethod
    def type_of(duck: str) -> str:
        t = duck.upper()
        simple = {"TINYINT": "smallint", "SMALLINT": "smallint", "INTEGER": "integer", "BIGINT": "bigint",
                  "UTINYINT": "smallint", "USMALLINT": "integer", "UINTEGER": "bigint", "UBIGINT": "numeric",
                  "HUGEINT": "numeric", "FLOAT": "real", "DOUBLE": "double precision", "BOOLEAN": "boolean",
                  "VARCHAR": "text", "DATE": "date", "TIME": "time", "TIMESTAMP": "timestamp",
                  "TIMESTAMP WITH TIME ZONE": "timestamptz", "BLOB": "bytea", "UUID": "uuid",
                  "INTERVAL": "interval"}
        if t in simple:
            return simple[t]
        m = re.match(r"^DECIMAL\((\d+),\s*(\d+)\)$", t)
        return f"numeric({m.group(1)},{m.group(2)})" if m else "text"

    def insert_rows(self, names: list[str], rows: list) -> None:
        cols = ", ".join(self.quote(n) for n in names)
        with self.conn.cursor() as cur, cur.copy(f"COPY {self.result_relation()} ({cols}) FROM STDIN") as copy:
            for r in rows:
                copy.write_row([_pg_value(v) for v in r])


def _pg_value(v):
    """psycopg adapts numbers, text, bytes, dates, times, decimals and UUIDs; a list or struct DuckDB
    read goes into its text column as JSON."""
    import json

    return json.dumps(v, default=str) if isinstance(v, (list, tuple, dict)) else v


# --- psycopg placeholders ----------------------------------------------------------------------------
_PG_TOKENS = re.compile(r"""
      '(?:[^']|'')*'?                          # a string literal (E'' escapes are kept whole too)
    | "(?:[^"]|"")*"?                          # a quoted identifier
    | --[^\n]*                                 # a line comment
    | /\*.*?(?:\*/|\Z)                         # a block comment
    | (?P<dollar>\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$).*?(?:(?P=dollar)|\Z)   # a dollar-quoted string
    | \$(?P<param>partition|start|end|watermark)\b                       # our parameters
    | %                                        # psycopg's own marker, doubled
    """, re.S | re.X)


def pg_placeholders(sql: str) -> str:
    """`$partition` -> `%(partition)s` outside literals, identifiers, comments and dollar quotes;
    every other `%` doubled (psycopg reads `%` as a placeholder)."""
    def sub(m: re.Match) -> str:
        text = m.group(0)
        if m.group("param"):
            return f"%({m.group('param')})s"
        if text == "%":
            return "%%"
        return text.replace("%", "%%")

    return _PG_TOKENS.sub(sub, sql)
