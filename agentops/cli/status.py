"""`agentops status`: a terminal report, JSON, Markdown, a live view, or a health check."""

from __future__ import annotations

import typer

from agentops.cli.common import workspace
from agentops.status import number


def register(app: typer.Typer) -> None:
    app.command("status")(status)


def _age(seconds) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _short(ts) -> str:
    return (ts or "-")[:19].replace("T", " ")


def render_terminal(s: dict):
    """Rich renderables for the report (colour only when the console is a terminal). Every value
    goes in as plain Text: agent-written subjects like "[orbit] ..." are never read as markup."""
    from rich.console import Group
    from rich.table import Table as _Table
    from rich.text import Text

    class Table(_Table):
        def __init__(self, title: str, *columns: str, right: tuple[str, ...] = ()):
            super().__init__(title=title, title_justify="left")
            for col in columns:
                self.add_column(col, justify="right" if col in right else "left")

        def add_row(self, *cells, **kw):
            super().add_row(*(c if isinstance(c, Text) else Text("" if c is None else str(c)) for c in cells), **kw)

    parts = []
    d = s["daemon"]
    line = Text()
    line.append("daemon ", style="bold")
    line.append(f"running (pid {d['pid']})" if d["running"] else d["state"],
                style="green" if d["running"] else "yellow")
    line.append(f"  routed {d['routed'] or 0}  last {_short(d['last_routed'])}  waiting {d['drop_zone'] + d['queued']}"
                f"  dead letters {d['dead_letters']}")
    if d["dead_letters"]:
        line.stylize("red", len(line) - len(str(d["dead_letters"])))
    parts.append(line)

    t = Table("Agents", "agent", "role", "unread", "unacked", "oldest unread", "drafts", "last dispatch",
              right=("unread", "unacked", "drafts"))
    for a in s["agents"]:
        disp = a["dispatch"]
        t.add_row(a["name"], a["role"] or "", str(a["unread"]), str(a["unacked"]), _age(a["oldest_unread_age_s"]),
                  str(a["drafts"]), f"{disp['action']} {_short(disp.get('finished') or disp.get('started'))}" if disp else "-",
                  style="bold" if a["unread"] else None)
    for q in s["queues"]:
        t.add_row(f"{q['role']} (queue)", "", str(q["waiting"]), "", "", "", "")
    for o in s.get("orphans", []):  # mail nobody reads: an inbox or queue no agent owns any more
        t.add_row(Text(o["box"].removeprefix(".agent/email/"), style="yellow"), f"(no agent; {o['messages']} held)",
                  str(o["unread"]), "", "", "", "")
    parts.append(t)

    if s["pipelines"]:
        t = Table("Pipelines", "pipeline", "owner", "latest run", "state", "date", "running", "backfill")
        for p in s["pipelines"]:
            r = p["latest"] or {}
            state = r.get("state", "-")
            colour = {"succeeded": "green", "failed": "red", "upstream_failed": "red", "running": "cyan",
                      "up_for_retry": "yellow", "queued": "blue"}.get(state)
            bf = p["backfill"]
            t.add_row(p["name"], p["owner"] or "-", r.get("run_id", "-"), Text(state, style=colour or ""),
                      r.get("logical_date") or "-", str(p["running"]),
                      f"{bf['done']}/{bf['total']} ({bf['percent']:g}%)" if bf else "-")
        parts.append(t)

    q = s["quality"]
    groups = q.get("anomaly_groups", [])
    if q["failed_checks"] or groups:
        t = Table(f"Quality (since {s['since']})", "when", "pipeline", "what", "detail")
        for c in q["failed_checks"]:
            t.add_row(_short(c["ts"]), c["pipeline"], Text(f"{c['severity']} check {c['check']}",
                      style="red" if c["severity"] == "error" else "yellow"),
                      f"{c['dataset']}: observed {c['observed']} (threshold {c['threshold']})")
        for g in groups:  # one row per dataset; `agentops orbit anomalies` lists each one
            w = g["worst"]
            t.add_row(_short(g["ts"]), g["pipeline"],
                      Text(f"{g['anomalies']} anomal{'ies' if g['anomalies'] != 1 else 'y'} in "
                           f"{g['dataset'] or '(pipeline)'}", style="magenta"),
                      f"{g['runs']} run{'s' if g['runs'] != 1 else ''}; worst {w['metric']} {number(w['value'])} vs "
                      f"~{number(w['expected'])} (z={w['zscore']:.1f}, {w['direction']})")
        parts.append(t)
    if s["perf_open"]:
        t = Table("Open performance issues", "pipeline", "task", "bottleneck", "note")
        for p in s["perf_open"]:
            t.add_row(p["pipeline"], p["task"] or "-", p["bottleneck"], p["note"] or "")
        parts.append(t)
    if s["alerts"]:
        t = Table("Alerts", "when", "to", "subject", "mail")
        for a in s["alerts"]:
            t.add_row(_short(a["ts"]), a["owner"], a["subject"], a["status"])
        parts.append(t)
    if s["handoffs"]:
        t = Table("Handoffs", "when", "from", "to", "label", "how")
        for h in s["handoffs"]:
            t.add_row(_short(h.get("ts")), h.get("sender", ""), h.get("target", ""), h.get("label", ""),
                      "sent" if h.get("sent") else f"draft {h.get('draft')}")
        parts.append(t)
    res = s.get("reservations") or {}
    if res.get("active") or res.get("conflicts"):
        t = Table("Reservations", "holder", "target", "mode", "until", "reason / conflict")
        for r in res.get("active", []):
            t.add_row(r["agent"], r["target"], "exclusive" if r["exclusive"] else "shared", _short(r["expires_at"]),
                      r["reason"] or "")
        for c in res.get("conflicts", []):
            t.add_row(c.get("holder", ""), c.get("target", ""), Text(c.get("action", ""), style="red"), _short(c.get("ts")),
                      f"{c.get('agent') or 'an unnamed agent'}: {c.get('detail', '')}")
        parts.append(t)
    verdict = Text()
    if s["problems"]:
        verdict.append(f"{len(s['problems'])} problem(s):\n", style="bold red")
        for p in s["problems"]:
            verdict.append(f"  - {p}\n")
    else:
        verdict.append("all healthy", style="bold green")
    parts.append(verdict)
    return Group(*parts)


def status(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print the status as JSON (documented, stable shape)."),
    fmt: str = typer.Option("text", "--format", "-f",
                            help="text, json, or markdown (writes .agent/data/reports/status.md)."),
    watch: bool = typer.Option(False, "--watch", help="Refresh in place until Ctrl-C."),
    interval: float = typer.Option(2.0, "--interval", help="Seconds between refreshes with --watch."),
    check: bool = typer.Option(False, "--check", help="Exit 1 when anything is failing (for cron and CI)."),
    since: str = typer.Option("7d", "--since", help="Window for checks, anomalies, alerts and handoffs (24h, 7d, ISO time)."),
):
    """Each agent's mail, each pipeline's runs, quality, performance, alerts and handoffs."""
    from agentops.errors import UsageError
    from agentops.status import collect

    ws = workspace(ctx)
    if as_json:
        fmt = "json"
    if fmt not in ("text", "json", "markdown"):
        raise UsageError("format", f"unknown format '{fmt}'", hint="use text, json or markdown")
    if watch:
        import time

        from rich.console import Console
        from rich.live import Live

        console = Console()
        with Live(render_terminal(collect(ws, since=since)), console=console, screen=False,
                  auto_refresh=False) as live:
            while True:
                time.sleep(interval)
                live.update(render_terminal(collect(ws, since=since)), refresh=True)
    s = collect(ws, since=since)
    if fmt == "json":
        from agentops.cli.common import emit_json

        emit_json(s)
    elif fmt == "markdown":
        from agentops.status_report import write_markdown

        path = write_markdown(ws, s)
        typer.echo(f"wrote {path.relative_to(ws.root)}")
    else:
        import sys

        from rich.console import Console

        console = Console() if sys.stdout.isatty() else Console(width=120)
        console.print(render_terminal(s))
    if check and s["problems"]:
        raise typer.Exit(1)
