"""Rendering a pipeline to documents and an Airflow DAG: the context every pipeline template gets,
and where the files go (`.agent/data/<pipeline>/` unless an --out folder is given).

Templates (packaged in `templates/`, overridable by name in the workspace's `templates/`):
design.md.j2, etl_workflow.md.j2, runbook.md.j2, quality_report.md.j2, airflow_dag.py.j2.
"""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import date
from pathlib import Path
from typing import Any

from agentops.errors import ValidationError

DEFAULT_START = date(2026, 1, 1)  # an Airflow start_date when the spec has none (catchup is off)

TEMPLATES = {
    "design": "design.md.j2",
    "etl_workflow": "etl_workflow.md.j2",
    "runbook": "runbook.md.j2",
    "quality_report": "quality_report.md.j2",
    "airflow_dag": "airflow_dag.py.j2",
}


def output_name(spec, template: str) -> str:
    if template == "airflow_dag.py.j2":
        return f"{spec.name.replace('.', '_').replace('-', '_')}_dag.py"
    return template.removesuffix(".j2")


def quality_results(ws, pipeline: str, limit: int = 5000) -> dict[str, Any]:
    """Orbit's check and anomaly events for a pipeline: the latest result per (dataset, check), the
    pass/fail counts, and recent anomalies. Read-only from the `events` table."""
    out: dict[str, Any] = {"latest": [], "anomalies": [], "checks_seen": 0, "failed": 0}
    if not ws.db_path.exists():
        return out
    try:
        conn = sqlite3.connect(f"file:{ws.db_path}?mode=ro", uri=True, timeout=10)
        try:
            rows = conn.execute("SELECT kind, ts, data FROM events WHERE pipeline = ? AND kind IN ('check', 'anomaly')"
                                " ORDER BY seq DESC LIMIT ?", (pipeline, limit)).fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return out
    latest: dict[tuple, dict] = {}
    history: dict[tuple, list[bool]] = {}
    for kind, ts, data in rows:
        try:
            ev = json.loads(data)
        except ValueError:
            continue
        if kind == "anomaly":
            if len(out["anomalies"]) < 20:
                out["anomalies"].append({"ts": ts, "dataset": ev.get("dataset"), "metric": ev.get("metric") or ev.get("name"),
                                         "value": ev.get("value"), "expected": ev.get("expected"),
                                         "z": ev.get("z_score", ev.get("z")), "direction": ev.get("direction")})
            continue
        key = (ev.get("dataset"), ev.get("check"))
        history.setdefault(key, []).append(bool(ev.get("passed")))
        if key not in latest:
            latest[key] = {"ts": ts, "dataset": ev.get("dataset"), "check": ev.get("check"),
                           "passed": bool(ev.get("passed")), "severity": ev.get("severity") or "error",
                           "observed": ev.get("observed"), "threshold": ev.get("threshold"),
                           "run_id": ev.get("run_id"),
                           "status": ev.get("status") or ("passed" if ev.get("passed") else "failed"),
                           "reason": ev.get("reason"), "samples": ev.get("samples") or [],
                           "location": ev.get("location")}
    for key, item in latest.items():
        runs = history[key]
        item["runs"] = len(runs)
        item["failures"] = runs.count(False)
    out["latest"] = sorted(latest.values(), key=lambda r: (r["passed"], str(r["dataset"]), str(r["check"])))
    out["checks_seen"] = len(latest)
    out["failed"] = sum(1 for r in latest.values() if not r["passed"])
    return out


def context(ws, spec, specs=None) -> dict[str, Any]:
    """Everything a pipeline template may use."""
    from agentops.pipelines.graph import plan, recorded_durations, stage_graph
    from agentops.pipelines.lineage import lineage_graph

    durations = recorded_durations(ws, spec.name)
    p = plan(spec, durations)
    g = stage_graph(spec)
    by_name = {s.name: s for s in spec.stages}
    edges = [{"from": u, "to": v, "via": data.get("via")} for u, v, data in g.edges(data=True)]
    if specs is None:
        from agentops.pipelines.spec import load_specs

        specs, _ = load_specs(ws, check=False)
    others = [s for s in specs if s.name != spec.name] + [spec]
    lg = lineage_graph(others)
    upstream, downstream = [], []
    outputs = {d for s in spec.stages for d in s.outputs}
    for d in spec.external:
        for n in lg.predecessors(("d", d)) if ("d", d) in lg else ():
            if n[0] == "s" and n[1] != spec.name:
                upstream.append({"dataset": d, "pipeline": n[1], "stage": n[2], "owner": lg.nodes[n]["owner"]})
    for d in sorted(outputs):
        for n in lg.successors(("d", d)):
            if n[0] == "s" and n[1] != spec.name:
                downstream.append({"dataset": d, "pipeline": n[1], "stage": n[2], "owner": lg.nodes[n]["owner"]})
    producers = spec.produced()
    consumers: dict[str, list[str]] = {}
    for s in spec.stages:
        for d in s.inputs:
            consumers.setdefault(d, []).append(s.name)
    return {
        "spec": spec,
        "plan": p,
        "stages": [by_name[n] for n in p["order"]],
        "plan_stage": {row["name"]: row for row in p["stages"]},
        "edges": edges,
        "producers": producers,
        "sources_by_name": {s.name: s for s in spec.sources},
        "start_date": spec.start_date or DEFAULT_START,
        "consumers": consumers,
        "upstream_pipelines": upstream,
        "downstream_pipelines": downstream,
        "quality": quality_results(ws, spec.name),
        "durations": durations,
        "workspace_root": str(ws.root),
        "orbit_drop": str(ws.orbit_dir),
        "generated_by": "agentops pipeline render",
        "agentops_argv": agentops_argv(),
        # Airflow's safety net over the runner's own timeouts: every attempt, its backoff, a minute
        "airflow_timeout": {s.name: int((s.timeout + s.backoff.max) * (s.retries + 1) + 60) for s in spec.stages},
    }


def agentops_argv() -> list[str]:
    """How a generated DAG calls agentops: this Python's `-m agentops` (the venv it is installed in)."""
    import sys

    return [sys.executable, "-m", "agentops"]


# templates agentops renders for other purposes: a pipeline is not their context
NOT_PIPELINE = frozenset({"handoff.email.j2", "prompt.md.j2", "protocol.md.j2", "status.md.j2"})


def pipeline_templates(ws) -> list[str]:
    """The templates a pipeline renders: the five above, and any other `.j2` file the workspace's
    `templates/` adds."""
    from agentops.render import template_names

    return [n for n in template_names(ws) if n not in NOT_PIPELINE]


def resolve_templates(ws, template: str | None) -> list[str]:
    """`None`/`all` -> every pipeline template; a short name (`design`, or a unique start of one:
    `airflow`, `etl`, `quality`) or a pipeline template's file name otherwise."""
    from agentops.errors import UsageError

    if template in (None, "", "all"):
        return list(TEMPLATES.values())
    starts = [key for key in TEMPLATES if key.startswith(template)]
    if template in TEMPLATES or len(starts) == 1:
        return [TEMPLATES[template if template in TEMPLATES else starts[0]]]
    known = pipeline_templates(ws)
    for name in (template, f"{template}.j2"):
        if name in known:
            return [name]
    extra = [n for n in known if n not in TEMPLATES.values()]
    raise UsageError("template", f"no pipeline template '{template}'" + (
        f" ('{template}' is not rendered for a pipeline)" if template in NOT_PIPELINE or f"{template}.j2" in NOT_PIPELINE
        else ""), hint=f"use {', '.join(TEMPLATES)}, a unique start of one (airflow), "
                       + (f"{', '.join(extra)}, " if extra else "") + "all, or a .j2 file added to templates/")


def render_pipeline(ws, spec, template: str | None = None, out_dir: str | os.PathLike | None = None,
                    specs=None) -> list[Path]:
    """Render and write; return the paths. Without `out_dir`, files go to `.agent/data/<pipeline>/`
    (never outside the workspace); `out_dir` is used as given."""
    from agentops.render import render

    names = resolve_templates(ws, template)
    if out_dir is None:
        target = ws.data_dir / spec.name
        if not ws.inside(target.parent) or (target.exists() and not ws.inside(target)):
            raise ValidationError(f"{target} is outside the workspace", hint="pass --out DIR explicitly")
    else:
        target = Path(out_dir).expanduser()
    ctx = context(ws, spec, specs)
    rendered = [(output_name(spec, n), render(ws, n, **ctx)) for n in names]
    paths = []
    if out_dir is None:  # state under .agent/: through safefs (no link followed, random temp names)
        from agentops import safefs

        for fname, text in rendered:
            safefs.write_atomic(ws, target / fname, text)
            paths.append(target / fname)
        return paths
    target.mkdir(parents=True, exist_ok=True)
    for fname, text in rendered:
        path = target / fname
        if path.is_symlink():
            raise ValidationError(f"{path} is a symlink; not overwritten", hint="remove it or use --out")
        tmp = path.with_name(f".{fname}.{os.getpid()}.tmp")
        tmp.write_text(text, "utf-8")
        os.replace(tmp, path)
        paths.append(path)
    return paths
