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


def render_terminal(s: dict, colour: bool = False) -> str:
    """The report as text: the daemon line, titled tables, the verdict; colour codes only with
    `colour`. Every value is blanked of control characters on the way in (`table_lines`, `one_line`):
    agent-written run ids, reasons and subjects can never drive the terminal."""
    from agentops.cli.common import paint, table_lines
    from agentops.text import one_line

    def plain(value) -> str:
        return one_line(str(value))

    d = s["daemon"]
    state = plain(f"running (pid {d['pid']})" if d["running"] else d["state"])
    figures = plain(f"routed {d['routed'] or 0}  last {_short(d['last_routed'])}  waiting {d['drop_zone'] + d['queued']}")
    dead = d["dead_letters"]
    out = [f"{paint('daemon', 'bold', colour)} {paint(state, 'green' if d['running'] else 'yellow', colour)}  "
           f"{figures}  dead letters {paint(str(dead), 'red' if dead else None, colour)}"]

    def section(title: str, headers: list[str], rows: list, right: tuple[str, ...] = ()) -> None:
        out.extend(("", paint(plain(title), "bold", colour), *table_lines(rows, headers, right, colour)))

    rows = []
    for a in s["agents"]:
        disp = a["dispatch"]
        cells = [a["name"], a["role"] or "", a["unread"], a["unacked"], _age(a["oldest_unread_age_s"]), a["drafts"],
                 f"{disp['action']} {_short(disp.get('finished') or disp.get('started'))}" if disp else "-"]
        rows.append([(c, "bold") for c in cells] if a["unread"] else cells)
    rows += [[f"{q['role']} (queue)", "", q["waiting"], "", "", "", ""] for q in s["queues"]]
    rows += [[(o["box"].removeprefix(".agent/email/"), "yellow"), f"(no agent; {o['messages']} held)", o["unread"],
              "", "", "", ""] for o in s.get("orphans", [])]  # mail nobody reads: an inbox or queue no agent owns
    section("Agents", ["agent", "role", "unread", "unacked", "oldest unread", "drafts", "last dispatch"], rows,
            right=("unread", "unacked", "drafts"))

    if s["pipelines"]:
        rows = []
        for p in s["pipelines"]:
            r = p["latest"] or {}
            state = r.get("state", "-")
            bf = p["backfill"]
            rows.append([p["name"], p["owner"] or "-", r.get("run_id", "-"), (state, _STATE_COLOURS.get(state)),
                         r.get("logical_date") or "-", p["running"],
                         f"{bf['done']}/{bf['total']} ({bf['percent']:g}%)" if bf else "-"])
        section("Pipelines", ["pipeline", "owner", "latest run", "state", "date", "running", "backfill"], rows)

    q = s["quality"]
    groups = q.get("anomaly_groups", [])
    if q["failed_checks"] or groups:
        rows = [[_short(c["ts"]), c["pipeline"],
                 (f"{c['severity']} check {c['check']}", "red" if c["severity"] == "error" else "yellow"),
                 f"{c['dataset']}: observed {c['observed']} (threshold {c['threshold']})"] for c in q["failed_checks"]]
        for g in groups:  # one row per dataset; `agentops orbit anomalies` lists each one
            w = g["worst"]
            rows.append([_short(g["ts"]), g["pipeline"],
                         (f"{g['anomalies']} anomal{'ies' if g['anomalies'] != 1 else 'y'} in "
                          f"{g['dataset'] or '(pipeline)'}", "magenta"),
                         f"{g['runs']} run{'s' if g['runs'] != 1 else ''}; worst {w['metric']} {number(w['value'])} vs "
                         f"~{number(w['expected'])} (z={w['zscore']:.1f}, {w['direction']})"])
        section(f"Quality (since {s['since']})", ["when", "pipeline", "what", "detail"], rows)
    if s["perf_open"]:
        section("Open performance issues", ["pipeline", "task", "bottleneck", "note"],
                [[p["pipeline"], p["task"] or "-", p["bottleneck"], p["note"] or ""] for p in s["perf_open"]])
    if s["alerts"]:
        section("Alerts", ["when", "to", "subject", "mail"],
                [[_short(a["ts"]), a["owner"], a["subject"], a["status"]] for a in s["alerts"]])
    if s["handoffs"]:
        section("Handoffs", ["when", "from", "to", "label", "how"],
                [[_short(h.get("ts")), h.get("sender", ""), h.get("target", ""), h.get("label", ""),
                  "sent" if h.get("sent") else f"draft {h.get('draft')}"] for h in s["handoffs"]])
    res = s.get("reservations") or {}
    if res.get("active") or res.get("conflicts"):
        rows = [[r["agent"], r["target"], "exclusive" if r["exclusive"] else "shared", _short(r["expires_at"]),
                 r["reason"] or ""] for r in res.get("active", [])]
        rows += [[c.get("holder", ""), c.get("target", ""), (c.get("action", ""), "red"), _short(c.get("ts")),
                  f"{c.get('agent') or 'an unnamed agent'}: {c.get('detail', '')}"] for c in res.get("conflicts", [])]
        section("Reservations", ["holder", "target", "mode", "until", "reason / conflict"], rows)

    if s["problems"]:
        out += ["", paint(f"{len(s['problems'])} problem(s):", "bold red", colour),
                *(f"  - {plain(p)}" for p in s["problems"])]
    else:
        out += ["", paint("all healthy", "bold green", colour)]
    return "\n".join(out)


_STATE_COLOURS = {"succeeded": "green", "failed": "red", "upstream_failed": "red", "running": "cyan",
                  "up_for_retry": "yellow", "queued": "blue"}
CLEAR = "\x1b[2J\x1b[H"  # erase the screen, cursor home: how --watch redraws on a terminal


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
    if watch:  # until Ctrl-C; on a terminal each report replaces the last, elsewhere they follow each other
        import sys
        import time

        tty = sys.stdout.isatty()
        while True:
            report = render_terminal(collect(ws, since=since), colour=tty)
            sys.stdout.write(f"{CLEAR}{report}\n" if tty else f"{report}\n\n")
            sys.stdout.flush()
            time.sleep(interval)
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

        typer.echo(render_terminal(s, colour=sys.stdout.isatty()))
    if check and s["problems"]:
        raise typer.Exit(1)
