"""The Orbit event registry: which kinds exist, who may write each, and the one insert into `events`.

Every event agentops stores is an instance of a registered class (as datasette's `track_event`
only takes registered `Event` classes). The kinds people write (run, job, check, metric, perf,
note) and most of agentops' own are pydantic models in `events.py`; `mail`, which `agentops mail
send` writes while it starts up in about 0.1 s, is the `Record` below (a typed, slotted class that
needs no pydantic import; the mail library checks its fields itself).

Ways in: `Orbit.log`/`Orbit.log_many` (validation, derived state, alerts) and, inside a transaction
another module already holds, `record(conn, *events)` for kinds with no derived state (mail).
Both end in `insert_rows`, the only statement that writes `events`.

Adding a kind (e.g. `schema_change`):

1. a model in `events.py`: `@register("user" | "agentops") class SchemaChangeEvent(Event)` with
   `kind: Literal["schema_change"]` and typed fields (`Name`, `Text`, `Number`, ...). "user" kinds
   may come from anyone (CLI, MCP, drop files); "agentops" kinds only as an instance built by
   agentops' own code (a dict or JSON line naming one is refused);
2. if it keeps derived state, a `derive(self, batch, seq, result)` method right below its fields:
   what it writes to which table, through `batch.insert(SQL, row)` (appended) or
   `batch.upsert(SQL, key, row)` (last per key wins); `batch.alert(...)` for an alert (its subject
   and body written in `alerts.py`), `batch.point(...)` for a series point watched for anomalies.
   A deriver that refuses the event raises ValidationError before it adds anything;
3. its table in a new numbered migration (`agentops/migrations.py`);
4. a test that logs it and reads the derived row back.
Validation, the MCP `orbit_log` description and the refusal messages follow the registry; a new
user kind also goes into `orbit log`'s help line (`KIND_HELP` in `cli/orbit.py`; a test checks it).
"""

from __future__ import annotations

import json
TYPE_CHECKING = False  # annotations only: `agentops mail send` imports this module, and typing costs it ~10%
if TYPE_CHECKING:
    from typing import Any, Literal

MODELS: dict[str, type] = {}
USER_KINDS: list[str] = []       # anyone may log these
AGENTOPS_KINDS: list[str] = []   # only agentops' own code, as instances

_INSERT = "INSERT INTO events (seq, id, ts, kind, pipeline, run_id, agent, data) VALUES (?,?,?,?,?,?,?,?)"
_INSERT_NEW = ("INSERT INTO events (id, ts, kind, pipeline, run_id, agent, data) VALUES (?,?,?,?,?,?,?) "
               "ON CONFLICT DO NOTHING")


def register(writer: Literal["user", "agentops"], kind: str | None = None):
    """Class decorator: add an event class to the registry (see the module docstring)."""
    def add(cls: type) -> type:
        name = kind or cls.model_fields["kind"].annotation.__args__[0]
        assert name not in MODELS, f"kind {name!r} registered twice"
        MODELS[name] = cls
        (USER_KINDS if writer == "user" else AGENTOPS_KINDS).append(name)
        return cls
    return add


def registered(event: Any) -> bool:
    return MODELS.get(getattr(event, "kind", None)) is type(event)


def insert_rows(conn, rows: list[tuple]) -> None:
    """(seq, id, ts, kind, pipeline, run_id, agent, data) rows, inside the caller's transaction.
    Only `Orbit`'s batch writer (log.py) and `record` call it."""
    conn.executemany(_INSERT, rows)


def record(conn, *events: "Record", now: str | None = None) -> int:
    """Append agentops' own events of kinds with no derived state inside the caller's write
    transaction. Each must be a registered `Record`; an event whose `id` is known is skipped.
    Returns how many were new."""
    from agentops.store import utcnow

    written = 0
    for ev in events:
        if not registered(ev) or not isinstance(ev, Record):
            raise TypeError(f"{type(ev).__name__} is not a registered Orbit record (log models through Orbit.log)")
        ev.ts = ev.ts or now or utcnow()
        written += conn.execute(_INSERT_NEW, (ev.id, ev.ts, ev.kind, None, None, ev.agent, ev.to_json())).rowcount
    return written


class Record:
    """A typed event built by agentops' own code on a hot path: the fields are the annotated
    `__slots__`; None fields are left out of the stored JSON, as for the models."""

    __slots__ = ("ts", "id", "agent")
    kind: str

    def __init__(self, **fields: Any):
        if fields.pop("kind", self.kind) != self.kind:
            raise TypeError(f"{type(self).__name__} is kind {self.kind!r}")
        for name in self._fields():
            setattr(self, name, fields.pop(name, None))
        if fields:
            raise TypeError(f"{type(self).__name__}: unknown field(s) {', '.join(sorted(fields))}")

    @classmethod
    def _fields(cls) -> tuple[str, ...]:
        return tuple(n for c in reversed(cls.__mro__) for n in getattr(c, "__slots__", ()))

    def derive(self, batch, seq, result) -> None:
        """Records keep no derived state."""

    def to_json(self) -> str:
        data = {"kind": self.kind}
        for name in self._fields():
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


@register("agentops", "mail")
class MailEvent(Record):
    """Written by the mail library: delivered, bounced (a dead letter), read, acked, claimed."""

    __slots__ = ("action", "message_id", "sender", "recipients", "subject", "inboxes", "queues", "role",
                 "dead_id", "cause", "reason", "name", "bounce_id")
    kind = "mail"
    action: Literal["delivered", "bounced", "read", "acked", "claimed"]
    message_id: str | None
    sender: str | None
    recipients: list[str] | None
    subject: str | None
    inboxes: list[str] | None
    queues: list[str] | None
    role: str | None
    dead_id: str | None
    cause: str | None
    reason: str | None
    name: str | None
    bounce_id: str | None
