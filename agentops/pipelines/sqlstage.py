"""`sql:` stages (SPEC §12): a SELECT in DuckDB's dialect, materialised by agentops into the stage's
one output dataset.

The SELECT runs on the process's DuckDB session (`agentops.pipelines.duckdb_session`: one in-memory
instance, the warehouse and other DuckDB databases attached once per run), in a scratch catalog of
the stage's own where each input dataset is a relation under its own name (`agentops.data.register_inputs`: files through DuckDB's readers with `{partition}` filled
in, DuckDB/SQLite/Postgres tables, and a dataset with no location as the warehouse table of that
name; an intermediate warehouse table is seen only for the run's partition). `$partition`, `$start`,
`$end` and `$watermark` are bound as parameters, never formatted into the text. The result is
published as `agentops.pipelines.outputs` says: a file output is written to a staging Parquet (or
CSV/JSON) file and its partition folder or file swapped in; a table output is loaded straight from
the query in one DuckDB transaction replacing the partition (no staging file: DuckDB's commit is
atomic, so a killed runner leaves the old partition or the new one).

One DuckDB instance of a process may hold the warehouse file (DuckDB locks it per process), so a
runner runs its SQL stages one at a time (DuckDB itself uses every core for each), on the session;
other processes holding the warehouse are waited for.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from pathlib import Path

from agentops.errors import AgentOpsError

PARAMS = ("partition", "start", "end", "watermark")
_PARAM_RE = re.compile(r"\$(partition|start|end|watermark)\b")


def params_used(sql: str) -> set[str]:
    return set(_PARAM_RE.findall(sql))


def bounds(spec, partition: str) -> tuple[str, str]:
    """The partition's interval [start, end): the schedule's time for it and the next one."""
    cron = spec.cron
    try:
        day = date.fromisoformat(partition[:10])
    except ValueError:
        return partition, partition
    if cron is None:
        return day.isoformat(), (day + timedelta(days=1)).isoformat()
    from agentops.pipelines.schedule import partition_key

    t = datetime.fromisoformat(partition) if len(partition) > 10 else datetime.combine(day, datetime.min.time())
    # the next partition's key (a daily schedule at 02:00 has its first time after midnight in the same day)
    nxt = next((partition_key(cron, x) for x in cron.times(t + timedelta(minutes=1), t + timedelta(days=400))
                if partition_key(cron, x) != partition), None)
    return partition, nxt or (day + timedelta(days=1)).isoformat()


def run_sql_stage(ws, plan, pp, stage, schemas: bool = True) -> dict:
    """Run the stage's SELECT for partition `pp` and publish it. Returns rows_in, rows_out, bytes and,
    with `schemas` (OpenLineage wants them), the output's columns.

    It runs on the process's DuckDB session (`agentops.pipelines.duckdb_session`) in a scratch
    catalog of its own. A file output is written to staging by COPY and swapped in. A table output
    has its DuckDB database attached read-write and the partition replaced in one transaction: an
    intermediate table's by DELETE, then INSERT straight from the query, when the query reads only
    files, copied tables and warehouse base tables and does not name the table (else, and for a
    destination's partitions or a whole table, the result is first held in a scratch table, so the
    query sees the table as it was). A table on a SQLite or PostgreSQL connection runs in that
    database instead (`agentops.pipelines.sqltable`)."""
    from agentops.pipelines import duckdb_session, outputs, sqltable
    from agentops.pipelines.runner import StageFailed

    spec = plan.spec
    if sqltable.output_table(ws, spec, stage) is not None:  # a SQLite/Postgres table: runs in that database
        return sqltable.run_stage(ws, plan, pp, stage)
    with outputs.staged(ws, spec, stage, pp.partition) as staged:
        out = staged.outputs[0]
        target = outputs.table_target(ws, spec, out.name, out.location) if out.kind == "table" else None
        select = stage.sql.strip().rstrip(";")
        args = parameters(ws, spec, stage, pp, params_used(select)) or None  # before taking the session
        with duckdb_session.use(_attachments(ws, spec, stage, target and (out.location, target[0])),
                                timeout=stage.timeout) as con, duckdb_session.scratch(con) as cur:
            column = outputs.partition_column(spec, out.name, out.location) if target is not None else None
            # an intermediate table's partition may be loaded straight from the query, unless it may read the table
            stream = column == outputs.PARTITION_COLUMN and not _names_table(select, target[1])
            schema = None
            try:
                rows_in, tables_only = register(cur, ws, spec, stage.inputs, pp.partition, kinds=stream)
                if target is None:
                    fmt = {"parquet": "FORMAT parquet", "csv": "FORMAT csv, HEADER true",
                           "json": "FORMAT json", "ndjson": "FORMAT json"}[out.format]
                    rows_out = cur.execute(f"COPY ({select}) TO {_lit(str(out.write_path))} ({fmt})",
                                           args).fetchone()[0]
                else:
                    if schemas:
                        schema = [(r[0], r[1]) for r in
                                  cur.execute(f"DESCRIBE SELECT * FROM ({select})", args).fetchall()]
                    if stream and tables_only:
                        relation, rel_args = f"({select})", args  # straight from the query (see `register`)
                    else:  # held in a scratch table first: the query may read the table it replaces
                        cur.execute(f"CREATE TABLE agentops_result AS {select}", args)
                        relation, rel_args = _scratch_table(cur, "agentops_result"), None
                    rows_out = outputs.load_table(cur, target[1], relation, column, pp.partition,
                                                  catalog=_alias(out.location), params=rel_args)
            except _errors() as exc:
                raise StageFailed(f"sql: {_first(exc)}", retry=_transient(exc)) from None
        if target is not None:
            return {"rows_in": rows_in, "rows_out": int(rows_out), "bytes": None,
                    "schemas": {out.name: schema} if schema else {}}
        staged.publish(rows={out.name: int(rows_out)}, schemas=schemas)
        figures = staged.figures()
    return {"rows_in": rows_in, "rows_out": int(rows_out), "bytes": figures.get("bytes"),
            "schemas": figures.get("schemas")}


def _names_table(select: str, table: str) -> bool:
    """Whether the SELECT's text names the table (its last part, as a word): then it may read it."""
    return re.search(r"(?<![\w$])" + re.escape(table.split(".")[-1]) + r"(?!\w)", select, re.IGNORECASE) is not None


def _scratch_table(cur, name: str) -> str:
    from agentops.pipelines.outputs import qident

    return f"{qident(cur.execute('SELECT current_database()').fetchone()[0])}.main.{qident(name)}"


def _alias(location) -> str:
    from agentops.data.datasets import catalog_alias

    return catalog_alias(location.connection if location is not None else "warehouse")


def _errors():
    import duckdb

    from agentops.errors import DataError

    return (duckdb.Error, DataError)


def _transient(exc) -> bool:
    """Errors worth a retry: the database being busy, I/O. A wrong query fails at once."""
    import duckdb

    return isinstance(exc, (duckdb.IOException,)) and "lock" in str(exc).lower()


def _first(exc) -> str:
    text = getattr(exc, "message", None) or str(exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _needs_warehouse(spec, names) -> bool:
    from agentops.pipelines.outputs import location_of

    for n in names:
        loc = location_of(spec, n)
        if loc is None or (loc.kind == "table" and loc.connection == "warehouse"):
            return True
    return False


def _attachments(ws, spec, stage, target=None) -> list[tuple[str, Path, bool]]:
    """The DuckDB databases a stage attaches: the database of a table output (`target`: its
    location and file) read-write, the warehouse read-only when an input lives there."""
    out = []
    if target is not None:
        location, path = target
        out.append((_alias(location), Path(path), False))
    return out + warehouse_attachment(ws, spec, stage.inputs)  # a no-op when the output attached it


def warehouse_attachment(ws, spec, names) -> list[tuple[str, Path, bool]]:
    """The warehouse, read-only, when one of the datasets `names` lives there; else nothing."""
    from agentops.data import warehouse_path

    return [(_alias(None), Path(warehouse_path(ws)), True)] if _needs_warehouse(spec, names) else []


def register(con, ws, spec, names, partition: str, kinds: bool = False) -> tuple[int, bool | None]:
    """Each input as a relation under its own name; an intermediate warehouse table (it carries
    `agentops_partition`) only for the run's partition, without that column. Returns the rows read
    (their sum: counted, or as the session loaded them this run) and, with `kinds` (else None), whether every input is a file, a copied
    SQLite/Postgres table or a warehouse base table: then the query reads nothing but those, so it
    cannot read a table it is writing (a warehouse view, or a table in another DuckDB database, might)."""
    import duckdb

    from agentops.data import register_inputs
    from agentops.data.datasets import catalog_alias
    from agentops.pipelines.outputs import PARTITION_COLUMN, location_of, qident, qtable

    from agentops.pipelines.runner import StageFailed

    if not names:
        return 0, True if kinds else None
    from agentops.pipelines import duckdb_session

    warehouse = catalog_alias("warehouse")
    rels: dict[str, str] = {}
    known = 0  # rows of intermediate partitions this session loaded (not counted again)
    counted: list[str] = []
    for name in names:  # a warehouse table of that name (an intermediate one): a view on it here
        if location_of(spec, name) is not None:
            continue
        source = f"{qident(warehouse)}.{qtable(name if '.' in name else 'main.' + name)}"
        rel = qident(name)
        if "." in name:  # `staging.events` is view `events` in schema `staging`, as register_inputs names it
            first, rest = name.split(".", 1)
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {qident(first)}")
            rel = f"{qident(first)}.{qident(rest)}"
        try:
            con.execute(f"CREATE VIEW {rel} AS SELECT * EXCLUDE ({qident(PARTITION_COLUMN)}) FROM {source} "
                        f"WHERE {qident(PARTITION_COLUMN)} = {_lit(partition)}")
            parts = name.split(".")
            if len(parts) <= 2:
                rows = duckdb_session.known_rows((warehouse, parts[0] if len(parts) == 2 else "main", parts[-1],
                                                  partition))
                if rows is not None:
                    known += rows
                    counted.append(name)
        except duckdb.BinderException:  # no partition column: the whole table
            try:
                con.execute(f"CREATE VIEW {rel} AS SELECT * FROM {source}")
            except duckdb.Error:
                continue
        except duckdb.Error:  # no such table: register_inputs says so, naming the dataset
            continue
        rels[name] = rel
    others = [n for n in names if n not in rels]
    if others:
        try:
            rels.update(register_inputs(con, ws, spec, others, partition))
        except AgentOpsError as exc:
            raise StageFailed(exc.message, retry=False) from None
    for name in others:  # read through register_inputs after all: as it reads it, less the column
        if location_of(spec, name) is None:
            source = f"{qident(warehouse)}.{qtable(name if '.' in name else 'main.' + name)}"
            cols = [r[0] for r in con.execute(f"SELECT * FROM {source} LIMIT 0").description]
            if PARTITION_COLUMN in cols:
                con.execute(f"CREATE OR REPLACE VIEW {rels[name]} AS SELECT * EXCLUDE ({qident(PARTITION_COLUMN)}) "
                            f"FROM {source} WHERE {qident(PARTITION_COLUMN)} = {_lit(partition)}")
    counts = " + ".join(f"(SELECT count(*) FROM {rels[n]})" for n in names if n not in counted)
    total = known + (con.execute(f"SELECT {counts}").fetchone()[0] if counts else 0)
    return total, (_tables_only(con, ws, spec, names, loaded=counted) if kinds else None)


def _tables_only(con, ws, spec, names, loaded=()) -> bool:
    """Whether every input is a file, a SQLite/Postgres table (copied) or a warehouse base table.
    `loaded`: intermediate tables this session loaded the partition of (base tables: the catalog is
    not asked about them)."""
    from agentops.data.datasets import catalog_alias
    from agentops.pipelines.outputs import location_of

    wanted = set()
    for name in names:
        loc = location_of(spec, name)
        if loc is None and name in loaded:
            continue
        if loc is None or (loc.kind == "table" and loc.connection == "warehouse"):
            parts = (name if loc is None else loc.table).split(".")
            wanted.add((parts[-2] if len(parts) > 1 else "main", parts[-1]))
        elif loc.kind == "table" and _connection_kind(ws, loc.connection) == "duckdb":
            return False
    if not wanted:
        return True
    tables = {(r[0], r[1]) for r in con.execute("SELECT schema_name, table_name FROM duckdb_tables() "
                                                "WHERE database_name = ?", [catalog_alias("warehouse")]).fetchall()}
    return wanted <= tables


def _connection_kind(ws, name: str) -> str | None:
    from agentops.data import connection

    try:
        return connection(ws, name).kind
    except AgentOpsError:
        return None


# --- watermarks ----------------------------------------------------------------------------------------
def watermark_sources(spec, stage) -> list:
    return [s for s in spec.sources if s.name in stage.inputs and s.incremental.strategy in ("watermark", "delta")]


def parameters(ws, spec, stage, pp, used: set[str] | None = None) -> dict:
    """$partition, $start, $end and $watermark for the stage's run of partition `pp`; with `used`,
    only those (the watermark is read from Orbit, the bounds from the schedule)."""
    used = set(PARAMS) if used is None else used
    out: dict = {"partition": pp.partition} if "partition" in used else {}
    if used & {"start", "end"}:
        start, end = bounds(spec, pp.partition)
        out.update({k: v for k, v in (("start", start), ("end", end)) if k in used})
    if "watermark" in used:
        marks = [current_watermark(ws, spec.name, s.name) for s in watermark_sources(spec, stage)]
        marks = [m for m in marks if m is not None]
        out["watermark"] = min(marks) if marks else None
    return out


def current_watermark(ws, pipeline: str, source: str) -> str | None:
    """The source's high-water mark for the pipeline, as Orbit last recorded it (None: never)."""
    import json

    from agentops.orbit import Orbit

    with Orbit.open(ws) as orbit:
        row = orbit.db.conn.execute(
            "SELECT data FROM events WHERE kind = 'watermark' AND pipeline = ? AND json_extract(data, '$.source') = ? "
            "ORDER BY seq DESC LIMIT 1", (pipeline, source)).fetchone()
    return json.loads(row[0]).get("value") if row else None


def measure_watermark(ws, spec, source_name: str, partition: str) -> str | None:
    """max(column) of the source now: what the watermark advances to when the run succeeds (read
    on the process's DuckDB session)."""
    import duckdb

    from agentops.data import register_inputs
    from agentops.pipelines import duckdb_session
    from agentops.pipelines.outputs import qident

    src = spec.source(source_name)
    try:
        with duckdb_session.use(warehouse_attachment(ws, spec, [source_name])) as con, \
                duckdb_session.scratch(con) as cur:
            rels = register_inputs(cur, ws, spec, [source_name], partition)
            got = cur.execute(f"SELECT CAST(max({qident(src.incremental.column)}) AS VARCHAR) "
                              f"FROM {rels[source_name]}").fetchone()
        return got[0] if got else None
    except (duckdb.Error, AgentOpsError):
        return None
