"""`agentops reserve`, `release`, `reservations` and `guard`: a thin shell over `agentops.reservations`
and `agentops.guard`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from agentops.cli.common import JSON_HELP, emit_json, show_rows, workspace

AS_HELP = "The acting agent (default: $AGENTOPS_AGENT)."
guard_app = typer.Typer(help="It refuses a commit that touches a path another agent holds exclusively.",
                        no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("reserve")(reserve)
    app.command("release")(release)
    app.command("reservations")(reservations)
    app.add_typer(guard_app, name="guard")


def _agent(ws, name: Optional[str], required: bool = True) -> Optional[str]:
    from agentops.errors import ValidationError
    from agentops.reservations import AGENT_ENV, acting_agent

    agent = acting_agent(ws, name)
    if agent is None and required:
        raise ValidationError("--as: name the acting agent", hint=f"pass --as AGENT or set {AGENT_ENV}")
    return agent


def reserve(
    ctx: typer.Context,
    targets: Optional[List[str]] = typer.Argument(None, help="Paths or globs in the workspace, or dataset:NAME."),
    as_agent: Optional[str] = typer.Option(None, "--as", help=AS_HELP),
    ttl: Optional[str] = typer.Option(None, "--ttl", help="How long it lasts: 30m, 2h (default), 1d; at most 7d."),
    shared: bool = typer.Option(False, "--shared", help="Shared: others may hold it shared too (default exclusive)."),
    reason: Optional[str] = typer.Option(None, "--reason", help="Why: shown to anyone it blocks."),
    renew: Optional[str] = typer.Option(None, "--renew", metavar="ID", help="Extend reservation ID to now + --ttl."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
):
    """All targets or none (exit 6 on a conflict)."""
    from agentops import reservations as rs
    from agentops.errors import ValidationError

    ws = workspace(ctx)
    if renew:
        if targets:
            raise ValidationError("--renew takes no TARGET", hint="renew one ID at a time")
        r = rs.renew(ws, renew, ttl=ttl, agent=_agent(ws, as_agent, required=False))
        if as_json:
            emit_json(r.as_dict())
        else:
            typer.echo(f"{r.id}  {r.target}  renewed until {rs.short_time(r.expires_at)}")
        return
    got = rs.reserve(ws, _agent(ws, as_agent), targets or [], ttl=ttl, shared=shared, reason=reason, cwd=Path.cwd())
    for w in got.warnings:
        typer.echo(f"warning: {w}", err=True)
    if as_json:
        emit_json(got.as_dict())
        return
    for r in got.reservations:
        typer.echo(f"{r.id}  {r.target}  {r.mode} until {rs.short_time(r.expires_at)}")
        info = got.downstream.get(r.id)
        if info:
            typer.echo(f"  datasets:   {', '.join(info['datasets'])}")
            typer.echo(f"  written by: {', '.join(info['writers']) or '-'}")
            typer.echo(f"  downstream: {', '.join(info['pipelines']) or 'no pipeline'}"
                       + (f" ({', '.join(info['downstream_datasets'])})" if info["downstream_datasets"] else ""))
            typer.echo(f"  owners:     {', '.join(info['owners']) or '-'}")
    for n in got.notices:
        typer.echo(f"  notified {n['to']}: {n['message_id']}")


def release(
    ctx: typer.Context,
    items: Optional[List[str]] = typer.Argument(None, help="Reservation ids or targets (none: all of yours)."),
    as_agent: Optional[str] = typer.Option(None, "--as", help=AS_HELP),
    force: bool = typer.Option(False, "--force", help="Release someone else's reservation ID (needs --reason)."),
    reason: Optional[str] = typer.Option(None, "--reason", help="Why (with --force: logged and mailed to the holder)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
):
    """--force releases anyone's, logged and the holder mailed."""
    from agentops import reservations as rs
    from agentops.errors import ValidationError

    ws = workspace(ctx)
    if force:
        if len(items or []) != 1:
            raise ValidationError("--force takes exactly one reservation ID")
        r, mailed = rs.force_release(ws, items[0], reason or "", by=_agent(ws, as_agent, required=False))
        if as_json:
            emit_json({**r.as_dict(), "mailed": mailed})
        else:
            typer.echo(f"{r.id}  {r.target}  force-released from {r.agent}; holder mailed: {mailed}")
        return
    done = rs.release(ws, _agent(ws, as_agent), items or [], cwd=Path.cwd())
    if as_json:
        emit_json([r.as_dict() for r in done])
        return
    for r in done:
        typer.echo(f"{r.id}  {r.target}  released")
    if not done:
        typer.echo("nothing to release")


def reservations(
    ctx: typer.Context,
    agent: Optional[str] = typer.Option(None, "--agent", help="Only this agent's."),
    all_: bool = typer.Option(False, "--all", help="Also released and expired ones."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
):
    """--all lists released and expired ones too."""
    from agentops import reservations as rs

    now = rs.ts(rs.utc())
    rows = [r.as_dict(now) for r in rs.reservations(workspace(ctx), agent=agent, include_all=all_)]
    show_rows(rows, as_json, ["id", "agent", "target", "mode", "until", "state", "reason"],
              lambda r: [r["id"], r["agent"], r["target"], "exclusive" if r["exclusive"] else "shared",
                         rs.short_time(r["expires_at"]), r["state"], r["reason"] or ""],
              "no reservations" if all_ else "no active reservations")


@guard_app.command("install")
def guard_install(ctx: typer.Context,
                  force: bool = typer.Option(False, "--force", help="Replace a pre-commit hook agentops did not write.")):
    """Install the git pre-commit hook that runs `agentops guard check` on the staged paths."""
    from agentops.guard import install

    path = install(workspace(ctx), force=force)
    typer.echo(f"installed {path}")


@guard_app.command("check")
def guard_check(ctx: typer.Context,
                paths: Optional[List[str]] = typer.Argument(None, help="Paths to check (default: git's staged paths)."),
                as_agent: Optional[str] = typer.Option(None, "--as", help="The committing agent (default: "
                                                       "$AGENTOPS_AGENT, else git config agentops.agent).")):
    """Exit 6 naming the holder when a path is held exclusively by another agent (the hook's test)."""
    from agentops.guard import check

    checked = check(workspace(ctx), paths or None, agent=as_agent, cwd=Path.cwd())
    typer.echo(f"guard: {checked} path(s) clear", err=True)
