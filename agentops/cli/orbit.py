"""`agentops orbit ...`: log, ingest and read the Orbit event log; OpenLineage export/import.

A thin shell over `agentops.orbit` (imported inside the commands, so `agentops --help` stays cheap).
The read commands (runs, events, checks, anomalies) query the store through `agentops.orbit.queries`
alone, so they import neither the typed event models nor their pydantic validators.
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager

import typer

from agentops.cli.common import JSON_HELP, emit_json, show_rows, workspace
from agentops.status import number

orbit_app = typer.Typer(help="Pipeline and task runs, ETL jobs, quality checks, metrics, anomalies; OpenLineage in and out.",
                        no_args_is_help=True)

SINCE_HELP = "Only newer than this: an ISO 8601 time or an age like 30m, 24h, 7d."
KIND_HELP = "run, job, check, metric, perf or note."


def register(app: typer.Typer) -> None:
    app.add_typer(orbit_app, name="orbit")


def _open(ctx: typer.Context):
    from agentops.orbit import Orbit

    return Orbit.open(workspace(ctx))


@contextmanager
def _reading(ctx: typer.Context):
    """A connection to the store (opened, created and migrated as `Orbit.open` does) that may only
    read (`PRAGMA query_only`), for `agentops.orbit.queries`."""
    db = workspace(ctx).db()
    try:
        db.conn.execute("PRAGMA query_only = ON")
        yield db.conn
    finally:
        db.conn.close()


def _fields(kind: str, args: list[str]) -> dict:
    """`--run-id r1 --passed false --before '{"s": 3}'` -> {"run_id": "r1", "passed": False, ...}:
    each value converted to its field's type in the kind's model (`orbit.events.cli_value`). A flag
    without a value, a flag given twice and a value that does not convert are errors naming the flag."""
    from agentops.errors import ValidationError
    from agentops.orbit.events import cli_value

    out: dict = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) < 3:
            raise ValidationError(f"orbit log: unexpected argument {arg!r}", hint="give fields as --name value")
        name, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(args) or (args[i + 1].startswith("--") and len(args[i + 1]) > 2):
                raise ValidationError(f"orbit log: --{name} needs a value", hint=f"give it as --{name} VALUE")
            value = args[i + 1]
            i += 1
        key = name.replace("-", "_")
        if key in out:
            raise ValidationError(f"orbit log: --{name} given twice", hint="give each field once")
        out[key] = cli_value(kind, key, value, f"--{name}")
        i += 1
    return out


@orbit_app.command("log", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def log(ctx: typer.Context, kind: str = typer.Argument(..., help=KIND_HELP),
        json_text: str = typer.Option(None, "--event", help="The whole event as a JSON object (fields override)."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")):
    """Log one event: `orbit log run --pipeline p --run-id r1 --state failed --error "..."`."""
    from agentops.errors import ValidationError

    from agentops.orbit.events import loads
    from agentops.text import one_line

    event: dict = {}
    if json_text:
        event = loads(json_text, "--event")
        if not isinstance(event, dict):
            raise ValidationError("--event: must be a JSON object")
    event.update(_fields(kind, ctx.args))
    event["kind"] = kind
    with _open(ctx) as orbit:
        result = orbit.log(event)
    if as_json:
        emit_json({"kind": result.kind, "seq": result.seq, "id": result.id, "ts": result.ts, "state": result.state,
                   "attempt": result.attempt, "duplicate": result.duplicate, "derived": result.derived})
        return
    if result.duplicate:
        typer.echo(f"already logged: {result.kind} id {result.id} (nothing changed)")
        return
    extra = f" {result.state} (attempt {result.attempt})" if result.state else ""
    typer.echo(f"logged {result.kind} #{result.seq}{extra}")
    for d in result.derived:  # task names and ids are agent-written: one line, no terminal controls
        typer.echo(f"  and {d['kind']} #{d['seq']}: " + ", ".join(f"{k}={one_line(str(v))}" for k, v in d.items()
                                                                if k not in ("kind", "seq")))


@orbit_app.command("ingest")
def ingest(ctx: typer.Context, path: str = typer.Argument(..., help="A JSONL file, one event per line."),
           as_json: bool = typer.Option(False, "--json", help=JSON_HELP)):
    """Bulk-log a JSONL file: bad lines are reported with their line numbers, good lines are kept."""
    from pathlib import Path

    from agentops.orbit.ingest import gc_paused, ingest_file

    with _open(ctx) as orbit, gc_paused():
        if sys.stderr.isatty() and not as_json:
            from rich.progress import Progress

            total = sum(1 for _ in open(path, "rb")) if Path(path).is_file() else 0
            with Progress(transient=True) as bar:
                task = bar.add_task("ingesting", total=total)
                report = ingest_file(orbit, Path(path), progress=lambda n: bar.update(task, completed=n))
        else:
            report = ingest_file(orbit, Path(path))
    if as_json:
        emit_json(report.as_dict())
    else:
        for n, reason in report.rejected[:50]:
            typer.echo(f"{path}:{n}: {reason}", err=True)
        if len(report.rejected) > 50:
            typer.echo(f"... and {len(report.rejected) - 50} more rejected line(s)", err=True)
        typer.echo(f"{report} in {report.seconds:.2f}s ({report.rate:,.0f} lines/s)")
    if report.rejected:
        raise typer.Exit(4)


@orbit_app.command("runs")
def runs(ctx: typer.Context, pipeline: str = typer.Option(None, "--pipeline", "-p", help="Only this pipeline."),
         state: str = typer.Option(None, "--state", "-s", help="Only runs in this state."),
         since: str = typer.Option(None, "--since", help=SINCE_HELP),
         tasks: bool = typer.Option(True, "--tasks/--no-tasks", help="Include task runs (default) or not."),
         limit: int = typer.Option(100, "--limit", "-n", help="At most this many rows."),
         as_json: bool = typer.Option(False, "--json", help=JSON_HELP)):
    """Runs and task runs at their latest state, newest first."""
    from agentops.orbit import queries

    with _reading(ctx) as conn:
        rows = queries.runs(conn, pipeline=pipeline, state=state, since=since, tasks=None if tasks else False,
                            limit=limit)
    show_rows(rows, as_json, ["pipeline", "run", "task", "state", "try", "type", "date", "updated", "error"],
              lambda r: [r["pipeline"], r["run_id"], r["task"], r["state"], r["attempt"], r["run_type"],
                         r["logical_date"], r["updated_at"][:19], (r["error"] or "")[:60]], "no runs")


@orbit_app.command("events")
def events(ctx: typer.Context, kind: str = typer.Option(None, "--kind", "-k", help="Only this kind."),
           since: str = typer.Option(None, "--since", help=SINCE_HELP),
           pipeline: str = typer.Option(None, "--pipeline", "-p", help="Only this pipeline."),
           limit: int = typer.Option(50, "--limit", "-n", help="The last this many events."),
           as_json: bool = typer.Option(False, "--json", help=JSON_HELP)):
    """The latest events, oldest first."""
    from agentops.orbit import queries

    with _reading(ctx) as conn:
        rows = queries.events(conn, kind=kind, since=since, limit=limit, pipeline=pipeline)
    if as_json:
        emit_json(rows)
        return
    for ev in rows:
        typer.echo(_line(ev))


def _line(ev: dict) -> str:
    rest = {k: v for k, v in ev.items() if k not in ("seq", "ts", "kind")}
    return f"#{ev['seq']} {ev['ts'][:19]} {ev['kind']:8} " + json.dumps(rest, ensure_ascii=False, default=str)


@orbit_app.command("search")
def search(ctx: typer.Context, query: str = typer.Argument(..., help="Words to find (SQLite FTS5 syntax works)."),
           limit: int = typer.Option(50, "--limit", "-n", help="At most this many events."),
           as_json: bool = typer.Option(False, "--json", help=JSON_HELP)):
    """Full-text search over event text (errors, notes, names, messages)."""
    with _open(ctx) as orbit:
        rows = orbit.search(query, limit=limit)
    if as_json:
        emit_json(rows)
        return
    for ev in rows:
        typer.echo(_line(ev))
    if not rows:
        typer.echo("no events match", err=True)


@orbit_app.command("checks")
def checks(ctx: typer.Context, pipeline: str = typer.Option(None, "--pipeline", "-p", help="Only this pipeline."),
           failed: bool = typer.Option(False, "--failed", help="Only failed checks."),
           since: str = typer.Option(None, "--since", help=SINCE_HELP),
           as_json: bool = typer.Option(False, "--json", help=JSON_HELP)):
    """Data-quality check results (latest per run, dataset and check)."""
    from agentops.orbit import queries

    with _reading(ctx) as conn:
        rows = queries.checks(conn, pipeline=pipeline, failed=True if failed else None, since=since)
    show_rows(rows, as_json, ["pipeline", "run", "dataset", "check", "result", "severity", "observed", "threshold", "ts"],
              lambda r: [r["pipeline"], r["run_id"], r["dataset"], r["check"], {"passed": "pass", "error": "ERROR"}.get(r.get("status"), "pass" if r["passed"] else "FAIL"),
                         r["severity"], r["observed"], r["threshold"], r["ts"][:19]], "no check results")


@orbit_app.command("anomalies")
def anomalies(ctx: typer.Context, pipeline: str = typer.Option(None, "--pipeline", "-p", help="Only this pipeline."),
              since: str = typer.Option(None, "--since", help=SINCE_HELP),
              as_json: bool = typer.Option(False, "--json", help=JSON_HELP)):
    """Anomalies found in metric series and job figures, each one (status groups them per dataset)."""
    from agentops.orbit import queries

    with _reading(ctx) as conn:
        rows = queries.anomalies(conn, pipeline=pipeline, since=since)
    show_rows(rows, as_json, ["pipeline", "dataset", "run", "metric", "value", "expected", "z", "direction", "method",
                              "ts"],
              lambda r: [r["pipeline"], r["dataset"], r["run_id"], r["metric"], number(r["value"]),
                         number(r["expected"]), r["zscore"], r["direction"], r["method"], r["ts"][:19]], "no anomalies")


@orbit_app.command("export")
def export(ctx: typer.Context,
           openlineage: bool = typer.Option(False, "--openlineage", help="OpenLineage RunEvents (the only format)."),
           out: str = typer.Option(None, "--out", "-o", help="Write here instead of stdout."),
           namespace: str = typer.Option("agentops", "--namespace", help="OpenLineage job namespace."),
           since: str = typer.Option(None, "--since", help=SINCE_HELP)):
    """Export run and check events as OpenLineage RunEvents, one JSON per line."""
    from agentops.errors import UsageError
    from agentops.orbit.openlineage import check_path, export as do_export

    if not openlineage:
        raise UsageError("", "orbit export: say which format", hint="use --openlineage")
    target = check_path(out)
    with _open(ctx) as orbit:
        if target is None:
            n = do_export(orbit, sys.stdout, namespace=namespace, since=since)
        else:
            tmp = target.with_name(f".{target.name}.tmp")
            with open(tmp, "w", encoding="utf-8") as f:
                n = do_export(orbit, f, namespace=namespace, since=since)
            tmp.replace(target)
    typer.echo(f"exported {n} OpenLineage event(s)" + (f" to {out}" if out else ""), err=True)


@orbit_app.command("import")
def import_(ctx: typer.Context, path: str = typer.Argument(..., help="OpenLineage RunEvents, one JSON per line."),
            openlineage: bool = typer.Option(False, "--openlineage", help="The file is OpenLineage (required)."),
            as_json: bool = typer.Option(False, "--json", help=JSON_HELP)):
    """Import OpenLineage RunEvents (from agentops, Airflow, dbt or Spark) as Orbit runs and checks."""
    from pathlib import Path

    from agentops.errors import UsageError
    from agentops.orbit.openlineage import import_file

    if not openlineage:
        raise UsageError("", "orbit import: say which format", hint="use --openlineage")
    with _open(ctx) as orbit:
        report = import_file(orbit, Path(path))
    if as_json:
        emit_json(report.as_dict())
    else:
        for n, reason in report.rejected[:50]:
            typer.echo(f"{path}:{n}: {reason}", err=True)
        typer.echo(str(report))
    if report.rejected:
        raise typer.Exit(4)
