"""A small, realistic data set made on the spot (the demo's, and the README's examples'): daily order
files as the orders_daily spec's `raw.orders` expects them, `data/raw/orders/date=D/part-0.parquet`.

Generated with DuckDB itself, deterministic per day (so reruns give the same files), no committed
binaries. A `short_day` holds a fraction of the rows and nulls in the `customer_id` key: what a
half-failed upstream export looks like, for checks and anomaly detection to find.
"""

from __future__ import annotations

from pathlib import Path

ORDERS_PATH = "data/raw/orders/date={day}/part-0.parquet"


def write_orders(root: Path, days: list[str], *, rows: int = 200, short_day: str | None = None,
                 short_fraction: float = 0.1, null_keys: int = 6) -> dict[str, int]:
    """Write one Parquet file of orders per day under `root`; returns day -> rows written."""
    from agentops.data.connections import duckdb_connect, literal

    con = duckdb_connect()
    out: dict[str, int] = {}
    try:
        for i, day in enumerate(days):
            n = rows + (i * 37) % 23 - 11  # a little day-to-day noise
            nulls = 0
            if day == short_day:
                n, nulls = max(1, int(rows * short_fraction)), null_keys
            path = Path(root) / ORDERS_PATH.format(day=day)
            path.parent.mkdir(parents=True, exist_ok=True)
            seed = (i + 1) * 1000
            con.execute(f"""
                COPY (
                    SELECT {seed} + range AS order_id,
                           CASE WHEN range < {nulls} THEN NULL ELSE 1 + (range * 7) % 500 END AS customer_id,
                           ['placed', 'paid', 'shipped', 'delivered', 'returned'][1 + range % 5] AS status,
                           round(5 + ((range * 37) % 2000) / 10.0, 2) AS total_amount,
                           CAST({literal(day)} AS TIMESTAMP) + INTERVAL (range * 397) SECOND AS updated_at
                    FROM range({n})
                ) TO {literal(path)} (FORMAT parquet)""")
            out[day] = n
    finally:
        con.close()
    return out
