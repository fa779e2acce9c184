"""Data: datasets that point at real data, and the checks, profiles and schema records measured on it
(SPEC §11).

- `connections`: `[connections.NAME]` resolved, one connection factory per engine (DuckDB, sqlite3,
  psycopg) and the `Engine` wrapper (quoting, placeholders, column types).
- `datasets`: the catalog of every dataset the specs name, `open_dataset` (one dataset in its own
  engine) and `register_inputs` (a stage's inputs as DuckDB relations under their own names, for
  the pipeline runner; see that module's docstring).
"""

from agentops.data.connections import connection, connections, warehouse_path
from agentops.data.datasets import catalog, open_dataset, register_inputs

__all__ = ["catalog", "connection", "connections", "open_dataset", "register_inputs", "warehouse_path"]
