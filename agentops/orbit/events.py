"""The Orbit event kinds: one pydantic model per kind, chosen by `kind` (SPEC §5), each with its
deriver (what it writes to which derived table) right below its fields.

How a kind is added, who may write which, and the one insert: `registry.py`. Every kind forbids
unknown fields; `ts` (ISO 8601, default now) and `id` (idempotency key) are on every kind.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from types import UnionType
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter,
                      ValidationError as PydanticValidationError)

from agentops.errors import ValidationError
from agentops.orbit import alerts
from agentops.orbit.registry import AGENTOPS_KINDS, MODELS, USER_KINDS, Record, register, registered
from agentops.orbit.registry import MailEvent  # noqa: F401  (a kind: importable with the others)
from agentops.orbit.queries import format_ts  # noqa: F401  (kept in queries: reads need it without the models)
from agentops.orbit.states import TERMINAL, TRANSITIONS, RunState, next_attempt

if TYPE_CHECKING:
    from agentops.orbit.log import LogResult, _Batch

RunType = Literal["scheduled", "manual", "backfill"]
Severity = Literal["warn", "error"]
Bottleneck = Literal["io", "cpu", "network", "serialization", "memory"]

MAX_NAME = 512          # identifiers: pipeline, run_id, task, dataset, check, metric name
MAX_TEXT = 64 * 1024    # free text: error, note, text, subject, body

Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME)]
Text = Annotated[str, Field(max_length=MAX_TEXT)]
Number = Annotated[float, Field(allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0, le=2**63 - 1)]
Figure = Union[Annotated[int, Field(ge=-2**63, le=2**63 - 1)], Number, Text, bool, None]


def _ts(value: Any, _utc=timezone.utc, _parse=datetime.fromisoformat) -> Any:
    """Normalize `ts` on the way in (see format_ts); None stays None (filled with now on write)."""
    if value.__class__ is not str:
        if value is None:
            return None
        if isinstance(value, datetime):
            return format_ts(value)
        if not isinstance(value, str):
            raise ValueError("must be an ISO 8601 time string")
    try:
        dt = _parse(value)
    except ValueError:
        raise ValueError(f"not an ISO 8601 time: {value[:40]!r}") from None
    tz = dt.tzinfo
    if (len(value) >= 19 and value[13] == ":" and value[16] == ":"
            and (tz is _utc or tz is None or not dt.utcoffset())):  # UTC already: no conversion needed
        if value[10] == "T":  # the two common shapes, kept without formatting anything
            if len(value) == 32 and value[19] == "." and value[26:] == "+00:00":
                return value  # as stored: microseconds, +00:00
            if len(value) == 25 and value[19:] == "+00:00":
                return value[:19] + ".000000+00:00"
        return f"{value[:10]}T{value[11:19]}.{dt.microsecond:06d}+00:00"
    try:
        return format_ts(dt)
    except OverflowError:  # 9999-12-31T23:00-05:00 is past year 9999 in UTC
        raise ValueError(f"out of range in UTC: {value[:40]!r} (years 1 to 9999)") from None


Timestamp = Annotated[str | None, BeforeValidator(_ts)]
MAX_DEPTH = 16  # nesting of the JSON objects an event may hold (perf before/after)


def _plain_json(value: Any, depth: int = 0) -> Any:
    """JSON a reader can parse back: finite numbers, at most MAX_DEPTH levels of nesting."""
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("NaN and Infinity are not JSON numbers")
    elif isinstance(value, (dict, list)):
        if depth >= MAX_DEPTH:
            raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
        for item in (value.values() if isinstance(value, dict) else value):
            _plain_json(item, depth + 1)
    return value


Figures = Annotated[dict[str, Any], AfterValidator(_plain_json)]


class Event(BaseModel):
    """The fields every kind has. Subclass it through `register` (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=False, defer_build=True)

    ts: Timestamp = Field(None, description="ISO 8601; default now; naive times are UTC")
    id: Name | None = Field(None, description="idempotency key: an event with a known id is skipped")
    agent: Name | None = Field(None, description="who logged it")

    def derive(self, batch: "_Batch", seq: int, result: "LogResult") -> None:
        """The derived rows this event writes (none by default)."""


_Event = Event  # the name older imports use


class _PipelineEvent(Event):
    owner: Name | None = Field(None, description="who gets alerts when the pipeline spec does not say")


# --- user kinds ---------------------------------------------------------------------------------

@register("user")
class RunEvent(_PipelineEvent):
    """A pipeline run (no `task`) or a task run changed state."""

    kind: Literal["run"]
    pipeline: Name
    run_id: Name
    task: Name | None = None
    state: RunState
    run_type: RunType | None = Field(None, description="scheduled (default for a new run), manual, backfill")
    logical_date: Name | None = None
    partition: Name | None = None
    attempt: int | None = Field(None, ge=1, le=10_000)
    error: Text | None = None

    def derive(self, batch, seq, result) -> None:
        """runs: the row of (pipeline, run_id, task) moves along the state machine (states.py), or
        ValidationError; a failed run alerts; a failed task marks the queued tasks downstream of it
        (in the spec) upstream_failed."""
        task = self.task or ""
        key = (self.pipeline, self.run_id, task)
        cur = batch.run_row(key)
        if cur is None:
            attempt = self.attempt or 1  # a run's first event may be any state
        elif self.attempt is None and (self.state == cur["state"] or self.state in TRANSITIONS[cur["state"]]):
            attempt = cur["attempt"] or 1  # the common move within an attempt (as next_attempt decides it)
        else:
            label = f"run {self.run_id} of {self.pipeline}" + (f" task {task}" if task else "")
            attempt = next_attempt(label, cur["state"], cur["attempt"], self.state, self.attempt)
        fresh = cur is None or attempt != cur["attempt"]
        if self.attempt != attempt:  # as `self.attempt = attempt`, without pydantic's __setattr__
            self.__dict__["attempt"] = attempt
            self.__pydantic_fields_set__.add("attempt")
        ts, state = self.ts, self.state
        failing = state in ("failed", "up_for_retry", "upstream_failed")
        row = {
            "pipeline": self.pipeline, "run_id": self.run_id, "task": task, "state": state, "attempt": attempt,
            "run_type": self.run_type or (cur["run_type"] if cur else "scheduled"),
            "logical_date": self.logical_date or self.partition or (cur["logical_date"] if cur else None),
            "error": self.error if self.error is not None else (
                cur["error"] if (cur and not fresh and failing) else None),
            "owner": self.owner or (cur["owner"] if cur else None),
            "started_at": ts if state == "running" and (fresh or not cur["started_at"]) else (
                None if fresh else cur["started_at"]),
            "ended_at": ts if state in TERMINAL or state == "up_for_retry" else None,
            "updated_at": ts, "seq": seq,
        }
        batch.set_run(key, row)
        result.state, result.attempt = state, attempt
        if state != "failed":
            return
        batch.alert(result, "run", *alerts.run_failed(self.pipeline, self.run_id, task, row["logical_date"],
                                                      attempt, row["error"]),
                    pipeline=self.pipeline, run_id=self.run_id, owner=row["owner"], source_seq=seq, ts=ts)
        if not task:
            return
        for name in batch.downstream(self.pipeline, task):
            cur = batch.run_row((self.pipeline, self.run_id, name))
            if cur is not None and cur["state"] not in ("queued", "up_for_retry"):
                continue
            derived = RunEvent(kind="run", pipeline=self.pipeline, run_id=self.run_id, task=name,
                               state="upstream_failed", run_type=row["run_type"], logical_date=row["logical_date"],
                               agent="agentops", error=f"upstream task {task} failed", ts=ts)
            r = batch.add(derived, into=result)
            result.derived.append({"kind": "run", "seq": r.seq, "task": name, "state": "upstream_failed"})


_JOBS = ("INSERT INTO jobs (seq, ts, pipeline, run_id, task, rows_in, rows_out, bytes, duration_s) "
         "VALUES (?,?,?,?,?,?,?,?,?)")
JOB_SERIES = ("rows_out", "bytes", "duration_s")


@register("user")
class JobEvent(_PipelineEvent):
    """An ETL job (stage/task) completed: its figures."""

    kind: Literal["job"]
    pipeline: Name
    run_id: Name | None = None
    task: Name | None = None
    rows_in: Count | None = None
    rows_out: Count | None = None
    bytes: Count | None = None
    duration_s: Annotated[float, Field(ge=0, le=1e12, allow_inf_nan=False)] | None = None

    def derive(self, batch, seq, result) -> None:
        """jobs: one row; rows_out, bytes and duration_s are series (pipeline, task) watched for anomalies."""
        ts = self.ts
        batch.insert(_JOBS, (seq, ts, self.pipeline, self.run_id, self.task, self.rows_in, self.rows_out,
                             self.bytes, self.duration_s))
        for name in JOB_SERIES:
            value = getattr(self, name)
            if value is not None:
                batch.point(self.pipeline, self.task, name, float(value), ts, seq, result, job=True,
                            run_id=self.run_id)


_CHECKS = ('INSERT OR REPLACE INTO checks (pipeline, run_id, dataset, "check", passed, severity, observed, '
           "threshold, ts, seq, status, reason, samples, location) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)")


@register("user")
class CheckEvent(_PipelineEvent):
    """A data-quality check result."""

    kind: Literal["check"]
    pipeline: Name
    run_id: Name | None = None
    dataset: Name
    check: Name
    passed: bool
    severity: Severity = "error"
    observed: Figure = None
    threshold: Figure = None
    status: Literal["passed", "failed", "error"] | None = Field(
        None, description="error: could not run (reason says why); default from passed")
    reason: Text | None = None
    samples: Annotated[list[dict[str, Any]], Field(max_length=5)] | None = Field(
        None, description="up to 5 failing rows or keys")
    location: Name | None = None
    partition: Name | None = None

    def derive(self, batch, seq, result) -> None:
        """checks: the latest result per (pipeline, run, dataset, check); a failed error-severity check alerts,
        as does one that could not run (status error), but a failed `anomaly:` check whose dataset and
        run already have their anomaly alert (which lists its series) does not mail again."""
        run_id = self.run_id or ""
        key = (self.pipeline, run_id, self.dataset, self.check)
        status = self.status or ("passed" if self.passed else "failed")
        if (status == "passed") != self.passed:
            raise ValidationError(f"check: status {status!r} contradicts passed {self.passed}")
        batch.upsert(_CHECKS, key, (*key, int(self.passed), self.severity, _figure(self.observed),
                                    _figure(self.threshold), self.ts, seq, status, self.reason,
                                    dumps(self.samples) if self.samples else None, self.location))
        if status == "error" and self.severity == "error":
            batch.alert(result, "check", *alerts.check_error(self.pipeline, self.dataset, self.check, self.run_id,
                                                             self.ts, self.location, self.reason),
                        pipeline=self.pipeline, run_id=self.run_id, owner=self.owner, source_seq=seq, ts=self.ts)
        elif not self.passed and self.severity == "error":
            if self.check.startswith("anomaly:") and batch.alerted(
                    alerts.anomaly_key(self.pipeline, self.dataset, self.run_id, self.ts)):
                return  # its series is in the anomaly alert of this dataset and run: one mail, not two
            batch.alert(result, "check", *alerts.check_failed(self.pipeline, self.dataset, self.check, self.run_id,
                                                              self.ts, self.observed, self.threshold),
                        pipeline=self.pipeline, run_id=self.run_id, owner=self.owner, source_seq=seq, ts=self.ts)


_SCHEMAS = "INSERT OR REPLACE INTO schemas (dataset, pipeline, columns, run_id, ts, seq) VALUES (?,?,?,?,?,?)"


@register("agentops")
class SchemaEvent(Event):
    """Written by `agentops quality run` / `dataset profile`: a dataset's columns and types, each run."""

    kind: Literal["schema"]
    pipeline: Name
    dataset: Name
    run_id: Name | None = None
    columns: dict[Name, Text]

    def derive(self, batch, seq, result) -> None:
        """schemas: the dataset's latest recorded columns."""
        batch.upsert(_SCHEMAS, (self.dataset,), (self.dataset, self.pipeline, dumps(self.columns), self.run_id,
                                                 self.ts, seq))


@register("agentops")
class SchemaChangeEvent(Event):
    """Written when a dataset's columns differ from its last `schema` record, judged by its
    `schema_evolution` policy; a breaking change alerts everyone in `notify` (the dataset's owner and
    the owners of every pipeline downstream of it)."""

    kind: Literal["schema_change"]
    pipeline: Name
    dataset: Name
    run_id: Name | None = None
    added: list[Name] = []
    removed: list[Name] = []
    changed: list[dict[str, Text]] = []  # {column, old, new}
    policy: Literal["add_columns", "fail", "ignore"]
    breaking: bool
    notify: list[Name] = []

    def derive(self, batch, seq, result) -> None:
        """A breaking change: one alert per address in notify (the pipeline's owner when empty)."""
        if not self.breaking:
            return
        for to in self.notify or [None]:
            batch.alert(result, "schema_change", *alerts.schema_change(
                self.pipeline, self.dataset, self.run_id, self.ts, self.added, self.removed, self.changed,
                self.policy, to), pipeline=self.pipeline, run_id=self.run_id, owner=None, source_seq=seq,
                ts=self.ts, to=to)


@register("user")
class MetricEvent(_PipelineEvent):
    """One point of a numeric series (row count, null rate, duration...)."""

    kind: Literal["metric"]
    pipeline: Name
    dataset: Name | None = None
    name: Name
    value: Number
    run_id: Name | None = None
    watch: bool | None = None  # False: recorded in its series but not scored (a key column's min/mean/max)

    def derive(self, batch, seq, result) -> None:
        """metrics: one point of the series (pipeline, dataset, name), watched for anomalies unless
        `watch` is false."""
        batch.point(self.pipeline, self.dataset, self.name, self.value, self.ts, seq, result, run_id=self.run_id,
                    watch=self.watch is not False)


_PERF = ("INSERT OR REPLACE INTO perf (pipeline, task, bottleneck, status, note, before, after, opened_at, "
         "updated_at, seq) VALUES (?,?,?,?,?,?,?,?,?,?)")


@register("user")
class PerfEvent(_PipelineEvent):
    """A performance issue (open) or an optimization (resolved), with before/after figures."""

    kind: Literal["perf"]
    pipeline: Name
    task: Name | None = None
    bottleneck: Bottleneck
    note: Text | None = None
    before: Figures | None = None
    after: Figures | None = None
    status: Literal["open", "resolved"] = "open"

    def derive(self, batch, seq, result) -> None:
        """perf: one row per (pipeline, task, bottleneck); fields not given keep their value."""
        key = (self.pipeline, self.task or "", self.bottleneck)
        cur = batch.upserted(_PERF, key)
        if cur is None:
            got = batch.conn.execute("SELECT pipeline, task, bottleneck, status, note, before, after, opened_at, "
                                     "updated_at, seq FROM perf WHERE pipeline = ? AND task = ? AND bottleneck = ?",
                                     key).fetchone()
            cur = tuple(got) if got else None
        before = dumps(self.before) if self.before is not None else (cur[5] if cur else None)
        after = dumps(self.after) if self.after is not None else (cur[6] if cur else None)
        opened = cur[7] if cur and cur[3] == "open" else self.ts
        batch.upsert(_PERF, key, (*key, self.status, self.note if self.note is not None else (cur[4] if cur else None),
                                  before, after, opened, self.ts, seq))


@register("user")
class NoteEvent(Event):
    """A free-text note."""

    kind: Literal["note"]
    text: Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]
    pipeline: Name | None = None
    run_id: Name | None = None


# --- kinds agentops writes itself ---------------------------------------------------------------

_ANOMALIES = ("INSERT INTO anomalies (seq, ts, pipeline, dataset, metric, value, expected, zscore, direction, "
              "method, source_seq) VALUES (?,?,?,?,?,?,?,?,?,?,?)")


@register("agentops")
class AnomalyEvent(Event):
    """Written by agentops when a series point is far from its history."""

    kind: Literal["anomaly"]
    pipeline: Name
    dataset: Name | None = None
    metric: Name
    value: Number
    expected: Number
    zscore: Number
    direction: Literal["spike", "drop"]
    method: Literal["rolling", "seasonal"] | None = None
    source_seq: int | None = None
    run_id: Name | None = None  # the run whose metric or job figure it scored

    def derive(self, batch, seq, result) -> None:
        """anomalies: one row; the pipeline's owner is alerted once per dataset (or task) and run: every
        anomaly of one profile run is one alert listing them (`batch.anomaly_alert`)."""
        batch.insert(_ANOMALIES, (seq, self.ts, self.pipeline, self.dataset, self.metric, self.value, self.expected,
                                  self.zscore, self.direction, self.method, self.source_seq))
        batch.anomaly_alert(result, self, seq)


@register("agentops")
class AlertEvent(Event):
    """Written by agentops when it mails an owner about a failed run, check or an anomaly (the
    `alerts` row is written with it, by `_Batch`, which dedupes on `key`)."""

    kind: Literal["alert"]
    key: Text
    cause: Literal["run", "check", "anomaly", "schema_change"]
    to: Name
    subject: Text
    pipeline: Name | None = None
    run_id: Name | None = None
    source_seq: int | None = None


@register("agentops")
class HandoffEvent(Event):
    """Written by `agentops handoff`."""

    kind: Literal["handoff"]
    sender: str | None = None
    target: str | None = None
    label: str | None = None
    sent: bool = False
    message_ids: list[str] = []
    draft: str | None = None
    pipelines: list[str] = []


@register("agentops")
class WatermarkEvent(Event):
    """Written by the runner when a run succeeded: a source's new high-water mark for a pipeline."""

    kind: Literal["watermark"]
    pipeline: Name
    source: Name
    value: Text | None = None
    run_id: Name | None = None


@register("agentops")
class DispatchEvent(Event):
    """Written by `agentops dispatch` and the daemon when an agent's on_mail command runs."""

    kind: Literal["dispatch"]
    action: Literal["started", "succeeded", "failed", "timed_out", "retrying", "gave_up"]
    attempt: int | None = None
    exit_code: int | None = None
    duration_s: float | None = None
    delay_s: float | None = None
    log: str | None = None
    prompt_file: str | None = None
    error: str | None = None
    stopped: bool | None = None

    def derive(self, batch, seq, result) -> None:
        """dispatch_runs: the agent's latest run and its counters (runs, failures, gave_up)."""
        ts, action = self.ts, self.action
        row: dict[str, Any] = {"agent": self.agent, "action": action, "updated": ts}
        if action == "started":
            row.update(started=ts, attempt=self.attempt, exit_code=None, finished=None, duration_s=None,
                       log=self.log)
        elif action in ("succeeded", "failed", "timed_out"):
            row.update(finished=ts, exit_code=self.exit_code, duration_s=self.duration_s)
        updates = ", ".join(f"{c} = excluded.{c}" for c in row if c != "agent")
        counter = {"started": "runs", "failed": "failures", "timed_out": "failures", "gave_up": "gave_up"}.get(action)
        if counter:
            updates += f", {counter} = dispatch_runs.{counter} + 1"
        batch.insert(f"INSERT INTO dispatch_runs ({', '.join(row)}{', ' + counter if counter else ''}) "
                     f"VALUES ({', '.join('?' * len(row))}{', 1' if counter else ''}) "
                     f"ON CONFLICT(agent) DO UPDATE SET {updates}", tuple(row.values()))


@register("agentops")
class ReservationEvent(Event):
    """Written by `agentops.reservations`: a reservation taken, renewed, released (or forced), seen
    expired, refused (conflict), overridden by `--ignore-reservations`, or a reserved file changed."""

    kind: Literal["reservation"]
    action: Literal["reserved", "renewed", "released", "forced", "expired", "conflict", "overridden", "changed"]
    reservation: Name | None = Field(None, description="the reservation's id (the holder's, for a conflict)")
    target: Text | None = Field(None, description="path glob or dataset:NAME")
    holder: Name | None = None
    exclusive: bool | None = None
    reason: Text | None = None
    expires: Timestamp = None
    detail: Text | None = None

    def derive(self, batch, seq, result) -> None:
        """reservations: the row taken (reserved), extended (renewed), ended (released, forced) or
        noted past its expiry (expired); conflicts, overrides and changes only log."""
        action, rid = self.action, self.reservation
        if action == "reserved":
            dataset = self.target.startswith("dataset:")
            batch.insert("INSERT INTO reservations (id, agent, kind, pattern, exclusive, reason, created_at, "
                         "expires_at) VALUES (?,?,?,?,?,?,?,?)",
                         (rid, self.holder, "dataset" if dataset else "path",
                          self.target[len("dataset:"):] if dataset else self.target, int(bool(self.exclusive)),
                          self.reason, self.ts, self.expires))
        elif action == "renewed":
            batch.insert("UPDATE reservations SET expires_at = ?, expiry_logged = 0 WHERE id = ?", (self.expires, rid))
        elif action in ("released", "forced"):
            batch.insert("UPDATE reservations SET released_at = ?, released_by = ?, release_note = ? WHERE id = ?",
                         (self.ts, self.agent, self.reason if action == "forced" else None, rid))
        elif action == "expired":
            batch.insert("UPDATE reservations SET expiry_logged = 1 WHERE id = ?", (rid,))


def own_kind(kind: str) -> str:
    """The refusal of a kind only agentops writes, when someone else tries to log it."""
    return f"kind {kind!r} is written by agentops itself; log {', '.join(USER_KINDS[:-1])} or {USER_KINDS[-1]}"


@lru_cache(maxsize=1)
def adapter() -> TypeAdapter:
    """The validator of any registered kind, chosen by `kind` (built on first use, after every model)."""
    models = tuple(m for m in MODELS.values() if issubclass(m, BaseModel))
    return TypeAdapter(Annotated[Union[models], Field(discriminator="kind")])


def _figure(value) -> str | None:
    """Observed/threshold figures are stored as JSON text (numbers stay numbers when read back)."""
    if value.__class__ is int:
        return int.__repr__(value)  # what json.dumps writes for an int, without the encoder
    return None if value is None else json.dumps(value)


def describe(kinds: tuple[str, ...] | None = None) -> str:
    """`run: pipeline, run_id, state, task?, ...` per kind, from the models (the MCP tool's text)."""
    out = []
    for kind in kinds or USER_KINDS:
        fields = []
        for name, f in MODELS[kind].model_fields.items():
            if name in ("kind", "ts", "id", "agent", "owner"):
                continue
            text = name if f.is_required() else name + "?"
            choices = _choices(f.annotation)
            if choices and name not in ("state",):
                text += f" ({'|'.join(choices)})"
            fields.append(text)
        out.append(f"{kind}: {', '.join(fields)}.")
    return " ".join(out) + " Any kind: ts?, id? (idempotency key)."


def _choices(annotation) -> tuple[str, ...]:
    if get_origin(annotation) is Literal:
        return get_args(annotation)
    for arg in get_args(annotation):
        if get_origin(arg) is Literal:
            return get_args(arg)
    return ()


def problems(exc: PydanticValidationError) -> list[str]:
    """`kind.field: message` lines for a rejected event. A kind only agentops writes is refused as
    such (not field by field)."""
    out = []
    errors = exc.errors(include_url=False)
    if errors and errors[0]["loc"] and errors[0]["loc"][0] in AGENTOPS_KINDS:
        return [own_kind(errors[0]["loc"][0])]
    for err in errors:
        loc = [str(p) if not isinstance(p, int) else f"[{p}]" for p in err["loc"]]
        etype = err["type"]
        if etype == "union_tag_invalid":
            tag = err.get("ctx", {}).get("tag")
            out.append(own_kind(tag) if tag in AGENTOPS_KINDS
                       else f"kind: unknown kind {tag!r} (known: {', '.join(USER_KINDS)})")
            continue
        if etype == "union_tag_not_found":
            out.append(f"kind: missing (one of: {', '.join(USER_KINDS)})")
            continue
        if etype in ("json_invalid", "json_type"):
            out.append(f"not valid JSON: {err.get('ctx', {}).get('error', err['msg'])}")
            continue
        if etype == "model_attributes_type" or (not loc and etype.endswith("_type")):
            out.append("an event must be a JSON object")
            continue
        msg = err["msg"]
        if etype == "extra_forbidden":
            msg = "unknown field"
        out.append(f"{'.'.join(loc).replace('.[', '[') or '<event>'}: {msg}")
    return out or [str(exc)]


def parse(raw: str | bytes | dict | Event | Record) -> Event | Record:
    """Validate one event; raises ValidationError naming the field. A JSON text or a dict (anyone's
    input) may only be a user kind; a model instance (built by agentops' own code) must be of a
    registered class (TypeError otherwise: a programming error, as datasette's track_event asserts)."""
    if isinstance(raw, (Event, Record)):
        if not registered(raw):
            raise TypeError(f"{type(raw).__name__} is not a registered Orbit event model")
        return raw
    try:
        if isinstance(raw, (str, bytes, bytearray)):
            model = adapter().validate_json(raw, strict=True)
        else:
            model = adapter().validate_python(raw, strict=True)
    except PydanticValidationError as exc:
        lines = problems(exc)
        raise ValidationError(lines[0] + (f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""),
                              problems=lines) from None
    if model.kind not in USER_KINDS:
        raise ValidationError(own_kind(model.kind))
    return model


def loads(text: str, what: str) -> Any:
    """JSON text a person gave (`--event`, a field value), or ValidationError in one line naming
    `what`: not JSON, nested too deeply, NaN or Infinity, a number too large."""
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise ValidationError(f"{what}: JSON nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise ValidationError(f"{what}: not valid JSON: {exc}") from None
    try:
        return _plain_json(value)
    except ValueError as exc:
        raise ValidationError(f"{what}: JSON {exc}") from None


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def cli_value(kind: str, field: str, text: str, flag: str) -> Any:
    """A command-line value converted to the type of `field` in `kind`'s model; a field the model
    does not have (or a kind that does not exist) stays text, and validation then names it."""
    from agentops.errors import ValidationError

    model = MODELS.get(kind)
    info = model.model_fields.get(field) if model is not None and hasattr(model, "model_fields") else None
    if info is None:
        return text
    types = [t for t in _members(info.annotation) if t is not type(None)]
    want = set(types)
    low = text.strip().lower()
    if bool in want and low in ("true", "false"):
        return low == "true"
    if int in want:
        try:
            return int(text)
        except ValueError:
            pass
    if float in want:
        try:
            value = float(text)
        except ValueError:
            pass
        else:
            if value != value or value in (float("inf"), float("-inf")):
                raise ValidationError(f"{flag}: {text!r} is not a finite number")
            return value
    if dict in want or any(get_origin(t) is dict for t in want):
        return loads(text, flag)
    if str in want or any(get_origin(t) is Literal for t in want):
        return text
    expected = {bool: "true or false", int: "a whole number", float: "a number"}
    raise ValidationError(f"{flag}: {text!r} is not {' or '.join(expected[t] for t in types if t in expected)}",
                          hint=f"give {kind}.{field} as {expected.get(types[0], 'text')}")


def _members(annotation) -> list:
    """The types a field accepts: Annotated unwrapped, unions flattened."""
    if get_origin(annotation) is Annotated:
        return _members(get_args(annotation)[0])
    if get_origin(annotation) in (Union, UnionType):
        return [m for a in get_args(annotation) for m in _members(a)]
    return [annotation]


def dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str)
