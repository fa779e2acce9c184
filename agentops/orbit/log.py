"""The `Orbit` class: validate events, append them, keep the derived state, read it back.

Writes go through `_Batch` inside one `BEGIN IMMEDIATE` transaction per chunk: the events rows and
every derived row (runs, jobs, checks, metrics, anomalies, perf, alerts) commit together or not at
all, so a reader never sees an event without its effect. Alert mail is sent after the commit.
"""

from __future__ import annotations

import gc
import json
import operator
import time
from itertools import islice
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from agentops.errors import AgentOpsError, ValidationError
from agentops.orbit import anomaly as _anomaly
from agentops.orbit import queries
from agentops.orbit.events import USER_KINDS, AnomalyEvent, RunEvent, _Event, adapter, format_ts, own_kind, problems
from agentops.orbit.states import TERMINAL, TRANSITIONS, next_attempt
from agentops.store import write_tx

CHUNK = 20000
BULK_CACHE_KIB = -64 * 1024  # PRAGMA cache_size while log_many runs (negative: KiB)
BULK_WAL_PAGES = 25_000      # PRAGMA wal_autocheckpoint while log_many runs
MAX_LINE = 1024 * 1024  # a JSONL line longer than this is rejected before parsing
JOB_SERIES = ("rows_out", "bytes", "duration_s")
RUN_COLUMNS = ("pipeline", "run_id", "task", "state", "attempt", "run_type", "logical_date", "error", "owner",
               "started_at", "ended_at", "updated_at", "seq")
_RUN_SQL = f"INSERT OR REPLACE INTO runs ({', '.join(RUN_COLUMNS)}) VALUES ({', '.join('?' * len(RUN_COLUMNS))})"
_RUN_ROW = operator.itemgetter(*RUN_COLUMNS)  # a runs row dict -> the tuple _RUN_SQL takes
_RUN_SELECT = f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE pipeline = ? AND run_id = ? AND task = ?"
_SEQ_OF = operator.itemgetter(-1)  # a runs row tuple -> its seq
_EVENT_SQL = "INSERT INTO events (seq, id, ts, kind, pipeline, run_id, agent, data) VALUES (?,?,?,?,?,?,?,?)"


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

    def __init__(self, db, ws=None, settings=None):
        self.db = db
        self.ws = ws
        self.settings = settings if settings is not None else (ws.config.orbit if ws is not None else None)
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
    def log(self, event: dict | str | bytes | _Event, *, send_alerts: bool = True, internal: bool = False) -> LogResult:
        """Validate and append one event with its derived state. Raises ValidationError (naming the
        field, or the run and both states for an illegal transition); nothing is written then.

        Only run, job, check, metric, perf and note are accepted; `internal=True` (agentops' own
        code, never a user's input) also takes the kinds agentops writes (anomaly, alert, mail, handoff)."""
        from agentops.orbit.events import parse

        model = parse(event, internal=internal)
        with self._tx() as conn:
            batch = _Batch(self, conn, [model.id] if model.id else [])
            result = batch.add(model)
            batch.flush()
        if send_alerts and batch.new_alerts:
            self.send_alerts()
        return result

    def log_many(self, items: Iterable[dict | str | bytes | _Event], *, chunk_size: int = CHUNK,
                 progress: Callable[[int], None] | None = None, source: str = "",
                 checkpoint: str | None = None, skip: int = 0, send_alerts: bool = True,
                 internal: bool = False) -> IngestReport:
        """Validate and append many events (JSONL lines, dicts or models), one transaction per chunk.

        Bad events are reported as (line, reason) and skipped; good ones are kept. `progress(n)` is
        called after each chunk with the lines done. `checkpoint` names a meta key that records,
        in the same transaction, how many lines are done; `skip` lines are passed over first.
        Kinds agentops writes itself are rejected lines unless `internal=True` (as in `log`).
        """
        report = IngestReport(source=source)
        started = time.perf_counter()
        lineno = 0
        lines = enumerate(items, 1)
        with _bulk_pragmas(self.db.conn), _gc_paused():
            for lineno, _ in islice(lines, skip):
                pass
            while True:
                chunk = list(islice(lines, chunk_size))
                if chunk:
                    lineno = chunk[-1][0]
                elif not checkpoint:
                    break
                self._write_chunk(chunk, report, checkpoint, lineno, internal)
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
                     internal: bool = False) -> None:
        # the core validator TypeAdapter.validate_json/validate_python call (same defaults), without the wrapper
        validate_json, validate_python = adapter().validator.validate_json, adapter().validator.validate_python
        from pydantic import ValidationError as PydanticValidationError

        parsed: list[tuple[int, _Event]] = []
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
                    ev = validate_json(raw)
                elif isinstance(raw, _Event):
                    lines += 1
                    ev = raw
                else:
                    lines += 1
                    ev = validate_python(raw)
            except PydanticValidationError as exc:
                rejected.append((n, "; ".join(problems(exc, internal=internal))))
                continue
            if not internal and ev.kind not in USER_KINDS:
                rejected.append((n, own_kind(ev.kind)))
                continue
            parsed.append((n, ev))
            if ev.id:
                ids.append(ev.id)
        report.lines += lines
        accepted = duplicates = 0
        with self._tx() as conn:
            batch = _Batch(self, conn, ids)
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
        return queries.simple(self.db.conn, "anomalies", pipeline=pipeline, since=since, limit=limit)

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
        """The pipeline's spec, or None when unknown (no pipelines module, no spec, a broken spec)."""
        if self.ws is None:
            return None
        try:
            from agentops.pipelines import find_spec  # type: ignore[attr-defined]
        except ImportError:
            try:
                from agentops.pipelines.spec import find_spec
            except ImportError:
                return None
        try:
            return find_spec(self.ws, pipeline)
        except (AgentOpsError, OSError, ValueError):
            return None


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


@contextmanager
def _gc_paused():
    """No cyclic garbage collection while log_many runs. A bulk write allocates millions of objects
    that live until their chunk is written (models, rows) or for the whole write (the run and series
    caches), so the collector would run thousands of times and find nothing (about 1/8 of the time of
    a million-event ingest); nothing log_many makes is cyclic, so plain reference counting frees it."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


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
    for stage in getattr(spec, "stages", None) or []:
        for dep in getattr(stage, "depends_on", None) or []:
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
    """The rows one transaction writes. Reads current state on a cache miss; writes at `flush`."""

    def __init__(self, orbit: Orbit, conn, ids: list[str]):
        self.orbit = orbit
        self.conn = conn
        self.seq = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
        self.known_ids: set[str] = set()
        for i in range(0, len(ids), 500):
            part = ids[i:i + 500]
            self.known_ids.update(r[0] for r in conn.execute(
                f"SELECT id FROM events WHERE id IN ({','.join('?' * len(part))})", part))
        self.events: list[tuple] = []
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        if version != orbit._cache_version or len(orbit._runs_cache) > 200_000 or len(orbit._series_cache) > 20_000:
            orbit._runs_cache.clear()
            orbit._series_cache.clear()
        orbit._cache_version = version
        self.runs = orbit._runs_cache
        self.dirty_runs: set[tuple] = set()
        self.jobs: list[tuple] = []
        self.points: list[tuple] = []
        self.anomalies: list[tuple] = []
        self.checks: dict[tuple, tuple] = {}
        self.perf: dict[tuple, tuple] = {}
        self.series = orbit._series_cache
        self.alert_candidates: list[dict] = []
        self.new_alerts: list[str] = []
        self.specs: dict[str, Any] = {}
        self.n_anomalies = 0
        self._days: dict[str, int] = {}
        self._series_info: dict[tuple, tuple[str, _anomaly.Settings]] = {}  # (pipeline, dataset, name) -> (series, settings)

    def day_of(self, ts: str) -> int:
        d = self._days.get(ts[:10])
        if d is None:
            d = self._days[ts[:10]] = _anomaly.day_of(ts)
        return d

    # events ---------------------------------------------------------------------------------------
    def _append(self, ev: _Event, ts: str) -> int:
        self.seq += 1
        if ev.ts is None:
            ev.ts = ts
        # the serializer model_dump_json(exclude_none=True) calls, without its per-call wrapper
        self.events.append((self.seq, ev.id, ts, ev.kind, getattr(ev, "pipeline", None), getattr(ev, "run_id", None),
                            ev.agent, ev.__pydantic_serializer__.to_json(ev, exclude_none=True).decode()))
        return self.seq

    def add(self, ev: _Event) -> LogResult:
        if ev.id:
            if ev.id in self.known_ids:
                return LogResult(ev.kind, None, ev.id)
        kind = ev.kind
        ts = ev.ts or format_ts(None)
        if kind == "run":
            return self._run(ev, ts)
        if ev.id:
            self.known_ids.add(ev.id)
        seq = self._append(ev, ts)
        result = LogResult(kind, seq, ev.id, ts)
        if kind == "metric":
            self._point(ev.pipeline, ev.dataset, ev.name, ev.value, ts, seq, result)
        elif kind == "job":
            task = ev.task
            self.jobs.append((seq, ts, ev.pipeline, ev.run_id, task, ev.rows_in, ev.rows_out, ev.bytes,
                              ev.duration_s))
            for name in JOB_SERIES:
                value = getattr(ev, name)
                if value is not None:
                    self._point(ev.pipeline, task, name, float(value), ts, seq, result, job=True)
        elif kind == "check":
            run_id = ev.run_id or ""
            self.checks[(ev.pipeline, run_id, ev.dataset, ev.check)] = (
                ev.pipeline, run_id, ev.dataset, ev.check, int(ev.passed), ev.severity,
                _figure(ev.observed), _figure(ev.threshold), ts, seq)
            if not ev.passed and ev.severity == "error":
                when = f"run {ev.run_id}" if ev.run_id else f"on {ts[:10]}"
                self.alert_candidates.append({
                    "key": f"check failed: {ev.pipeline} {ev.dataset} {ev.check} {when}", "cause": "check",
                    "pipeline": ev.pipeline, "run_id": ev.run_id, "owner": ev.owner, "source_seq": seq, "ts": ts,
                    "subject": f"[orbit] check failed: {ev.pipeline} {ev.dataset} {ev.check}",
                    "body": (f"Data-quality check {ev.check} on {ev.dataset} (pipeline {ev.pipeline}, "
                             f"{when}) failed with severity error: observed {ev.observed!r}, "
                             f"threshold {ev.threshold!r}.\n")})
        elif kind == "perf":
            self._perf(ev, ts, seq)
        elif kind == "anomaly":
            self.anomalies.append((seq, ts, ev.pipeline, ev.dataset, ev.metric, ev.value, ev.expected, ev.zscore,
                                   ev.direction, ev.method, ev.source_seq))
        return result

    # runs -----------------------------------------------------------------------------------------
    def _run_row(self, key: tuple) -> dict | None:
        if key in self.runs:
            return self.runs[key]
        cur = self.conn.execute(_RUN_SELECT, key).fetchone()
        row = dict(zip(RUN_COLUMNS, cur)) if cur else None
        self.runs[key] = row
        return row

    def _run(self, ev: RunEvent, ts: str) -> LogResult:
        task = ev.task or ""
        key = (ev.pipeline, ev.run_id, task)
        cur = self.runs[key] if key in self.runs else self._run_row(key)
        if cur is None:
            attempt = ev.attempt or 1  # a run's first event may be any state
        elif ev.attempt is None and (ev.state == cur["state"] or ev.state in TRANSITIONS[cur["state"]]):
            attempt = cur["attempt"] or 1  # the common move within an attempt (as next_attempt decides it)
        else:
            label = f"run {ev.run_id} of {ev.pipeline}" + (f" task {task}" if task else "")
            attempt = next_attempt(label, cur["state"], cur["attempt"], ev.state, ev.attempt)
        if ev.id:
            self.known_ids.add(ev.id)
        fresh = cur is None or attempt != cur["attempt"]
        if ev.attempt != attempt:  # as `ev.attempt = attempt` (no validate_assignment), without pydantic's __setattr__
            ev.__dict__["attempt"] = attempt
            ev.__pydantic_fields_set__.add("attempt")
        seq = self._append(ev, ts)
        state = ev.state
        failing = state in ("failed", "up_for_retry", "upstream_failed")
        row = {
            "pipeline": ev.pipeline, "run_id": ev.run_id, "task": task, "state": state, "attempt": attempt,
            "run_type": ev.run_type or (cur["run_type"] if cur else "scheduled"),
            "logical_date": ev.logical_date or ev.partition or (cur["logical_date"] if cur else None),
            "error": ev.error if ev.error is not None else (
                cur["error"] if (cur and not fresh and failing) else None),
            "owner": ev.owner or (cur["owner"] if cur else None),
            "started_at": ts if state == "running" and (fresh or not cur["started_at"]) else (
                None if fresh else cur["started_at"]),
            "ended_at": ts if state in TERMINAL or state == "up_for_retry" else None,
            "updated_at": ts, "seq": seq,
        }
        self.runs[key] = row
        self.dirty_runs.add(key)
        result = LogResult("run", seq, ev.id, ts, state, attempt)
        if state == "failed":
            self.alert_candidates.append({
                "key": f"run failed: {ev.pipeline} run {ev.run_id}", "cause": "run", "pipeline": ev.pipeline,
                "run_id": ev.run_id, "owner": row["owner"], "source_seq": seq, "ts": ts,
                "subject": f"[orbit] run failed: {ev.pipeline} {ev.run_id}" + (f" ({task})" if task else ""),
                "body": (f"Pipeline {ev.pipeline} run {ev.run_id}" + (f" task {task}" if task else "")
                         + (f" (logical date {row['logical_date']})" if row["logical_date"] else "")
                         + f" failed on attempt {attempt}.\n" + (f"\nError: {row['error']}\n" if row["error"] else ""))})
            if task:
                self._upstream_failed(ev, row, task, ts, result)
        return result

    def _upstream_failed(self, ev: RunEvent, row: dict, task: str, ts: str, result: LogResult) -> None:
        spec = self._spec(ev.pipeline)
        if spec is None:
            return
        for name in _downstream(spec, task):
            cur = self._run_row((ev.pipeline, ev.run_id, name))
            if cur is not None and cur["state"] not in ("queued", "up_for_retry"):
                continue
            derived = RunEvent(kind="run", pipeline=ev.pipeline, run_id=ev.run_id, task=name, state="upstream_failed",
                               run_type=row["run_type"], logical_date=row["logical_date"], agent="agentops",
                               error=f"upstream task {task} failed")
            r = self._run(derived, ts)
            result.derived.append({"kind": "run", "seq": r.seq, "task": name, "state": "upstream_failed"})

    def _spec(self, pipeline: str):
        if pipeline not in self.specs:
            self.specs[pipeline] = self.orbit.spec(pipeline)
        return self.specs[pipeline]

    # series ---------------------------------------------------------------------------------------
    def _point(self, pipeline: str, dataset: str | None, name: str, value: float, ts: str, seq: int,
               result: LogResult, job: bool = False) -> None:
        """One point of a series: metric events (table metrics) or job figures (read back from jobs)."""
        info = self._series_info.get((pipeline, dataset, name))
        if info is None:
            info = self._series_info[(pipeline, dataset, name)] = (
                f"{pipeline}\x1f{dataset or ''}\x1f{name}", self.orbit.series_settings(pipeline, dataset, name))
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
            self.points.append((seq, series, pipeline, dataset, name, value, ts))
        values, days = history
        found = (_anomaly.detect_series(values, days, value, day, settings)
                 if len(values) >= settings.min_points else None)
        values.append(value)
        days.append(day)
        if len(values) > settings.lookback * 2:
            del values[:-settings.lookback]
            del days[:-settings.lookback]
        if found is None:
            return
        self.n_anomalies += 1
        ev = AnomalyEvent(kind="anomaly", pipeline=pipeline, dataset=dataset, metric=name, value=value,
                          expected=round(found.expected, 6), zscore=round(found.zscore, 3),
                          direction=found.direction, method=found.method, source_seq=seq, agent="agentops", ts=ts)
        aseq = self._append(ev, ts)
        self.anomalies.append((aseq, ts, pipeline, dataset, name, value, ev.expected, ev.zscore, ev.direction,
                               ev.method, seq))
        result.derived.append({"kind": "anomaly", "seq": aseq, "metric": name, "zscore": ev.zscore})
        where = f"{pipeline}.{dataset}.{name}" if dataset else f"{pipeline}.{name}"
        self.alert_candidates.append({
            "key": f"anomaly: {where} at {ts}", "cause": "anomaly", "pipeline": pipeline, "run_id": None,
            "owner": None, "source_seq": aseq, "ts": ts,
            "subject": f"[orbit] anomaly: {where} {found.direction} ({value:g}, expected {found.expected:.6g})",
            "body": (f"{where} = {value:g} at {ts} is a {found.direction}: expected {found.expected:.6g} "
                     f"(z-score {found.zscore:.2f}, {found.method} comparison).\n")})

    # perf -----------------------------------------------------------------------------------------
    def _perf(self, ev, ts: str, seq: int) -> None:
        key = (ev.pipeline, ev.task or "", ev.bottleneck)
        cur = self.perf.get(key)
        if cur is None:
            got = self.conn.execute("SELECT pipeline, task, bottleneck, status, note, before, after, opened_at, "
                                    "updated_at, seq FROM perf WHERE pipeline = ? AND task = ? AND bottleneck = ?",
                                    key).fetchone()
            cur = tuple(got) if got else None
        before = json.dumps(ev.before) if ev.before is not None else (cur[5] if cur else None)
        after = json.dumps(ev.after) if ev.after is not None else (cur[6] if cur else None)
        opened = cur[7] if cur and cur[3] == "open" else ts
        self.perf[key] = (*key, ev.status, ev.note if ev.note is not None else (cur[4] if cur else None),
                          before, after, opened, ts, seq)

    # write ----------------------------------------------------------------------------------------
    def flush(self) -> None:
        conn = self.conn
        if self.alert_candidates:
            self._alerts()
        if self.events:
            conn.executemany(_EVENT_SQL, self.events)
        if self.dirty_runs:
            runs, row_of = self.runs, _RUN_ROW
            rows = [row_of(runs[k]) for k in self.dirty_runs]
            rows.sort(key=_SEQ_OF)
            conn.executemany(_RUN_SQL, rows)
        if self.jobs:
            conn.executemany("INSERT INTO jobs (seq, ts, pipeline, run_id, task, rows_in, rows_out, bytes, "
                             "duration_s) VALUES (?,?,?,?,?,?,?,?,?)", self.jobs)
        if self.points:
            conn.executemany("INSERT INTO metrics (seq, series, pipeline, dataset, name, value, ts) "
                             "VALUES (?,?,?,?,?,?,?)", self.points)
        if self.anomalies:
            conn.executemany("INSERT INTO anomalies (seq, ts, pipeline, dataset, metric, value, expected, zscore, "
                             "direction, method, source_seq) VALUES (?,?,?,?,?,?,?,?,?,?,?)", self.anomalies)
        if self.checks:
            conn.executemany('INSERT OR REPLACE INTO checks (pipeline, run_id, dataset, "check", passed, severity, '
                             "observed, threshold, ts, seq) VALUES (?,?,?,?,?,?,?,?,?,?)", list(self.checks.values()))
        if self.perf:
            conn.executemany("INSERT OR REPLACE INTO perf (pipeline, task, bottleneck, status, note, before, after, "
                             "opened_at, updated_at, seq) VALUES (?,?,?,?,?,?,?,?,?,?)", list(self.perf.values()))

    def _alerts(self) -> None:
        from agentops.orbit.alerts import owner_of
        from agentops.orbit.events import AlertEvent

        for c in self.alert_candidates:
            owner = owner_of(self._spec(c["pipeline"]) if c["pipeline"] else None, c["owner"])
            cur = self.conn.execute(
                "INSERT OR IGNORE INTO alerts (key, ts, cause, pipeline, run_id, owner, subject, body, source_seq) "
                "VALUES (?,?,?,?,?,?,?,?,?)", (c["key"], c["ts"], c["cause"], c["pipeline"], c["run_id"], owner,
                                               c["subject"], c["body"], c["source_seq"]))
            if not cur.rowcount:
                continue
            self.new_alerts.append(c["key"])
            ev = AlertEvent(kind="alert", key=c["key"], cause=c["cause"], to=owner, subject=c["subject"],
                            pipeline=c["pipeline"], run_id=c["run_id"], source_seq=c["source_seq"], agent="agentops",
                            ts=c["ts"])
            self._append(ev, c["ts"])


def _figure(value) -> str | None:
    """Observed/threshold figures are stored as JSON text (numbers stay numbers when read back)."""
    if value.__class__ is int:
        return int.__repr__(value)  # what json.dumps writes for an int, without the encoder
    return None if value is None else json.dumps(value)

