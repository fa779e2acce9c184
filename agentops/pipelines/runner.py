"""The embedded runner (SPEC §12): run a pipeline's stages for one or more partitions, recorded in
Orbit by agentops itself.

    plan = plan_run(ws, spec, partitions=["2026-01-01"])      # what would run, and what it touches
    result = execute(ws, plan, on_event=print)                 # run it

For each partition, the stages run in DAG order, level by level, in parallel within a level up to
`max_parallel` (one limit shared by every partition the run holds). A stage runs its `sql:` (a
SELECT materialised into its output dataset, see `agentops.pipelines.sqlstage`), its `command:` (an
argv list in the workspace, never a shell), or stops the run when it has neither (a manual stage:
its owner does it, and the run says so). Each stage gets its retries with backoff and its timeout;
at the timeout the stage's whole process group is killed. After a stage, its output datasets'
quality checks run; an error-severity failure fails the stage, and so stops what depends on it.

Orbit records everything through the event registry and the run state machine: the pipeline run
and each task run (`running`, `up_for_retry`, `failed`, `succeeded`; `upstream_failed` downstream
of a failure, derived by Orbit), a `job` event per task with the figures agentops measured (rows
in and out, bytes written, duration), and the checks. Every event id is deterministic (pipeline,
run, task, attempt, state), so a replay never doubles anything.

Crash safety: a task that Orbit says succeeded for the partition is skipped (unless `rerun`), and
outputs appear whole or not at all (`agentops.pipelines.outputs`), so a runner killed at any
instant and started again finishes the run, with each task's success recorded once.

Locks: one flock per pipeline, partition and stage (`.agent/run/locks/`), taken all at once before
anything runs; a second runner on the same partition is refused (ConflictError) naming the holder.

`RunPlan.reads` / `RunPlan.writes` are the datasets a run will read and write, known before it
starts: the one place a policy (reservations) looks at them.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Callable

from agentops.errors import AgentOpsError, ConflictError, ValidationError

ENV_PREFIX = "AGENTOPS_"
KILL_GRACE_S = 2.0  # after SIGTERM at a timeout, SIGKILL follows this much later
LOG_TAIL = 2000     # characters of a failed command's output kept in the Orbit error
HOLDER_BYTES = 512  # a lock file's holder record (JSON, padded with spaces)


# --------------------------------------------------------------------------------------------- plan
@dataclass
class PartitionPlan:
    partition: str
    run_id: str
    tasks: list[str]                    # stages to run, in order
    skipped: dict[str, str] = field(default_factory=dict)  # stage -> why it will not run


@dataclass
class RunPlan:
    """What a run will do, known before it starts."""

    spec: Any
    run_type: str
    partitions: list[PartitionPlan]
    levels: list[list[str]]
    rerun: bool = False
    max_parallel: int = 4
    start: str | None = None
    end: str | None = None

    @property
    def stages(self) -> list[str]:
        """Every stage that will run in some partition (spec order)."""
        names = {t for p in self.partitions for t in p.tasks}
        return [s.name for s in self.spec.stages if s.name in names]

    @property
    def writes(self) -> list[str]:
        """Datasets the run writes: the outputs of the stages it runs."""
        return sorted({d for n in self.stages for d in self.spec.stage(n).outputs})

    @property
    def reads(self) -> list[str]:
        """Datasets the run reads: the inputs of the stages it runs."""
        return sorted({d for n in self.stages for d in self.spec.stage(n).inputs})

    def as_dict(self) -> dict:
        return {"pipeline": self.spec.name, "run_type": self.run_type, "rerun": self.rerun,
                "max_parallel": self.max_parallel, "reads": self.reads, "writes": self.writes,
                "partitions": [{"partition": p.partition, "run_id": p.run_id, "tasks": p.tasks,
                                "skipped": p.skipped} for p in self.partitions]}


def check_reservations(ws, plan: RunPlan, agent: str | None, *, ignore: bool = False) -> list[str]:
    """Before a run starts: refuse to write a dataset another agent holds exclusively
    (ReservationConflict naming the holder; `ignore` logs the override), warn about reads of such
    datasets. Uses `plan.writes` and `plan.reads`, the datasets the run will touch."""
    from agentops.reservations import check_datasets

    if not plan.stages:
        return []
    first, last = plan.partitions[0].partition, plan.partitions[-1].partition
    span = first if first == last else f"{first}..{last}"
    return check_datasets(ws, agent, writes=plan.writes, reads=plan.reads, ignore=ignore,
                          action=f"run {plan.spec.name} {span}")


def partitions_for(spec, partition: str | None = None, start: str | None = None,
                   end: str | None = None) -> list[str]:
    """The partitions a run covers: `partition`, or the schedule's partitions from `start` to `end`
    (inclusive), or the latest scheduled partition before now."""
    from datetime import time as dtime

    from agentops.pipelines.backfill import MAX_PARTITIONS, parse_day
    from agentops.pipelines.schedule import partition_key

    if partition is not None and (start or end):
        raise ValidationError("give --partition or --start/--end, not both")
    if partition is not None:
        p = str(partition).strip()
        if not p or len(p) > 64 or any(c in p for c in "/\\\0\n") or p.startswith("."):
            raise ValidationError(f"--partition {partition!r} is not a partition key",
                                  hint="use the schedule's key, e.g. 2026-01-01")
        return [p]
    cron = spec.cron
    if start or end:
        if not (start and end):
            raise ValidationError("--start and --end go together")
        s, e = parse_day(start, "start"), parse_day(end, "end")
        if e < s:
            raise ValidationError(f"--end {e} is before --start {s}", hint="swap them")
        if cron is None:
            raise ValidationError(f"pipeline '{spec.name}' has no schedule; name one --partition")
        if cron.count(s, e) > MAX_PARTITIONS:
            raise ValidationError(f"{s}..{e} is over {MAX_PARTITIONS:,} partitions", hint="narrow the range")
        return [partition_key(cron, t) for t in cron.times(datetime.combine(s, dtime.min),
                                                            datetime.combine(e, dtime.max))]
    today = date.today()
    if cron is None:
        return [today.isoformat()]
    from datetime import timedelta

    times = list(cron.times(datetime.combine(today - timedelta(days=400), dtime.min), datetime.now()))
    return [partition_key(cron, times[-1]) if times else today.isoformat()]


def run_id_for(run_type: str, partition: str) -> str:
    """One run per pipeline, partition and run type (`manual__2026-01-01`, `backfill__2026-01-01`),
    or Airflow's own run id when Airflow runs the task (AIRFLOW_CTX_DAG_RUN_ID)."""
    airflow = os.environ.get("AIRFLOW_CTX_DAG_RUN_ID")
    if airflow:
        return airflow
    return f"{run_type}__{partition}"


def _airflow_run_type() -> str | None:
    rid = os.environ.get("AIRFLOW_CTX_DAG_RUN_ID", "")
    for t in ("scheduled", "manual", "backfill"):
        if rid.startswith(t + "__"):
            return t
    return "manual" if rid else None


def select_stages(spec, stages: list[str] | None = None, from_stage: str | None = None) -> list[str]:
    """The stages a run covers, in DAG order: all, the named ones, or `from_stage` and everything
    downstream of it."""
    from agentops.pipelines.graph import descendants, plan as stage_plan, stage_graph

    order = stage_plan(spec)["order"]
    chosen = set(order)
    if stages:
        for s in stages:
            spec.stage(s)  # NotFoundError naming the pipeline
        chosen = set(stages)
    if from_stage:
        spec.stage(from_stage)
        chosen &= {from_stage} | descendants(stage_graph(spec), from_stage)
    return [n for n in order if n in chosen]


def plan_run(ws, spec, *, partitions: list[str] | None = None, stages: list[str] | None = None,
             from_stage: str | None = None, rerun: bool = False, max_parallel: int = 4,
             run_type: str | None = None, run_ids: dict[str, str] | None = None) -> RunPlan:
    """What `execute` will do: per partition, the stages to run and those skipped (already
    succeeded, unless `rerun`)."""
    from agentops.pipelines.graph import plan as stage_plan

    if max_parallel < 1:
        raise ValidationError(f"--max-parallel {max_parallel} must be at least 1")
    if spec.processing != "batch":
        raise ValidationError(f"pipeline '{spec.name}' is {spec.processing}; the runner runs batch pipelines",
                              hint="run the streaming job with its own engine")
    run_type = run_type or _airflow_run_type() or "manual"
    parts = partitions or partitions_for(spec)
    selected = select_stages(spec, stages, from_stage)
    done = _succeeded(ws, spec) if not rerun else {}
    plans = []
    for p in parts:
        pp = PartitionPlan(p, (run_ids or {}).get(p) or run_id_for(run_type, p), [])
        for name in selected:
            if (p, name) in done:
                pp.skipped[name] = "already succeeded"
            else:
                pp.tasks.append(name)
        plans.append(pp)
    return RunPlan(spec, run_type, plans, stage_plan(spec)["levels"], rerun, max_parallel)


def backfill_states(ws, spec) -> dict:
    """Orbit's task states for a backfill the runner executes: a task `queued`, `running` or
    `up_for_retry` is not in flight for the runner (a runner running it holds its lock, and a
    second one is refused; one that died left it so), so it is planned like one that never ran."""
    from agentops.pipelines.backfill import IN_FLIGHT, task_states

    states = task_states(ws, spec)
    return {k: v for k, v in states.items() if v.get("state") not in IN_FLIGHT}


def plan_backfill_run(ws, spec, bplan: dict, max_parallel: int = 4) -> RunPlan:
    """A backfill plan (`agentops.pipelines.backfill.plan_backfill`, which honours --reprocess) as
    a run: per partition the planned tasks, run type `backfill`, run id `backfill__<partition>`."""
    from agentops.pipelines.backfill import run_id_for as backfill_run_id
    from agentops.pipelines.graph import plan as stage_plan

    if max_parallel < 1:
        raise ValidationError(f"--max-parallel {max_parallel} must be at least 1")
    per: dict[str, list[str]] = {p: [] for p in bplan["partitions"]}
    for t in bplan["tasks"]:
        per[t["partition"]].append(t["task"])
    parts = [PartitionPlan(p, backfill_run_id(p), tasks,
                           {s: "nothing to do" for s in bplan["stages"] if s not in tasks})
             for p, tasks in per.items()]
    return RunPlan(spec, "backfill", parts, stage_plan(spec)["levels"], True, max_parallel,
                   bplan.get("start"), bplan.get("end"))


def _succeeded(ws, spec) -> set[tuple[str, str]]:
    """(partition, task) pairs whose latest task run, in any run, succeeded."""
    from agentops.orbit import Orbit
    from agentops.pipelines.schedule import normalize_logical_date

    cron = spec.cron
    with Orbit.open(ws) as orbit:
        states = orbit.task_states(spec.name)
    return {(normalize_logical_date(cron, d), t) for (d, t), s in states.items() if s == "succeeded"}


# --------------------------------------------------------------------------------------------- locks
class PartitionLock:
    """flocks on `.agent/run/locks/<pipeline>/<partition>/<stage>.lock`, all or nothing. The holder
    writes who it is into each file, so a refused runner can name it."""

    def __init__(self, ws, pipeline: str, partition: str, stages: list[str], run_id: str):
        self.ws = ws
        self.dir = ws.run_dir / "locks" / _safe(pipeline) / _safe(partition)
        self.names = sorted(stages)
        self.pipeline, self.partition, self.run_id = pipeline, partition, run_id
        self._fds: list[int] = []

    def acquire(self) -> "PartitionLock":
        import fcntl

        from agentops import safefs

        me = json.dumps({"pid": os.getpid(), "host": os.uname().nodename, "run_id": self.run_id,
                         "agent": os.environ.get("AGENTOPS_AGENT") or None,
                         "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}).encode()
        record = me.ljust(HOLDER_BYTES)[:max(HOLDER_BYTES, len(me))]  # written over the last holder's
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            with safefs.opendir(self.ws, self.dir, create=True) as d:  # checked once, then openat
                for name in self.names:
                    fd = os.open(f"{_safe(name)}.lock", flags, 0o644, dir_fd=d)
                    st = os.fstat(fd)
                    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:  # never write through a hard link
                        os.close(fd)
                        raise ConflictError(f"{self.dir / (_safe(name) + '.lock')} is not a plain lock file "
                                            "(a hard link or not a regular file)", hint="remove it")
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        holder = _read_holder(fd)
                        os.close(fd)
                        raise ConflictError(
                            f"pipeline {self.pipeline} partition {self.partition} stage {name} is being run by "
                            f"{_describe(holder)}", hint="wait for it to finish, or stop that runner") from None
                    self._fds.append(fd)
                    os.pwrite(fd, record, 0)
        except BaseException:
            self.release()
            raise
        return self

    def release(self) -> None:
        import fcntl

        for fd in self._fds:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        self._fds = []

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _read_holder(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except ValueError:
        return {}


def _describe(holder: dict) -> str:
    if not holder:
        return "another runner (it is starting)"
    who = f"pid {holder.get('pid')} on {holder.get('host')}"
    if holder.get("agent"):
        who = f"agent {holder['agent']} ({who})"
    return f"{who}, run {holder.get('run_id')}, since {holder.get('since')}"


def _safe(name: str) -> str:
    """A file name for a pipeline, partition or stage name (they are already restricted; ':' too)."""
    return "".join(c if c.isalnum() or c in "._-=" else f"%{ord(c):02x}" for c in name).lstrip(".") or "_"


# --------------------------------------------------------------------------------------------- Orbit
class Recorder:
    """Writes the run's events through the Orbit API (one connection, one writer at a time)."""

    def __init__(self, ws, spec, run_type: str):
        from agentops.orbit import Orbit

        from agentops.pipelines.lineage_live import Emitter

        self.emitter = Emitter.from_settings(ws)  # before Orbit: a missing API key is an error up front
        self.orbit = Orbit.open(ws)
        self.ws, self.spec, self.run_type = ws, spec, run_type
        self.lock = threading.Lock()
        self.warnings: list[str] = []
        self.measured: dict[str, list] = {}  # dataset -> columns a stage of this run wrote (OpenLineage)

    def close(self) -> None:
        try:
            self.orbit.send_alerts()  # the run's failures, failed checks and anomalies, mailed once
        finally:
            self.orbit.close()

    def log(self, event: dict) -> None:
        """One event, as an instance of its registered model (agentops' own code writes it)."""
        from agentops.orbit.registry import MODELS

        event.setdefault("agent", "agentops")
        model = MODELS[event["kind"]].model_validate(event)
        with self.lock:
            self.orbit.log(model, send_alerts=False)  # alert mail goes out once, when the run ends

    def log_many(self, events: list[dict]) -> None:
        """Several events in one transaction (a task's job figures and its success)."""
        from agentops.orbit.registry import MODELS

        models = [MODELS[e["kind"]].model_validate({"agent": "agentops", **e}) for e in events]
        with self.lock:
            report = self.orbit.log_many(models, send_alerts=False)
        if report.rejected:
            raise ValidationError(f"Orbit refused a runner event: {report.rejected[0][1]}")

    def current(self, run_id: str, task: str | None) -> dict | None:
        with self.lock:
            return self.orbit.run(self.spec.name, run_id, task)

    def state(self, run_id: str, task: str | None, partition: str, state: str, attempt: int,
              error: str | None = None, schemas: dict | None = None, with_events: list[dict] = ()) -> None:
        """Log a state change (after `with_events`, in the same transaction), then send it to
        OpenLineage when configured."""
        from agentops.orbit.queries import format_ts

        ev = {"kind": "run", "pipeline": self.spec.name, "run_id": run_id, "task": task, "state": state,
              "run_type": self.run_type, "logical_date": partition, "attempt": attempt,
              "owner": self.spec.owner, "error": error[-LOG_TAIL:] if error else None, "ts": format_ts(None)}
        ev["id"] = f"runner:{self.spec.name}:{run_id}:{task or ''}:{attempt}:{state}"
        if with_events:
            self.log_many([*with_events, dict(ev)])
        else:
            self.log(dict(ev))
        if self.emitter is not None:
            self._lineage(ev, partition, schemas or {}, next((e for e in with_events if e["kind"] == "job"), None))

    def _lineage(self, ev: dict, partition: str, schemas: dict, job: dict | None = None) -> None:
        """OpenLineage: the event with the stage's datasets, each with its schema when known (outputs:
        measured; inputs: `lineage_live.known_schema`) and the job's figures."""
        from agentops.pipelines.lineage_live import dataset, known_schema

        stage = self.spec.stage(ev["task"]) if ev.get("task") else None
        with self.lock:
            self.measured.update({n: c for n, c in schemas.items() if c})
            known = {n: known_schema(self.orbit, self.spec, n, self.measured) for n in (stage.inputs if stage else [])}
        inputs = [dataset(self.ws, self.spec, n, partition, known[n]) for n in (stage.inputs if stage else [])]
        outputs = [dataset(self.ws, self.spec, n, partition, schemas.get(n)) for n in (stage.outputs if stage else [])]
        emitter = self.emitter
        problem = emitter.emit(ev, inputs, outputs, spec=self.spec, job=job) if emitter is not None else None
        if problem:
            with self.lock:  # one warning, then nothing more is sent in this run (no retry storm)
                self.emitter = None
                self.warnings.append(f"{problem}; no more events sent in this run")

    def next_attempt(self, run_id: str, task: str | None) -> int:
        """The attempt a new start of this task (or run) is: the current one when it is only
        queued, else the one after it."""
        cur = self.current(run_id, task)
        if cur is None:
            return 1
        return (cur.get("attempt") or 1) + (0 if cur.get("state") == "queued" else 1)


# --------------------------------------------------------------------------------------------- execution
@dataclass
class TaskResult:
    partition: str
    task: str
    state: str  # succeeded | failed | upstream_failed | manual | skipped | canceled
    attempts: int = 0
    duration_s: float = 0.0
    rows_in: int | None = None
    rows_out: int | None = None
    bytes: int | None = None
    error: str | None = None
    owner: str | None = None

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class RunResult:
    plan: RunPlan
    tasks: list[TaskResult] = field(default_factory=list)
    runs: dict[str, str] = field(default_factory=dict)  # partition -> pipeline run state
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)  # e.g. an OpenLineage transport that failed

    @property
    def ok(self) -> bool:
        return all(t.state in ("succeeded", "skipped") for t in self.tasks)

    @property
    def manual(self) -> list[TaskResult]:
        return [t for t in self.tasks if t.state == "manual"]

    def as_dict(self) -> dict:
        return {"pipeline": self.plan.spec.name, "ok": self.ok, "seconds": round(self.seconds, 3),
                "runs": [{"partition": p.partition, "run_id": p.run_id, "state": self.runs.get(p.partition)}
                         for p in self.plan.partitions],
                "tasks": [t.as_dict() for t in self.tasks], "warnings": self.warnings}


class StageFailed(AgentOpsError):
    """A stage attempt failed (the command exited non-zero, timed out, or its SQL failed)."""

    def __init__(self, message: str, *, retry: bool = True):
        super().__init__(message)
        self.retry = retry


Event = Callable[[dict], None]


def execute(ws, plan: RunPlan, *, on_event: Event | None = None, sleep=time.sleep) -> RunResult:
    """Run the plan. Raises ConflictError (before anything runs) when another runner holds one of
    its partitions. `on_event` gets progress dicts (`{"event": "start"|"end"|..., ...}`)."""
    from concurrent.futures import ThreadPoolExecutor

    started = time.perf_counter()
    result = RunResult(plan)
    emit = on_event or (lambda e: None)
    from agentops.pipelines import duckdb_session
    from agentops.pipelines.outputs import clean_staging

    clean_staging(ws)
    recorder = Recorder(ws, plan.spec, plan.run_type)
    slots = threading.BoundedSemaphore(plan.max_parallel)
    ctx = _Context(ws, plan, recorder, slots, emit, sleep)
    try:
        todo = [p for p in plan.partitions if p.tasks]
        for p in plan.partitions:
            if not p.tasks:
                result.tasks.extend(TaskResult(p.partition, t, "skipped", error=why) for t, why in p.skipped.items())
                result.runs[p.partition] = "succeeded"
        locks = []
        try:
            for p in todo:  # all or nothing, before anything runs
                locks.append(PartitionLock(ws, plan.spec.name, p.partition, p.tasks, p.run_id).acquire())
            # the DuckDB files the stages attach stay attached from stage to stage until the run ends
            # (then checkpointed and released, before the partitions' locks)
            with duckdb_session.hold():
                if len(todo) <= 1:
                    for p in todo:
                        _run_partition(ctx, p, result)
                else:
                    with ThreadPoolExecutor(max_workers=min(plan.max_parallel, len(todo)),
                                            thread_name_prefix="agentops-partition") as pool:
                        for f in [pool.submit(_run_partition, ctx, p, result) for p in todo]:
                            f.result()
        finally:
            for lock in locks:
                lock.release()
    finally:
        recorder.close()
    result.warnings = sorted(set(recorder.warnings))
    result.seconds = time.perf_counter() - started
    return result


@dataclass
class _Context:
    ws: Any
    plan: RunPlan
    recorder: Recorder
    slots: threading.BoundedSemaphore
    emit: Event
    sleep: Callable[[float], None]
    lock: threading.Lock = field(default_factory=threading.Lock)
    checked: set = field(default_factory=set)  # (partition, dataset) whose checks passed in this run
    specs: list | None = None                  # every spec, read once per run (the checks' catalog)


def _run_partition(ctx: _Context, pp: PartitionPlan, result: RunResult) -> None:
    from concurrent.futures import ThreadPoolExecutor

    spec, rec = ctx.plan.spec, ctx.recorder
    run_id, partition = pp.run_id, pp.partition
    cur = rec.current(run_id, None)
    if cur is None or cur["state"] != "running":
        rec.state(run_id, None, partition, "running", rec.next_attempt(run_id, None) if cur else 1)
    ctx.emit({"event": "partition", "partition": partition, "run_id": run_id, "tasks": len(pp.tasks)})
    todo = set(pp.tasks)
    outcome: dict[str, TaskResult] = {}
    for t, why in pp.skipped.items():
        outcome[t] = TaskResult(partition, t, "skipped", error=why)
    from agentops.pipelines.graph import stage_graph

    g = stage_graph(spec)
    stop_manual = False
    for level in ctx.plan.levels:
        ready, blocked = [], []
        for name in level:
            if name not in todo:
                continue
            bad = [u for u in g.predecessors(name)
                   if u in outcome and outcome[u].state in ("failed", "upstream_failed", "manual")]
            if bad:
                blocked.append((name, bad))
            else:
                ready.append(name)
        for name, bad in blocked:
            why = outcome[bad[0]]
            if why.state == "manual":
                outcome[name] = TaskResult(partition, name, "manual_wait", error=f"waits for manual stage {bad[0]}")
                continue
            outcome[name] = TaskResult(partition, name, "upstream_failed", error=f"upstream task {bad[0]} failed")
            cur = rec.current(run_id, name)
            if cur is None or cur["state"] in ("queued", "up_for_retry"):
                rec.state(run_id, name, partition, "upstream_failed", (cur or {}).get("attempt") or 1,
                          error=f"upstream task {bad[0]} failed")
            ctx.emit({"event": "end", "partition": partition, "task": name, "state": "upstream_failed"})
        manual = [n for n in ready if spec.stage(n).action == "manual"]
        for name in manual:
            owner = spec.stage(name).owner or spec.owner
            outcome[name] = TaskResult(partition, name, "manual", owner=owner,
                                       error=f"manual stage: {owner} does it, then logs it succeeded")
            ctx.emit({"event": "manual", "partition": partition, "task": name, "owner": owner})
            stop_manual = True
        runnable = [n for n in ready if n not in manual]
        if len(runnable) == 1:
            outcome[runnable[0]] = _run_task(ctx, pp, runnable[0])
        elif runnable:
            with ThreadPoolExecutor(max_workers=min(len(runnable), ctx.plan.max_parallel),
                                    thread_name_prefix="agentops-stage") as pool:
                for name, res in zip(runnable, pool.map(lambda n: _run_task(ctx, pp, n), runnable)):
                    outcome[name] = res
    tasks = [outcome[n] for n in [*pp.skipped, *pp.tasks] if n in outcome]
    with ctx.lock:
        result.tasks.extend(t for t in tasks if t.state != "manual_wait")
    # the pipeline run: failed when a task failed; succeeded when every stage of the spec succeeded
    # in this partition; else it stays running (a manual stage, or a run of some stages only)
    failed = [t for t in tasks if t.state in ("failed", "upstream_failed")]
    if failed:
        first = next(t for t in failed if t.state == "failed") if any(t.state == "failed" for t in failed) else failed[0]
        rec.state(run_id, None, partition, "failed", _attempt(rec, run_id),
                  error=f"task {first.task} {first.state}: {first.error or ''}".strip())
        state = "failed"
    elif {s.name for s in spec.stages} <= _succeeded_now(ctx, partition):
        _advance_watermarks(ctx, pp)
        rec.state(run_id, None, partition, "succeeded", _attempt(rec, run_id))
        state = "succeeded"
    else:
        state = "waiting" if stop_manual else "running"
    with ctx.lock:
        result.runs[partition] = state
    ctx.emit({"event": "partition_end", "partition": partition, "run_id": run_id, "state": state})


def _advance_watermarks(ctx: _Context, pp: PartitionPlan) -> None:
    """The run succeeded: each watermark/delta source's mark moves to max(column) of what it holds
    now (never back). Recorded in Orbit per pipeline and source (`watermark` events)."""
    spec = ctx.plan.spec
    sources = [s for s in spec.sources if s.incremental.strategy in ("watermark", "delta")]
    if not sources:
        return
    from agentops.pipelines.sqlstage import current_watermark, measure_watermark

    for src in sources:
        value = measure_watermark(ctx.ws, spec, src.name, pp.partition)
        old = current_watermark(ctx.ws, spec.name, src.name)
        if value is None or (old is not None and not _later(value, old)):
            continue
        ctx.recorder.log({"kind": "watermark", "pipeline": spec.name, "source": src.name, "value": str(value),
                          "run_id": pp.run_id, "id": f"runner:{spec.name}:{pp.run_id}:watermark:{src.name}:{value}"})


def _later(new, old) -> bool:
    try:
        return float(new) > float(old)
    except (TypeError, ValueError):
        return str(new) > str(old)


def _attempt(rec: Recorder, run_id: str) -> int:
    cur = rec.current(run_id, None)
    return (cur or {}).get("attempt") or 1


def _succeeded_now(ctx: _Context, partition: str) -> set[str]:
    from agentops.pipelines.schedule import normalize_logical_date

    cron = ctx.plan.spec.cron
    with ctx.recorder.lock:
        states = ctx.recorder.orbit.task_states(ctx.plan.spec.name)
    return {t for (d, t), s in states.items() if s == "succeeded" and normalize_logical_date(cron, d) == partition}


def _run_task(ctx: _Context, pp: PartitionPlan, name: str) -> TaskResult:
    """One task with its retries: Orbit states, the job event, the checks."""
    spec, rec = ctx.plan.spec, ctx.recorder
    stage = spec.stage(name)
    run_id, partition = pp.run_id, pp.partition
    res = TaskResult(partition, name, "failed")
    attempt = rec.next_attempt(run_id, name)
    tries = stage.retries + 1
    delay = stage.backoff.initial
    for n in range(tries):
        with ctx.slots:
            rec.state(run_id, name, partition, "running", attempt)
            ctx.emit({"event": "start", "partition": partition, "task": name, "attempt": attempt})
            t0 = time.perf_counter()
            try:
                figures = _attempt_stage(ctx, pp, stage, attempt)
                error, retry = None, True
            except StageFailed as exc:
                figures, error, retry = None, exc.message, exc.retry
            except AgentOpsError as exc:
                figures, error, retry = None, str(exc), False
            duration = time.perf_counter() - t0
        res.attempts = n + 1
        res.duration_s = duration
        if error is None:
            res.state = "succeeded"
            res.rows_in, res.rows_out, res.bytes = figures.get("rows_in"), figures.get("rows_out"), figures.get("bytes")
            job = {"kind": "job", "pipeline": spec.name, "run_id": run_id, "task": name,
                   "rows_in": res.rows_in, "rows_out": res.rows_out, "bytes": res.bytes,
                   "duration_s": round(duration, 6), "owner": spec.owner,
                   "id": f"runner:{spec.name}:{run_id}:{name}:{attempt}:job"}
            failed_checks = _checks(ctx, pp, stage)
            if failed_checks:
                rec.log(job)
                error, retry = "error-severity check failed: " + ", ".join(failed_checks), False
            else:
                rec.state(run_id, name, partition, "succeeded", attempt, schemas=figures.get("schemas"),
                          with_events=[job])
                ctx.emit({"event": "end", "partition": partition, "task": name, "state": "succeeded",
                          "attempt": attempt, "duration_s": duration, "rows_out": res.rows_out})
                return res
        res.error = error
        if retry and n + 1 < tries:
            rec.state(run_id, name, partition, "up_for_retry", attempt, error=error)
            ctx.emit({"event": "retry", "partition": partition, "task": name, "attempt": attempt,
                      "error": error, "delay_s": delay})
            ctx.sleep(delay)
            delay = min(delay * 2, stage.backoff.max) if stage.backoff.exponential else delay
            attempt += 1
            continue
        break
    res.state = "failed"
    rec.state(run_id, name, partition, "failed", attempt, error=res.error)
    ctx.emit({"event": "end", "partition": partition, "task": name, "state": "failed", "attempt": attempt,
              "error": res.error})
    return res


def _attempt_stage(ctx: _Context, pp: PartitionPlan, stage, attempt: int) -> dict:
    """Run one attempt of a stage; return its figures (rows_in, rows_out, bytes). Raise StageFailed."""
    if stage.action == "sql":
        from agentops.pipelines.sqlstage import run_sql_stage

        return run_sql_stage(ctx.ws, ctx.plan, pp, stage, schemas=ctx.recorder.emitter is not None)
    if stage.action == "quality":
        return {}
    return run_command(ctx.ws, ctx.plan, pp, stage, attempt, schemas=ctx.recorder.emitter is not None)


def _checks(ctx: _Context, pp: PartitionPlan, stage) -> list[str]:
    """Run the quality checks on the stage's outputs (and, for a quality stage, its inputs, unless
    their checks already passed in this run for the partition, right after the stage that wrote
    them: the data is the same, and measuring it again would record its metrics twice); the labels
    of the error-severity checks that failed."""
    spec = ctx.plan.spec
    inputs = [d for d in stage.inputs if (pp.partition, d) not in ctx.checked] if stage.kind == "quality" else []
    datasets = list(stage.outputs) + inputs
    checks = [q for d in datasets for q in spec.checks_for(d)]
    if not checks:
        return []
    from agentops.data import quality
    from agentops.pipelines import duckdb_session
    from agentops.pipelines.spec import load_specs
    from agentops.pipelines.sqlstage import warehouse_attachment

    with ctx.lock:
        if ctx.specs is None:
            ctx.specs, _ = load_specs(ctx.ws, check=False)
        specs = ctx.specs
    failed = []
    for d in dict.fromkeys(q.dataset for q in checks):
        # the checks may read the warehouse: through the session, which may hold it already
        with duckdb_session.use(warehouse_attachment(ctx.ws, spec, [d]), timeout=stage.timeout) as con, \
                duckdb_session.scratch(con) as cur:
            report = quality.run(ctx.ws, spec.name, dataset=d, partition=pp.partition, run_id=pp.run_id,
                                 duck=cur, spec=spec, specs=specs)
        bad = [f"{r.dataset} {r.check} ({r.status})" for r in report.results
               if r.severity == "error" and r.status in ("failed", "error")]
        if not bad:
            with ctx.lock:
                ctx.checked.add((pp.partition, d))
        failed += bad
    return failed


# --------------------------------------------------------------------------------------------- commands
def stage_env(ws, plan: RunPlan, pp: PartitionPlan, stage, datasets: dict | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CTX_")}
    env.update({"AGENTOPS_PIPELINE": plan.spec.name, "AGENTOPS_STAGE": stage.name, "AGENTOPS_RUN_ID": pp.run_id,
                "AGENTOPS_PARTITION": pp.partition, "AGENTOPS_WORKSPACE": str(ws.root),
                "AGENTOPS_DATASETS": json.dumps(datasets or {}, sort_keys=True)})
    return env


def run_command(ws, plan: RunPlan, pp: PartitionPlan, stage, attempt: int, schemas: bool = True) -> dict:
    """Run a command stage: its argv (no shell) in the workspace, in a process group of its own,
    killed whole at the timeout. Outputs are staged and published whole (`outputs.Staged`); their
    columns are read only with `schemas` (for OpenLineage)."""
    from agentops.pipelines import duckdb_session, outputs

    log_path = _log_path(ws, plan.spec.name, pp.run_id, stage.name, attempt)
    with outputs.staged(ws, plan.spec, stage, pp.partition) as staged:
        env = stage_env(ws, plan, pp, stage, staged.datasets())
        t0 = time.monotonic()
        from agentops import safefs

        with os.fdopen(safefs.open_file(ws, log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644,
                                        create_parents=True), "wb") as log:
            with duckdb_session.lend():  # the command may open the warehouse: nothing held while it runs
                try:
                    proc = subprocess.Popen(stage.command, cwd=ws.root, env=env, stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
                except OSError as exc:
                    raise StageFailed(f"cannot start {stage.command[0]!r}: {exc.strerror}", retry=False) from None
                try:
                    code = proc.wait(timeout=stage.timeout)
                except subprocess.TimeoutExpired:
                    _kill_group(proc)
                    raise StageFailed(f"timed out after {stage.timeout:g}s; its process group was killed "
                                      f"(log {_rel(ws, log_path)})") from None
                except BaseException:
                    _kill_group(proc)
                    raise
        if code != 0:
            tail = _tail(ws, log_path)
            raise StageFailed(f"exit {code}" + (f": {tail}" if tail else "") + f" (log {_rel(ws, log_path)})")
        staged.publish(schemas=schemas)
        figures = staged.figures()
    figures.setdefault("seconds", time.monotonic() - t0)
    return figures


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM the process group, then SIGKILL it after a grace period (children too)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of the group, even when the leader exited
    except ProcessLookupError:
        pass
    proc.wait()


def _log_path(ws, pipeline: str, run_id: str, task: str, attempt: int) -> Path:
    return ws.logs_dir / "runs" / _safe(pipeline) / _safe(run_id) / f"{_safe(task)}.{attempt}.log"


def _tail(ws, path: Path) -> str:
    """The end of a stage's log (read through safefs, like every file under `.agent/`)."""
    from agentops import safefs

    try:
        with os.fdopen(safefs.open_file(ws, path), "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 400))
            text = f.read().decode("utf-8", "replace")
    except (OSError, AgentOpsError):
        return ""
    return " ".join(text.split())[-300:]


def _rel(ws, path: Path) -> str:
    try:
        return str(path.relative_to(ws.root))
    except ValueError:
        return str(path)
