"""Read queries over the Orbit tables (all served by indexes; see m003_orbit)."""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import datetime, timedelta, timezone
from typing import Any

from agentops.errors import UsageError, ValidationError

_AGO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
FTS_SEQ_KEY = "orbit.fts_seq"
FTS_SKIP = frozenset({"ts", "kind", "id", "seq", "attempt", "source_seq"})


def format_ts(ts: datetime | None) -> str:
    """UTC ISO 8601 with microseconds: every stored `ts` has this one shape, so text order is time order."""
    if ts is None:
        ts = datetime.now(timezone.utc)
    elif ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    elif ts.utcoffset():
        ts = ts.astimezone(timezone.utc)
    else:
        ts = ts.replace(tzinfo=timezone.utc)
    return ts.isoformat(timespec="microseconds")


def parse_since(value: str | None, now: datetime | None = None) -> str | None:
    """`24h`, `7d`, `30m`, `2w`, `90s` (ago) or an ISO 8601 time -> the stored ts form."""
    if value is None or value == "":
        return None
    hint = "use 30m, 24h, 7d, 2w or an ISO 8601 time"
    shown = repr(value if len(value) <= 40 else value[:40] + "...")
    m = _AGO.match(value)
    try:
        if m:
            now = now or datetime.now(timezone.utc)
            return format_ts(now - timedelta(**{_UNITS[m.group(2)]: float(m.group(1))}))
        return format_ts(datetime.fromisoformat(value.strip().replace("Z", "+00:00")))
    except OverflowError:  # an age reaching back before year 1, or a time that leaves 0001..9999 in UTC
        raise UsageError("since", f"{shown} is out of range: an age may reach back to year 1 at most, "
                              "a time must lie between 0001-01-01 and 9999-12-31 (UTC)", hint=hint) from None
    except ValueError:
        raise UsageError("since", f"{shown} is neither a time like 2026-11-25T08:00 nor an age like 24h",
                              hint=hint) from None


def _rows(cur: sqlite3.Cursor) -> list[dict]:
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def _limit(sql: str, params: list, limit: int | None) -> str:
    if limit is not None:
        params.append(int(limit))
        return sql + " LIMIT ?"
    return sql


def _select(what: str, filters: list[tuple[str, Any]], order: str, limit: int | None = None) -> tuple[str, list]:
    """`SELECT what WHERE ...` from (clause, value) filters, skipping those whose value is None or
    empty; a clause without `?` is kept when its value is truthy (a flag)."""
    where, params = [], []
    for clause, value in filters:
        if value is None or value == "" or value is False and "?" not in clause:
            continue
        where.append(clause)
        if "?" in clause:
            params.append(value)
    sql = f"SELECT {what}" + (" WHERE " + " AND ".join(where) if where else "") + f" ORDER BY {order}"
    return _limit(sql, params, limit), params


def runs(conn, *, pipeline=None, state=None, since=None, tasks=None, run_type=None, limit=200) -> list[dict]:
    sql, params = _select("* FROM runs", [
        ("pipeline = ?", pipeline), ("state = ?", state), ("run_type = ?", run_type),
        ("updated_at >= ?", parse_since(since)), ("task = ''", tasks is False), ("task != ''", tasks is True),
    ], "updated_at DESC", limit)
    return _rows(conn.execute(sql, params))


def run(conn, pipeline: str, run_id: str, task: str | None = None) -> dict | None:
    got = _rows(conn.execute("SELECT * FROM runs WHERE pipeline = ? AND run_id = ? AND task = ?",
                             (pipeline, run_id, task or "")))
    return got[0] if got else None


def _event(seq: int, data: str) -> dict:
    out = json.loads(data)
    out["seq"] = seq
    return out


def events(conn, *, kind=None, since=None, limit=100, pipeline=None, run_id=None) -> list[dict]:
    sql, params = _select("seq, data FROM events", [
        ("kind = ?", kind), ("pipeline = ?", pipeline), ("run_id = ?", run_id), ("ts >= ?", parse_since(since)),
    ], "seq DESC", limit)
    rows = conn.execute(sql, params).fetchall()
    return [_event(s, d) for s, d in reversed(rows)]


def event_text(data: Any) -> str:
    """The searchable text of an event: its string and number values (not ts/id/kind)."""
    out: list[str] = []

    def walk(v, key=None):
        if key in FTS_SKIP:
            return
        if isinstance(v, dict):
            for k, x in v.items():
                walk(x, k)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        elif isinstance(v, str):
            out.append(v)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(str(v))

    walk(data)
    return " ".join(out)


def index_text(conn, batch: int = 20000) -> int:
    """Bring the FTS index up to date with `events` (inside a write transaction). Returns rows indexed.

    Indexing at search time keeps bulk ingest fast and covers every writer of `events`."""
    got = conn.execute("SELECT value FROM meta WHERE key = ?", (FTS_SEQ_KEY,)).fetchone()
    last = int(got[0]) if got else 0
    done = 0
    while True:
        rows = conn.execute("SELECT seq, kind, data FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                            (last, batch)).fetchall()
        if not rows:
            break
        conn.executemany("INSERT INTO events_fts (rowid, text) VALUES (?, ?)",
                         [(s, k + " " + event_text(json.loads(d))) for s, k, d in rows])
        last = rows[-1][0]
        done += len(rows)
    if done:
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (FTS_SEQ_KEY, str(last)))
    return done


def search(conn, query: str, limit: int = 50) -> list[dict]:
    if not query or not query.strip():
        raise ValidationError("search: empty query", hint="give a word to look for, e.g. `orbit search timeout`")
    sql = ("SELECT e.seq, e.data FROM events_fts f JOIN events e ON e.seq = f.rowid WHERE events_fts MATCH ? "
           "ORDER BY f.rank LIMIT ?")
    try:
        rows = conn.execute(sql, (query, limit)).fetchall()
    except sqlite3.OperationalError:
        quoted = " ".join('"' + w.replace('"', '""') + '"' for w in query.split())
        rows = conn.execute(sql, (quoted, limit)).fetchall()
    return [_event(s, d) for s, d in rows]


def checks(conn, *, pipeline=None, failed=None, severity=None, since=None, limit=200) -> list[dict]:
    sql, params = _select("* FROM checks", [
        ("pipeline = ?", pipeline), ("passed = ?", None if failed is None else int(not failed)),
        ("severity = ?", severity), ("ts >= ?", parse_since(since)),
    ], "ts DESC", limit)
    out = _rows(conn.execute(sql, params))
    for r in out:
        r["passed"] = bool(r["passed"])
        r["run_id"] = r["run_id"] or None
        for k in ("observed", "threshold"):
            r[k] = json.loads(r[k]) if r[k] is not None else None
        r["status"] = r.get("status") or ("passed" if r["passed"] else "failed")
        r["samples"] = json.loads(r["samples"]) if r.get("samples") else []
    return out


def metrics(conn, pipeline: str, name: str, dataset: str | None, limit: int | None) -> list[dict]:
    series = f"{pipeline}\x1f{dataset or ''}\x1f{name}"
    params: list = [series]
    rows = _rows(conn.execute(_limit("SELECT seq, ts, pipeline, dataset, name, value FROM metrics WHERE series = ? "
                                     "ORDER BY seq DESC", params, limit), params))
    return rows[::-1]


def simple(conn, table: str, *, pipeline=None, since=None, status=None, limit=200) -> list[dict]:
    assert table in ("anomalies", "alerts", "jobs")
    sql, params = _select(f"* FROM {table}", [
        ("pipeline = ?", pipeline), ("status = ?", status), ("ts >= ?", parse_since(since)),
    ], "ts DESC", limit)
    return _rows(conn.execute(sql, params))


def anomalies(conn, *, pipeline=None, since=None, limit=200) -> list[dict]:
    """Anomaly rows, newest first, each with the `run_id` of its event (the run whose metric or job
    figure it scored; None for a point logged without a run)."""
    sql, params = _select("a.*, e.run_id FROM anomalies a LEFT JOIN events e ON e.seq = a.seq", [
        ("a.pipeline = ?", pipeline), ("a.ts >= ?", parse_since(since)),
    ], "a.ts DESC, a.seq DESC", limit)
    return _rows(conn.execute(sql, params))


def perf(conn, *, status=None, pipeline=None) -> list[dict]:
    sql, params = _select("* FROM perf", [("status = ?", status), ("pipeline = ?", pipeline)], "updated_at DESC")
    out = _rows(conn.execute(sql, params))
    for r in out:
        r["task"] = r["task"] or None
        for k in ("before", "after"):
            r[k] = json.loads(r[k]) if r[k] else None
    return out


def task_states(conn, pipeline: str) -> dict[tuple[str, str], str]:
    out: dict[tuple[str, str], str] = {}
    for date, task, state in conn.execute(
            "SELECT logical_date, task, state FROM runs WHERE pipeline = ? AND task != '' "
            "AND logical_date IS NOT NULL ORDER BY seq", (pipeline,)):
        out[(date, task)] = state
    return out


def pipelines(conn) -> list[dict]:
    """Per pipeline: the latest pipeline-level (else task-level) run and counts by state."""
    out = []
    names = [r[0] for r in conn.execute("SELECT DISTINCT pipeline FROM runs")]
    for name in sorted(names):
        latest = _rows(conn.execute("SELECT * FROM runs WHERE pipeline = ? ORDER BY task != '', updated_at DESC "
                                    "LIMIT 1", (name,)))
        counts = dict(conn.execute("SELECT state, count(*) FROM runs WHERE pipeline = ? AND task = '' "
                                   "GROUP BY state", (name,)).fetchall())
        out.append({"pipeline": name, "latest": latest[0] if latest else None, "states": counts})
    return out
