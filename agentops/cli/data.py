"""`agentops quality run` and `agentops dataset list|show|profile`: a thin shell over `agentops.data`."""

from __future__ import annotations

from typing import Optional

import typer

from agentops.cli.common import JSON_HELP, emit_json, table, workspace

quality_app = typer.Typer(no_args_is_help=True)
dataset_app = typer.Typer(no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(quality_app, name="quality")
    app.add_typer(dataset_app, name="dataset")


def _print_report(report, as_json: bool) -> None:
    from agentops.data.quality import line

    if as_json:
        emit_json(report.as_dict())
    else:
        for d in report.datasets:
            if d.error and not d.results:
                typer.echo(f"{d.dataset} ({d.where}): error: {d.error}")
            if d.profile is not None:
                typer.echo(f"{d.dataset} ({d.where}): {d.profile.rows} rows, {len(d.profile.columns)} columns"
                           + (f"; schema {_change(d.change)}" if d.change else ""))
            for r in d.results:
                typer.echo(("  " if d.profile is not None else "") + line(r))
            for a in d.anomalies:
                typer.echo(f"  anomaly: {a['metric']} = {a['value']:g} ({a['direction']}, expected "
                           f"{a['expected']:.6g}, z-score {a['zscore']:.2f})")
        c = report.counts()
        typer.echo(f"{c['passed']} passed, {c['failed']} failed, {c['error']} error(s) (run {report.run_id})",
                   err=not report.ok)
    if not report.ok:
        raise typer.Exit(1)


def _change(change: dict) -> str:
    from agentops.data.drift import describe

    return f"{describe(change)} ({'breaking' if change['breaking'] else 'allowed'} under {change['policy']})"


@quality_app.command("run")
def run(ctx: typer.Context, pipeline: str = typer.Argument(..., help="Pipeline name."),
        dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Only this dataset."),
        partition: Optional[list[str]] = typer.Option(
            None, "--partition", "-p", help="Fill {partition} in file paths (default: every partition); "
            "repeat to measure several partitions in order, each recorded as its own run."),
        run_id: Optional[str] = typer.Option(None, "--run-id", help="Record the results under this run."),
        as_json: bool = typer.Option(False, "--json", help=JSON_HELP)):
    """Run the declared checks on the data and profile each dataset; exit 1 on an error-severity failure or a
    check that could not run."""
    from agentops.data.quality import run as run_quality

    ws = workspace(ctx)
    partitions = list(partition or []) or [None]
    reports = [run_quality(ws, pipeline, dataset=dataset, partition=p, run_id=run_id) for p in partitions]
    if as_json and len(reports) > 1:
        emit_json([r.as_dict() for r in reports])
        if not all(r.ok for r in reports):
            raise typer.Exit(1)
        return
    failed = False
    for report in reports:
        try:
            _print_report(report, as_json)
        except typer.Exit:
            failed = True
    if failed:
        raise typer.Exit(1)


@dataset_app.command("list")
def list_(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help=JSON_HELP)):
    """Every dataset the specs name: where it lives, owner, writers, readers, latest check results."""
    from agentops.data.datasets import list_datasets

    rows = list_datasets(workspace(ctx))
    if as_json:
        emit_json(rows)
        return
    table(([r["name"], r["where"], r["owner"], ", ".join(r["writers"]) or "-", ", ".join(r["readers"]) or "-",
            "{passed}/{failed}/{error}".format(**r["checks"])] for r in rows),
          ["dataset", "location", "owner", "writers", "readers", "ok/fail/err"])


@dataset_app.command("show")
def show(ctx: typer.Context, name: str = typer.Argument(..., help="Dataset name."),
         as_json: bool = typer.Option(False, "--json", help=JSON_HELP)):
    """One dataset: location, lineage, its latest schema, profile and check results."""
    from agentops.data.datasets import show_dataset

    info = show_dataset(workspace(ctx), name)
    if as_json:
        emit_json(info)
        return
    typer.echo(f"{info['name']}: {info['where']} (owner {info['owner']}, schema_evolution {info['schema_evolution']})")
    typer.echo(f"  written by: {', '.join(info['writers']) or '-'}; read by: {', '.join(info['readers']) or '-'}")
    typer.echo(f"  upstream: {', '.join(info['upstream']) or '-'}; downstream: {', '.join(info['downstream']) or '-'}")
    if info["schema"]:
        cols = ", ".join(f"{c} {t}" for c, t in info["schema"]["columns"].items())
        typer.echo(f"  schema ({info['schema']['recorded'][:19]}): {cols}")
    else:
        typer.echo("  schema: not recorded yet (run `agentops quality run` or `agentops dataset profile`)")
    for change in info["schema_changes"][:3]:
        typer.echo(f"  schema change {change['ts'][:19]}: {_change(change)}")
    if info["profile"]:
        typer.echo(f"  profile ({info['profiled'][:19]}):")
        table(([k, f"{v:.6g}"] for k, v in info["profile"].items()), ["metric", "value"])
    for c in info["checks"]:
        figures = f"observed {c['observed']}, threshold {c['threshold']}"
        typer.echo(f"  {c['check']}: {c['status']} ({figures})" + (f": {c['reason']}" if c["reason"] else "")
                   + f" [{c['pipeline']} {c['ts'][:19]}]")


@dataset_app.command("profile")
def profile(ctx: typer.Context, name: str = typer.Argument(..., help="Dataset name."),
            pipeline: Optional[str] = typer.Option(None, "--pipeline", help="Record under this pipeline "
                                                   "(default: the one that writes the dataset)."),
            partition: Optional[str] = typer.Option(None, "--partition", "-p", help="Fill {partition} in paths."),
            as_json: bool = typer.Option(False, "--json", help=JSON_HELP)):
    """Measure a dataset's profile (rows; per column nulls, distinct, min, max, mean) and schema, logged to Orbit."""
    from agentops.data.quality import profile as profile_dataset

    _print_report(profile_dataset(workspace(ctx), name, pipeline=pipeline, partition=partition), as_json)
