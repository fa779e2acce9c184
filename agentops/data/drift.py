"""Schema drift: a dataset's columns and types compared with its last record, judged by policy.

`schema_evolution` (on the dataset, its source or destination; default `fail`):
  add_columns  new columns are fine; a removed column or a changed type is breaking
  fail         any difference is breaking
  ignore       differences are recorded, never judged
A breaking change fails the dataset's `schema` check and alerts its owner and the owners of every
pipeline downstream of it (lineage), through the `schema_change` event.
"""

from __future__ import annotations

import re

# type spellings that mean the same thing (DuckDB, Postgres, SQLite), for `schema` check expectations
_ALIASES = {
    "INT": "INTEGER", "INT4": "INTEGER", "SIGNED": "INTEGER", "INT8": "BIGINT", "LONG": "BIGINT",
    "INT2": "SMALLINT", "SHORT": "SMALLINT", "INT1": "TINYINT", "FLOAT8": "DOUBLE", "DOUBLE PRECISION": "DOUBLE",
    "FLOAT4": "FLOAT", "REAL": "FLOAT", "TEXT": "VARCHAR", "STRING": "VARCHAR", "CHARACTER VARYING": "VARCHAR",
    "BOOL": "BOOLEAN", "LOGICAL": "BOOLEAN", "DATETIME": "TIMESTAMP", "TIMESTAMP WITHOUT TIME ZONE": "TIMESTAMP",
    "TIMESTAMPTZ": "TIMESTAMP WITH TIME ZONE", "NUMERIC": "DECIMAL",
}


def normal_type(t: str) -> str:
    u = re.sub(r"\s+", " ", (t or "").strip().upper())
    base = re.sub(r"\(.*\)$", "", u).strip()
    if base in ("VARCHAR", "CHARACTER VARYING", "TEXT", "STRING"):
        return "VARCHAR"
    return _ALIASES.get(u, _ALIASES.get(base, u))


def diff(old: dict[str, str], new: dict[str, str]) -> dict:
    """added / removed column names and changed types between two {column: type} records."""
    return {"added": [c for c in new if c not in old],
            "removed": [c for c in old if c not in new],
            "changed": [{"column": c, "old": old[c], "new": new[c]} for c in new
                        if c in old and normal_type(old[c]) != normal_type(new[c])]}


def is_change(d: dict) -> bool:
    return bool(d["added"] or d["removed"] or d["changed"])


def breaking(d: dict, policy: str) -> bool:
    if policy == "ignore":
        return False
    if policy == "add_columns":
        return bool(d["removed"] or d["changed"])
    return is_change(d)


def describe(d: dict) -> str:
    parts = []
    if d["added"]:
        parts.append("added " + ", ".join(d["added"]))
    if d["removed"]:
        parts.append("removed " + ", ".join(d["removed"]))
    for c in d["changed"]:
        parts.append(f"{c['column']} {c['old']} -> {c['new']}")
    return "; ".join(parts) or "no change"


def expectation_problems(columns: dict[str, str], expected_columns: list[str], types: dict[str, str]) -> list[str]:
    """What a declared `schema` check finds wrong: missing columns and types that differ."""
    out = [f"missing {c}" for c in [*expected_columns, *(c for c in types if c not in expected_columns)]
           if c not in columns]
    for c, t in types.items():
        if c in columns and normal_type(columns[c]) != normal_type(t):
            out.append(f"{c} is {columns[c]}, expected {t}")
    return out
