"""Checks and the profile compiled to SQL, one aggregate pass per dataset (SPEC §11).

`measure(ds, columns, checks)` builds ONE `SELECT agg, agg, ... FROM relation` holding the profile
(row count; per column non-null count, distinct count, min, max, mean) and every column check
(not_null, unique, accepted_values, range, row_count, freshness), runs it, and turns the figures
into `Result`s and a `Profile`. Identifiers are quoted with the engine's quoting and values are
bound as parameters. When the one pass fails (say, a value list that does not compare with its
column), each part runs alone so the bad one is an `error` and the others still count. Failing rows
(up to 5) are fetched only for a check that failed. `sql` checks are a query of their own; `schema`
is judged from the columns; `anomaly` from the profile's metrics once they are logged (quality.py).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timezone
from decimal import Decimal
from typing import Any

from agentops.data.connections import engine_errors, first_line

SAMPLES = 5
_NUMBER = re.compile(r"^(tiny|small|medium|big|huge|u|unsigned )?int|integer|serial|decimal|numeric|real|double|"
                     r"float|number|money|hugeint|uhugeint|ubigint|uinteger|usmallint|utinyint", re.I)
_TEMPORAL = re.compile(r"^(date|datetime|timestamp|time)", re.I)
_TEXT = re.compile(r"^(varchar|text|char|character|string|bpchar|nvarchar|clob|uuid|enum|citext|name)", re.I)
_BOOL = re.compile(r"^bool", re.I)
_INTEGER = re.compile(r"^((tiny|small|medium|big|huge|u|unsigned )?(int|integer|int\d+)|u(tiny|small|big|huge)int|"
                      r"(small|big)?serial\d?)(\s|\(|$)", re.I)
KEY_DISTINCT = 0.9  # a key's distinct count against its non-null rows (the distinct count is approximate)


def type_class(engine_name: str, declared: str) -> str:
    """`number`, `temporal`, `text`, `bool` or `other` for a column type as the engine names it."""
    t = (declared or "").strip()
    if _BOOL.match(t):
        return "bool"
    if _TEMPORAL.match(t):
        return "temporal"
    if _NUMBER.match(t):
        return "number"
    if _TEXT.match(t):
        return "text"
    if engine_name == "sqlite":  # SQLite's type affinity rules
        u = t.upper()
        if "INT" in u:
            return "number"
        if any(k in u for k in ("CHAR", "CLOB", "TEXT")) or not u:
            return "text"
        if any(k in u for k in ("REAL", "FLOA", "DOUB")):
            return "number"
    return "other"


@dataclass
class Result:
    """One check's outcome: `passed`, `failed` or `error` (could not run; `reason` says why)."""

    dataset: str
    check: str  # the label: not_null:order_id
    kind: str  # not_null, unique, ...
    severity: str = "error"
    status: str = "passed"
    observed: Any = None
    threshold: Any = None
    samples: list[dict] = field(default_factory=list)
    reason: str | None = None
    where: str = ""  # the location, for messages

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def as_dict(self) -> dict:
        return {"dataset": self.dataset, "check": self.check, "status": self.status, "severity": self.severity,
                "observed": self.observed, "threshold": self.threshold, "samples": self.samples,
                "reason": self.reason}

    def error(self, reason: str) -> "Result":
        self.status, self.reason = "error", reason
        return self


@dataclass
class Profile:
    """The measured profile of one dataset: metric name -> value (`row_count`, `null_fraction:c`, ...)."""

    dataset: str
    rows: int | None = None
    columns: list[tuple[str, str]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    stats: dict[str, dict] = field(default_factory=dict)  # column -> nulls, null_fraction, distinct, min, max, mean

    def as_dict(self) -> dict:
        return {"dataset": self.dataset, "rows": self.rows, "columns": [{"name": n, "type": t} for n, t in self.columns],
                "stats": self.stats, "keys": self.keys()}

    def keys(self) -> list[str]:
        """Columns this profile shows to be keys: integer columns of at least two values, all distinct
        (approximate distinct count at least KEY_DISTINCT of them), like an order_id. Whether a key's
        level is a trend (ids that grow) is `data.quality.trend_metrics`'s call."""
        out = []
        for name, declared in self.columns:
            st = self.stats.get(name) or {}
            nonnull = (self.rows or 0) - (st.get("nulls") or 0)
            if (_INTEGER.match((declared or "").strip()) and nonnull > 1 and st.get("distinct") is not None
                    and st["distinct"] >= KEY_DISTINCT * nonnull):
                out.append(name)
        return out


# -------------------------------------------------------------------------------------------------
class _Part:
    """A piece of the one aggregate: its expressions and bound values, and who owns it."""

    def __init__(self, owner: Any, exprs: list[str], params: list | None = None):
        self.owner, self.exprs, self.params = owner, exprs, list(params or [])
        self.values: list | None = None
        self.error: str | None = None


def _run_parts(ds, parts: list[_Part]) -> None:
    """Run every part's expressions in one SELECT; if that fails, each part alone (isolating errors)."""
    parts = [p for p in parts if p.exprs]
    if not parts:
        return
    errors = engine_errors()

    def select(ps: list[_Part]) -> list:
        sql = "SELECT " + ", ".join(e for p in ps for e in p.exprs) + f" FROM {ds.relation}"
        params = [v for p in ps for v in p.params]
        _, rows = ds.engine.run(sql, params)
        return list(rows[0])

    try:
        values = select(parts)
    except errors as exc:
        if len(parts) == 1:
            parts[0].error = first_line(exc)
            return
        _rollback(ds)
        for p in parts:
            try:
                p.values = select([p])
            except errors as exc2:
                p.error = first_line(exc2)
                _rollback(ds)
        return
    i = 0
    for p in parts:
        p.values = values[i:i + len(p.exprs)]
        i += len(p.exprs)


def _rollback(ds) -> None:
    """Postgres aborts a transaction on error; autocommit connections need nothing, sqlite neither."""
    rollback = getattr(ds.engine.conn, "rollback", None)
    if ds.engine.name == "postgres" and rollback is not None:
        try:
            rollback()
        except Exception:  # noqa: BLE001
            pass


def _num(v) -> float | None:
    """A profile figure as a metric value: numbers as they are, dates and times as Unix seconds."""
    if v is None or isinstance(v, bool):
        return None if v is None else float(v)
    if isinstance(v, (int, float, Decimal)):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, datetime):
        return (v if v.tzinfo else v.replace(tzinfo=timezone.utc)).timestamp()
    if isinstance(v, date):
        return datetime(v.year, v.month, v.day, tzinfo=timezone.utc).timestamp()
    if isinstance(v, str):
        ts = _as_time(v)
        return ts.timestamp() if ts else None
    return None


def _as_time(v) -> datetime | None:
    """A freshness maximum as an aware datetime: timestamps, dates, ISO text, Unix seconds."""
    if v is None:
        return None
    if isinstance(v, datetime):
        return v if v.tzinfo else v.replace(tzinfo=timezone.utc)
    if isinstance(v, date):
        return datetime(v.year, v.month, v.day, tzinfo=timezone.utc)
    if isinstance(v, (int, float, Decimal)) and not isinstance(v, bool):
        return datetime.fromtimestamp(float(v), timezone.utc)
    if isinstance(v, str):
        try:
            ts = datetime.fromisoformat(v.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)
    return None


def jsonable(v) -> Any:
    if v is None or isinstance(v, (bool, int, str)):
        return v if not isinstance(v, str) or len(v) <= 200 else v[:197] + "..."
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, (datetime, date, time)):
        return v.isoformat()
    if isinstance(v, bytes):
        return v[:50].hex()
    return jsonable(str(v))


def _rows(names: list[str], rows: list) -> list[dict]:
    return [{n: jsonable(v) for n, v in zip(names, r)} for r in rows]


def _bound_text(q) -> str:
    if q.min is not None and q.max is not None:
        return f"{q.min:g}..{q.max:g}"
    return f">= {q.min:g}" if q.min is not None else f"<= {q.max:g}"


# -------------------------------------------------------------------------------------------------
def measure(ds, columns: list[tuple[str, str]], checks: list, *, profile: bool = True,
            now: datetime | None = None) -> tuple[list[Result], Profile]:
    """Run the profile and the column checks of one open dataset in one aggregate pass; `sql` checks
    as their own queries. `schema` and `anomaly` checks are left to the caller (quality.py)."""
    eng = ds.engine
    q = eng.quote
    types = dict(columns)
    classes = {n: type_class(eng.name, t) for n, t in columns}
    now = now or datetime.now(timezone.utc)
    results: list[Result] = []
    parts: list[_Part] = [_Part("rows", ["COUNT(*)"])]
    prof = Profile(ds.name, columns=list(columns))
    prof_parts: dict[str, _Part] = {}
    if profile:
        for name, _ in columns:
            c, cls = q(name), classes[name]
            exprs = [f"COUNT({c})"]
            stats = ["count"]
            if cls in ("number", "temporal", "text", "bool"):
                exprs.append(eng.approx_distinct(c))
                stats.append("distinct")
            if cls in ("number", "temporal"):
                exprs += [f"MIN({c})", f"MAX({c})"]
                stats += ["min", "max"]
            if cls == "number":
                exprs.append(f"AVG({eng.as_float(c)})")
                stats.append("mean")
            part = _Part(("profile", name, stats), exprs)
            prof_parts[name] = part
            parts.append(part)

    pending: list[tuple[Result, Any, _Part | None]] = []
    p = eng.param
    for chk in checks:
        kind = chk.check
        if kind in ("schema", "anomaly"):
            continue
        r = Result(ds.name, chk.label, kind, chk.severity, where=ds.where)
        results.append(r)
        if kind == "sql":
            _sql_check(ds, chk, r)
            continue
        cols = ([chk.column] if chk.column else []) + [c for c in chk.columns if kind == "unique" and c != chk.column]
        missing = [c for c in cols if c not in types]
        if missing:
            r.error(f"no column {', '.join(repr(c) for c in missing)} (columns: {', '.join(types) or 'none'})")
            continue
        part = None
        if kind == "not_null":
            part = _Part(r, [f"COUNT({q(chk.column)})"])
        elif kind == "unique":
            qs = [q(c) for c in cols]
            nonnull = " AND ".join(f"{c} IS NOT NULL" for c in qs)
            dist = eng.distinct_rows(qs)
            if dist is not None:
                part = _Part(r, [f"SUM(CASE WHEN {nonnull} THEN 1 ELSE 0 END)", dist])
            else:
                pending.append((r, chk, None))  # counted by a GROUP BY of its own
                continue
        elif kind == "accepted_values":
            c = q(chk.column)
            values = list(chk.values or [])
            if classes[chk.column] == "number" and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                       for v in values):
                expr, params = c, values
            else:
                expr, params = eng.as_text(c), [_text_value(v) for v in values]
            marks = ", ".join([p] * len(values))
            part = _Part(r, [f"SUM(CASE WHEN {c} IS NOT NULL AND {expr} NOT IN ({marks}) THEN 1 ELSE 0 END)"], params)
        elif kind == "range":
            if classes[chk.column] != "number":
                r.error(f"range needs a numeric column; {chk.column!r} is {types[chk.column] or 'untyped'}")
                continue
            conds, params = _range_cond(q(chk.column), chk, p)
            part = _Part(r, [f"SUM(CASE WHEN {conds} THEN 1 ELSE 0 END)"], params)
        elif kind == "freshness":
            if classes[chk.column] not in ("temporal", "number", "text"):
                r.error(f"freshness needs a date, timestamp or epoch column; {chk.column!r} is {types[chk.column]}")
                continue
            part = _Part(r, [f"MAX({q(chk.column)})"])
        elif kind == "row_count":
            part = None  # from COUNT(*)
        pending.append((r, chk, part))
        if part is not None:
            parts.append(part)

    _run_parts(ds, parts)
    rows_part = parts[0]
    if rows_part.error:
        # the relation itself cannot be read: every check is an error for that one reason
        for r in results:
            if r.status == "passed" and r.kind != "sql":
                r.error(rows_part.error)
        return results, prof
    nrows = int(rows_part.values[0])
    prof.rows = nrows
    prof.metrics["row_count"] = float(nrows)
    for name, part in prof_parts.items():
        if part.values is None:
            continue
        stats = dict(zip(part.owner[2], part.values))
        nonnull = int(stats.pop("count"))
        out = {"nulls": nrows - nonnull, "null_fraction": (nrows - nonnull) / nrows if nrows else 0.0}
        out.update({k: jsonable(v) for k, v in stats.items()})
        prof.stats[name] = out
        prof.metrics[f"null_fraction:{name}"] = round(out["null_fraction"], 9)
        for k in ("distinct", "min", "max", "mean"):
            if k in stats and (v := _num(stats[k])) is not None:
                prof.metrics[f"{k}:{name}"] = v

    for r, chk, part in pending:
        if part is not None and part.error:
            r.error(part.error)
            continue
        vals = part.values if part is not None else None
        kind = chk.check
        if kind == "not_null":
            nulls = nrows - int(vals[0])
            _judge(r, nulls, 0, nulls == 0)
        elif kind == "unique":
            if vals is None:
                dups = _unique_by_group(ds, chk, r)
                if dups is None:
                    continue
            else:
                dups = int(vals[0] or 0) - int(vals[1] or 0)
            _judge(r, dups, 0, dups == 0)
        elif kind == "accepted_values":
            bad = int(vals[0] or 0)
            _judge(r, bad, 0, bad == 0)
        elif kind == "range":
            bad = int(vals[0] or 0)
            r.threshold = _bound_text(chk)
            _judge(r, bad, r.threshold, bad == 0)
        elif kind == "row_count":
            ok = (chk.min is None or nrows >= chk.min) and (chk.max is None or nrows <= chk.max)
            _judge(r, nrows, _bound_text(chk), ok)
        elif kind == "freshness":
            newest = _as_time(vals[0])
            if vals[0] is not None and newest is None:
                r.error(f"freshness: cannot read {jsonable(vals[0])!r} in {chk.column!r} as a time")
                continue
            if newest is None:
                _judge(r, None, chk.max_age, False)
                r.reason = f"no value in {chk.column!r}"
                continue
            age = round((now - newest).total_seconds(), 3)
            _judge(r, age, chk.max_age, age <= chk.max_age)
        if r.status == "failed":
            _samples(ds, chk, r)
    return results, prof


def _text_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _range_cond(c: str, chk, p: str) -> tuple[str, list]:
    conds, params = [], []
    if chk.min is not None:
        conds.append(f"{c} < {p}")
        params.append(chk.min)
    if chk.max is not None:
        conds.append(f"{c} > {p}")
        params.append(chk.max)
    return " OR ".join(conds), params


def _judge(r: Result, observed, threshold, ok: bool) -> None:
    r.observed, r.threshold = observed, threshold
    r.status = "passed" if ok else "failed"


def _unique_by_group(ds, chk, r: Result) -> int | None:
    q = ds.engine.quote
    cols = [q(c) for c in ([chk.column] if chk.column else []) + [c for c in chk.columns if c != chk.column]]
    nonnull = " AND ".join(f"{c} IS NOT NULL" for c in cols)
    sql = (f"SELECT COALESCE(SUM(n - 1), 0) FROM (SELECT COUNT(*) AS n FROM {ds.relation} WHERE {nonnull} "
           f"GROUP BY {', '.join(cols)} HAVING COUNT(*) > 1) AS dups")
    try:
        _, rows = ds.engine.run(sql)
        return int(rows[0][0] or 0)
    except engine_errors() as exc:
        _rollback(ds)
        r.error(first_line(exc))
        return None


def _samples(ds, chk, r: Result) -> None:
    """Up to 5 failing rows (or duplicate keys) of a failed check; a failure here only loses samples."""
    eng, q, p = ds.engine, ds.engine.quote, ds.engine.param
    kind, params = chk.check, []
    if kind == "not_null":
        sql = f"SELECT * FROM {ds.relation} WHERE {q(chk.column)} IS NULL"
    elif kind == "unique":
        cols = [q(c) for c in ([chk.column] if chk.column else []) + [c for c in chk.columns if c != chk.column]]
        nonnull = " AND ".join(f"{c} IS NOT NULL" for c in cols)
        sql = (f"SELECT {', '.join(cols)}, COUNT(*) AS duplicates FROM {ds.relation} WHERE {nonnull} "
               f"GROUP BY {', '.join(cols)} HAVING COUNT(*) > 1 ORDER BY COUNT(*) DESC")
    elif kind == "accepted_values":
        c = q(chk.column)
        values = list(chk.values or [])
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        expr = c if numeric and type_class(eng.name, dict(ds_columns(ds)).get(chk.column, "")) == "number" \
            else eng.as_text(c)
        params = values if expr == c else [_text_value(v) for v in values]
        sql = f"SELECT * FROM {ds.relation} WHERE {c} IS NOT NULL AND {expr} NOT IN ({', '.join([p] * len(values))})"
    elif kind == "range":
        conds, params = _range_cond(q(chk.column), chk, p)
        sql = f"SELECT * FROM {ds.relation} WHERE {conds}"
    else:
        return
    try:
        names, rows = eng.run_limit(f"{sql} LIMIT {SAMPLES}", params, SAMPLES)
        r.samples = _rows(names, rows)
    except engine_errors():
        _rollback(ds)


def ds_columns(ds) -> list[tuple[str, str]]:
    cached = getattr(ds, "_columns", None)
    if cached is None:
        cached = ds._columns = ds.engine.columns(ds.relation)
    return cached


def _sql_check(ds, chk, r: Result) -> None:
    """A custom query whose rows are the failures: observed = how many, samples = the first 5."""
    query = chk.query.strip().rstrip(";")
    query = query.replace("{dataset}", ds.relation)
    try:
        names, rows = ds.engine.run(f"SELECT COUNT(*) FROM ({query}) AS failures")
        n = int(rows[0][0])
        _judge(r, n, 0, n == 0)
        if n:
            names, rows = ds.engine.run_limit(f"SELECT * FROM ({query}) AS failures LIMIT {SAMPLES}", (), SAMPLES)
            r.samples = _rows(names, rows)
    except engine_errors() as exc:
        _rollback(ds)
        try:  # the query alone, planned but never run, so the message points into the user's text
            explain = "EXPLAIN QUERY PLAN " if ds.engine.name == "sqlite" else "EXPLAIN "
            ds.engine.run(explain + query)
        except engine_errors() as alone:
            _rollback(ds)
            exc = alone
        r.error(f"SQL error: {first_line(exc)}")
