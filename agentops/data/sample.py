"""A small, realistic data set made on the spot (the demo's, and the README's examples'): daily order
files as the orders_daily spec's `raw.orders` expects them, `data/raw/orders/date=D/part-0.parquet`,
and the landing files its sources stand in for (`write_landing`, `write_customers`).

Generated with DuckDB itself, deterministic per day (so reruns give the same files), no committed
binaries. A `short_day` holds a fraction of the rows (every 11th order of a full day) and nulls in
the `customer_id` column: what a half-failed upstream export looks like, for checks and anomaly
detection to find.
"""

from __future__ import annotations

from pathlib import Path

ORDERS_PATH = "data/raw/orders/date={day}/part-0.parquet"


def day_rows(i: int, rows: int = 200) -> int:
    """Rows of the i-th ordinary day: `rows` with a little day-to-day noise."""
    return rows + (i * 37) % 11 - 5


def orders_sql(i: int, day: str, n: int, nulls: int = 0, step: int = 1) -> str:
    """The SELECT of the i-th day's `n` orders (the first `nulls` without customer_id); `step` > 1
    keeps every step-th order of a full day (a partial export: fewer rows, the same spread of values).
    About 120 customers order each day, many more than once (so customer_id is no key)."""
    from agentops.data.connections import literal

    seed = (i + 1) * 1000
    return f"""
        SELECT {seed} + k AS order_id,
               CASE WHEN j < {nulls} THEN NULL ELSE 1 + (k * 7 + {i} * 41) % 120 END AS customer_id,
               ['placed', 'paid', 'shipped', 'delivered', 'returned'][1 + k % 5] AS status,
               round(5 + ((k * 37) % 2000) / 10.0, 2) AS total_amount,
               CAST({literal(day)} AS TIMESTAMP) + INTERVAL (k * 397) SECOND AS updated_at
        FROM (SELECT range AS j, range * {step} AS k FROM range({n}))"""


def write_orders(root: Path, days: list[str], *, rows: int = 200, short_day: str | None = None,
                 short_fraction: float = 0.1, null_keys: int = 6) -> dict[str, int]:
    """Write one Parquet file of orders per day under `root`; returns day -> rows written."""
    from agentops.data.connections import duckdb_connect, literal

    con = duckdb_connect()
    out: dict[str, int] = {}
    try:
        for i, day in enumerate(days):
            n = day_rows(i, rows)
            nulls, step = 0, 1
            if day == short_day:
                n, nulls = max(1, int(rows * short_fraction)), null_keys
                step = max(1, round(1 / short_fraction)) + 1  # 11: prime to the 5 statuses
            path = Path(root) / ORDERS_PATH.format(day=day)
            path.parent.mkdir(parents=True, exist_ok=True)
            con.execute(f"COPY ({orders_sql(i, day, n, nulls, step)}) TO {literal(path)} (FORMAT parquet)")
            out[day] = n
    finally:
        con.close()
    return out


# --------------------------------------------------------------------------------------- landing files
# What orders_daily's sources deliver, as files the demo writes on the spot: the Orders REST API's
# responses (JSON pages) and the CDC feed of
# public.order_items (a CSV of insert/update/delete changes with their LSN; `_SUCCESS` once the
# day's export is complete), plus the customer dimension customers_dim keeps in the warehouse.
API_PAGES = "data/landing/orders_api/date={day}/page-{page}.json"
CDC_FILE = "data/landing/cdc/order_items/date={day}/changes.csv"
CDC_DONE = "data/landing/cdc/order_items/date={day}/_SUCCESS"
CUSTOMERS = 500
SKUS = ("SKU-TEA", "SKU-MUG", "SKU-PAN", "SKU-KNIFE", "SKU-BOARD", "SKU-SPICE")


def write_landing(root: Path, days: list[str], *, index: dict[str, int] | None = None, rows: int = 200,
                  page_size: int = 100, complete: bool = True) -> dict[str, int]:
    """Write the API pages and the CDC export of each day under `root` (`complete`: with the
    `_SUCCESS` marker). The API returns the same orders `write_orders` writes for the day (`index`:
    the day's place in that list, so a run's raw.orders and the order files measure alike); the CDC
    export has 1-3 items per order, some updated or deleted later. Returns file kind -> rows written."""
    import json
    import random
    from datetime import datetime

    from agentops.data.connections import duckdb_connect

    counts = {"api_rows": 0, "cdc_rows": 0}
    con = duckdb_connect()
    try:
        for pos, day in enumerate(days):
            i = (index or {}).get(day, pos)
            cur = con.execute(orders_sql(i, day, day_rows(i, rows)))
            cols = [d[0] for d in cur.description]
            records = [dict(zip(cols, r)) for r in cur.fetchall()]
            rnd = random.Random(f"order_items:{day}")
            changes, lsn = [], int(datetime.fromisoformat(day).timestamp())
            for rec in records:
                rec["updated_at"] = rec["updated_at"].isoformat()
                for item in range(1, rnd.randrange(2, 5)):
                    lsn += rnd.randrange(1, 50)
                    row = [rec["order_id"] * 10 + item, rec["order_id"], rnd.choice(SKUS), rnd.randrange(1, 4),
                           round(rnd.uniform(2, 120), 2), rec["updated_at"]]
                    changes.append([lsn, "I", *row])
                    if rnd.random() < 0.1:
                        lsn += 1
                        changes.append([lsn, "U", *row[:3], row[3] + 1, *row[4:]])
                    elif rnd.random() < 0.05:
                        lsn += 1
                        changes.append([lsn, "D", *row])
            for page in range(0, len(records), page_size):
                path = Path(root) / API_PAGES.format(day=day, page=page // page_size + 1)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(records[page:page + page_size], indent=1) + "\n")
            cdc = Path(root) / CDC_FILE.format(day=day)
            cdc.parent.mkdir(parents=True, exist_ok=True)
            cdc.write_text("lsn,op,order_item_id,order_id,sku,quantity,unit_price,changed_at\n"
                           + "".join(",".join(map(str, c)) + "\n" for c in changes))
            if complete:
                finish_export(root, day)
            counts["api_rows"] += len(records)
            counts["cdc_rows"] += len(changes)
    finally:
        con.close()
    return counts


def finish_export(root: Path, day: str) -> None:
    """Mark the day's CDC export complete (what the replication job does when it reaches the cut-off)."""
    (Path(root) / CDC_DONE.format(day=day)).touch()


def write_customers(warehouse: Path, table: str = "analytics.dim_customers") -> int:
    """The customer dimension (SCD type 2: a few customers with a second version) in a DuckDB file."""
    import duckdb

    schema = table.split(".")[0]
    con = duckdb.connect(str(warehouse))
    try:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        con.execute(f"""
            CREATE OR REPLACE TABLE {table} AS
            SELECT customer_id * 10 + v AS customer_sk, customer_id,
                   ['consumer', 'business', 'vip'][1 + (customer_id + v) % 3] AS segment,
                   CASE WHEN v = 1 THEN TIMESTAMP '2020-01-01' ELSE TIMESTAMP '2026-01-01' END AS valid_from,
                   CASE WHEN v = 1 AND customer_id % 10 = 0 THEN TIMESTAMP '2026-01-01' END AS valid_to
            FROM range(1, {CUSTOMERS + 1}) c(customer_id), range(1, 3) t(v)
            WHERE v = 1 OR customer_id % 10 = 0""")
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        con.close()
