"""The backfill benchmark's baseline (`benchmarks/runs.py`): the same five SELECTs run by hand in
one DuckDB connection, with nothing of agentops.

    python benchmarks/direct_sql.py ROOT CHECKPOINT_THRESHOLD DAY...

runs the like-for-like baseline (`direct`) over ROOT's input files as a process of its own, as a
user would run a script of their SQL, and prints its in-process seconds as JSON. It imports only
duckdb and the standard library, so the process pays what any script of DuckDB SQL pays (the
interpreter and `import duckdb`) and nothing more; `runs.py` times the whole process, as it times
the whole `agentops pipeline backfill --run` process.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

SQL_STAGES = [
    ("clean", ["events_src"], "staging.events",
     "SELECT event_id, user_id, CAST(amount AS DOUBLE) AS amount, kind, CAST(day AS DATE) AS day "
     "FROM events_src WHERE amount >= 0"),
    ("enrich", ["staging.events", "users_src"], "staging.enriched",
     "SELECT e.*, u.country, u.segment FROM staging.events e JOIN users_src u USING (user_id)"),
    ("by_user", ["staging.enriched"], "mart.by_user",
     "SELECT day, user_id, country, count(*) AS events, sum(amount) AS amount FROM staging.enriched "
     "GROUP BY ALL ORDER BY user_id"),
    ("by_country", ["mart.by_user"], "mart.by_country",
     "SELECT day, country, sum(events) AS events, sum(amount) AS amount FROM mart.by_user GROUP BY ALL ORDER BY country"),
    ("top_users", ["mart.by_user"], "mart.top_users",
     "SELECT day, user_id, amount FROM mart.by_user ORDER BY amount DESC, user_id LIMIT 100"),
]


def is_table(output: str) -> bool:
    """The intermediates live in the warehouse; the two marts are Parquet partition files."""
    return output.startswith("staging.") or output == "mart.by_user"


def _write_mart(con, folder: Path, sql: str) -> None:
    """A mart's partition as one Parquet file in its own folder."""
    folder.mkdir(parents=True, exist_ok=True)
    con.execute(f"COPY ({sql}) TO '{folder}/part-0.parquet' (FORMAT parquet)")


def direct(root: Path, days: list[str], checkpoint_threshold: str) -> float:
    """The like-for-like baseline, doing the work the runner must do. Per partition, each
    intermediate (the two staging tables and mart.by_user) keeps every partition in one warehouse
    table (an `agentops_partition` column): the partition's rows are replaced by DELETE + INSERT
    in one transaction, and a later stage reads only the run's partition of it. The two marts are
    written as Parquet partition files. The warehouse is a file attached to an in-memory
    connection, with the runner's checkpoint threshold (same engine settings: the ratio measures
    the runner, not a setting). Returns the seconds from connecting to closing."""
    import duckdb

    wh = root / "direct.duckdb"
    for f in (wh, Path(str(wh) + ".wal")):
        if f.exists():
            f.unlink()
    shutil.rmtree(root / "direct_out", ignore_errors=True)
    t = time.perf_counter()
    con = duckdb.connect()
    con.execute(f"SET checkpoint_threshold = '{checkpoint_threshold}'")
    con.execute(f"ATTACH '{wh}' AS wh")
    con.execute("CREATE SCHEMA wh.staging; CREATE SCHEMA wh.mart; CREATE SCHEMA staging; CREATE SCHEMA mart")
    con.execute(f"CREATE VIEW users_src AS SELECT * FROM read_parquet('{root}/input/users.parquet')")
    created: set[str] = set()
    for day in days:
        con.execute(f"CREATE OR REPLACE VIEW events_src AS SELECT * FROM "
                    f"read_parquet('{root}/input/events/day={day}/*.parquet', hive_partitioning = true)")
        for _name, inputs, output, sql in SQL_STAGES:
            for i in inputs:  # an intermediate input: the run's partition of its warehouse table
                if i in created:
                    con.execute(f"CREATE OR REPLACE VIEW {i} AS SELECT * EXCLUDE (agentops_partition) "
                                f"FROM wh.{i} WHERE agentops_partition = '{day}'")
            if is_table(output):
                select = f"SELECT *, '{day}' AS agentops_partition FROM ({sql})"
                con.execute("BEGIN")
                if output not in created:
                    con.execute(f"CREATE TABLE wh.{output} AS {select}")
                    created.add(output)
                else:
                    con.execute(f"DELETE FROM wh.{output} WHERE agentops_partition = '{day}'")
                    con.execute(f"INSERT INTO wh.{output} {select}")
                con.execute("COMMIT")
            else:
                _write_mart(con, root / "direct_out" / output / f"day={day}", sql)
    con.close()
    return time.perf_counter() - t


def direct_replace(root: Path, days: list[str]) -> float:
    """The first baseline, kept for comparison: each intermediate is CREATE OR REPLACE'd whole per
    partition, so at the end it holds only the last day (less work than the runner does, which
    keeps every partition)."""
    import duckdb

    wh = root / "direct_replace.duckdb"
    if wh.exists():
        wh.unlink()
    t = time.perf_counter()
    con = duckdb.connect(str(wh))
    con.execute("CREATE SCHEMA IF NOT EXISTS staging; CREATE SCHEMA IF NOT EXISTS mart")
    con.execute(f"CREATE OR REPLACE VIEW users_src AS SELECT * FROM read_parquet('{root}/input/users.parquet')")
    for day in days:
        con.execute(f"CREATE OR REPLACE VIEW events_src AS SELECT * FROM "
                    f"read_parquet('{root}/input/events/day={day}/*.parquet', hive_partitioning = true)")
        for _name, _inputs, output, sql in SQL_STAGES:
            if is_table(output):
                con.execute(f"CREATE OR REPLACE TABLE {output} AS {sql}")
            else:
                _write_mart(con, root / "direct_replace_out" / output / f"day={day}", sql)
    con.close()
    return time.perf_counter() - t


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit("usage: direct_sql.py ROOT CHECKPOINT_THRESHOLD DAY...")
    print(json.dumps({"seconds": direct(Path(sys.argv[1]), sys.argv[3:], sys.argv[2])}))
