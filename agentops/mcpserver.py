"""The `orbit` MCP server (SPEC §10): the workspace's mail, Orbit log, pipelines, handoffs and status
as 18 tools for agents. `agentops mcp` serves it over stdio.

Each tool is a thin wrapper over the library (`agentops.mail`, `agentops.orbit`, `agentops.pipelines`,
`agentops.handoff`, `agentops.status`); nothing here decides anything the CLI would not. Descriptions
are short on purpose: agents pay for every token, and the names, descriptions and input schemas of
all tools together stay within 2,000 tokens (tests/test_mcp.py measures it). Library errors, bad and
unknown arguments come back as tool errors (`isError`) with one line naming the tool's argument,
never a CLI flag or a traceback. Without a workspace the server still starts and answers; each tool
call is then one tool error saying so.

This module imports the MCP SDK; the CLI imports it only inside `agentops mcp`.
"""

from __future__ import annotations

import inspect
import json
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field, ValidationError as PydanticValidationError, field_validator

from agentops.cli import mail_send as mail_send_cli
from agentops.errors import AgentOpsError, UsageError, format_pydantic_errors
from agentops.mail.message import PRIORITIES
from agentops.orbit.events import describe as describe_kinds
from agentops.orbit.states import RunState

SERVER_NAME = "orbit"
ABOUT = ("The agentops workspace: team mail, the Orbit event log (pipeline runs, jobs, data-quality checks, "
         "metrics), pipeline specs, handoffs and status.")
BUILT_IN = "`all`, `user` and `postmaster` are built in."


def instructions(ws=None, problem: str | None = None) -> str:
    """The server's instructions: how to address agents in this workspace (by name with a roster, by
    role slug without), and which roles share a queue; or why there is no workspace."""
    if ws is None:
        return f"{ABOUT} No workspace was found ({problem}); every tool returns that error until one exists."
    try:
        book = ws.addresses
    except AgentOpsError as exc:
        return f"{ABOUT} The workspace has a problem: {exc}"
    shared = sorted(role for role in book.roles if len(book.members(role)) > 1)
    if ws.config.agents:
        text = f"{ABOUT} Address agents by name ({', '.join(sorted(book.agents))}) or a role by its slug. {BUILT_IN}"
    else:
        text = f"{ABOUT} Address agents by role slug ({', '.join(sorted(book.agents))}). {BUILT_IN}"
    if shared:
        text += (f" Shared role queues: {', '.join(shared)}; a member takes their mail with mail_claim "
                 "(mail_inbox on the role lists what waits).")
    return text


# --- argument types (the constraints are the input schema) -------------------------------------
Agent = Annotated[str, Field(min_length=1, max_length=200)]
MessageId = Annotated[str, Field(min_length=1, max_length=500)]
Copy = Annotated[str | None, Field(description="whose copy, when it went to several inboxes")]
Pipeline = Annotated[str, Field(min_length=1, max_length=512)]
Since = Annotated[str, Field(min_length=1, max_length=64, description="ISO time, or an age: 24h, 7d")]
Limit = Annotated[int, Field(ge=1, le=500)]

# the types a CLI option row's `mcp` column names (agentops.cli.options.Mcp)
ARGUMENT_TYPES = {
    "address": Agent,
    "addresses": list[Agent],
    "line": Annotated[str, Field(min_length=1, max_length=998)],
    "text": Annotated[str, Field(max_length=10 * 1024 * 1024)],
    "priority": Literal[PRIORITIES],
    "id": MessageId,
}


def from_options(options):
    """Give a tool `func(**values)` the parameters of the CLI option rows an MCP tool shares (those
    with an `mcp` column), so the CLI, the library and MCP take one declaration. A required argument
    has no default (a required list at least one item); the others the CLI's default."""
    def build(func):
        params = []
        for o in options:
            if o.mcp is None:
                continue
            kind, meta = ARGUMENT_TYPES[o.mcp.type], []
            if o.mcp.doc:
                meta.append(Field(description=o.mcp.doc))
            if o.mcp.required:
                default = inspect.Parameter.empty
                if isinstance(o.default, tuple):
                    meta.append(Field(min_length=1))
            else:
                default = list(o.default) if isinstance(o.default, tuple) else o.default
                kind = kind | None if default is None else kind
            annotation = Annotated[(kind, *meta)] if meta else kind
            params.append(inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                            annotation=annotation))
        returns = inspect.signature(func, eval_str=True).return_annotation
        func.__signature__ = inspect.Signature(params, return_annotation=returns)
        return func
    return build

READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)


# --- outputs ------------------------------------------------------------------------------------
class _Out(BaseModel):
    pass


class MailSent(_Out):
    ids: list[str] = Field(description="Message-IDs sent")


class MailSummary(_Out):
    id: str
    sender: str
    to: list[str]
    subject: str
    priority: str = "normal"
    date: str | None = None
    state: str | None = Field(None, description="unread, read, acked or claimed")
    in_reply_to: str | None = None

    @classmethod
    def of(cls, row: dict[str, Any]):
        """From a row of the mail library (`message_id`, `recipients`, ... as it names them)."""
        names = {"id": "message_id", "to": "recipients"}
        data = {f: row.get(names.get(f, f)) for f in cls.model_fields if names.get(f, f) in row}
        for f in ("to", "cc"):
            if isinstance(data.get(f), str):
                data[f] = json.loads(data[f])
        return cls.model_validate(data)


class Inbox(_Out):
    agent: str
    total: int = Field(description="messages matching, before the limit")
    messages: list[MailSummary]


class Mail(MailSummary):
    cc: list[str] = []
    body: str = ""


class Found(MailSummary):
    snippet: str = ""


class Search(_Out):
    messages: list[Found]


class Thread(_Out):
    messages: list[Mail] = Field(description="oldest first")


class Acked(_Out):
    id: str
    state: str


class Handoff(_Out):
    sender: str
    target: str
    label: str
    sent: bool
    message_ids: list[str] = []
    draft: str | None = Field(None, description="draft id when not sent (send it with `agentops mail send --draft`)")


class Logged(_Out):
    kind: str
    seq: int | None = Field(description="log position; null when an event with this id was already logged")
    id: str | None = None
    ts: str | None = None
    state: str | None = Field(None, description="run events: the run's state now")
    attempt: int | None = None
    anomalies: list[dict[str, Any]] = []
    alerts: list[dict[str, Any]] = Field([], description="mail sent to the pipeline's owner")
    upstream_failed: list[str] = Field([], description="tasks marked upstream_failed")


class _Row(_Out):
    model_config = ConfigDict(extra="allow")


class RunRow(_Row):
    pipeline: str
    run_id: str
    task: str | None = None
    state: str
    attempt: int | None = None
    run_type: str | None = None
    logical_date: str | None = None
    error: str | None = None
    owner: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    updated_at: str | None = None

    @field_validator("task", mode="before")
    @classmethod
    def _no_task(cls, v):
        return v or None


class Runs(_Out):
    runs: list[RunRow]


class CheckRow(_Row):
    pipeline: str
    run_id: str | None = None
    dataset: str
    check: str
    passed: bool
    severity: str
    observed: Any = None
    threshold: Any = None
    ts: str


class AnomalyRow(_Row):
    pipeline: str
    dataset: str | None = None
    metric: str
    value: float
    expected: float
    zscore: float
    direction: str
    ts: str


class Quality(_Out):
    failed_checks: list[CheckRow]
    anomalies: list[AnomalyRow]


class QualityRun(_Out):
    ok: bool
    run_id: str
    checks: list[dict[str, Any]]  # dataset, check, status, observed, threshold, reason


class Problem(_Out):
    file: str
    path: str = ""
    line: int | None = None
    message: str


class Checked(_Out):
    ok: bool
    pipelines: list[str] = Field(description="pipelines checked")
    problems: list[Problem]


class PlanStage(_Out):
    name: str
    level: int
    weight_s: float
    measured: bool
    start_s: float
    finish_s: float
    slack_s: float
    after: list[str]


class Plan(_Out):
    pipeline: str
    order: list[str]
    levels: list[list[str]] = Field(description="stages that can run in parallel, level by level")
    max_parallel: int
    critical_path: list[str]
    critical_path_s: float
    weights: str = Field(description="orbit (recorded durations), timeouts, or orbit+timeouts")
    stages: list[PlanStage]


# --- the server ---------------------------------------------------------------------------------
def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, UsageError):
        return _one_line(exc.for_tool())
    if isinstance(exc, AgentOpsError):
        extra = [p for p in getattr(exc, "problems", [])[1:4] if p]
        more = len(getattr(exc, "problems", [])) - 1 - len(extra)
        text = str(exc) + "".join(f"; {p}" for p in extra) + (f"; and {more} more" if more > 0 else "")
        return _one_line(text)
    if isinstance(exc, PydanticValidationError):
        lines = format_pydantic_errors(exc)
        return "bad arguments: " + _one_line("; ".join(lines[:5]) + (f"; and {len(lines) - 5} more" if len(lines) > 5 else ""))
    return _one_line(str(exc))


def _lean(schema: Any, output: bool = False) -> Any:
    """A JSON schema without what agents pay for and never need: pydantic's generated `title`s,
    `anyOf: [X, null]` (written `type: [X, "null"]`), empty defaults (`null`, `false`, `""`, `[]`:
    what an omitted argument means anyway), and defaults in outputs."""
    if isinstance(schema, list):
        return [_lean(v, output) for v in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _lean(v, output) for k, v in schema.items()
           if not (k == "title" and isinstance(v, str))
           and not (k == "default" and (output or v in (None, False, "", [])))}
    arms = out.get("anyOf")
    if isinstance(arms, list) and len(arms) == 2 and {"type": "null"} in arms:
        other = arms[0] if arms[1] == {"type": "null"} else arms[1]
        if isinstance(other.get("type"), str) and not set(other) & set(out):
            del out["anyOf"]
            out.update(other, type=[other["type"], "null"])
            if "enum" in other:
                out["enum"] = [*other["enum"], None]
    return out


class OrbitServer(MCPServer):
    """MCPServer with lean schemas and one-line tool errors: the library's message, or which argument
    is wrong."""

    async def list_tools(self):
        tools = await super().list_tools()
        return [t.model_copy(update={"input_schema": _lean(t.input_schema),
                                     "output_schema": _lean(t.output_schema, output=True)}) for t in tools]

    async def call_tool(self, name, arguments, context=None):
        known = self._tool_manager.get_tool(name)
        if known is not None:  # refused, not silently dropped: a misspelt `limt` would look obeyed
            takes = list(known.parameters.get("properties", {}))
            unknown = sorted(set(arguments or {}) - set(takes))
            if unknown:
                raise ToolError(f"{name}: unknown argument{'s' if len(unknown) > 1 else ''} "
                                f"{', '.join(unknown)} (takes: {', '.join(takes) or 'none'})")
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(cause, (AgentOpsError, PydanticValidationError)):
                raise ToolError(f"{name}: {_error_text(cause)}") from cause
            raise


def _result(out: BaseModel | dict) -> CallToolResult:
    """Structured content plus the same JSON, compact, as text (for clients that read only text)."""
    data = out.model_dump(mode="json") if isinstance(out, BaseModel) else out
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str)
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=data)


def build_server(ws=None, *, find=None) -> MCPServer:
    """The `orbit` server over workspace `ws`, with its 18 tools. Each call sees the workspace as it
    is now (roster, roles, settings re-read), as a fresh CLI command would. Without `ws`, each call
    looks for the workspace with `find()` and, until there is one, fails with its error."""
    from agentops import __version__

    if ws is not None:
        root, kind = ws.root, type(ws)

        def here():
            return kind(root)
        about = instructions(ws)
    else:
        here = find
        try:
            ws = find()
            about = instructions(ws)
        except AgentOpsError as exc:
            about = instructions(None, str(exc))

    server = OrbitServer(SERVER_NAME, version=__version__, instructions=about, log_level="WARNING")
    tool = server.tool

    # --- mail ---------------------------------------------------------------------------------
    @tool(annotations=WRITE)
    @from_options(mail_send_cli.OPTIONS)
    async def mail_send(**values) -> MailSent:
        """Send mail; returns the message ids."""
        from agentops import mail

        return _result(MailSent(ids=list(mail.send(here(), **values))))

    @tool(annotations=READ)
    async def mail_inbox(agent: Agent, unread: bool = True, limit: Limit = 20) -> Inbox:
        """An agent's or role queue's mail, oldest first; unread only by default."""
        from agentops.mail.inbox import count, inbox

        ws = _routed(here())
        rows = inbox(ws, agent, unread=unread, limit=limit, newest=False)
        total = count(ws, agent, unread=unread) if len(rows) == limit else len(rows)
        return _result(Inbox(agent=agent, total=total, messages=[MailSummary.of(r) for r in rows]))

    @tool(annotations=WRITE)
    async def mail_read(id: MessageId, agent: Copy = None) -> Mail:
        """Read a message and mark it read."""
        from agentops.mail.inbox import read

        ws = here()
        return _result(Mail.of(read(_routed(ws), id, agent=agent)))

    @tool(annotations=WRITE)
    async def mail_ack(id: MessageId, agent: Copy = None) -> Acked:
        """Acknowledge a message you have acted on."""
        from agentops.mail.inbox import ack

        ws = here()
        msg = ack(_routed(ws), id, agent=agent)
        return _result(Acked(id=msg["message_id"], state=msg.get("state") or "acked"))

    @tool(annotations=WRITE)
    async def mail_claim(role: Agent, agent: Agent, id: MessageId | None = None) -> Mail:
        """Take the oldest (or `id`) unclaimed message of a shared role queue into your inbox."""
        from agentops.mail.inbox import claim

        return _result(Mail.of(claim(_routed(here()), role, agent, id)))

    @tool(annotations=READ)
    async def mail_search(query: Annotated[str, Field(min_length=1, max_length=1000)], limit: Limit = 20) -> Search:
        """Full-text search of all mail (subjects and bodies), best first."""
        from agentops.mail.inbox import search

        rows = search(_routed(here()), query, limit=limit)
        return _result(Search(messages=[Found.of(r) for r in rows]))

    @tool(annotations=READ)
    async def mail_thread(id: MessageId) -> Thread:
        """The whole thread of a message, oldest first."""
        from agentops.mail.inbox import thread

        return _result(Thread(messages=[Mail.of(r) for r in thread(_routed(here()), id)]))

    # --- handoff ------------------------------------------------------------------------------
    @tool(name="handoff", annotations=WRITE)
    async def handoff_tool(
        sender: Annotated[str, Field(min_length=1, max_length=200, description="your address")],
        label: Annotated[str, Field(min_length=1, max_length=500, description="a handoff label or target role")],
        context: Annotated[str, Field(max_length=1024 * 1024)] = "",
        draft: Annotated[bool, Field(description="save a draft, do not send")] = False,
    ) -> Handoff:
        """Hand work on along one of your role's handoffs (mailed or drafted)."""
        from agentops.handoff import handoff

        ws = here()
        r = handoff(ws, sender, label, context, draft=draft)
        return _result(Handoff(sender=r.sender, target=r.target, label=r.label, sent=r.sent,
                               message_ids=list(r.message_ids), draft=r.draft))

    # --- orbit --------------------------------------------------------------------------------
    @tool(annotations=WRITE)
    async def orbit_log(
        event: Annotated[dict[str, Any], Field(description='One flat event; "kind" picks the fields. '
                                               + describe_kinds())],
    ) -> Logged:
        """Log one Orbit event; returns its seq and any anomaly or alert it caused."""
        from agentops.orbit import Orbit

        ws = here()
        with Orbit.open(ws) as orbit:
            r = orbit.log(event)
        derived = r.derived
        by_kind = lambda k: [d for d in derived if d.get("kind") == k]  # noqa: E731
        return _result(Logged(kind=r.kind, seq=r.seq, id=r.id, ts=r.ts, state=r.state, attempt=r.attempt,
                              anomalies=by_kind("anomaly"), alerts=by_kind("alert"),
                              upstream_failed=[d.get("task") for d in by_kind("run")]))

    @tool(annotations=READ)
    async def orbit_runs(
        pipeline: Pipeline | None = None,
        state: RunState | None = None,
        since: Since | None = None,
        tasks: Annotated[bool, Field(description="include task runs")] = False,
        limit: Limit = 20,
    ) -> Runs:
        """Runs at their latest state, newest first."""
        from agentops.orbit import Orbit

        ws = here()
        with Orbit.open(ws) as orbit:
            rows = orbit.runs(pipeline=pipeline, state=state, since=since, tasks=None if tasks else False,
                              limit=limit)
        return _result(Runs(runs=[RunRow.model_validate(r) for r in rows]))

    @tool(annotations=READ)
    async def orbit_quality(pipeline: Pipeline | None = None, since: Since | None = None, limit: Limit = 50) -> Quality:
        """Failing data-quality checks and anomalies, newest first."""
        from agentops.orbit import Orbit

        ws = here()
        with Orbit.open(ws) as orbit:
            checks = orbit.checks(pipeline=pipeline, failed=True, since=since, limit=limit)
            anomalies = orbit.anomalies(pipeline=pipeline, since=since, limit=limit)
        return _result(Quality(failed_checks=[CheckRow.model_validate(c) for c in checks],
                               anomalies=[AnomalyRow.model_validate(a) for a in anomalies]))

    @tool(annotations=WRITE)
    async def quality_run(pipeline: Pipeline, dataset: str | None = None, partition: str | None = None) -> QualityRun:
        """Measure a pipeline's checks and profiles on the data; recorded in Orbit."""
        from agentops.data.quality import run

        report = run(here(), pipeline, dataset=dataset, partition=partition)
        rows = [{k: v for k, v in r.as_dict().items() if k != "samples" and v is not None} for r in report.results]
        return _result(QualityRun(ok=report.ok, run_id=report.run_id, checks=rows))

    # --- pipelines ----------------------------------------------------------------------------
    @tool(annotations=READ)
    async def pipeline_check(name: Annotated[Pipeline | None, Field(description="default: all")] = None) -> Checked:
        """Validate pipeline specs; each problem with file, path and line."""
        from agentops.pipelines.spec import check_one, load_specs

        ws = here()
        if name:
            spec, problems = check_one(ws, name)
            names = [spec.name if spec else name]
        else:
            specs, problems = load_specs(ws)
            names = [s.name for s in specs]
        return _result(Checked(ok=not problems, pipelines=names,
                               problems=[Problem(file=p.file, path=p.path, line=p.line, message=p.message)
                                         for p in problems]))

    @tool(annotations=READ)
    async def pipeline_plan(name: Pipeline) -> Plan:
        """A pipeline's stage order, parallel levels and critical path."""
        from agentops.pipelines.graph import plan, recorded_durations
        from agentops.pipelines.spec import find_spec

        ws = here()
        spec = find_spec(ws, name)
        return _result(Plan.model_validate(plan(spec, recorded_durations(ws, spec.name))))

    @tool(annotations=WRITE)
    async def pipeline_run(name: Pipeline, partition: str | None = None, stages: list[str] = [],
                           rerun: bool = False, agent: Agent | None = None) -> dict[str, Any]:
        """Run a pipeline's stages (default all) for a partition (default latest); task states, as `pipeline run`."""
        import anyio

        from agentops.pipelines import runner
        from agentops.pipelines.spec import find_spec

        ws = here()
        spec = find_spec(ws, name)
        plan = runner.plan_run(ws, spec, partitions=runner.partitions_for(spec, partition), stages=stages or None,
                               rerun=rerun)
        warnings = runner.check_reservations(ws, plan, agent)
        result = await anyio.to_thread.run_sync(lambda: runner.execute(ws, plan))
        out = result.as_dict()
        out["warnings"] = warnings + out["warnings"]
        return _result(out)

    # --- reservations -------------------------------------------------------------------------
    @tool(name="reserve", annotations=WRITE)
    async def reserve_tool(
        agent: Agent,
        targets: Annotated[list[str], Field(min_length=1, description="paths/globs or dataset:NAME")],
        ttl: str = "2h",
        shared: bool = False,
        reason: str | None = None,
    ) -> dict[str, Any]:
        """Reserve files or datasets before changing them: all or none; a conflict names the holder."""
        from agentops.reservations import reserve

        return _result(reserve(here(), agent, targets, ttl=ttl, shared=shared, reason=reason).as_dict())

    @tool(name="release", annotations=WRITE)
    async def release_tool(
        agent: Agent,
        targets: Annotated[list[str], Field(description="ids or targets; empty: all yours")] = [],
    ) -> dict[str, Any]:
        """Release your reservations."""
        from agentops.reservations import release

        return _result({"released": [r.as_dict() for r in release(here(), agent, targets)]})

    # --- status -------------------------------------------------------------------------------
    @tool(annotations=READ)
    async def status(since: Since = "7d") -> dict[str, Any]:
        """The workspace at a glance: daemon, mail, pipelines, quality, alerts."""
        from agentops.status import collect

        ws = here()
        return _result(collect(ws, since=since))

    return server


# --- adapting library values to the tool outputs ------------------------------------------------
def _routed(ws):
    from agentops.mail import route_if_no_daemon

    return route_if_no_daemon(ws)
