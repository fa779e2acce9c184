"""Backfill plans (SPEC §6): the schedule's partitions over a date range × the stages in dependency
order, minus what Orbit says needs no re-run; and queuing the plan as `backfill` runs in Orbit.

`--reprocess` follows Airflow's reprocess behaviour, per partition and task:
  none       run only what never ran
  failed     also re-run what failed (failed, upstream_failed, canceled)
  completed  also re-run what succeeded or was skipped
What is queued, running or up for retry is in flight and never queued again. A task that re-runs
takes every task downstream of it in the same partition along (their inputs change).

Task states come from `Orbit.task_states(pipeline)` (the runs table, derived from the log): the
latest state per (partition, task); a pipeline-level run (no task) stands for every task it has no
task run for.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime, time
from typing import Any

from agentops.errors import UsageError, ValidationError

REPROCESS = ("none", "failed", "completed")
FAILED = frozenset({"failed", "upstream_failed", "canceled"})
DONE = frozenset({"succeeded", "skipped"})
IN_FLIGHT = frozenset({"queued", "running", "up_for_retry"})
MAX_PARTITIONS = 100_000
MAX_TASKS = 2_000_000


def parse_day(value: str | date, what: str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip()[:10])
    except ValueError:
        raise UsageError(what, f"'{value}' is not a date", hint="use YYYY-MM-DD") from None


def task_states(ws, spec) -> dict[tuple[str, str], dict[str, Any]]:
    """{(partition, task): {"state", "backfill": {"state", "attempt"}}} from Orbit's runs. A
    pipeline-level run stands for each task it has no task run for."""
    from agentops.orbit import Orbit
    from agentops.pipelines.schedule import normalize_logical_date

    cron = spec.cron
    out: dict[tuple[str, Any], dict[str, Any]] = {}
    with Orbit.open(ws) as orbit:
        for (logical, task), state in orbit.task_states(spec.name).items():
            out[(normalize_logical_date(cron, logical), task)] = {"state": state}
        # attempts and run ids of earlier backfill runs (a re-queue is their next attempt)
        for row in orbit.runs(pipeline=spec.name, run_type="backfill", limit=None):
            if not row.get("logical_date"):
                continue
            key = (normalize_logical_date(cron, row["logical_date"]), row.get("task") or None)
            if row.get("run_id") != run_id_for(key[0]):
                continue
            entry = out.setdefault(key, {"state": row["state"]})
            entry["backfill"] = {"state": row["state"], "attempt": row.get("attempt") or 1}
        for row in orbit.runs(pipeline=spec.name, tasks=False, limit=None):
            if not row.get("logical_date"):
                continue
            key = normalize_logical_date(cron, row["logical_date"])
            for stage in spec.stages:
                out.setdefault((key, stage.name), {"state": row["state"], "inherited": True})
    return out


def plan_backfill(ws, spec, start, end, reprocess: str = "none",
                  states: dict | None = None) -> dict[str, Any]:
    """The backfill as data: partitions, the (partition, task) pairs to run in order, and why."""
    from agentops.pipelines.graph import plan as stage_plan
    from agentops.pipelines.schedule import partition_key

    if reprocess not in REPROCESS:
        raise UsageError("reprocess", f"'{reprocess}' is not one of {', '.join(REPROCESS)}")
    start_d, end_d = parse_day(start, "start"), parse_day(end, "end")
    if end_d < start_d:
        raise UsageError("end", f"{end_d} is before --start {start_d}", hint="swap them")
    cron = spec.cron
    if cron is None:
        raise ValidationError(f"pipeline '{spec.name}' has no schedule ({spec.processing}); a backfill "
                              "replays scheduled partitions", hint="replay a stream from its source offsets")
    order = stage_plan(spec)["order"]
    n = cron.count(start_d, end_d)  # counted before anything is listed: a huge range costs no memory
    if n > MAX_PARTITIONS:
        raise ValidationError(f"the backfill {start_d}..{end_d} would plan {n:,} partitions (schedule "
                              f"{spec.schedule}), over the limit of {MAX_PARTITIONS:,}",
                              hint="narrow the range with --start/--end and backfill it in parts")
    if n * len(order) > MAX_TASKS:
        raise ValidationError(f"the backfill would be {n * len(order):,} tasks (over {MAX_TASKS:,})",
                              hint="backfill a shorter range at a time")
    times = list(cron.times(datetime.combine(start_d, time.min), datetime.combine(end_d, time.max)))
    source = "given"
    if states is None:
        states, source = task_states(ws, spec), "orbit"
    from agentops.pipelines.graph import descendants, stage_graph

    g = stage_graph(spec)
    below = {n: descendants(g, n) for n in order}
    tasks: list[dict[str, Any]] = []
    skipped: dict[str, int] = {}
    partitions = []
    for t in times:
        key = partition_key(cron, t)
        partitions.append(key)
        chosen: dict[str, str] = {}
        prev: dict[str, str | None] = {}
        for name in order:
            st = states.get((key, name))
            state = st["state"] if st else None
            prev[name] = state
            if state is None:
                chosen[name] = "missing"
            elif state in IN_FLIGHT:
                continue
            elif state in FAILED and reprocess in ("failed", "completed"):
                chosen[name] = f"was {state}"
            elif state in DONE and reprocess == "completed":
                chosen[name] = f"was {state}"
        for name in list(chosen):
            for d in below[name]:
                if d not in chosen and prev[d] not in IN_FLIGHT:
                    chosen[d] = f"downstream of {name}"
        for name in order:
            if name in chosen:
                tasks.append({"partition": key, "logical_date": t.isoformat(), "task": name,
                              "reason": chosen[name], "previous_state": prev[name]})
            else:
                why = "in flight" if prev[name] in IN_FLIGHT else prev[name]
                skipped[why] = skipped.get(why, 0) + 1
    return {"pipeline": spec.name, "schedule": spec.schedule, "start": start_d.isoformat(),
            "end": end_d.isoformat(), "reprocess": reprocess, "states_from": source,
            "stages": order, "partitions": partitions, "tasks": tasks, "skipped": skipped,
            "_states": states}


def run_id_for(partition: str) -> str:
    return f"backfill__{partition}"


def queue_backfill(ws, spec, bplan: dict[str, Any], *, agent: str | None = None,
                   ignore_reservations: bool = False) -> dict[str, Any]:
    """Queue the plan in Orbit: per partition a pipeline run and its tasks, state `queued`, run type
    `backfill`. Ids are deterministic (pipeline, run, task, attempt), so a repeat queues nothing twice.

    First, reservations (agentops.reservations.check_pipeline): a dataset the planned stages write
    that another agent than `agent` holds exclusively stops it before anything is queued
    (ReservationConflict naming the holder) unless `ignore_reservations` (logged); reads of such
    datasets come back as `warnings`."""
    from agentops.reservations import check_pipeline

    stages = {t["task"] for t in bplan["tasks"]}
    warnings = check_pipeline(ws, spec, agent, stages=stages, ignore=ignore_reservations,
                              action=f"backfill {spec.name} {bplan.get('start')}..{bplan.get('end')}") if stages else []
    states = bplan.get("_states") or {}
    events: list[dict[str, Any]] = []
    by_partition: dict[str, list[dict[str, Any]]] = {}
    for t in bplan["tasks"]:
        by_partition.setdefault(t["partition"], []).append(t)
    for partition, items in by_partition.items():
        run_id = run_id_for(partition)
        logical = items[0]["logical_date"]
        for task in (None, *(t["task"] for t in items)):
            prior = (states.get((partition, task)) or {}).get("backfill")
            attempt = 1
            if prior:
                attempt = int(prior["attempt"]) + (0 if prior["state"] in IN_FLIGHT else 1)
            ev = {"kind": "run", "pipeline": spec.name, "run_id": run_id, "task": task, "state": "queued",
                  "run_type": "backfill", "logical_date": logical, "partition": partition, "attempt": attempt,
                  "owner": spec.owner}
            ev["id"] = "backfill-" + hashlib.sha256(
                f"{spec.name}\0{run_id}\0{task or ''}\0{attempt}".encode()).hexdigest()[:24]
            events.append(ev)
    written, rejected = _write_events(ws, events)
    return {"runs": len(by_partition), "tasks": len(bplan["tasks"]), "events": len(events),
            "written": written, "already_queued": len(events) - written - len(rejected), "rejected": rejected,
            "warnings": warnings}


def _write_events(ws, events: list[dict[str, Any]]) -> tuple[int, list[str]]:
    """Through the Orbit API (validated, derived state kept). Returns (events written, rejections)."""
    from agentops.orbit import Orbit

    with Orbit.open(ws) as orbit:
        report = orbit.log_many(events, source="backfill", send_alerts=False)
    return report.accepted, [f"event {n}: {reason}" for n, reason in report.rejected]
