"""A stage's outputs for one partition appear whole or not at all (SPEC §12).

A stage writes each output under a staging name in `.agent/run/staging/`, never in place; when the
stage succeeded, `publish()` swaps each staged output in:

- a file location whose folder holds `{partition}` (`data/fact/order_date={partition}/*.parquet`): the
  partition's folder is staged whole and swapped in with one `renameat2(RENAME_EXCHANGE)` (or one
  `rename` when it is new), so a reader sees the old folder or the new one, never a mix;
- a file location naming one file (`out/{partition}.parquet`, `out/orders.csv`): one `rename`;
- a file location whose file name is a glob and whose folders hold no `{partition}`
  (`out/orders/*.parquet`): the folder is swapped whole;
- a table (a dataset with no location is the warehouse's DuckDB table of its name): a `command:`
  stage writes a Parquet file, and `publish()` loads it in one transaction, replacing the run's
  partition (the destination's partitioning column, or `agentops_partition` for an intermediate
  table) or the whole table; a `sql:` stage skips the file and `load_table`s its query's result in
  the same kind of transaction (`agentops.pipelines.sqlstage`). Both go through the process's DuckDB
  session (`agentops.pipelines.duckdb_session`), which keeps the database attached during a run.

A runner killed at any instant leaves at most a staging folder, removed by the next run. The new
data is complete before anything is swapped, so a restarted run that swaps again gives the same
bytes.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterator

from agentops.errors import AgentOpsError, ValidationError

PARTITION_COLUMN = "agentops_partition"  # the run's partition, on intermediate warehouse tables
RENAME_EXCHANGE = 2
EXT = {"parquet": "parquet", "csv": "csv", "json": "json", "ndjson": "ndjson"}


def location_of(spec, name: str):
    """The dataset's location as the spec says, or None (the warehouse table of that name)."""
    get = getattr(spec, "location", None)
    return get(name) if callable(get) else None


class Output:
    """One output of one stage for one partition: where the stage writes, and where it goes."""

    def __init__(self, ws, spec, name: str, partition: str, staging: Path):
        self.ws, self.spec, self.name, self.partition = ws, spec, name, partition
        self.location = location_of(spec, name)
        if self.location is None or self.location.kind == "table":
            self.kind = "table"
            self.format = "parquet"
            self.unit = None
            self.staged_unit = staging / f"{_file_safe(name)}.parquet"
            self.write_path = self.staged_unit
            return
        self.kind = "file"
        self.format = self.location.format
        raw = self.location.path
        if "{partition}" in raw:
            raw = raw.replace("{partition}", partition)
        path = Path(os.path.expanduser(raw))
        path = path if path.is_absolute() else ws.root / path
        parts = path.parts
        magic = [i for i, p in enumerate(parts) if glob.has_magic(p)]
        if magic and magic[0] != len(parts) - 1:
            raise ValidationError(f"dataset {name}: output path {self.location.path} has a glob in a folder; "
                                  "an output needs concrete folders (a glob only in the file name)")
        with_partition = [i for i, p in enumerate(Path(self.location.path).parts) if "{partition}" in p]
        offset = len(parts) - len(Path(self.location.path).parts)
        folder_partition = with_partition and with_partition[0] + offset < len(parts) - 1
        file_name = parts[-1] if not magic else f"part-0.{EXT[self.format]}"
        if folder_partition:
            self.unit = Path(*parts[:with_partition[0] + offset + 1])
            rest = Path(*parts[with_partition[0] + offset + 1:-1], file_name)
            self.staged_unit = staging / f"{_file_safe(name)}.d"
            self.write_path = self.staged_unit / rest
        elif magic:
            self.unit = path.parent
            self.staged_unit = staging / f"{_file_safe(name)}.d"
            self.write_path = self.staged_unit / file_name
        else:
            self.unit = path
            self.staged_unit = staging / f"{_file_safe(name)}.{EXT[self.format]}"
            self.write_path = self.staged_unit

    def describe(self) -> dict[str, Any]:
        """What AGENTOPS_DATASETS says of this output: the file to write, its format, and where it goes."""
        out = {"path": str(self.write_path), "format": self.format}
        if self.kind == "table":
            out["table"] = self.location.table if self.location is not None else self.name
        else:
            out["final"] = str(self.unit)
        return out

    def publish(self) -> None:
        if self.kind == "table":
            publish_table(self.ws, self.spec, self.name, self.location, self.write_path, self.partition)
            return
        if not self.staged_unit.exists():
            raise AgentOpsError(f"dataset {self.name}: the stage wrote nothing to {self.write_path}")
        self.unit.parent.mkdir(parents=True, exist_ok=True)
        swap(self.staged_unit, self.unit)

    def figures(self, rows: int | None = None, schema: bool = True) -> tuple[int | None, int, list | None]:
        """(rows, bytes, schema) of what the stage wrote, read before publishing (`rows`: known
        already, as a COPY says, not counted again; `schema=False`: not read, None)."""
        if not self.staged_unit.exists():
            return 0, 0, None
        files = [p for p in (self.staged_unit.rglob("*") if self.staged_unit.is_dir() else [self.staged_unit])
                 if p.is_file()]
        size = sum(p.stat().st_size for p in files)
        if rows is not None and not schema:
            return rows, size, None
        counted, columns = measure_files(files, self.format, count=rows is None, describe=schema)
        return (counted if rows is None else rows), size, columns


def measure_files(files: list[Path], fmt: str, count: bool = True,
                  describe: bool = True) -> tuple[int | None, list | None]:
    """(rows, [(column, type)]) of data files, read by DuckDB (the Parquet footer, for Parquet) on
    the process's DuckDB session; rows None unless `count`, columns None unless `describe`."""
    if not files:
        return 0, None
    try:
        import duckdb
    except ImportError:
        return None, None
    from agentops.pipelines import duckdb_session

    reader = {"parquet": "read_parquet", "csv": "read_csv_auto", "json": "read_json_auto",
              "ndjson": "read_json_auto"}[fmt]
    names = [[str(f) for f in files]]
    try:
        with duckdb_session.use() as con:
            rows = schema = None
            if count:
                rows = con.execute(f"SELECT count(*) FROM {reader}(?)", names).fetchone()[0]
            if describe:
                schema = [(r[0], r[1]) for r in con.execute(f"DESCRIBE SELECT * FROM {reader}(?)", names).fetchall()]
        return rows, schema
    except duckdb.Error:
        return None, None


class Staged:
    """The outputs of one stage attempt, staged (`outputs.staged(...)` makes one)."""

    def __init__(self, ws, spec, stage, partition: str, staging: Path):
        self.ws, self.spec, self.stage, self.partition, self.staging = ws, spec, stage, partition, staging
        self.outputs = [Output(ws, spec, name, partition, staging) for name in stage.outputs]
        for o in self.outputs:
            o.write_path.parent.mkdir(parents=True, exist_ok=True)
        self._figures: dict[str, Any] = {}

    def datasets(self) -> dict[str, Any]:
        """AGENTOPS_DATASETS: the inputs' locations and, per output, the file to write."""
        return {"inputs": {n: input_location(self.ws, self.spec, n, self.partition) for n in self.stage.inputs},
                "outputs": {o.name: o.describe() for o in self.outputs}}

    def publish(self, rows: dict[str, int] | None = None, schemas: bool = True) -> None:
        """Swap every output in, after measuring them (`rows`: per output, the rows known already;
        `schemas=False`: their columns are not read, as only OpenLineage uses them)."""
        known = rows or {}
        rows, size, found = 0, 0, {}
        for o in self.outputs:
            r, b, schema = o.figures(known.get(o.name), schema=schemas)
            rows = None if (rows is None or r is None) else rows + r
            size += b
            if schema:
                found[o.name] = schema
        self._figures = {"rows_out": rows if self.outputs else None, "bytes": size if self.outputs else None,
                         "schemas": found}
        for o in self.outputs:
            o.publish()

    def figures(self) -> dict[str, Any]:
        return dict(self._figures)


def input_location(ws, spec, name: str, partition: str) -> dict[str, Any]:
    loc = location_of(spec, name)
    if loc is None:
        from agentops.data import warehouse_path

        return {"table": name, "connection": "warehouse", "path": str(warehouse_path(ws)),
                **({} if spec.destination(name) else {"partition_column": PARTITION_COLUMN})}
    if loc.kind == "table":
        return {"table": loc.table, "connection": loc.connection}
    path = loc.path.replace("{partition}", partition)
    path = path if os.path.isabs(os.path.expanduser(path)) else str(ws.root / path)
    return {"path": path, "format": loc.format}


@contextlib.contextmanager
def staged(ws, spec, stage, partition: str) -> Iterator[Staged]:
    from agentops import safefs

    if not stage.outputs:  # nothing to stage (a stage with no output dataset)
        yield Staged(ws, spec, stage, partition, staging_root(ws))
        return
    d = staging_root(ws) / f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
    safefs.makedirs(ws, d)  # never through a link out of the workspace
    d = safefs.real_path(ws, d)
    try:
        yield Staged(ws, spec, stage, partition, d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def staging_root(ws) -> Path:
    return ws.run_dir / "staging"


def clean_staging(ws) -> int:
    """Remove staging folders left by runners that died (their pid is gone). Returns how many."""
    import stat

    from agentops import safefs

    root = staging_root(ws)
    removed = 0
    try:
        entries = safefs.scan(ws, root)
    except FileNotFoundError:
        return 0
    for name, st in entries:
        pid = name.split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(safefs.real_path(ws, root / name), ignore_errors=True)  # rmtree never follows links
            else:
                safefs.unlink(ws, root / name)
            removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- the swap ----------------------------------------------------------------------------------------
_libc = None


def _exchange(a: Path, b: Path) -> bool:
    """renameat2(a, b, RENAME_EXCHANGE): swap two existing paths atomically. False when unsupported."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        fn = _libc.renameat2
    except (OSError, AttributeError):
        return False
    AT_FDCWD = -100
    rc = fn(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: this file system cannot
        return False
    raise OSError(err, os.strerror(err), str(b))


def swap(staged: Path, final: Path) -> None:
    """Put `staged` (a file or a folder) at `final`: the old one, if any, is replaced in one step."""
    staged, final = Path(staged), Path(final)
    if _cross_device(staged, final.parent):
        near = final.parent / f".{final.name}.agentops-{uuid.uuid4().hex[:8]}"
        (shutil.copytree if staged.is_dir() else shutil.copy2)(staged, near)
        shutil.rmtree(staged, ignore_errors=True) if staged.is_dir() else staged.unlink()
        staged = near
    _fsync_tree(staged)
    if staged.is_dir():
        if os.path.lexists(final):
            if _exchange(staged, final):
                shutil.rmtree(staged, ignore_errors=True)  # the old folder, now at the staged name
            else:  # no atomic exchange here: the shortest gap there is
                old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
                os.rename(final, old)
                os.rename(staged, final)
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(staged, final)
    else:
        os.replace(staged, final)
    _fsync_dir(final.parent)


def _cross_device(a: Path, folder: Path) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    return os.stat(a).st_dev != os.stat(folder).st_dev


def _fsync_tree(path: Path) -> None:
    paths = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _file_safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


# --- tables --------------------------------------------------------------------------------------------
def table_target(ws, spec, name: str, location) -> tuple[Path, str]:
    """(DuckDB file, table name) a table output goes to."""
    from agentops.data import connection, warehouse_path

    if location is None:
        return warehouse_path(ws), name

    info = connection(ws, location.connection)
    if info.kind != "duckdb":
        raise ValidationError(f"dataset {name}: the runner writes tables in DuckDB databases; connection "
                              f"{location.connection} is {info.kind}",
                              hint="give the output a DuckDB table or a file location")
    return Path(info.path), location.table


def partition_column(spec, name: str, location) -> str | None:
    dest = spec.destination(name)
    if dest is not None and dest.partitioning is not None and dest.partitioning.by == "time":
        return dest.partitioning.column
    if location is None and dest is None:
        return PARTITION_COLUMN
    return None


def qident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def qtable(name: str) -> str:
    return ".".join(qident(p) for p in name.split("."))


def publish_table(ws, spec, name: str, location, parquet: Path, partition: str) -> None:
    """Load the staged Parquet file into the table in one transaction, replacing the partition
    (rows whose partition column is the run's partition) or the whole table."""
    if not Path(parquet).exists():
        raise AgentOpsError(f"dataset {name}: the stage wrote nothing to {parquet}")
    from agentops.data.datasets import catalog_alias
    from agentops.pipelines import duckdb_session, sqltable

    if sqltable.publish_file(ws, spec, name, location, parquet, partition):  # a SQLite/Postgres table
        return
    path, table = table_target(ws, spec, name, location)
    column = partition_column(spec, name, location)
    alias = catalog_alias(location.connection if location is not None else "warehouse")
    with duckdb_session.use([(alias, path, False)]) as con:
        load_table(con, table, f"read_parquet({_lit(str(parquet))})", column, partition, catalog=alias)


def load_table(con, table: str, relation: str, column: str | None, partition: str, catalog: str | None = None,
               params: dict | None = None) -> int:
    """In one transaction: replace `table`'s rows for `partition` (or all of it) with `relation` (a
    table, a table function, or a parenthesised query with its named `params`). `catalog`: the
    attached database the table is in (default: the connection's own). Returns the rows loaded.

    An intermediate table (`agentops_partition`) that exists: DELETE the partition, INSERT the
    relation. Else (its first load, a destination's time partition, a whole table) the table is
    looked up first and created, or its rows replaced; a relation read by the DELETE of a
    destination's partitions is read twice, so it should be a table (it takes no `params` there).
    An intermediate partition's rows are remembered by the session (`duckdb_session.remember_rows`),
    so the stages reading it next in the run need not count them again."""
    from agentops.pipelines import duckdb_session
    parts = table.split(".")
    schema = parts[-2] if len(parts) > 1 else "main"
    cat = con.execute("SELECT current_database()").fetchone()[0] if catalog is None else catalog
    target = f"{qident(cat)}.{qident(schema)}.{qident(parts[-1])}"
    if column == PARTITION_COLUMN:
        select = (f"SELECT *, CAST({_lit(partition)} AS VARCHAR) AS {qident(PARTITION_COLUMN)} "
                  f"FROM {relation}")
        n = _replace_partition(con, target, select, params, partition)
        if n is not None:
            duckdb_session.remember_rows((cat, schema, parts[-1], partition), n)
            return n
    else:
        select = f"SELECT * FROM {relation}"
    con.execute("BEGIN TRANSACTION")
    try:
        if len(parts) > 1:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {qident(cat)}.{qident(schema)}")
        exists = con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = ? "
                             "AND schema_name = ? AND table_name = ?", [cat, schema, parts[-1]]).fetchone()[0]
        if not exists or column is None:
            n = con.execute(f"CREATE OR REPLACE TABLE {target} AS {select}", params).fetchone()[0]
        else:
            if column == PARTITION_COLUMN:
                con.execute(f"DELETE FROM {target} WHERE {qident(column)} = ?", [partition])
            else:
                c = qident(column)
                con.execute(f"DELETE FROM {target} WHERE {c} IN (SELECT DISTINCT {c} FROM {relation}) "
                            f"OR left(CAST({c} AS VARCHAR), length(?)) = ?", [partition, partition])
            n = con.execute(f"INSERT INTO {target} BY NAME {select}", params).fetchone()[0]
        con.execute("COMMIT")
        if column == PARTITION_COLUMN:
            duckdb_session.remember_rows((cat, schema, parts[-1], partition), n)
        return n
    except BaseException:
        _rollback(con)
        raise


def _replace_partition(con, target: str, select: str, params: dict | None, partition: str) -> int | None:
    """DELETE the partition's rows and INSERT `select`'s, in one transaction: the rows loaded, or
    None (nothing done) when the table does not exist yet."""
    import duckdb

    con.execute("BEGIN TRANSACTION")
    try:
        try:
            con.execute(f"DELETE FROM {target} WHERE {qident(PARTITION_COLUMN)} = ?", [partition])
        except duckdb.CatalogException:  # no such table (or schema) yet: the caller creates it
            _rollback(con)
            return None
        n = con.execute(f"INSERT INTO {target} BY NAME {select}", params).fetchone()[0]
        con.execute("COMMIT")
        return n
    except BaseException:
        _rollback(con)
        raise


def _rollback(con) -> None:
    import duckdb

    try:
        con.execute("ROLLBACK")
    except duckdb.Error:  # no transaction left to roll back (it failed at COMMIT, or is already rolled back)
        pass


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
