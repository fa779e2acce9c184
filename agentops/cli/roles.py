"""`agentops roles ...`: list, show, check and graph the role files."""

from __future__ import annotations

import typer

from agentops.cli.common import JSON_HELP, emit_json, table, workspace

roles_app = typer.Typer(help="Roles are roles/*.agent.md files in the VS Code custom-agent format.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(roles_app, name="roles")


def _role_dict(role) -> dict:
    return {**role.frontmatter(), "slug": role.slug, "file": str(role.path) if role.path else None, "body": role.body}


@roles_app.command("list")
def list_(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help=JSON_HELP)):
    """List the roles with their addresses, members, tools and handoff targets.

    A role with one member is that agent's address; with several, the role's address is their
    shared queue (`agentops mail claim`)."""
    ws = workspace(ctx)
    roles = ws.roles()
    book = ws.addresses
    members = {r.slug: book.members(r.name) for r in roles}
    if as_json:
        emit_json([{**{k: v for k, v in _role_dict(r).items() if k != "body"}, "members": members[r.slug],
                    "queue": len(members[r.slug]) > 1} for r in roles])
        return
    table(([r.name, r.slug + (" (queue)" if len(members[r.slug]) > 1 else ""), ", ".join(members[r.slug]) or "-",
            ", ".join(r.tools), ", ".join(h.agent for h in r.handoffs)] for r in roles),
          ["role", "address", "members", "tools", "hands off to"])


@roles_app.command("show")
def show(ctx: typer.Context, name: str = typer.Argument(..., help="Role name or address."),
         as_json: bool = typer.Option(False, "--json", help=JSON_HELP)):
    """Show one role: its fields, handoffs and body."""
    from agentops.roles import find_role

    role = find_role(workspace(ctx).roles(), name)
    if as_json:
        emit_json(_role_dict(role))
        return
    typer.echo(f"{role.name}  <{role.slug}>  {role.path or ''}")
    if role.description:
        typer.echo(role.description)
    for key in ("model", "tools", "agents"):
        if getattr(role, key):
            typer.echo(f"{key}: {', '.join(getattr(role, key))}")
    for h in role.handoffs:
        typer.echo(f"handoff: {h.label} -> {h.agent}{' (sends)' if h.send else ' (draft)'}")
    typer.echo("")
    typer.echo(role.body.rstrip())


@roles_app.command("check")
def check(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help=JSON_HELP)):
    """Validate every role file; print each problem as `file: field: message`; exit 1 when any."""
    from agentops.roles import check_roles

    ws = workspace(ctx)
    roles, parse_problems = ws.roles_with_problems()
    from agentops.addresses import roster_problems
    from agentops.roles import Problem

    from agentops.roles import shared_role_problems

    problems = check_roles(roles, ws.root, parse_problems)
    roster = [Problem("agentops.toml", field, message) for field, message in roster_problems(roles, ws.config.agents)]
    problems += roster
    if not roster:
        problems += shared_role_problems(roles, ws.addresses.members, ws.root)
    if as_json:
        emit_json({"roles": len(roles), "problems": [p.__dict__ for p in problems]})
    else:
        for p in problems:
            typer.echo(str(p))
        typer.echo(f"{len(roles)} role(s), {len(problems)} problem(s)", err=bool(problems))
    if problems:
        raise typer.Exit(1)


@roles_app.command("graph")
def graph(ctx: typer.Context, fmt: str = typer.Option("mermaid", "--format", "-f", help="mermaid, dot or json.")):
    """The handoff graph (handoffs and `agents:` edges), roles nobody reaches, and handoff cycles."""
    from agentops.errors import UsageError
    from agentops.roles import graph_dot, graph_mermaid, graph_report

    report = graph_report(workspace(ctx).roles())
    if fmt == "json":
        emit_json(report)
        return
    if fmt not in ("mermaid", "dot"):
        raise UsageError("format", f"unknown graph format '{fmt}'", hint="use mermaid, dot or json")
    typer.echo((graph_mermaid if fmt == "mermaid" else graph_dot)(report), nl=False)
    comment = "%%" if fmt == "mermaid" else "//"
    if report["unreachable"]:
        typer.echo(f"{comment} nobody hands off to: {', '.join(report['unreachable'])}")
    for cycle in report["handoff_cycles"]:
        typer.echo(f"{comment} handoff cycle: {' -> '.join(cycle + cycle[:1])}")


@roles_app.command("export")
def export(ctx: typer.Context,
           target: str = typer.Option(..., "--target", "-t", help="vscode, claude or agents-md."),
           out: str = typer.Option(None, "--out", help="Folder to write into (default: the workspace).")):
    """Write the roles for another host, each with the workspace protocol: VS Code custom agents
    (.github/agents/), Claude Code subagents (.claude/agents/) or an AGENTS.md section."""
    from pathlib import Path

    from agentops.exports import export_roles

    ws = workspace(ctx)
    for path in export_roles(ws, target, Path(out) if out else None):
        try:
            shown = path.relative_to(ws.root)
        except ValueError:
            shown = path
        typer.echo(f"wrote {shown}")
