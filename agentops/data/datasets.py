"""Datasets wherever they live, as relations: the catalog of every dataset the specs name, and the
SQL that reads one.

For a pipeline runner (SPEC §12, stage `sql:`), the entry point is `register_inputs`::

    con = duckdb_connect()                      # in memory; or the warehouse file itself
    rel = register_inputs(con, ws, spec, stage.inputs, partition="2026-11-25")
    con.execute("SELECT ... FROM raw.orders")   # each input is a relation under its own name

Each input becomes a view (files: `read_parquet` / `read_csv_auto` / `read_json_auto` over the
location's path, with `{partition}` filled in and hive partitions on; DuckDB tables: the attached
database, read-only) or a table copied in (SQLite and Postgres tables, read through sqlite3 and
psycopg, since DuckDB's sqlite/postgres extensions are not available), created as `schema.name` for
a dotted name (`raw.orders` is view `orders` in schema `raw`). A dataset with no location is the
warehouse's DuckDB table of that name: when `con` is the warehouse itself it is already there;
otherwise the warehouse is attached read-only as `agentops_warehouse` (`catalog_alias`) and a view
points at it. A runner that writes outputs into the warehouse from an in-memory connection attaches
it first, read-write: `attach_duckdb(con, catalog_alias("warehouse"), warehouse_path(ws),
read_only=False)`.

`open_dataset` opens one dataset for checks and profiles in its own engine (DuckDB for files and
DuckDB databases, sqlite3, psycopg), giving an `Engine` and the relation's SQL text for `FROM`.
"""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path

from agentops.data.connections import (WAREHOUSE, DuckEngine, Engine, PostgresEngine, SqliteEngine, connection,
                                       duckdb_connect, engine_errors, first_line, literal, postgres_connect,
                                       qualified, sqlite_connect, warehouse_path)
from agentops.errors import DataError

READERS = {"parquet": "read_parquet", "csv": "read_csv_auto", "json": "read_json_auto",
           "ndjson": "read_json_auto"}


class DatasetRef:
    """One dataset as the specs know it: where it is, who owns it, which pipelines write and read it."""

    def __init__(self, name: str):
        self.name = name
        self.location = None  # agentops.pipelines.spec.Location, or None (the warehouse table)
        self.location_from: str | None = None  # the pipeline whose spec gives the location
        self.owner: str | None = None
        self.schema_evolution = "fail"
        self.writers: list[str] = []  # pipeline.stage (or source:pipeline)
        self.readers: list[str] = []
        self.pipelines: list[str] = []

    def describe(self, partition: str | None = None) -> str:
        return describe(self.name, self.location, partition)

    def as_dict(self) -> dict:
        loc = self.location.model_dump(exclude_none=True) if self.location is not None else None
        return {"name": self.name, "location": loc, "where": self.describe(), "owner": self.owner,
                "schema_evolution": self.schema_evolution, "writers": self.writers, "readers": self.readers,
                "pipelines": self.pipelines}


def describe(name: str, location, partition: str | None = None) -> str:
    return location.describe(partition) if location is not None else f"{WAREHOUSE}:{name}"


def catalog(specs) -> dict[str, DatasetRef]:
    """Every dataset any spec names, with its location (the producing spec's wins), owner and lineage."""
    out: dict[str, DatasetRef] = {}
    for spec in specs:
        produced = spec.produced()
        for name in spec.dataset_names():
            ref = out.setdefault(name, DatasetRef(name))
            if spec.name not in ref.pipelines:
                ref.pipelines.append(spec.name)
            loc = spec.location(name)
            makes = name in produced
            if loc is not None and (ref.location is None or makes):
                ref.location, ref.location_from = loc, spec.name
            if makes or ref.owner is None:
                ref.owner = spec.dataset_owner(name)
                ref.schema_evolution = spec.schema_evolution(name)
        for src in spec.sources:
            out[src.name].writers.append(f"source:{spec.name}")
        for st in spec.stages:
            for d in st.outputs:
                out[d].writers.append(f"{spec.name}.{st.name}")
            for d in st.inputs:
                out[d].readers.append(f"{spec.name}.{st.name}")
    return out


# files ------------------------------------------------------------------------------------------------
def file_pattern(ws, location, partition: str | None) -> str:
    """The location's path as an absolute glob, `{partition}` filled in (`*` when no partition is given)."""
    path = os.path.expanduser(location.path.replace("{partition}", partition if partition else "*"))
    return path if os.path.isabs(path) else str(ws.root / path)


def _hive(location) -> bool:
    if location.hive_partitioning is not None:
        return location.hive_partitioning
    return bool(re.search(r"[^/=]+=[^/]+/", location.path))


def file_relation(ws, location, partition: str | None, *, check: bool = True) -> str:
    """The DuckDB table function reading the location's files (`read_parquet('...', ...)`)."""
    pattern = file_pattern(ws, location, partition)
    if check and not glob.glob(pattern, recursive=True):
        raise DataError("no file matches the path" if glob.has_magic(pattern) else "the file does not exist")
    args = [literal(pattern)]
    if location.format == "ndjson":
        args.append("format = 'newline_delimited'")
    if _hive(location):
        args.append("hive_partitioning = true")
    if location.format == "csv":
        args.append("union_by_name = true")
    return f"{READERS[location.format]}({', '.join(args)})"


# one dataset, for checks and profiles -----------------------------------------------------------------
class OpenDataset:
    """A dataset open for reading in its own engine: `engine.run(f"SELECT ... FROM {relation}")`."""

    def __init__(self, name: str, location, engine: Engine, relation: str, where: str, owned: bool):
        self.name, self.location, self.engine, self.relation, self.where = name, location, engine, relation, where
        self._owned = owned

    def close(self) -> None:
        if self._owned:
            self.engine.close()

    def __enter__(self) -> "OpenDataset":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def catalog_alias(connection_name: str) -> str:
    """The name a DuckDB connection's database is attached under (not the bare name, which a dataset's
    schema may share: `warehouse.fact_orders`)."""
    return f"agentops_{connection_name}"


def attach_duckdb(con, alias: str, path: Path, *, read_only: bool = True) -> None:
    """Attach a DuckDB database file under `alias` (once; read-only unless asked)."""
    attached = {r[0] for r in con.execute("SELECT database_name FROM duckdb_databases()").fetchall()}
    if alias in attached:
        return
    if not Path(path).is_file():
        if read_only:
            raise DataError(f"no DuckDB database at {path}" + (" (nothing has been written to the warehouse yet)"
                                                              if alias == catalog_alias(WAREHOUSE) else ""))
    try:
        con.execute(f"ATTACH {literal(path)} AS {DuckEngine.quote(alias)}" + (" (READ_ONLY)" if read_only else ""))
    except engine_errors() as exc:
        raise DataError(f"cannot open DuckDB database {path}: {first_line(exc)}") from None


def open_dataset(ws, name: str, location, partition: str | None = None, *, duck=None) -> OpenDataset:
    """Open dataset `name` at `location` (None: the warehouse table `name`). `duck` is a DuckDB
    connection to share between datasets read through DuckDB (files and DuckDB databases)."""
    where = describe(name, location, partition)
    if location is not None and location.kind == "file":
        con, owned = (duck, False) if duck is not None else (duckdb_connect(), True)
        return OpenDataset(name, location, DuckEngine(con), file_relation(ws, location, partition), where, owned)
    conn_name = location.connection if location is not None else WAREHOUSE
    table = location.table if location is not None else name
    info = connection(ws, conn_name)
    if info.kind == "duckdb":
        con, owned = (duck, False) if duck is not None else (duckdb_connect(), True)
        alias = catalog_alias(conn_name)
        try:
            attach_duckdb(con, alias, info.path)
        except DataError:
            if owned:
                con.close()
            raise
        parts = table.split(".")
        if len(parts) == 1:
            parts = ["main", *parts]
        relation = ".".join(DuckEngine.quote(p) for p in [alias, *parts])
        if location is None and partition is not None:
            relation = _partition_of(con, relation, partition)
        return OpenDataset(name, location, DuckEngine(con), relation, where, owned)
    if info.kind == "sqlite":
        conn = sqlite_connect(info.path)
        parts = table.split(".")
        relation = (f'"main".{Engine.quote(".".join(parts[1:]))}' if len(parts) > 1 and parts[0] == "main"
                    else Engine.quote(table))
        return OpenDataset(name, location, SqliteEngine(conn), relation, where, True)
    conn = postgres_connect(info.dsn_env)
    return OpenDataset(name, location, PostgresEngine(conn), qualified(table), where, True)


def _partition_of(con, relation: str, partition: str) -> str:
    """An intermediate warehouse table the runner writes carries the partition of each row in
    `agentops_partition` (pipelines.outputs): checked for one partition, it is that partition's rows
    (as the stages read it), not every partition a backfill has loaded. Its columns stay the same."""
    from agentops.pipelines.outputs import PARTITION_COLUMN

    q = DuckEngine.quote
    try:
        cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()]
    except engine_errors():
        return relation  # a missing table: reported by whoever reads it
    if PARTITION_COLUMN not in cols:
        return relation
    return f"(SELECT * FROM {relation} WHERE {q(PARTITION_COLUMN)} = {literal(partition)})"


# inputs of a stage, for the runner --------------------------------------------------------------------
def _target(name: str) -> tuple[str | None, str]:
    """Dataset name -> (schema, relation name) in DuckDB: `raw.orders` -> ("raw", "orders")."""
    if "." in name:
        schema, rel = name.split(".", 1)
        return schema, rel
    return None, name


def _create_schema(con, schema: str | None) -> str:
    q = DuckEngine.quote
    if schema is None:
        return ""
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {q(schema)}")
    return q(schema) + "."


def register_inputs(con, ws, spec, names, partition: str | None = None) -> dict[str, str]:
    """Make each dataset in `names` a relation under its own name in DuckDB connection `con` (see the
    module docstring). Returns name -> the relation's SQL. Raises DataError naming the dataset and its
    location when one cannot be read (a missing file, table, connection or unset dsn_env)."""
    q = DuckEngine.quote
    current = None  # the connection's default catalog, asked only about a warehouse table
    out: dict[str, str] = {}
    for name in names:
        location = spec.location(name) if spec is not None else None
        schema, rel = _target(name)
        target = (q(schema) + "." if schema else "") + q(rel)
        try:
            if location is None or (location.kind == "table" and location.connection == WAREHOUSE
                                    and location.table == name):
                current = current or con.execute("SELECT current_database()").fetchone()[0]
                if current == WAREHOUSE:
                    out[name] = target  # already here: the warehouse table of that name
                    continue
            ds = open_dataset(ws, name, location, partition, duck=con)
            prefix = _create_schema(con, schema)
            if isinstance(ds.engine, DuckEngine):
                con.execute(f"CREATE OR REPLACE VIEW {prefix}{q(rel)} AS SELECT * FROM {ds.relation}")
            else:
                try:
                    copy_into_duckdb(con, f"{prefix}{q(rel)}", ds)
                finally:
                    ds.close()
        except DataError as exc:
            raise DataError(f"dataset {name} ({describe(name, location, partition)}): {exc.message}",
                            hint=exc.hint) from None
        except engine_errors() as exc:
            raise DataError(f"dataset {name} ({describe(name, location, partition)}): {first_line(exc)}") from None
        out[name] = target
    return out


def duck_type(engine: Engine, declared: str) -> str:
    """A SQLite or Postgres column type as the DuckDB type its values are copied into."""
    t = declared.lower()
    if engine.name == "sqlite":
        if "int" in t:
            return "BIGINT"
        if any(k in t for k in ("real", "floa", "doub")):
            return "DOUBLE"
        if any(k in t for k in ("num", "dec")):
            return "DOUBLE"
        if "bool" in t:
            return "BOOLEAN"
        return "VARCHAR"
    if t in ("smallint", "integer", "bigint"):
        return "BIGINT"
    if t in ("real", "double precision") or t.startswith("numeric"):
        return "DOUBLE"
    if t == "boolean":
        return "BOOLEAN"
    if t == "date":
        return "DATE"
    if t.startswith("timestamp") and "with time zone" in t:
        return "TIMESTAMPTZ"
    if t.startswith("timestamp"):
        return "TIMESTAMP"
    if t == "uuid":
        return "UUID"
    return "VARCHAR"


def _csv_field(v) -> str:
    if v is None:
        return ""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return repr(v)
    if isinstance(v, bytes):
        v = v.hex()
    return '"' + str(v).replace('"', '""') + '"'


def copy_into_duckdb(con, target: str, ds: OpenDataset) -> int:
    """Copy a SQLite or Postgres relation into DuckDB table `target` (through a CSV spool file, so
    memory stays flat). Returns the rows copied."""
    import tempfile

    cols = ds.engine.columns(ds.relation)
    types = {n: duck_type(ds.engine, t) for n, t in cols}
    with tempfile.TemporaryDirectory(prefix="agentops-copy-") as tmp:
        spool = Path(tmp) / "rows.csv"
        if ds.engine.name == "postgres":
            with ds.engine.conn.cursor() as cur, open(spool, "wb") as f:
                cur.execute("SET TimeZone = 'UTC'")
                with cur.copy(f"COPY (SELECT * FROM {ds.relation}) TO STDOUT (FORMAT csv)") as copy:
                    for chunk in copy:
                        f.write(chunk)
        else:
            with open(spool, "w", encoding="utf-8") as f:  # PG's CSV: NULL unquoted empty, text quoted
                cur = ds.engine.conn.execute(f"SELECT * FROM {ds.relation}")
                while rows := cur.fetchmany(10_000):
                    f.writelines(",".join(map(_csv_field, r)) + "\n" for r in rows)
        spec = "{" + ", ".join(f"{literal(n)}: {literal(t)}" for n, t in types.items()) + "}"
        con.execute(f"CREATE OR REPLACE TABLE {target} AS SELECT * FROM read_csv({literal(spool)}, header = false, "
                    f"columns = {spec}, nullstr = '', allow_quoted_nulls = false, auto_detect = false)")
    return con.execute(f"SELECT count(*) FROM {target}").fetchone()[0]


# what `agentops dataset list|show` prints -------------------------------------------------------------
def list_datasets(ws) -> list[dict]:
    """Every dataset the specs name: where it is, its owner, writers and readers, latest check results."""
    from agentops.pipelines.spec import load_specs

    specs, _ = load_specs(ws, check=False)
    latest = _latest_checks(ws)
    out = []
    for name, ref in sorted(catalog(specs).items()):
        row = ref.as_dict()
        results = latest.get(name, [])
        row["checks"] = {s: sum(1 for r in results if r["status"] == s) for s in ("passed", "failed", "error")}
        out.append(row)
    return out


def show_dataset(ws, name: str) -> dict:
    """One dataset: location, owner, lineage, its latest schema, profile and check results."""
    import difflib
    import json

    from agentops.errors import NotFoundError
    from agentops.pipelines.lineage import lineage
    from agentops.pipelines.spec import load_specs

    specs, _ = load_specs(ws, check=False)
    cat = catalog(specs)
    if name not in cat:
        close = difflib.get_close_matches(name, list(cat), n=3, cutoff=0.5)
        raise NotFoundError(f"no spec names dataset '{name}'",
                            hint=f"did you mean {', '.join(close)}?" if close else "see `agentops dataset list`")
    out = cat[name].as_dict()
    lin = lineage(specs, name)
    out["upstream"] = [d["name"] for d in lin["upstream"]["datasets"]]
    out["downstream"] = [d["name"] for d in lin["downstream"]["datasets"]]
    out["downstream_owners"] = lin["downstream"]["owners"]
    out["schema"], out["profile"], out["checks"], out["schema_changes"] = None, {}, [], []
    if not ws.db_path.exists():
        return out
    db = ws.db()
    try:
        conn = db.conn
        row = conn.execute("SELECT columns, ts, pipeline FROM schemas WHERE dataset = ?", (name,)).fetchone()
        if row:
            out["schema"] = {"columns": json.loads(row[0]), "recorded": row[1], "pipeline": row[2]}
        # the latest profile: each metric's last point for this dataset (across pipelines, newest wins)
        for metric, value, ts in conn.execute(
                "SELECT name, value, ts FROM metrics WHERE dataset = ? AND seq IN (SELECT MAX(seq) FROM metrics "
                "WHERE dataset = ? GROUP BY name) ORDER BY name", (name, name)):
            out["profile"][metric] = value
            out["profiled"] = max(out.get("profiled") or "", ts)
        out["checks"] = _latest_checks(ws, conn).get(name, [])
        for (data,) in conn.execute("SELECT data FROM events WHERE kind = 'schema_change' AND "
                                    "json_extract(data, '$.dataset') = ? ORDER BY seq DESC LIMIT 5", (name,)):
            ev = json.loads(data)
            out["schema_changes"].append({k: ev.get(k) for k in ("ts", "pipeline", "added", "removed", "changed",
                                                                 "policy", "breaking")})
    finally:
        db.conn.close()
    return out


def _latest_checks(ws, conn=None) -> dict[str, list[dict]]:
    """dataset -> the latest result of each of its checks (per pipeline and check)."""
    import json

    if conn is None:
        if not ws.db_path.exists():
            return {}
        db = ws.db()
        try:
            return _latest_checks(ws, db.conn)
        finally:
            db.conn.close()
    out: dict[str, list[dict]] = {}
    rows = conn.execute(
        'SELECT dataset, pipeline, "check", passed, status, severity, observed, threshold, reason, samples, ts, '
        'run_id FROM checks WHERE seq IN (SELECT MAX(seq) FROM checks GROUP BY pipeline, dataset, "check") '
        "ORDER BY dataset, pipeline, \"check\"").fetchall()
    for ds, pipeline, check, passed, status, severity, observed, threshold, reason, samples, ts, run_id in rows:
        out.setdefault(ds, []).append({
            "pipeline": pipeline, "check": check, "status": status or ("passed" if passed else "failed"),
            "severity": severity, "observed": json.loads(observed) if observed is not None else None,
            "threshold": json.loads(threshold) if threshold is not None else None, "reason": reason,
            "samples": json.loads(samples) if samples else [], "ts": ts, "run_id": run_id or None})
    return out
