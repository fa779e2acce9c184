"""The Orbit event kinds: one pydantic model per kind, chosen by the `kind` field (SPEC §5).

What agents write (run, job, check, metric, perf, note) forbids unknown fields; the kinds
agentops writes itself (anomaly, alert, mail, handoff) too, except mail and handoff, whose writers
(the mail library, handoffs) may add fields. `ts` (ISO 8601, default now) and `id` (optional,
makes the event idempotent) are on every kind. The `Orbit` API refuses agentops' own kinds (and
`dispatch`) from other callers (`own_kind`): only its `internal=True` path accepts them.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from functools import lru_cache
from typing import Annotated, Any, Literal, Union

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter,
                      ValidationError as PydanticValidationError)

from agentops.errors import ValidationError

STATES = ("queued", "running", "succeeded", "failed", "up_for_retry", "upstream_failed", "skipped", "canceled")
RunState = Literal["queued", "running", "succeeded", "failed", "up_for_retry", "upstream_failed", "skipped",
                   "canceled"]
RunType = Literal["scheduled", "manual", "backfill"]
Severity = Literal["warn", "error"]
Bottleneck = Literal["io", "cpu", "network", "serialization", "memory"]

MAX_NAME = 512          # identifiers: pipeline, run_id, task, dataset, check, metric name
MAX_TEXT = 64 * 1024    # free text: error, note, text, subject, body

Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME)]
Text = Annotated[str, Field(max_length=MAX_TEXT)]
Number = Annotated[float, Field(allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0)]
Figure = Union[int, float, str, bool, None]


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
    return format_ts(dt)


Timestamp = Annotated[str | None, BeforeValidator(_ts)]


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)

    ts: Timestamp = Field(None, description="ISO 8601; default now; naive times are UTC")
    id: Name | None = Field(None, description="idempotency key: an event with a known id is skipped")
    agent: Name | None = Field(None, description="who logged it")


class _PipelineEvent(_Event):
    owner: Name | None = Field(None, description="who gets alerts when the pipeline spec does not say")


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


class JobEvent(_PipelineEvent):
    """An ETL job (stage/task) completed: its figures."""

    kind: Literal["job"]
    pipeline: Name
    run_id: Name | None = None
    task: Name | None = None
    rows_in: Count | None = None
    rows_out: Count | None = None
    bytes: Count | None = None
    duration_s: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None


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


class MetricEvent(_PipelineEvent):
    """One point of a numeric series (row count, null rate, duration...)."""

    kind: Literal["metric"]
    pipeline: Name
    dataset: Name | None = None
    name: Name
    value: Number
    run_id: Name | None = None


class PerfEvent(_PipelineEvent):
    """A performance issue (open) or an optimization (resolved), with before/after figures."""

    kind: Literal["perf"]
    pipeline: Name
    task: Name | None = None
    bottleneck: Bottleneck
    note: Text | None = None
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    status: Literal["open", "resolved"] = "open"


class NoteEvent(_Event):
    kind: Literal["note"]
    text: Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]
    pipeline: Name | None = None
    run_id: Name | None = None


class AnomalyEvent(_Event):
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


class AlertEvent(_Event):
    """Written by agentops when it mails an owner about a failed run, check or an anomaly."""

    kind: Literal["alert"]
    key: Text
    cause: Literal["run", "check", "anomaly"]
    to: Name
    subject: Text
    pipeline: Name | None = None
    run_id: Name | None = None
    source_seq: int | None = None


class MailEvent(_Event):
    """Written by the mail library (delivered, bounced, read, acked, claimed)."""

    model_config = ConfigDict(extra="allow")
    kind: Literal["mail"]
    action: Literal["delivered", "bounced", "read", "acked", "claimed"]
    message_id: Name | None = None
    sender: Name | None = None
    recipients: list[Name] = []
    subject: Text | None = None


class HandoffEvent(_Event):
    """Written by `agentops handoff`."""

    model_config = ConfigDict(extra="allow")
    kind: Literal["handoff"]
    sender: Name | None = None
    recipient: Name | None = None
    label: Text | None = None
    message_id: Name | None = None


MODELS: dict[str, type[_Event]] = {
    "run": RunEvent, "job": JobEvent, "check": CheckEvent, "metric": MetricEvent, "perf": PerfEvent,
    "note": NoteEvent, "anomaly": AnomalyEvent, "alert": AlertEvent, "mail": MailEvent, "handoff": HandoffEvent,
}
KINDS = tuple(MODELS)
USER_KINDS = ("run", "job", "check", "metric", "perf", "note")
# written only by agentops itself (dispatch rows go straight into the events table, with no model)
AGENTOPS_KINDS = ("anomaly", "alert", "mail", "handoff", "dispatch")


def own_kind(kind: str) -> str:
    """The refusal of a kind only agentops writes, when someone else tries to log it."""
    return f"kind {kind!r} is written by agentops itself; log {', '.join(USER_KINDS[:-1])} or {USER_KINDS[-1]}"

Event = Annotated[Union[tuple(MODELS.values())], Field(discriminator="kind")]  # type: ignore[valid-type]


@lru_cache(maxsize=1)
def adapter() -> TypeAdapter:
    return TypeAdapter(Event)


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


def problems(exc: PydanticValidationError, raw: Any = None, *, internal: bool = False) -> list[str]:
    """`kind.field: message` lines for a rejected event. A kind only agentops writes is refused as
    such (not field by field) unless `internal`."""
    out = []
    errors = exc.errors(include_url=False)
    if not internal and errors and errors[0]["loc"] and errors[0]["loc"][0] in AGENTOPS_KINDS:
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


def parse(raw: str | bytes | dict | BaseModel, *, internal: bool = False) -> _Event:
    """Validate one event (a JSON line, a dict or a model); raises ValidationError naming the field.
    Only `internal` callers (agentops' own code) may give the kinds agentops writes itself."""
    if isinstance(raw, _Event):
        model = raw
    else:
        try:
            if isinstance(raw, (str, bytes, bytearray)):
                model = adapter().validate_json(raw)
            else:
                model = adapter().validate_python(raw)
        except PydanticValidationError as exc:
            lines = problems(exc, internal=internal)
            raise ValidationError(lines[0] + (f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""),
                                  problems=lines) from None
    if not internal and model.kind not in USER_KINDS:
        raise ValidationError(own_kind(model.kind))
    return model


def dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str)
