"""`agentops status`: the whole team and its pipelines at a glance, as one dict.

`collect(ws)` returns the documented `status --json` shape (SCHEMA_VERSION 1; keys are only ever
added). Everything is read from indexed derived tables, the daemon's heartbeat and the Maildir
folders, so it stays fast on a large log.

    {
      "version": 1, "generated": ts, "workspace": path,
      "healthy": bool, "problems": [str],          # what `status --check` fails on
      "daemon":   {"running", "pid", "state", "mode", "started", "updated", "last_routed",
                   "routed", "errors", "last_error", "drop_zone", "queued", "dead_letters"},
      "agents":   [{"name", "role", "unread", "unacked", "oldest_unread_age_s", "drafts",
                    "dispatch": {"action", "attempt", "started", "finished", "exit_code", "log",
                                 "runs", "failures", "gave_up"} | null}],
      "queues":   [{"role", "waiting"}],
      "orphans":  [{"box", "messages", "unread"}],    # inboxes and queues no agent or shared role owns
      "roles":    {"files", "problems": [str]},       # role files and what is wrong with them
      "orbit_rejected": [{"file", "source", "lines", "reason"}],  # in .agent/orbit/rejected/
      "pipelines":[{"name", "owner", "spec", "latest": {"run_id", "state", "run_type",
                    "logical_date", "attempt", "updated_at", "error"} | null, "failing": bool,
                    "running": int, "backfill": {"total", "done", "failed", "running", "queued",
                    "percent"} | null}],
      "quality":  {"failed_checks": [...], "anomalies": [...],   # within `since` (default 7d)
                   "anomaly_groups": [{"pipeline", "dataset", "anomalies", "runs", "ts", "metrics": [str],
                                       "worst": {"metric", "value", "expected", "zscore", "direction",
                                                 "run_id", "ts"}}]},   # one per dataset (or task)
      "perf_open": [...], "alerts": [...], "handoffs": [...],
      "reservations": {"active": [{"id", "agent", "target", "kind", "exclusive", "reason", "created_at",
                                   "expires_at"}], "conflicts": [{"ts", "action", "agent", "target",
                                   "holder", "reservation", "detail"}]}   # conflicts within `since`
    }
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
DEFAULT_SINCE = "7d"
RECENT = 20


def number(value) -> str:
    """A figure for people: 10112.86 -> `10112.86`, 12345678.0 -> `12345678`, never `1.012e+04`."""
    if value is None:
        return "-"
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        return str(value)
    if abs(value) >= 1e15 or (value and abs(value) < 1e-4):
        return f"{value:.4g}"
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _delivered_at(entry: os.DirEntry) -> float | None:
    """When a Maildir message was delivered: the time its name starts with (`<seconds>.M<usec>...`,
    the Maildir convention agentops follows), else the file's mtime. Reading the name instead of
    stat-ing every file keeps `status` fast with 100,000 unread messages."""
    sec, dot, rest = entry.name.partition(".M")
    if dot and sec.isdigit():
        usec = rest.partition("P")[0]
        return int(sec) + (int(usec) / 1e6 if usec.isdigit() else 0.0)
    try:
        return entry.stat().st_mtime
    except FileNotFoundError:
        return None


def _maildir_counts(box: Path) -> tuple[int, int, float | None]:
    """(unread, unacked, oldest unread delivery time) straight from the Maildir folders."""
    from agentops.mail.maildir import ACKED, SEEN, split_name

    unread = unacked = 0
    oldest: float | None = None
    for sub in ("new", "cur"):
        try:
            it = os.scandir(box / sub)
        except (FileNotFoundError, NotADirectoryError):
            continue  # a file where the folder belongs: nothing to count (routing dead-letters to it)
        with it:
            for entry in it:
                if entry.name.startswith("."):
                    continue
                flags = split_name(entry.name)[1]
                if ACKED not in flags:
                    unacked += 1
                if sub == "new" or SEEN not in flags:
                    unread += 1
                    t = _delivered_at(entry)
                    if t is not None and (oldest is None or t < oldest):
                        oldest = t
    return unread, unacked, oldest


def _count_files(path: Path, suffix: str = "") -> int:
    try:
        with os.scandir(path) as it:
            return sum(1 for e in it if not e.name.startswith(".") and e.name.endswith(suffix) and e.is_file())
    except FileNotFoundError:
        return 0


def _daemon(ws) -> dict[str, Any]:
    from agentops.pidlock import daemon_pid

    pid = daemon_pid(ws)
    try:
        beat = json.loads((ws.run_dir / "daemon.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        beat = {}
    return {
        "running": pid is not None,
        "pid": pid,
        "state": ("running" if pid else ("stopped" if beat else "never started")),
        "mode": beat.get("mode"),
        "started": beat.get("started"),
        "updated": beat.get("updated"),
        "last_routed": beat.get("last_routed"),
        "routed": beat.get("routed"),
        "errors": beat.get("errors"),
        "last_error": beat.get("last_error"),
        "drop_zone": _count_files(ws.email_dir, ".email"),
        "queued": _count_files(ws.spool_dir),
        "dead_letters": _count_files(ws.dead_dir, ".reason"),
    }


def _drafts_by_sender(ws) -> dict[str, int]:
    from email.parser import BytesHeaderParser

    out: dict[str, int] = {}
    if ws.drafts_dir.is_dir():
        parser = BytesHeaderParser()
        for p in ws.drafts_dir.glob("*.email"):
            if p.is_file() and not p.is_symlink():
                with open(p, "rb") as fh:
                    sender = str(parser.parse(fh).get("From", "")).strip()
                out[sender] = out.get(sender, 0) + 1
    return out


def _rows(cur) -> list[dict]:
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def _pipelines(ws, conn) -> list[dict]:
    spec_names = {p.stem: p for p in ws.pipelines_dir.glob("*.yaml")} if ws.pipelines_dir.is_dir() else {}
    names = set(spec_names) | {r[0] for r in conn.execute("SELECT DISTINCT pipeline FROM runs")}
    running = dict(conn.execute("SELECT pipeline, count(*) FROM runs WHERE state = 'running' AND task = '' "
                                "GROUP BY pipeline").fetchall())
    backfills: dict[str, dict[str, int]] = {}
    for pipeline, state, n in conn.execute(
            "SELECT pipeline, state, count(*) FROM runs WHERE run_type = 'backfill' AND task = '' "
            "GROUP BY pipeline, state"):
        backfills.setdefault(pipeline, {})[state] = n
    out = []
    for name in sorted(names):
        latest = _rows(conn.execute(
            "SELECT run_id, state, run_type, logical_date, attempt, updated_at, error, owner FROM runs "
            "WHERE pipeline = ? AND task = '' ORDER BY updated_at DESC, seq DESC LIMIT 1", (name,)))
        latest_run = latest[0] if latest else None
        owner = latest_run.pop("owner") if latest_run else None
        if owner is None and name in spec_names:
            owner = _spec_owner(spec_names[name])
        bf = backfills.get(name)
        backfill = None
        if bf:
            total = sum(bf.values())
            done = bf.get("succeeded", 0) + bf.get("skipped", 0)
            backfill = {"total": total, "done": done, "failed": bf.get("failed", 0) + bf.get("upstream_failed", 0),
                        "running": bf.get("running", 0), "queued": bf.get("queued", 0) + bf.get("up_for_retry", 0),
                        "percent": round(100.0 * done / total, 1) if total else 0.0}
        out.append({
            "name": name, "owner": owner, "spec": name in spec_names, "latest": latest_run,
            "failing": bool(latest_run and latest_run["state"] in ("failed", "upstream_failed")),
            "running": running.get(name, 0), "backfill": backfill,
        })
    return out


def _spec_owner(path: Path) -> str | None:
    """The `owner:` line of a spec, read cheaply (no YAML parse: status must stay fast)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:  # a bad spec is pipeline check's to report
            for _, line in zip(range(200), fh):
                if line.startswith("owner:"):
                    return line.split(":", 1)[1].strip().strip("'\"") or None
    except OSError:
        return None
    return None


def collect(ws, *, since: str = DEFAULT_SINCE) -> dict[str, Any]:
    from agentops.orbit.queries import parse_since
    from agentops.store import utcnow

    since_ts = parse_since(since)
    book = ws.addresses
    now = time.time()
    status: dict[str, Any] = {"version": SCHEMA_VERSION, "generated": utcnow(), "workspace": str(ws.root),
                              "since": since}
    status["daemon"] = _daemon(ws)
    db = ws.db()
    conn = db.conn
    try:
        dispatch = {r["agent"]: r for r in _rows(conn.execute(
            "SELECT agent, action, attempt, started, finished, exit_code, log, runs, failures, gave_up "
            "FROM dispatch_runs"))}
        drafts = _drafts_by_sender(ws)
        agents = []
        for name, agent in sorted(book.agents.items()):
            unread, unacked, oldest = _maildir_counts(ws.inbox(name))
            d = dispatch.get(name)
            if d:
                d.pop("agent", None)
            agents.append({"name": name, "role": agent.role, "unread": unread, "unacked": unacked,
                           "oldest_unread_age_s": round(now - oldest, 1) if oldest else None,
                           "drafts": drafts.get(name, 0), "dispatch": d})
        for builtin in ("user", "postmaster"):
            unread, unacked, oldest = _maildir_counts(ws.inbox(builtin))
            if unread or unacked:
                agents.append({"name": builtin, "role": None, "unread": unread, "unacked": unacked,
                               "oldest_unread_age_s": round(now - oldest, 1) if oldest else None,
                               "drafts": 0, "dispatch": None})
        status["agents"] = agents
        queues = []
        if ws.queues_root.is_dir():
            for q in sorted(p for p in ws.queues_root.iterdir() if p.is_dir()):
                queues.append({"role": q.name, "waiting": _count_files(q / "new")})
        status["queues"] = queues
        status["orphans"] = orphan_boxes(ws, book)
        status["pipelines"] = _pipelines(ws, conn)
        failed_checks = _rows(conn.execute(
            'SELECT pipeline, run_id, dataset, "check", severity, observed, threshold, ts, status, reason FROM checks '
            "WHERE passed = 0 AND ts >= ? ORDER BY ts DESC LIMIT ?", (since_ts, RECENT)))
        for c in failed_checks:  # figures are stored as JSON text: numbers stay numbers
            for k in ("observed", "threshold"):
                c[k] = json.loads(c[k]) if c[k] is not None else None
        anomalies = _rows(conn.execute(
            "SELECT pipeline, dataset, metric, value, expected, zscore, direction, ts FROM anomalies "
            "WHERE ts >= ? ORDER BY ts DESC LIMIT ?", (since_ts, RECENT)))
        status["quality"] = {"failed_checks": failed_checks, "anomalies": anomalies,
                             "anomaly_groups": anomaly_groups(conn, since_ts, RECENT)}
        status["perf_open"] = _rows(conn.execute(
            "SELECT pipeline, task, bottleneck, note, opened_at, updated_at FROM perf WHERE status = 'open' "
            "ORDER BY updated_at DESC LIMIT ?", (RECENT,)))
        status["alerts"] = _rows(conn.execute(
            "SELECT ts, cause, pipeline, run_id, owner, subject, status FROM alerts WHERE ts >= ? "
            "ORDER BY ts DESC LIMIT ?", (since_ts, RECENT)))
        status["handoffs"] = [
            {k: v for k, v in json.loads(data).items() if k in ("ts", "sender", "target", "label", "sent", "draft")}
            for (data,) in conn.execute("SELECT data FROM events WHERE kind = 'handoff' AND ts >= ? "
                                        "ORDER BY ts DESC LIMIT ?", (since_ts, RECENT))]
        from agentops.reservations import status_section

        status["reservations"] = status_section(conn, since_ts, RECENT)
    finally:
        conn.close()
    status["roles"] = _role_files(ws)
    status["orbit_rejected"] = orbit_rejected(ws)
    status["problems"] = problems(status)
    status["healthy"] = not status["problems"]
    return status


def orbit_rejected(ws) -> list[dict[str, Any]]:
    """What Orbit ingest set aside in `.agent/orbit/rejected/`: `<drop>.rejected.jsonl` (the lines of a
    drop file that were refused, one JSON object each with its line number and reason) and
    `<name>.reason` (a whole entry that could not be read). The first reason of each, read from the
    first line only (through agentops.safefs: no link is followed)."""
    import stat as st_

    from agentops import safefs
    from agentops.errors import AgentOpsError

    folder = ws.orbit_dir / "rejected"
    try:
        entries = sorted(name for name, st in safefs.scan(ws, folder) if st_.S_ISREG(st.st_mode))
    except (FileNotFoundError, NotADirectoryError, AgentOpsError):
        return []
    out = []
    for name in entries:
        if not (name.endswith(".rejected.jsonl") or name.endswith(".reason")):
            continue
        try:
            with open(safefs.open_file(ws, folder / name), "rb") as fh:
                first = fh.readline(64 * 1024)
                lines = (1 + sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 16), b""))) if first else 0
            info = json.loads(first.decode("utf-8", "replace")) if first else {}
        except (OSError, ValueError, AgentOpsError):
            info, lines = {}, 0
        info = info if isinstance(info, dict) else {}
        line = info.get("line")
        reason = str(info.get("reason", "unreadable"))
        out.append({"file": f".agent/orbit/rejected/{name}", "source": info.get("file"),
                    "lines": lines if name.endswith(".rejected.jsonl") else None,
                    "reason": f"line {line}: {reason}" if line else reason})
    return out


def _role_files(ws) -> dict[str, Any]:
    """How many role files there are and every problem with them (a file that does not parse is
    no role at all: its agents cannot send or receive), as `roles check` finds them."""
    from agentops.errors import AgentOpsError
    from agentops.roles import check_roles, shared_role_problems

    roles, parse_problems = ws.roles_with_problems()
    found = check_roles(roles, ws.root, parse_problems)
    try:
        found += shared_role_problems(roles, ws.addresses.members, ws.root)
    except AgentOpsError:  # a roster problem: collect() has failed on it already
        pass
    return {"files": len(roles) + len({p.file for p in parse_problems}), "problems": [str(p) for p in found]}


def orphan_boxes(ws, book) -> list[dict[str, Any]]:
    """Inboxes no agent owns any more (an agent renamed, a roster added after mail went to role
    addresses) and role queues whose role no longer has several members: mail there is read by
    no one. Each with how many messages it holds."""
    import stat as st_

    from agentops import safefs
    from agentops.errors import AgentOpsError

    owned = set(book.agents) | {"user", "postmaster"}
    shared = {r for r in book.roles if len(book.members(r)) > 1}
    out = []
    for root, keep, kind in ((ws.inbox_root, owned, "inbox"), (ws.queues_root, shared, "queues")):
        try:
            names = sorted(n for n, st in safefs.scan(ws, root) if st_.S_ISDIR(st.st_mode) and not n.startswith("."))
        except (FileNotFoundError, NotADirectoryError, AgentOpsError):
            continue
        for name in names:
            if name not in keep:
                box = root / name
                held = _count_files(box / "new") + _count_files(box / "cur")
                out.append({"box": f".agent/email/{kind}/{name}/", "messages": held,
                            "unread": _maildir_counts(box)[0]})
    return out


def anomaly_groups(conn, since_ts: str, limit: int) -> list[dict]:
    """The anomalies within the window, one entry per (pipeline, dataset or task): how many, in how
    many runs (an anomaly logged without a run counts its timestamp as one), the series that moved,
    and the worst (largest |z|). Newest first."""
    rows = conn.execute(
        "SELECT a.pipeline, a.dataset, a.metric, a.value, a.expected, a.zscore, a.direction, a.ts, e.run_id "
        "FROM anomalies a LEFT JOIN events e ON e.seq = a.seq WHERE a.ts >= ? ORDER BY a.seq", (since_ts,))
    groups: dict[tuple, dict] = {}
    runs: dict[tuple, set] = {}
    for pipeline, dataset, metric, value, expected, zscore, direction, ts, run_id in rows:
        key = (pipeline, dataset)
        g = groups.get(key)
        if g is None:
            g = groups[key] = {"pipeline": pipeline, "dataset": dataset, "anomalies": 0, "runs": 0, "ts": ts,
                               "metrics": [], "worst": None}
            runs[key] = set()
        g["anomalies"] += 1
        g["ts"] = max(g["ts"], ts)
        runs[key].add(run_id or ts)
        if metric not in g["metrics"]:
            g["metrics"].append(metric)
        if g["worst"] is None or abs(zscore) >= abs(g["worst"]["zscore"]):
            g["worst"] = {"metric": metric, "value": value, "expected": expected, "zscore": zscore,
                          "direction": direction, "run_id": run_id, "ts": ts}
    for key, g in groups.items():
        g["runs"] = len(runs[key])
    return sorted(groups.values(), key=lambda g: g["ts"], reverse=True)[:limit]


def anomaly_line(g: dict) -> str:
    """One anomaly group as a line: `raw.orders: 7 series moved in 1 run; worst null_fraction:c = 0.3 ...`."""
    w = g["worst"]
    runs = f"{g['runs']} run{'s' if g['runs'] != 1 else ''}"
    return (f"{g['dataset'] or '(pipeline)'}: {g['anomalies']} anomal{'ies' if g['anomalies'] != 1 else 'y'} "
            f"in {runs}; worst {w['metric']} = {number(w['value'])} (expected ~{number(w['expected'])}, "
            f"z={w['zscore']:.1f}, {w['direction']})")


def problems(status: dict[str, Any]) -> list[str]:
    """What is failing, one line each (the basis of `status --check`)."""
    out = []
    for p in status.get("roles", {}).get("problems", []):
        out.append(f"role file {p} (see `agentops roles check`)")
    for o in status.get("orphans", []):
        if o["messages"]:
            out.append(f"{o['box']} belongs to no agent and holds {o['messages']} message(s) nobody reads "
                       "(left from an earlier roster?); move them to an agent's inbox, then remove it")
    for r in status.get("orbit_rejected", []):
        what = (f"{r['lines']} line(s) of {r['source']} rejected" if r["lines"] is not None
                else f"{r['source']} set aside")
        out.append(f"orbit: {what} ({r['file']}; first: {r['reason'][:200]}); fix and drop again, then remove it")
    d = status["daemon"]
    if d["dead_letters"]:
        out.append(f"{d['dead_letters']} dead letter(s) in .agent/email/dead (see `agentops mail dead`)")
    if not d["running"] and (d["drop_zone"] or d["queued"]):
        out.append(f"daemon not running and {d['drop_zone'] + d['queued']} message(s) wait to be routed")
    for p in status["pipelines"]:
        if p["failing"]:
            latest = p["latest"]
            out.append(f"pipeline {p['name']}: run {latest['run_id']} {latest['state']}"
                       + (f": {latest['error']}" if latest.get("error") else ""))
    for c in status["quality"]["failed_checks"]:
        if c["severity"] == "error":
            if c.get("status") == "error":
                out.append(f"check {c['check']} on {c['dataset']} could not run ({c['pipeline']}): {c['reason']}")
            else:
                out.append(f"check {c['check']} on {c['dataset']} failed ({c['pipeline']}, observed {c['observed']})")
    for g in status["quality"].get("anomaly_groups", []):
        out.append(f"anomaly: {g['pipeline']} {anomaly_line(g)} (see `agentops orbit anomalies --pipeline "
                   f"{g['pipeline']}`)")
    for a in status["agents"]:
        disp = a.get("dispatch")
        if disp and disp.get("action") == "gave_up":
            out.append(f"dispatch of {a['name']} gave up (log: {disp.get('log')})")
    return out


def agent_work(ws, agent: str) -> list[str]:
    """Open items for one agent, for its prompt: failing pipelines it owns, alerts, drafts."""
    status = collect(ws)
    items = []
    for p in status["pipelines"]:
        if p["owner"] == agent and p["failing"]:
            items.append(f"Pipeline `{p['name']}` is failing: run {p['latest']['run_id']} "
                         f"{p['latest']['state']}" + (f" ({p['latest']['error']})" if p['latest'].get('error') else ""))
        if p["owner"] == agent and p["backfill"] and p["backfill"]["done"] < p["backfill"]["total"]:
            b = p["backfill"]
            items.append(f"Backfill of `{p['name']}`: {b['done']}/{b['total']} partitions done")
    for c in status["quality"]["failed_checks"]:
        owner = next((p["owner"] for p in status["pipelines"] if p["name"] == c["pipeline"]), None)
        if owner == agent:
            items.append(f"Failed {c['severity']} check `{c['check']}` on `{c['dataset']}` ({c['pipeline']})")
    for g in status["quality"].get("anomaly_groups", []):
        owner = next((p["owner"] for p in status["pipelines"] if p["name"] == g["pipeline"]), None)
        if owner == agent:
            items.append(f"Anomalies in `{g['pipeline']}` {anomaly_line(g)}")
    from agentops.reservations import prompt_items

    items += prompt_items(ws, agent)
    me = next((a for a in status["agents"] if a["name"] == agent), None)
    if me and me["drafts"]:
        items.append(f"{me['drafts']} draft(s) waiting in .agent/email/drafts (send with `agentops mail send --draft ID`)")
    return items
