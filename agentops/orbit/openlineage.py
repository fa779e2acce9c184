"""OpenLineage export and import (SPEC §5): Orbit runs and checks as OpenLineage RunEvents.

Export, one JSON RunEvent per line:
- each `run` event -> eventType by state (running START, succeeded/skipped COMPLETE, failed/upstream_failed
  FAIL, canceled ABORT, queued/up_for_retry OTHER); job `namespace` / `pipeline` (a task run is job
  `pipeline.task` with a `parent` facet naming the pipeline run); runId a UUID (the run_id itself when it
  is one, else uuid5 of pipeline/run_id[/task]); `inputs`/`outputs` from the pipeline spec (a task run:
  its stage's inputs and outputs; a pipeline run: what its stages read that none of them writes, and
  everything they write); a `nominalTime` facet from the logical date (its end: the schedule's next
  partition); job facets from the spec (`jobType`: a pipeline is a DAG, a stage a TASK; `ownership`;
  `sql` for a `sql:` stage; `documentation`); the parent facet's `root` (the pipeline run); an
  `errorMessage` facet for the error; an `agentops` run facet with the exact Orbit fields, so a round trip is lossless. Its
  `_schemaURL` is the JSON schema shipped in this repository (`agentops/schemas/AgentopsRunFacet.json`).
- each `check` event -> an OTHER RunEvent of its run whose input dataset carries a
  `dataQualityAssertions` facet (assertion, success, severity, expected = threshold, actual = observed).

Import reads those back, and RunEvents from other producers (Airflow, dbt, Spark integrations):
pipeline = the parent job's name when there is a parent facet (the task is the job name without the
`pipeline.` prefix), else the job name; state from eventType (START/RUNNING running, COMPLETE succeeded,
FAIL failed, ABORT canceled); logical date from `nominalTime`; checks from dataQualityAssertions
facets. Imported events get ids derived from runId, eventType and eventTime: importing twice is a no-op.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import IO, Any, Iterator

from agentops.errors import ValidationError

PRODUCER = "https://github.com/agentops/agentops"
RUN_EVENT_SCHEMA = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
ERROR_SCHEMA = "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet"
PARENT_SCHEMA = "https://openlineage.io/spec/facets/1-2-0/ParentRunFacet.json#/$defs/ParentRunFacet"
DQ_SCHEMA = ("https://openlineage.io/spec/facets/1-1-0/DataQualityAssertionsDatasetFacet.json"
             "#/$defs/DataQualityAssertionsDatasetFacet")
NOMINAL_SCHEMA = "https://openlineage.io/spec/facets/1-0-1/NominalTimeRunFacet.json#/$defs/NominalTimeRunFacet"
JOB_TYPE_SCHEMA = "https://openlineage.io/spec/facets/2-0-4/JobTypeJobFacet.json#/$defs/JobTypeJobFacet"
OWNERSHIP_SCHEMA = "https://openlineage.io/spec/facets/1-0-1/OwnershipJobFacet.json#/$defs/OwnershipJobFacet"
SQL_SCHEMA = "https://openlineage.io/spec/facets/1-1-0/SQLJobFacet.json#/$defs/SQLJobFacet"
DOCUMENTATION_SCHEMA = ("https://openlineage.io/spec/facets/1-0-1/DocumentationJobFacet.json"
                        "#/$defs/DocumentationJobFacet")
SCHEMA_FILE = "agentops/schemas/AgentopsRunFacet.json"  # in this repository (and the installed package)
AGENTOPS_SCHEMA = f"https://raw.githubusercontent.com/agentops/agentops/main/{SCHEMA_FILE}#/$defs/AgentopsRunFacet"

EVENT_TYPE = {"queued": "OTHER", "running": "START", "succeeded": "COMPLETE", "failed": "FAIL",
              "up_for_retry": "OTHER", "upstream_failed": "FAIL", "skipped": "COMPLETE", "canceled": "ABORT"}
STATE_OF = {"START": "running", "RUNNING": "running", "COMPLETE": "succeeded", "FAIL": "failed", "ABORT": "canceled"}
RUN_FIELDS = ("pipeline", "run_id", "task", "state", "attempt", "run_type", "logical_date", "error")


def run_uuid(pipeline: str, run_id: str, task: str | None = None) -> str:
    if not task:
        try:
            return str(uuid.UUID(run_id))
        except ValueError:
            pass
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"agentops:{pipeline}/{run_id}" + (f"/{task}" if task else "")))


def _facet(schema: str, **fields) -> dict:
    return {"_producer": PRODUCER, "_schemaURL": schema, **{k: v for k, v in fields.items() if v is not None}}


def _run_part(ev: dict, namespace: str) -> tuple[dict, dict]:
    pipeline, run_id, task = ev["pipeline"], ev["run_id"], ev.get("task")
    facets: dict[str, Any] = {}
    if task:  # the pipeline run is the task run's parent and its root
        parent = {"run": {"runId": run_uuid(pipeline, run_id)}, "job": {"namespace": namespace, "name": pipeline}}
        facets["parent"] = _facet(PARENT_SCHEMA, **parent, root=parent)
    run = {"runId": run_uuid(pipeline, run_id, task), "facets": facets}
    job = {"namespace": namespace, "name": f"{pipeline}.{task}" if task else pipeline, "facets": {}}
    return run, job


def _job_facets(ev: dict, spec) -> dict:
    """What the spec says of the job: its type (a pipeline is a DAG, a stage a TASK), its owner, its
    SQL (a `sql:` stage) and its description. Nothing without the spec (an event of another tool)."""
    if spec is None:
        return {}
    task = ev.get("task")
    stage = next((s for s in spec.stages if s.name == task), None) if task else None
    if task and stage is None:
        return {}
    facets: dict[str, Any] = {"jobType": _facet(
        JOB_TYPE_SCHEMA, processingType="STREAMING" if spec.processing == "streaming" else "BATCH",
        integration="AGENTOPS", jobType="TASK" if task else "DAG")}
    owner = (stage.owner if stage is not None else None) or spec.owner
    if owner:
        facets["ownership"] = _facet(OWNERSHIP_SCHEMA, owners=[{"name": owner, "type": "MAINTAINER"}])
    if stage is not None and stage.sql is not None:
        out = spec.location(stage.outputs[0]) if stage.outputs else None
        duck = out is None or out.kind == "file" or out.connection == "warehouse"
        facets["sql"] = _facet(SQL_SCHEMA, query=stage.sql.strip(), dialect="duckdb" if duck else None)
    text = (stage.description if stage is not None else spec.description) or ""
    if text.strip():
        facets["documentation"] = _facet(DOCUMENTATION_SCHEMA, description=text.strip())
    return facets


def _nominal_end(spec, logical_date: str | None) -> str | None:
    """The end of the partition's interval (the schedule's next partition), as nominalEndTime."""
    if spec is None or not logical_date or spec.cron is None:
        return None
    try:
        from agentops.pipelines.schedule import normalize_logical_date
        from agentops.pipelines.sqlstage import bounds

        return _nominal(bounds(spec, normalize_logical_date(spec.cron, logical_date))[1])
    except (ValueError, TypeError, OverflowError):
        return None


def _nominal(logical_date: str | None) -> str | None:
    """A logical date (a date or a date-time) as the ISO 8601 date-time nominalStartTime needs."""
    if not logical_date:
        return None
    from datetime import datetime, timezone

    try:
        dt = datetime.fromisoformat(logical_date)
    except ValueError:
        return None
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).isoformat().replace("+00:00", "Z")


def stage_datasets(spec, task: str | None) -> tuple[list[str], list[str]]:
    """(inputs, outputs) of a task run (its stage's) or of a pipeline run (what the stages read that
    none of them writes; everything they write), from the pipeline spec."""
    if spec is None:
        return [], []
    if task:
        stage = next((s for s in spec.stages if s.name == task), None)
        return (list(stage.inputs), list(stage.outputs)) if stage is not None else ([], [])
    written = list(dict.fromkeys(d for s in spec.stages for d in s.outputs))
    read = [d for d in dict.fromkeys(d for s in spec.stages for d in s.inputs) if d not in written]
    return read, written


def to_openlineage(ev: dict, namespace: str = "agentops", spec=None, logical_date: str | None = None
                   ) -> dict | None:
    """One Orbit event (as stored) -> an OpenLineage RunEvent dict, or None for other kinds. `spec`
    (the pipeline's, when known) gives a run's input and output datasets; `logical_date` is the run's
    when the event itself does not repeat it (the nominalTime facet). Used by the export and
    reusable by anything that sends RunEvents live."""
    kind = ev.get("kind")
    if kind == "run":
        run, job = _run_part(ev, namespace)
        logical = ev.get("logical_date") or ev.get("partition") or logical_date
        nominal = _nominal(logical)
        if nominal:
            run["facets"]["nominalTime"] = _facet(NOMINAL_SCHEMA, nominalStartTime=nominal,
                                                  nominalEndTime=_nominal_end(spec, logical))
        job["facets"].update(_job_facets(ev, spec))
        run["facets"]["agentops"] = _facet(AGENTOPS_SCHEMA, kind="run",
                                           **{k: ev.get(k) for k in RUN_FIELDS})
        if ev.get("error"):
            run["facets"]["errorMessage"] = _facet(ERROR_SCHEMA, message=ev["error"], programmingLanguage="unknown")
        inputs, outputs = stage_datasets(spec, ev.get("task"))
        return {"eventTime": ev["ts"], "producer": PRODUCER, "schemaURL": RUN_EVENT_SCHEMA,
                "eventType": EVENT_TYPE[ev["state"]], "run": run, "job": job,
                "inputs": [{"namespace": namespace, "name": d, "facets": {}, "inputFacets": {}} for d in inputs],
                "outputs": [{"namespace": namespace, "name": d, "facets": {}, "outputFacets": {}} for d in outputs]}
    if kind == "check" and ev.get("run_id"):
        run, job = _run_part({**ev, "task": None}, namespace)
        run["facets"]["agentops"] = _facet(AGENTOPS_SCHEMA, kind="check", pipeline=ev["pipeline"],
                                           run_id=ev["run_id"])
        name, _, column = ev["check"].partition(":")
        assertion = {"assertion": ev["check"], "success": bool(ev["passed"]), "column": column or None,
                     "severity": ev.get("severity", "error"),
                     "expected": json.dumps(ev["threshold"]) if ev.get("threshold") is not None else None,
                     "actual": json.dumps(ev["observed"]) if ev.get("observed") is not None else None}
        dq = _facet(DQ_SCHEMA, assertions=[{k: v for k, v in assertion.items() if v is not None}])
        return {"eventTime": ev["ts"], "producer": PRODUCER, "schemaURL": RUN_EVENT_SCHEMA, "eventType": "OTHER",
                "run": run, "job": job, "inputs": [{"namespace": namespace, "name": ev["dataset"], "facets": {},
                                                   "inputFacets": {"dataQualityAssertions": dq}}],
                "outputs": []}
    return None


def export(orbit, out: IO[str], *, namespace: str = "agentops", since: str | None = None) -> int:
    """Write every run and check event as an OpenLineage RunEvent, one JSON per line. Returns the count."""
    from agentops.orbit.queries import parse_since

    sql = "SELECT data FROM events WHERE kind IN ('run', 'check')"
    params: list = []
    if since:
        sql += " AND ts >= ?"
        params.append(parse_since(since))
    n = 0
    specs: dict[str, Any] = {}
    for (data,) in orbit.db.conn.execute(sql + " ORDER BY seq", params):
        ev = json.loads(data)
        if ev.get("pipeline") not in specs:
            specs[ev.get("pipeline")] = orbit.spec(ev["pipeline"]) if ev.get("pipeline") else None
        logical = None
        if ev.get("kind") == "run" and not ev.get("logical_date"):
            row = orbit.run(ev["pipeline"], ev["run_id"], ev.get("task")) or orbit.run(ev["pipeline"], ev["run_id"])
            logical = row["logical_date"] if row else None
        ol = to_openlineage(ev, namespace, specs[ev.get("pipeline")], logical)
        if ol is not None:
            out.write(json.dumps(ol, separators=(",", ":"), ensure_ascii=False) + "\n")
            n += 1
    return n


def _parse_figure(text):
    if text is None:
        return None
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


def from_openlineage(ol: dict) -> list[dict]:
    """One OpenLineage RunEvent dict -> Orbit event dicts (may be empty). Raises ValueError when it
    is not a RunEvent."""
    if not isinstance(ol, dict) or not isinstance(ol.get("run"), dict) or not isinstance(ol.get("job"), dict):
        raise ValueError("not an OpenLineage RunEvent (needs run and job)")
    run, job = ol["run"], ol["job"]
    run_facets = run.get("facets") or {}
    ts, run_uuid_, etype = ol.get("eventTime"), run.get("runId"), ol.get("eventType") or "OTHER"
    if not ts or not run_uuid_ or not job.get("name"):
        raise ValueError("eventTime, run.runId and job.name are required")
    base_id = f"ol:{run_uuid_}:{etype}:{ts}"
    mine = run_facets.get("agentops") or {}
    out: list[dict] = []
    if mine.get("kind") == "run":
        ev = {"kind": "run", "ts": ts, "id": base_id, **{k: mine[k] for k in RUN_FIELDS if mine.get(k) is not None}}
        out.append(ev)
        pipeline, run_id = ev["pipeline"], ev["run_id"]
    else:
        parent = run_facets.get("parent") or {}
        if mine.get("kind") == "check":
            pipeline, run_id, task = mine["pipeline"], mine["run_id"], None
        elif parent.get("job", {}).get("name"):
            pipeline = parent["job"]["name"]
            run_id = parent.get("run", {}).get("runId") or run_uuid_
            name = job["name"]
            task = name[len(pipeline) + 1:] if name.startswith(pipeline + ".") else name
        else:
            pipeline, run_id, task = job["name"], run_uuid_, None
        state = STATE_OF.get(etype)
        if state and mine.get("kind") != "check":
            ev = {"kind": "run", "ts": ts, "id": base_id, "pipeline": pipeline, "run_id": run_id, "state": state}
            if task:
                ev["task"] = task
            nominal = (run_facets.get("nominalTime") or {}).get("nominalStartTime")
            if nominal:
                ev["logical_date"] = nominal
            err = (run_facets.get("errorMessage") or {}).get("message")
            if err and state == "failed":
                ev["error"] = err
            out.append(ev)
    for ds in ol.get("inputs") or []:
        facets = {**(ds.get("facets") or {}), **(ds.get("inputFacets") or {})}
        dq = facets.get("dataQualityAssertions")
        if not dq:
            continue
        for a in dq.get("assertions") or []:
            check = a.get("assertion") or "assertion"
            if a.get("column") and ":" not in check:
                check = f"{check}:{a['column']}"
            ev = {"kind": "check", "ts": ts, "id": f"{base_id}:{ds.get('name')}:{check}", "pipeline": pipeline,
                  "run_id": run_id, "dataset": ds.get("name"), "check": check, "passed": bool(a.get("success")),
                  "severity": a.get("severity") if a.get("severity") in ("warn", "error") else "error"}
            for key, src in (("observed", "actual"), ("threshold", "expected")):
                if a.get(src) is not None:
                    ev[key] = _parse_figure(a[src])
            out.append(ev)
    return out


def _read(f) -> Iterator[tuple[int, Any]]:
    with f:
        for n, line in enumerate(f, 1):
            if line.strip():
                yield n, line


def import_file(orbit, path: Path):
    """Import an OpenLineage JSONL file. Returns an IngestReport whose rejected lines are the file's."""
    from agentops.orbit.ingest import open_jsonl
    from agentops.orbit.log import IngestReport

    path = Path(path)
    f, _ = open_jsonl(path)  # a directory or FIFO is "not a regular file", not "no such file"
    items: list[tuple[int, dict]] = []
    bad: list[tuple[int, str]] = []
    lines = 0
    for n, line in _read(f):
        lines += 1
        try:
            for ev in from_openlineage(json.loads(line)):
                items.append((n, ev))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            bad.append((n, f"openlineage: {exc}"))
    report = orbit.log_many([ev for _, ev in items], source=str(path))
    report.rejected = sorted(bad + [(items[i - 1][0], reason) for i, reason in report.rejected])
    report.lines = lines
    return report if isinstance(report, IngestReport) else report


def check_path(out: str | None) -> Path | None:
    if out is None:
        return None
    p = Path(out)
    if p.is_dir():
        raise ValidationError(f"--out {out}: is a folder", hint="give a file name")
    return p
