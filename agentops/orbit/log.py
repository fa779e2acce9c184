"""The `Orbit` class: validate events, append them, keep the derived state, read it back.

Writes go through `_Batch` inside one `BEGIN IMMEDIATE` transaction per chunk: the events rows and
every derived row (runs, jobs, checks, metrics, anomalies, perf, alerts) commit together or not at
all, so a reader never sees an event without its effect. Alert mail is sent after the commit.
"""

from __future__ import annotations

import hashlib
import operator
import time
from contextlib import contextmanager
from itertools import islice
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from agentops.errors import AgentOpsError, ValidationError
from agentops.orbit import anomaly as _anomaly
from agentops.orbit import queries
from agentops.orbit.events import (USER_KINDS, AnomalyEvent, AlertEvent, Event, adapter, format_ts, own_kind,
                                   parse, problems)
from agentops.orbit.registry import Record, insert_rows
from agentops.store import write_tx

CHUNK = 20000
BULK_CACHE_KIB = -64 * 1024  # PRAGMA cache_size while log_many runs (negative: KiB)
BULK_WAL_PAGES = 25_000      # PRAGMA wal_autocheckpoint while log_many runs
MAX_LINE = 1024 * 1024  # a JSONL line longer than this is rejected before parsing
RUN_COLUMNS = ("pipeline", "run_id", "task", "state", "attempt", "run_type", "logical_date", "error", "owner",
               "started_at", "ended_at", "updated_at", "seq")
_RUN_SQL = f"INSERT OR REPLACE INTO runs ({', '.join(RUN_COLUMNS)}) VALUES ({', '.join('?' * len(RUN_COLUMNS))})"
_RUN_ROW = operator.itemgetter(*RUN_COLUMNS)  # a runs row dict -> the tuple _RUN_SQL takes
_RUN_SELECT = f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE pipeline = ? AND run_id = ? AND task = ?"
_SEQ_OF = operator.itemgetter(-1)  # a runs row tuple -> its seq
_ALERT_SQL = ("INSERT OR IGNORE INTO alerts (key, ts, cause, pipeline, run_id, owner, subject, body, source_seq) "
              "VALUES (?,?,?,?,?,?,?,?,?)")


@dataclass(slots=True)
class LogResult:
    """What one logged event did."""

    kind: str
    seq: int | None          # None: an event with this id was already there (nothing changed)
    id: str | None = None
    ts: str | None = None
    state: str | None = None  # run events: the state now
    attempt: int | None = None
    derived: list[dict] = field(default_factory=list)  # upstream_failed, anomaly and alert events it caused

    @property
    def duplicate(self) -> bool:
        return self.seq is None


@dataclass
class IngestReport:
    """What a bulk write did. `rejected` holds (line, reason); lines count from 1. `set_aside` holds
    (file name, reason) for drop-zone entries moved to `rejected/` unread (links, folders, FIFOs)."""

    source: str = ""
    lines: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)
    anomalies: int = 0
    alerts: int = 0
    seconds: float = 0.0
    set_aside: list[tuple[str, str]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.lines / self.seconds if self.seconds else 0.0

    def __len__(self) -> int:
        return self.accepted

    def merge(self, other: "IngestReport") -> None:
        for name in ("lines", "accepted", "duplicates", "anomalies", "alerts", "seconds"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.rejected.extend(other.rejected)
        self.set_aside.extend(other.set_aside)

    def as_dict(self) -> dict:
        return {"source": self.source, "lines": self.lines, "accepted": self.accepted,
                "duplicates": self.duplicates, "rejected": [{"line": n, "reason": r} for n, r in self.rejected],
                "anomalies": self.anomalies, "alerts": self.alerts, "seconds": round(self.seconds, 3),
                "set_aside": [{"file": f, "reason": r} for f, r in self.set_aside]}

    def __str__(self) -> str:
        return (f"{self.accepted} event(s) logged, {self.duplicates} duplicate(s) skipped, "
                f"{len(self.rejected)} line(s) rejected, {self.anomalies} anomaly(ies), {self.alerts} alert(s)"
                + (f", {len(self.set_aside)} file(s) set aside" if self.set_aside else ""))


class Orbit:
    """The Orbit event log of one workspace. `Orbit.open(ws)`; use as a context manager or `close()`."""

    def __init__(self, db, ws=None):
        self.db = db
        self.ws = ws
        self.settings = ws.config.orbit if ws is not None else None  # anomaly settings; defaults without a workspace
        self._series_settings: dict[tuple, _anomaly.Settings] = {}
        # current state read by earlier batches of this connection; valid while no other
        # connection has committed (PRAGMA data_version unchanged), dropped on any rollback
        self._runs_cache: dict[tuple, dict | None] = {}
        self._series_cache: dict[str, tuple[list, list]] = {}  # series -> (values, day ordinals)
        self._cache_version: int | None = None

    def _tx(self):
        """A write transaction that keeps the caches only when it commits."""
        return _CachedTx(self)

    @classmethod
    def open(cls, ws) -> "Orbit":
        return cls(ws.db(), ws)

    def close(self) -> None:
        self.db.conn.close()

    def __enter__(self) -> "Orbit":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # writing ------------------------------------------------------------------------------------
    def log(self, event: dict | str | bytes | Event, *, send_alerts: bool = True) -> LogResult:
        """Validate and append one event with its derived state. Raises ValidationError (naming the
        field, or the run and both states for an illegal transition); nothing is written then.

        A dict or JSON text may be a user kind (run, job, check, metric, perf, note); agentops' own
        code passes a model instance of any registered kind. `result.derived` lists the anomaly,
        alert and upstream_failed events the write caused (alerts with their mail `status`)."""
        model = parse(event)
        if model.id is None and model is not event:  # a dict or JSON (the CLI, MCP): id from content + ts
            if model.ts is None:
                model.ts = format_ts(None)
            model.id = content_id(model.__pydantic_serializer__.to_json(model, exclude_none=True))
        with self._tx() as conn:
            batch = _Batch(conn, self, [model.id] if model.id else [])
            result = batch.add(model)
            batch.flush()
        if send_alerts and batch.new_alerts:
            sent = {a["key"]: a["status"] for a in self.send_alerts()}
            for d in result.derived:
                if d["kind"] == "alert":
                    d["status"] = sent.get(d["key"], "pending")
        return result

    def log_many(self, items: Iterable[dict | str | bytes | Event], *, chunk_size: int = CHUNK,
                 progress: Callable[[int], None] | None = None, source: str = "",
                 checkpoint: str | None = None, skip: int = 0, send_alerts: bool = True,
                 file_name: str | None = None) -> IngestReport:
        """Validate and append many events (JSONL lines, dicts or models), one transaction per chunk.

        Bad events are reported as (line, reason) and skipped; good ones are kept. `progress(n)` is
        called after each chunk with the lines done. `checkpoint` names a meta key that records,
        in the same transaction, how many lines are done; `skip` lines are passed over first.
        Lines (JSON or dicts) naming a kind agentops writes itself are rejected (as in `log`).
        `file_name`: the lines come from this file, and a line without an `id` gets one from the
        file name and the line (`line_id`), so ingesting the file again changes nothing.
        """
        report = IngestReport(source=source)
        started = time.perf_counter()
        lineno = 0
        lines = enumerate(items, 1)
        with _bulk_pragmas(self.db.conn):
            for lineno, _ in islice(lines, skip):
                pass
            while True:
                chunk = list(islice(lines, chunk_size))
                if chunk:
                    lineno = chunk[-1][0]
                elif not checkpoint:
                    break
                self._write_chunk(chunk, report, checkpoint, lineno, file_name)
                if progress:
                    progress(lineno)
                if len(chunk) < chunk_size:
                    break
        report.rejected.sort(key=lambda r: r[0])  # file order, whichever check refused the line
        report.seconds = time.perf_counter() - started
        if send_alerts and report.alerts:
            self.send_alerts()
        return report

    def _write_chunk(self, chunk, report: IngestReport, checkpoint: str | None, lineno: int,
                     file_name: str | None) -> None:
        # the core validator TypeAdapter.validate_json/validate_python call (same defaults), without the wrapper
        validate_json, validate_python = adapter().validator.validate_json, adapter().validator.validate_python
        from pydantic import ValidationError as PydanticValidationError

        parsed: list[tuple[int, Event]] = []
        ids = []
        rejected = report.rejected
        lines = 0
        for n, raw in chunk:
            try:
                if raw.__class__ is bytes or isinstance(raw, (str, bytes, bytearray)):
                    if len(raw) > MAX_LINE:
                        rejected.append((n, f"line longer than {MAX_LINE} bytes"))
                        lines += 1
                        continue
                    if not raw or raw.isspace():  # as `not raw.strip()`, without the copy
                        continue
                    lines += 1
                    ev = validate_json(raw, strict=True)  # "12" is not a number, "true" not a bool
                    if ev.id is None and file_name is not None:
                        ev.__dict__["id"] = line_id(file_name, raw)  # as `ev.id = ...`, without __setattr__
                elif isinstance(raw, (Event, Record)):
                    lines += 1
                    ev = parse(raw)
                else:
                    lines += 1
                    ev = validate_python(raw, strict=True)
            except PydanticValidationError as exc:
                rejected.append((n, "; ".join(problems(exc))))
                continue
            if ev.kind not in USER_KINDS and ev is not raw:
                rejected.append((n, own_kind(ev.kind)))
                continue
            parsed.append((n, ev))
            if ev.id:
                ids.append(ev.id)
        report.lines += lines
        accepted = duplicates = 0
        with self._tx() as conn:
            batch = _Batch(conn, self, ids)
            add = batch.add
            for n, ev in parsed:
                try:
                    seq = add(ev).seq
                except ValidationError as exc:
                    rejected.append((n, str(exc)))
                    continue
                if seq is None:
                    duplicates += 1
                else:
                    accepted += 1
            batch.flush()
            if checkpoint:
                conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (checkpoint, str(lineno)))
        report.accepted += accepted
        report.duplicates += duplicates
        report.anomalies += batch.n_anomalies
        report.alerts += len(batch.new_alerts)

    def send_alerts(self) -> list[dict]:
        """Mail every pending alert to its owner from postmaster (after the commit that made it)."""
        from agentops.orbit.alerts import send_pending

        return send_pending(self)

    # reading ------------------------------------------------------------------------------------
    def runs(self, pipeline: str | None = None, state: str | None = None, since: str | None = None,
             tasks: bool | None = None, run_type: str | None = None, limit: int | None = 200) -> list[dict]:
        """Runs at their latest state, newest first. `tasks`: None both, False pipeline runs only,
        True task runs only."""
        return queries.runs(self.db.conn, pipeline=pipeline, state=state, since=since, tasks=tasks,
                            run_type=run_type, limit=limit)

    def run(self, pipeline: str, run_id: str, task: str | None = None) -> dict | None:
        return queries.run(self.db.conn, pipeline, run_id, task)

    def events(self, kind: str | None = None, since: str | None = None, limit: int | None = 100,
               pipeline: str | None = None, run_id: str | None = None) -> list[dict]:
        """Events (as written, plus `seq`), oldest first; the last `limit` of them."""
        return queries.events(self.db.conn, kind=kind, since=since, limit=limit, pipeline=pipeline, run_id=run_id)

    def search(self, query: str, limit: int = 50) -> list[dict]:
        """Full-text search over event text (FTS5 syntax; plain words work)."""
        with write_tx(self.db) as conn:
            queries.index_text(conn)
        return queries.search(self.db.conn, query, limit)

    def checks(self, pipeline: str | None = None, failed: bool | None = None, severity: str | None = None,
               since: str | None = None, limit: int | None = 200) -> list[dict]:
        return queries.checks(self.db.conn, pipeline=pipeline, failed=failed, severity=severity, since=since,
                              limit=limit)

    def metrics(self, pipeline: str, name: str, dataset: str | None = None, limit: int | None = 1000) -> list[dict]:
        return queries.metrics(self.db.conn, pipeline, name, dataset, limit)

    def anomalies(self, pipeline: str | None = None, since: str | None = None, limit: int | None = 200) -> list[dict]:
        return queries.anomalies(self.db.conn, pipeline=pipeline, since=since, limit=limit)

    def alerts(self, since: str | None = None, status: str | None = None, limit: int | None = 200) -> list[dict]:
        return queries.simple(self.db.conn, "alerts", since=since, status=status, limit=limit)

    def jobs(self, pipeline: str | None = None, since: str | None = None, limit: int | None = 200) -> list[dict]:
        return queries.simple(self.db.conn, "jobs", pipeline=pipeline, since=since, limit=limit)

    def perf(self, status: str | None = "open", pipeline: str | None = None) -> list[dict]:
        return queries.perf(self.db.conn, status=status, pipeline=pipeline)

    def task_states(self, pipeline: str) -> dict[tuple[str, str], str]:
        """{(logical_date, task): latest state} for the pipeline's task runs (the backfill planner's input)."""
        return queries.task_states(self.db.conn, pipeline)

    def pipelines(self) -> list[dict]:
        """Per pipeline: its latest pipeline-level run and counts of failing/running runs (for `status`)."""
        return queries.pipelines(self.db.conn)

    # helpers the batch uses ---------------------------------------------------------------------
    def series_settings(self, pipeline: str, dataset: str | None, name: str) -> _anomaly.Settings:
        key = (pipeline, dataset, name)
        s = self._series_settings.get(key)
        if s is None:
            s = self._series_settings[key] = _anomaly.settings_for(self.settings, pipeline, dataset, name)
        return s

    def spec(self, pipeline: str):
        """The pipeline's spec, or None when unknown (no spec, a broken spec)."""
        if self.ws is None:
            return None
        from agentops.pipelines.spec import find_spec

        try:
            return find_spec(self.ws, pipeline)
        except (AgentOpsError, OSError, ValueError):
            return None


def line_id(file_name: str, line: bytes | str) -> str:
    """The id of a line without one in a JSONL file (drop files, `orbit ingest`): from the file's
    name and the line's bytes, so the same file ingested again is a no-op."""
    if isinstance(line, str):
        line = line.encode("utf-8", "surrogatepass")
    return "line:" + hashlib.blake2b(file_name.encode("utf-8", "surrogateescape") + b"\0" + line,
                                     digest_size=16).hexdigest()


def content_id(data: bytes) -> str:
    """The id of an event logged without one through `Orbit.log` (the CLI, MCP): from its content
    with its `ts` (the stored JSON), so the same event sent again is a no-op."""
    return "event:" + hashlib.blake2b(data, digest_size=16).hexdigest()


@contextmanager
def _bulk_pragmas(conn):
    """For one bulk write: a page cache that holds the hot index pages of a million-event log
    (the default 2 MB spills at a few hundred thousand events), and WAL checkpoints every
    BULK_WAL_PAGES pages rather than after nearly every chunk's commit. Both are this connection's
    settings only (durability is unchanged: each chunk still commits to the WAL); restored after."""
    cache, wal = conn.execute("PRAGMA cache_size").fetchone()[0], conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
    conn.execute(f"PRAGMA cache_size = {BULK_CACHE_KIB}")
    conn.execute(f"PRAGMA wal_autocheckpoint = {max(wal, BULK_WAL_PAGES) if wal > 0 else wal}")
    try:
        yield
    finally:
        conn.execute(f"PRAGMA cache_size = {cache}")
        conn.execute(f"PRAGMA wal_autocheckpoint = {wal}")


class _CachedTx:
    def __init__(self, orbit: Orbit):
        self.orbit = orbit
        self.inner = write_tx(orbit.db)

    def __enter__(self):
        return self.inner.__enter__()

    def __exit__(self, *exc):
        try:
            return self.inner.__exit__(*exc)
        finally:
            if exc[0] is not None:
                self.orbit._cache_version = None
                self.orbit._runs_cache.clear()
                self.orbit._series_cache.clear()


def _downstream(spec, task: str) -> list[str]:
    """Every stage downstream of `task` (transitively), in spec order."""
    children: dict[str, set[str]] = {}
    for stage in spec.stages:
        for dep in stage.depends_on:
            children.setdefault(dep, set()).add(stage.name)
    seen: set[str] = set()
    todo = [task]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return [s.name for s in spec.stages if s.name in seen]


class _Batch:
    """The rows one transaction writes: the registry's writer. `add(model)` appends the event and
    runs its kind's deriver (events.py), which reads current state here on a cache miss and queues
    its rows; `flush` writes them all (the raw insert into `events` is here and nowhere else)."""

    def __init__(self, conn, orbit: Orbit | None, ids: list[str]):
        self.orbit = orbit
        self.conn = conn
        self.seq = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
        self.known_ids: set[str] = set()
        for i in range(0, len(ids), 500):
            part = ids[i:i + 500]
            self.known_ids.update(r[0] for r in conn.execute(
                f"SELECT id FROM events WHERE id IN ({','.join('?' * len(part))})", part))
        self.events: list[tuple[int, Event]] = []
        if orbit is not None:
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            if (version != orbit._cache_version or len(orbit._runs_cache) > 200_000
                    or len(orbit._series_cache) > 20_000):
                orbit._runs_cache.clear()
                orbit._series_cache.clear()
            orbit._cache_version = version
            self.runs, self.series = orbit._runs_cache, orbit._series_cache
        else:
            self.runs, self.series = {}, {}
        self.dirty_runs: set[tuple] = set()
        self.inserts: dict[str, list[tuple]] = {}
        self.upserts: dict[str, dict[tuple, tuple]] = {}
        self.alert_candidates: list[tuple] = []
        self.new_alerts: list[str] = []
        self.specs: dict[str, Any] = {}
        self.n_anomalies = 0
        self.anomaly_groups: dict[tuple, list] = {}  # (pipeline, dataset, run_id or ts) -> [(result, event, seq)]
        self._days: dict[str, int] = {}
        self._series_info: dict[tuple, tuple[str, _anomaly.Settings]] = {}  # (pipeline, dataset, name) -> (series, settings)

    # the registry's one entry -----------------------------------------------------------------------
    def add(self, ev: Event, into: LogResult | None = None) -> LogResult:
        """Append one validated event and its derived state; a duplicate id changes nothing. An event
        derived from another (`into`: the other's result) reports what it causes in turn there."""
        if ev.id is not None and ev.id in self.known_ids:
            return LogResult(ev.kind, None, ev.id)
        if ev.ts is None:
            ev.ts = format_ts(None)
        self.seq += 1
        seq = self.seq
        self.events.append((seq, ev))
        result = LogResult(ev.kind, seq, ev.id, ev.ts)
        if into is not None:
            result.derived = into.derived
        try:
            ev.derive(self, seq, result)
        except ValidationError:
            self.events.pop()  # a deriver refuses before it adds anything
            self.seq -= 1
            raise
        if ev.id is not None:
            self.known_ids.add(ev.id)
        return result

    # what derivers call -----------------------------------------------------------------------------
    def insert(self, sql: str, row: tuple) -> None:
        """A row for `sql` (an INSERT), written at flush in the order given."""
        rows = self.inserts.get(sql)
        if rows is None:
            rows = self.inserts[sql] = []
        rows.append(row)

    def upsert(self, sql: str, key: tuple, row: tuple) -> None:
        """A row for `sql` (an INSERT OR REPLACE); the last one per key is written at flush."""
        rows = self.upserts.get(sql)
        if rows is None:
            rows = self.upserts[sql] = {}
        rows[key] = row

    def upserted(self, sql: str, key: tuple) -> tuple | None:
        return self.upserts.get(sql, {}).get(key)

    def run_row(self, key: tuple) -> dict | None:
        """The runs row of (pipeline, run_id, task) as this batch sees it."""
        if key in self.runs:
            return self.runs[key]
        cur = self.conn.execute(_RUN_SELECT, key).fetchone()
        row = dict(zip(RUN_COLUMNS, cur)) if cur else None
        self.runs[key] = row
        return row

    def set_run(self, key: tuple, row: dict) -> None:
        self.runs[key] = row
        self.dirty_runs.add(key)

    def spec(self, pipeline: str):
        if pipeline not in self.specs:
            self.specs[pipeline] = self.orbit.spec(pipeline) if self.orbit is not None else None
        return self.specs[pipeline]

    def downstream(self, pipeline: str, task: str) -> list[str]:
        spec = self.spec(pipeline)
        return _downstream(spec, task) if spec is not None else []

    def alert(self, result: LogResult, cause: str, key: str, subject: str, body: str, *, pipeline: str | None,
              run_id: str | None, owner: str | None, source_seq: int, ts: str, to: str | None = None) -> None:
        """An alert (text from alerts.py); written at flush unless one with this key exists. It goes to
        `to` when given, else the pipeline's owner (alerts.owner_of)."""
        self.alert_candidates.append((result, key, ts, cause, pipeline, run_id, owner, subject, body, source_seq,
                                      to))

    def anomaly_alert(self, result: LogResult, ev, seq: int) -> None:
        """Queue an anomaly for its alert: at flush, one alert per (pipeline, dataset, run) lists every
        anomaly this batch found in that run (the run's `ts` when it names no run)."""
        self.anomaly_groups.setdefault((ev.pipeline, ev.dataset, ev.run_id or ev.ts), []).append((result, ev, seq))

    def alerted(self, key: str) -> bool:
        """An alert with this key exists, or this batch queues one (an anomaly alert, at flush)."""
        from agentops.orbit.alerts import anomaly_key

        if any(anomaly_key(p, d, group[0][1].run_id, group[0][1].ts) == key
               for (p, d, _), group in self.anomaly_groups.items()):
            return True
        return self.conn.execute("SELECT 1 FROM alerts WHERE key = ?", (key,)).fetchone() is not None

    def day_of(self, ts: str) -> int:
        d = self._days.get(ts[:10])
        if d is None:
            d = self._days[ts[:10]] = _anomaly.day_of(ts)
        return d

    def point(self, pipeline: str, dataset: str | None, name: str, value: float, ts: str, seq: int,
              result: LogResult, job: bool = False, run_id: str | None = None, watch: bool = True) -> None:
        """One point of a series: metric events (table metrics) or job figures (read back from jobs);
        an anomalous one adds an anomaly event (and so its alert). `watch=False`: kept in the series,
        not scored."""
        info = self._series_info.get((pipeline, dataset, name))
        if info is None:
            settings = (self.orbit.series_settings(pipeline, dataset, name) if self.orbit is not None
                        else _anomaly.Settings())
            info = self._series_info[(pipeline, dataset, name)] = (f"{pipeline}\x1f{dataset or ''}\x1f{name}", settings)
        series, settings = info
        history = self.series.get(series)
        day_of = self.day_of
        if history is None:
            if job:
                rows = self.conn.execute(f"SELECT {name}, ts FROM jobs WHERE pipeline = ? AND task IS ? AND {name} "
                                         "IS NOT NULL ORDER BY seq DESC LIMIT ?",
                                         (pipeline, dataset, settings.lookback)).fetchall()
            else:
                rows = self.conn.execute("SELECT value, ts FROM metrics WHERE series = ? ORDER BY seq DESC LIMIT ?",
                                         (series, settings.lookback)).fetchall()
            rows.reverse()
            history = self.series[series] = ([v for v, _ in rows], [day_of(t) for _, t in rows])
        day = self._days.get(ts[:10])
        if day is None:
            day = day_of(ts)
        if not job:
            self.insert(_METRICS, (seq, series, pipeline, dataset, name, value, ts))
        values, days = history
        found = (_anomaly.detect_series(values, days, value, day, settings)
                 if watch and len(values) >= settings.min_points else None)
        values.append(value)
        days.append(day)
        if len(values) > settings.lookback * 2:
            del values[:-settings.lookback]
            del days[:-settings.lookback]
        if found is None:
            return
        self.n_anomalies += 1
        r = self.add(AnomalyEvent(kind="anomaly", pipeline=pipeline, dataset=dataset, metric=name, value=value,
                                  expected=round(found.expected, 6), zscore=round(found.zscore, 3),
                                  direction=found.direction, method=found.method, source_seq=seq, run_id=run_id,
                                  agent="agentops", ts=ts), into=result)
        result.derived.append({"kind": "anomaly", "seq": r.seq, "metric": name, "zscore": round(found.zscore, 3)})

    # write ----------------------------------------------------------------------------------------
    def flush(self) -> None:
        conn = self.conn
        if self.anomaly_groups:
            self._anomaly_alerts()
        if self.alert_candidates:
            self._alerts()
        if self.events:
            insert_rows(conn, [
                (seq, ev.id, ev.ts, ev.kind, getattr(ev, "pipeline", None), getattr(ev, "run_id", None), ev.agent,
                 # the serializer model_dump_json(exclude_none=True) calls, without its per-call wrapper
                 ev.to_json() if isinstance(ev, Record) else ev.__pydantic_serializer__.to_json(
                     ev, exclude_none=True).decode()) for seq, ev in self.events])
        if self.dirty_runs:
            runs, row_of = self.runs, _RUN_ROW
            rows = [row_of(runs[k]) for k in self.dirty_runs]
            rows.sort(key=_SEQ_OF)
            conn.executemany(_RUN_SQL, rows)
        for sql, rows in self.inserts.items():
            conn.executemany(sql, rows)
        for sql, by_key in self.upserts.items():
            conn.executemany(sql, list(by_key.values()))

    def _anomaly_alerts(self) -> None:
        from agentops.orbit.alerts import anomalies

        for (pipeline, dataset, _), group in self.anomaly_groups.items():
            result, first, seq = group[0]
            found = [{"metric": ev.metric, "value": ev.value, "expected": ev.expected, "zscore": ev.zscore,
                      "direction": ev.direction, "method": ev.method} for _, ev, _ in group]
            self.alert(result, "anomaly", *anomalies(pipeline, dataset, first.run_id, first.ts, found),
                       pipeline=pipeline, run_id=first.run_id, owner=None, source_seq=seq, ts=first.ts)
        self.anomaly_groups = {}

    def _alerts(self) -> None:
        from agentops.orbit.alerts import owner_of
        from agentops.text import one_line

        for result, key, ts, cause, pipeline, run_id, owner, subject, body, source_seq, to in self.alert_candidates:
            owner = to or owner_of(self.spec(pipeline) if pipeline else None, owner)
            subject = one_line(subject)  # agent-written names and ids in it: a header is one line
            if not self.conn.execute(_ALERT_SQL, (key, ts, cause, pipeline, run_id, owner, subject, body,
                                                  source_seq)).rowcount:
                continue
            self.new_alerts.append(key)
            r = self.add(AlertEvent(kind="alert", key=key, cause=cause, to=owner, subject=subject, pipeline=pipeline,
                                    run_id=run_id, source_seq=source_seq, agent="agentops", ts=ts))
            result.derived.append({"kind": "alert", "seq": r.seq, "key": key, "cause": cause, "owner": owner,
                                   "subject": subject})


_METRICS = "INSERT INTO metrics (seq, series, pipeline, dataset, name, value, ts) VALUES (?,?,?,?,?,?,?)"
