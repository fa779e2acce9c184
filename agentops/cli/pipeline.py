"""`agentops pipeline ...`: list, check, plan, lineage, backfill and render pipeline specs.

A thin shell over `agentops.pipelines` and `agentops.render`; heavy imports (pydantic, networkx,
jinja2) happen inside the commands.
"""

from __future__ import annotations

from typing import Optional

import typer

from agentops.cli.common import JSON_HELP, emit_json, table, workspace

pipeline_app = typer.Typer(help="Specs are .agent/data/pipelines/*.yaml files.",
                           no_args_is_help=True)


AS_HELP = "The acting agent, for reservations (default: $AGENTOPS_AGENT)."
IGNORE_HELP = "Write datasets another agent reserved exclusively anyway (logged in Orbit)."


def register(app: typer.Typer) -> None:
    app.add_typer(pipeline_app, name="pipeline")


def _spec_or_exit(ws, name: str):
    """The spec, or exit 1 printing its problems (a pipeline that does not check cannot be planned)."""
    from agentops.errors import ValidationError
    from agentops.pipelines import check_one

    spec, problems = check_one(ws, name)
    if spec is None:
        raise ValidationError(str(problems[0]) if problems else f"pipeline '{name}' does not parse",
                              hint="run `agentops pipeline check`", problems=[str(p) for p in problems])
    return spec, problems


@pipeline_app.command("list")
def list_(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help=JSON_HELP)):
    """List the pipeline specs: name, owner, processing, schedule, stages, file."""
    from agentops.pipelines.listing import listing

    rows, problems = listing(workspace(ctx))
    if as_json:
        emit_json({"pipelines": rows, "unparsed": problems})
        return
    table(([r["name"], r["owner"], r["processing"], r["schedule"] or "continuous", r["stages"], r["file"]]
           for r in rows), ["pipeline", "owner", "processing", "schedule", "stages", "file"])
    if problems:
        typer.echo(f"{len({p['file'] for p in problems})} spec file(s) do not parse: run `agentops pipeline check`",
                   err=True)


@pipeline_app.command("check")
def check(ctx: typer.Context,
          name: Optional[str] = typer.Argument(None, help="Pipeline name or spec file stem (default: all)."),
          all_: bool = typer.Option(False, "--all", help="Check every spec (the default without NAME)."),
          as_json: bool = typer.Option(False, "--json", help=JSON_HELP)):
    """Validate specs: every problem as `file:line: path: message`. Exit 1 when there is any."""
    from agentops.pipelines import check_one, load_specs

    ws = workspace(ctx)
    if name and not all_:
        spec, problems = check_one(ws, name)
        specs = [spec] if spec else []
    else:
        specs, problems = load_specs(ws)
    if as_json:
        emit_json({"pipelines": [s.name for s in specs], "problems": [p.as_dict() for p in problems]})
    else:
        for p in problems:
            typer.echo(str(p))
        files = len({s.source_file for s in specs} | {p.file for p in problems})
        typer.echo(f"{files} spec(s), {len(problems)} problem(s)", err=bool(problems))
    if problems:
        raise typer.Exit(1)


@pipeline_app.command("plan")
def plan(ctx: typer.Context, name: str = typer.Argument(..., help="Pipeline name."),
         as_json: bool = typer.Option(False, "--json", help=JSON_HELP)):
    """Topological order, parallel levels and the critical path (Orbit durations, else timeouts)."""
    from agentops.pipelines.graph import plan as make_plan, recorded_durations
    from agentops.pipelines.spec import format_duration as fd

    ws = workspace(ctx)
    spec, _ = _spec_or_exit(ws, name)
    p = make_plan(spec, recorded_durations(ws, spec.name))
    if as_json:
        emit_json(p)
        return
    typer.echo(f"{spec.name}: {len(p['order'])} stage(s) in {len(p['levels'])} level(s), "
               f"at most {p['max_parallel']} in parallel")
    if len(p["levels"]) <= 200:
        for i, lvl in enumerate(p["levels"], 1):
            shown = ", ".join(lvl[:12]) + (f", … (+{len(lvl) - 12})" if len(lvl) > 12 else "")
            typer.echo(f"  level {i}: {shown}")
    path = p["critical_path"]
    shown = " -> ".join(path) if len(path) <= 20 else " -> ".join([*path[:8], f"… ({len(path) - 16} more)", *path[-8:]])
    typer.echo(f"critical path ({fd(p['critical_path_s'])}, by {p['weights']}): {shown}")


@pipeline_app.command("lineage")
def lineage(ctx: typer.Context,
            dataset: Optional[str] = typer.Argument(None, help="Dataset name (as in stage inputs/outputs)."),
            upstream: bool = typer.Option(False, "--upstream", help="Only what feeds it."),
            downstream: bool = typer.Option(False, "--downstream", help="Only what it feeds (impact of a change)."),
            list_all: bool = typer.Option(False, "--list", help="List every dataset."),
            as_json: bool = typer.Option(False, "--json", help=JSON_HELP)):
    """Dataset lineage across every spec: upstream, downstream, and the impact of a change."""
    from agentops.errors import UsageError
    from agentops.pipelines import load_specs
    from agentops.pipelines.lineage import datasets, lineage as trace

    specs, _ = load_specs(workspace(ctx), check=False)
    if list_all or not dataset:
        if not list_all:
            raise UsageError("", "name a DATASET, or pass --list to see them")
        names = datasets(specs)
        emit_json(names) if as_json else typer.echo("\n".join(names))
        return
    if upstream and downstream:
        direction = "both"
    else:
        direction = "upstream" if upstream else "downstream" if downstream else "both"
    result = trace(specs, dataset, direction)
    if as_json:
        emit_json(result)
        return
    made = ", ".join(result["produced_by"]) or ("source of " + ", ".join(s["pipeline"] for s in result["source"])
                                               if result["source"] else "nothing (external)")
    typer.echo(f"{dataset}")
    typer.echo(f"  written by: {made}")
    typer.echo(f"  read by:    {', '.join(result['read_by']) or 'nothing'}")
    for key in ("upstream", "downstream"):
        if key not in result:
            continue
        r = result[key]
        typer.echo(f"{key} ({len(r['datasets'])} dataset(s), {len(r['stages'])} stage(s)):")
        by_hops: dict[int, list[str]] = {}
        for d in r["datasets"]:  # grouped by distance, not indented: an indent would read as "child of the line above"
            by_hops.setdefault(d["hops"], []).append(d["name"])
        for hops, names in sorted(by_hops.items()):
            typer.echo(f"  {hops} hop{'s' if hops > 1 else ' '}:  {', '.join(names)}")
        typer.echo(f"  pipelines: {', '.join(r['pipelines']) or '-'}")
        typer.echo(f"  owners:    {', '.join(r['owners']) or '-'}")
        if key == "downstream" and r["stages"]:
            typer.echo(f"  impact: a change to {dataset} reaches {len(r['stages'])} stage(s): {', '.join(r['stages'])}")


@pipeline_app.command("backfill")
def backfill(ctx: typer.Context, name: str = typer.Argument(..., help="Pipeline name."),
             start: str = typer.Option(..., "--start", help="First day (YYYY-MM-DD)."),
             end: str = typer.Option(..., "--end", help="Last day (YYYY-MM-DD), inclusive."),
             reprocess: str = typer.Option("none", "--reprocess", help="none | failed | completed."),
             dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan; queue nothing."),
             as_agent: Optional[str] = typer.Option(None, "--as", help=AS_HELP),
             ignore_reservations: bool = typer.Option(False, "--ignore-reservations", help=IGNORE_HELP),
             run_now: bool = typer.Option(False, "--run", help="Execute the planned partitions now (the runner)."),
             max_parallel: int = typer.Option(4, "--max-parallel", help="With --run: partitions and stages at once."),
             as_json: bool = typer.Option(False, "--json", help=JSON_HELP)):
    """Partitions x stages to run, honouring Orbit's states; queue them in Orbit, or --run them."""
    from agentops.pipelines.backfill import plan_backfill, queue_backfill
    from agentops.reservations import acting_agent

    ws = workspace(ctx)
    spec, _ = _spec_or_exit(ws, name)
    agent = acting_agent(ws, as_agent)
    if run_now:
        from agentops.pipelines import runner

        bp = plan_backfill(ws, spec, start, end, reprocess, states=runner.backfill_states(ws, spec))
        _execute(ws, runner.plan_backfill_run(ws, spec, bp, max_parallel), dry_run, as_json, agent,
                 ignore_reservations)
        return
    bp = plan_backfill(ws, spec, start, end, reprocess)
    queued = None if dry_run else queue_backfill(ws, spec, bp, agent=agent,
                                                 ignore_reservations=ignore_reservations)
    if dry_run and bp["tasks"]:
        from agentops.reservations import check_pipeline

        warnings = check_pipeline(ws, spec, agent, stages={t["task"] for t in bp["tasks"]}, dry_run=True)
    else:
        warnings = (queued or {}).get("warnings", [])
    for w in warnings:
        typer.echo(f"warning: {w}", err=True)
    bp.pop("_states", None)
    if as_json:
        emit_json({**bp, "dry_run": dry_run, "queued": queued})
        return
    per: dict[str, list[str]] = {}
    for t in bp["tasks"]:
        per.setdefault(t["partition"], []).append(t["task"])
    total = len(bp["stages"])
    typer.echo(f"{spec.name}: {len(bp['partitions'])} partition(s) {bp['start']}..{bp['end']} (schedule "
               f"{spec.schedule}), {len(bp['tasks'])} task(s) to run, reprocess={reprocess}, "
               f"states from {bp['states_from']}")
    for key in bp["partitions"]:
        todo = per.get(key, [])
        if not todo:
            typer.echo(f"  {key}  nothing to do")
        elif len(todo) == total:
            typer.echo(f"  {key}  all {total} stage(s)")
        else:
            typer.echo(f"  {key}  {len(todo)}/{total}: {', '.join(todo)}")
    if bp["skipped"]:
        typer.echo("skipped: " + ", ".join(f"{n} {why}" for why, n in sorted(bp["skipped"].items())))
    if dry_run:
        typer.echo("dry run: nothing queued")
    else:
        typer.echo(f"queued {queued['runs']} backfill run(s), {queued['tasks']} task(s) in Orbit "
                   f"({queued['written']} event(s) written, {queued['already_queued']} already there)")


@pipeline_app.command("render")
def render(ctx: typer.Context, name: str = typer.Argument(..., help="Pipeline name."),
           template: str = typer.Option("all", "--template", "-t",
                                        help="design | etl_workflow | runbook | quality_report | airflow_dag (or a unique start: airflow) | a .j2 file of templates/ | all."),
           out: Optional[str] = typer.Option(None, "--out", help="Folder to write to (default .agent/data/<pipeline>/).")):
    """Render the design, ETL workflow, runbook, quality report and Airflow DAG; print the paths."""
    from agentops.pipelines import load_specs
    from agentops.pipelines.documents import render_pipeline

    ws = workspace(ctx)
    spec, _ = _spec_or_exit(ws, name)
    specs, _ = load_specs(ws, check=False)
    for path in render_pipeline(ws, spec, template, out, specs=specs):
        try:
            shown = path.relative_to(ws.root)
        except ValueError:
            shown = path
        typer.echo(str(shown))


@pipeline_app.command("run")
def run(ctx: typer.Context, name: str = typer.Argument(..., help="Pipeline name."),
        partition: Optional[str] = typer.Option(None, "--partition", "-p",
                                                help="The partition to run (default: the latest scheduled one)."),
        start: Optional[str] = typer.Option(None, "--start", help="First day of a range (YYYY-MM-DD)."),
        end: Optional[str] = typer.Option(None, "--end", help="Last day of a range, inclusive."),
        stage: Optional[list[str]] = typer.Option(None, "--stage", "-s", help="Run only this stage (repeatable)."),
        from_stage: Optional[str] = typer.Option(None, "--from", help="Run this stage and everything downstream."),
        rerun: bool = typer.Option(False, "--rerun", help="Run stages that already succeeded for the partition."),
        max_parallel: int = typer.Option(4, "--max-parallel", help="Stages (and partitions) running at once."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Print what would run; run nothing."),
        as_agent: Optional[str] = typer.Option(None, "--as", help=AS_HELP),
        ignore_reservations: bool = typer.Option(False, "--ignore-reservations", help=IGNORE_HELP),
        as_json: bool = typer.Option(False, "--json", help=JSON_HELP)):
    """Run the pipeline's stages (sql:, command:) for a partition or a range, recorded in Orbit."""
    from agentops.pipelines import runner
    from agentops.reservations import acting_agent

    ws = workspace(ctx)
    spec, _ = _spec_or_exit(ws, name)
    parts = runner.partitions_for(spec, partition, start, end)
    plan = runner.plan_run(ws, spec, partitions=parts, stages=stage, from_stage=from_stage, rerun=rerun,
                           max_parallel=max_parallel)
    _execute(ws, plan, dry_run, as_json, acting_agent(ws, as_agent), ignore_reservations)


def _execute(ws, plan, dry_run: bool, as_json: bool, agent: str | None = None, ignore: bool = False) -> None:
    """Run a plan (or print it): progress on a terminal, one line per task otherwise; exit 1 when
    a task failed or a manual stage stopped the run. Reservations are checked first."""
    from agentops.pipelines import runner

    if not dry_run:
        for w in runner.check_reservations(ws, plan, agent, ignore=ignore):
            typer.echo(f"warning: {w}", err=True)
    if dry_run:
        if as_json:
            emit_json({**plan.as_dict(), "dry_run": True})
            return
        for p in plan.partitions:
            todo = ", ".join(f"{t} ({plan.spec.stage(t).action})" for t in p.tasks) or "nothing to do"
            typer.echo(f"{p.partition}  {p.run_id}: {todo}")
            if p.skipped:
                typer.echo(f"  skipped: {', '.join(f'{t} ({why})' for t, why in p.skipped.items())}")
        typer.echo(f"dry run: nothing ran (writes {', '.join(plan.writes) or 'nothing'})")
        return
    from agentops.cli.progress import RunProgress

    with RunProgress(plan, quiet=as_json) as progress:
        result = runner.execute(ws, plan, on_event=progress.event)
    if as_json:
        emit_json(result.as_dict())
    else:
        ok = sum(t.state == "succeeded" for t in result.tasks)
        skipped = sum(t.state == "skipped" for t in result.tasks)
        failed = [t for t in result.tasks if t.state in ("failed", "upstream_failed")]
        typer.echo(f"{plan.spec.name}: {len(plan.partitions)} partition(s), {ok} task(s) succeeded, "
                   f"{skipped} skipped, {len(failed)} failed or upstream_failed in {result.seconds:.1f}s")
        for t in failed:
            typer.echo(f"  {t.partition} {t.task}: {t.state}: {t.error}", err=True)
        for t in result.manual:
            typer.echo(f"  {t.partition} {t.task}: manual stage, stopped before it: {t.owner} does it, then "
                       f"`agentops orbit log run --pipeline {plan.spec.name} --run-id "
                       f"{next(p.run_id for p in plan.partitions if p.partition == t.partition)} --task {t.task} "
                       f"--state succeeded` and runs the pipeline again", err=True)
    if not as_json:
        for w in result.warnings:
            typer.echo(f"warning: {w}", err=True)
    if not result.ok:
        raise typer.Exit(1)
