"""The benchmark suite: the speed a coordination runtime should have (issue 8).

    python benchmarks/run.py [--only routing,orbit] [--quick] [--repeat N] [--json PATH]
    make bench

Each case builds its own data in a temp workspace (`agentops init` into a temp dir) and measures
real processes where the target says "whole process". The machine is shared and noisy, so every
figure is the median of several repeats and, where a baseline makes sense, is compared with a
baseline measured in the same run (the ratio is what counts). Prints one table and writes it as
JSON to benchmarks/results/latest.json.

Cases (targets from issue 8):
  routing    `agentops daemon --once` on a drop zone of 5,000 files, vs delivering the same files plainly
  latency    live daemon: 1,000 files at 200/s, rename-in (or close) to the message in new/
  orbit      bulk ingest of 1,000,000 events, vs a plain sqlite3 executemany of the same rows
  reads      `status --json`, `mail inbox`, `mail search` with 1M events, 100k messages, 200 pipelines
  startup    `agentops --help`, `mail send` and other commands vs a minimal typer app with one command
  memory     daemon VmRSS/VmHWM after routing 100,000 messages
  pipelines  check+plan of a 5,000-stage spec; a 365-day x 50-stage backfill dry run
  quality    `quality run` (every check type + profile) on a 10,000,000-row Parquet file, vs one
             hand-written DuckDB query computing the same figures (quality_bench.py)
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import select
import shutil
import signal
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from orbit_ingest import make_events  # noqa: E402

PY = sys.executable
_BIN = Path(PY).parent / "agentops"
AGENTOPS = [str(_BIN)] if _BIN.exists() else [PY, "-m", "agentops"]
AGENTS = ("data-engineer", "database-engineer", "devops", "developer")
WORDS = ("orders", "schema", "backfill", "latency", "partition", "warehouse", "quality", "lineage",
         "replica", "index", "vacuum", "snapshot", "stream", "kafka", "parquet", "freshness")


# results --------------------------------------------------------------------------------------
@dataclass
class Row:
    case: str
    metric: str
    value: float
    unit: str
    target: str            # e.g. ">= 2000 msg/s"
    ok: bool
    baseline: float | None = None
    baseline_what: str = ""
    ratio: float | None = None
    note: str = ""
    samples: list[float] = field(default_factory=list)


def med(xs):
    return statistics.median(xs)


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = min(len(xs) - 1, max(0, round(p / 100 * (len(xs) - 1))))
    return xs[k]


# helpers --------------------------------------------------------------------------------------
def sh(args, cwd=None, check=True, env=None, stdin=None) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, check=check, capture_output=True, env=env, stdin=stdin)


def wall(args, cwd=None, env=None) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(args, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} exited {proc.returncode}: {proc.stderr.decode()[-2000:]}")
    return dt


def clean_env(ws: Path | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTOPS_")}
    if ws is not None:
        env["AGENTOPS_WORKSPACE"] = str(ws)
    return env


def new_workspace(tmp: Path, name: str) -> Path:
    ws = tmp / name
    sh(AGENTOPS + ["init", str(ws)], env=clean_env())
    return ws


def workspace(root: Path):
    from agentops.workspace import Workspace

    return Workspace(root)


def drop_name(i: int) -> str:
    to = AGENTS[i % 4]
    frm = AGENTS[(i + 1) % 4]
    return f"to-{to}-from-{frm}-m{i}.email"


def drop_body(i: int) -> bytes:
    w = WORDS
    return (f"Subject: run {i} {w[i % len(w)]}\n\nThe {w[(i * 7) % len(w)]} job {i} finished; "
            f"check the {w[(i * 3) % len(w)]} table before the {w[(i * 5) % len(w)]} load.\n").encode()


def write_drops(zone: Path, start: int, n: int) -> float:
    """Write n drop files (each to a dot-temp name, then renamed in). Returns seconds."""
    t0 = time.perf_counter()
    for i in range(start, start + n):
        tmp = zone / f".w{i}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, drop_body(i))
        os.close(fd)
        os.rename(tmp, zone / drop_name(i))
    return time.perf_counter() - t0


def count_new(ws: Path) -> int:
    total = 0
    for a in AGENTS:
        try:
            total += len(os.listdir(ws / ".agent/email/inbox" / a / "new"))
        except FileNotFoundError:
            pass
    return total


def drops_left(ws: Path) -> int:
    zone = ws / ".agent/email"
    n = sum(1 for e in os.scandir(zone) if e.name.endswith(".email"))
    try:
        n += sum(1 for _ in os.scandir(zone / ".queue"))
    except FileNotFoundError:
        pass
    return n


def proc_status(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS", "VmHWM")):
                k, v = line.split(":", 1)
                out[k] = int(v.split()[0])  # kB
    return out


class LiveDaemon:
    """`agentops daemon` as a real process; ready once it has routed a warm-up message."""

    def __init__(self, ws: Path, env: dict | None = None):
        """`env` with PYTHONPATH naming other code runs that code's daemon (`python -m agentops`)."""
        self.ws = ws
        self.log = open(ws / "daemon-bench.log", "wb")
        cmd = [PY, "-m", "agentops"] if env is not None else AGENTOPS
        self.proc = subprocess.Popen(cmd + ["daemon"], cwd=ws, env=env if env is not None else clean_env(ws),
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 30.0) -> None:
        before = count_new(self.ws)
        write_drops(self.ws / ".agent/email", 10_000_000, 1)
        deadline = time.monotonic() + timeout
        while count_new(self.ws) <= before:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"daemon not ready: {(self.ws / 'daemon-bench.log').read_text()[-2000:]}")
            time.sleep(0.01)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Inotify:
    """Minimal inotify (ctypes) to see files arrive in Maildir new/ folders the moment they do."""

    IN_MOVED_TO = 0x80
    IN_CREATE = 0x100

    def __init__(self, dirs: list[Path]):
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.wds = {}
        for d in dirs:
            wd = libc.inotify_add_watch(self.fd, str(d).encode(), self.IN_MOVED_TO | self.IN_CREATE)
            if wd < 0:
                raise OSError(ctypes.get_errno(), f"inotify_add_watch {d}")
            self.wds[wd] = d

    def read(self, timeout: float) -> list[tuple[Path, float]]:
        r, _, _ = select.select([self.fd], [], [], timeout)
        if not r:
            return []
        now = time.perf_counter()
        try:
            buf = os.read(self.fd, 1 << 20)
        except BlockingIOError:
            return []
        out, i = [], 0
        while i < len(buf):
            wd, _mask, _cookie, ln = struct.unpack_from("iIII", buf, i)
            name = buf[i + 16:i + 16 + ln].rstrip(b"\0").decode()
            i += 16 + ln
            out.append((self.wds[wd] / name, now))
        return out

    def close(self) -> None:
        os.close(self.fd)


# cases ----------------------------------------------------------------------------------------
def plain_delivery(zone: Path, out: Path, batch: int = 1000) -> float:
    """The routing baseline: for every drop file, read it, write it to a new file in `tmp/` (O_EXCL),
    rename that into another folder and unlink the drop file, with one syncfs per `batch` files
    (what routing does, less the parsing, the headers and Orbit). Returns seconds."""
    (out / "tmp").mkdir(parents=True)
    (out / "new").mkdir()
    libc = ctypes.CDLL(None, use_errno=True)
    t0 = time.perf_counter()
    names = sorted(e.name for e in os.scandir(zone) if e.name.endswith(".email"))
    for i, name in enumerate(names, 1):
        src = zone / name
        with open(src, "rb") as f:
            data = f.read()
        tmp = out / "tmp" / name
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, data)
        os.close(fd)
        os.rename(tmp, out / "new" / name)
        os.unlink(src)
        if i % batch == 0 or i == len(names):
            dfd = os.open(out, os.O_RDONLY)
            libc.syncfs(dfd)
            os.close(dfd)
    return time.perf_counter() - t0


def case_routing(tmp: Path, scale: dict, repeat: int) -> list[Row]:
    n = scale["routing"]
    rates, base_rates = [], []
    for r in range(repeat):
        ws = new_workspace(tmp, f"routing{r}")
        zone = ws / ".agent/email"
        plain = tmp / f"plain{r}"
        plain.mkdir()
        write_drops(plain, 0, n)                              # baseline: the same files, delivered plainly
        base_rates.append(n / plain_delivery(plain, plain / "box"))
        write_drops(zone, 0, n)
        time.sleep(0.12)                                      # past the settle time
        secs = wall(AGENTOPS + ["daemon", "--once"], cwd=ws, env=clean_env(ws))
        got = count_new(ws)
        if got != n or drops_left(ws):
            raise RuntimeError(f"routing: {got} of {n} delivered, {drops_left(ws)} left")
        rates.append(n / secs)
        shutil.rmtree(ws)
        shutil.rmtree(plain)
    v, b = med(rates), med(base_rates)
    return [Row("routing", f"daemon --once, {n:,} files (whole process, incl. Orbit)", v, "msg/s",
                ">= 0.5x baseline", v / b >= 0.5, b, "read+write tmp/+rename+unlink, syncfs/1000 files/s",
                v / b, samples=rates)]


def case_latency(tmp: Path, scale: dict, repeat: int) -> list[Row]:
    n, rate = scale["latency"], 200.0
    ws = new_workspace(tmp, "latency")
    daemon = LiveDaemon(ws)
    lat_all: list[float] = []
    p50s, p99s = [], []
    try:
        daemon.wait_ready()
        to = "data-engineer"
        new_dir = ws / ".agent/email/inbox" / to / "new"
        zone = ws / ".agent/email"
        for r in range(repeat):
            ino = Inotify([new_dir])
            seen: dict[Path, float] = {}
            done = threading.Event()

            def watch():
                while not done.is_set() or len(seen) < n:
                    for path, t in ino.read(0.2):
                        seen.setdefault(path, t)
                    if done.is_set() and len(seen) >= n:
                        break

            th = threading.Thread(target=watch, daemon=True)
            th.start()
            closed: dict[int, float] = {}
            start = time.perf_counter()
            for i in range(n):
                due = start + i / rate
                while (d := due - time.perf_counter()) > 0:
                    time.sleep(d)
                k = r * 1_000_000 + i
                tmp_path = zone / f".lat{k}.tmp"
                fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.write(fd, f"Subject: lat {k}\n\nping {k}\n".encode())
                os.close(fd)
                os.rename(tmp_path, zone / f"to-{to}-from-devops-lat{k}.email")
                closed[k] = time.perf_counter()
            deadline = time.monotonic() + 30
            while len(seen) < n and time.monotonic() < deadline:
                time.sleep(0.01)
            done.set()
            th.join(5)
            ino.close()
            lat = []
            for path, t in seen.items():
                try:
                    head = path.read_bytes()[:4096].decode(errors="replace")
                except FileNotFoundError:
                    continue
                for line in head.splitlines():
                    if line.startswith("Subject: lat "):
                        k = int(line.split()[-1])
                        if k in closed:
                            lat.append((t - closed[k]) * 1000)
                        break
            if len(lat) < n:
                raise RuntimeError(f"latency: only {len(lat)} of {n} messages arrived")
            lat_all += lat
            p50s.append(pct(lat, 50))
            p99s.append(pct(lat, 99))
    finally:
        daemon.stop()
    note = f"{n} files at {rate:.0f}/s, written to a dot-temp name, closed, renamed in; clock starts after the rename"
    return [Row("latency", "live daemon p50 (rename-in -> new/)", med(p50s), "ms", "<= 20 ms", med(p50s) <= 20,
                note=note, samples=p50s),
            Row("latency", "live daemon p99", med(p99s), "ms", "<= 100 ms", med(p99s) <= 100,
                note=f"max {max(lat_all):.1f} ms", samples=p99s)]


def write_events(path: Path, n: int, pipelines: int = 50) -> None:
    with open(path, "w") as f:
        for k, ev in enumerate(make_events(n, pipelines=pipelines)):
            if k >= n:
                break
            ev["ts"] = datetime.fromtimestamp(ev["ts"], timezone.utc).isoformat()
            f.write(json.dumps(ev) + "\n")


def case_orbit(tmp: Path, scale: dict, repeat: int) -> list[Row]:
    from agentops.orbit import Orbit
    from agentops.orbit.ingest import gc_paused, ingest_file
    from agentops.store import open_db

    n = scale["orbit"]
    src = tmp / "events.jsonl"
    write_events(src, n)
    rates, base_rates = [], []
    for r in range(repeat):
        ws = new_workspace(tmp, f"orbit{r}")
        with Orbit.open(workspace(ws)) as orbit:
            t0 = time.perf_counter()
            with gc_paused():  # as `orbit ingest` does
                report = ingest_file(orbit, src)
            secs = time.perf_counter() - t0
            rows = orbit.db.conn.execute("SELECT id, ts, kind, pipeline, run_id, agent, data FROM events"
                                         " ORDER BY seq").fetchall()
        if report.rejected:
            raise RuntimeError(f"orbit ingest rejected lines: {report}")
        rates.append(n / secs)
        db = open_db(tmp / f"plain{r}.db")        # the same schema: a same-shaped events table
        t0 = time.perf_counter()
        with db.conn:
            db.conn.executemany("INSERT INTO events (id, ts, kind, pipeline, run_id, agent, data)"
                                " VALUES (?,?,?,?,?,?,?)", rows)
        base_rates.append(len(rows) / (time.perf_counter() - t0))
        db.conn.close()
        del rows
        shutil.rmtree(ws)
        os.unlink(tmp / f"plain{r}.db")
    v, b = med(rates), med(base_rates)
    return [Row("orbit", f"ingest {n:,} events with derived state", v, "events/s",
                ">= 100000/s and >= 30% of plain", v >= 100_000 and v / b >= 0.30, b,
                "plain executemany rows/s", v / b, samples=rates)]


def small_spec(name: str, owner: str, stages: int = 5) -> str:
    lines = [f"name: {name}", f"owner: {owner}", "schedule: '@daily'",
             "sources:", f"  - {{name: {name}_src, kind: file, format: csv}}", "stages:"]
    for i in range(stages):
        inp = f"{name}_src" if i == 0 else f"{name}_d{i - 1}"
        lines += [f"  - name: s{i}", "    kind: transform", f"    inputs: [{inp}]", f"    outputs: [{name}_d{i}]"]
    return "\n".join(lines) + "\n"


def route_in_batches(ws_root: Path, n: int, batch: int = 5000) -> None:
    """Deliver n messages through the library (real schema, real Maildirs), batch by batch."""
    from agentops.mail.route import route_pending

    ws = workspace(ws_root)
    zone = ws_root / ".agent/email"
    for start in range(0, n, batch):
        k = min(batch, n - start)
        write_drops(zone, start, k)
        rep = route_pending(ws, settle=0)
        if rep.delivered != k:
            raise RuntimeError(f"route_pending delivered {rep.delivered} of {k}")


def case_reads(tmp: Path, scale: dict, repeat: int) -> list[Row]:
    from agentops.orbit import Orbit
    from agentops.orbit.ingest import ingest_file

    n_ev, n_msg, n_pipe = scale["reads"]
    ws_root = new_workspace(tmp, "reads")
    ws = workspace(ws_root)
    pdir = ws_root / ".agent/data/pipelines"
    pdir.mkdir(parents=True, exist_ok=True)
    for p in range(n_pipe):
        (pdir / f"pipe{p}.yaml").write_text(small_spec(f"pipe{p}", AGENTS[p % 4]))
    src = tmp / "reads-events.jsonl"
    write_events(src, n_ev, pipelines=n_pipe)
    with Orbit.open(ws) as orbit:
        ingest_file(orbit, src)
    os.unlink(src)
    route_in_batches(ws_root, n_msg)
    env = clean_env(ws_root)
    cmds = [("status --json", AGENTOPS + ["status", "--json"], 0.5),
            ("mail inbox data-engineer", AGENTOPS + ["mail", "inbox", "data-engineer"], 0.3),
            ("mail search 'warehouse vacuum'", AGENTOPS + ["mail", "search", "warehouse vacuum"], 0.3)]
    rows = []
    scale_note = f"{n_ev:,} events, {n_msg:,} messages, {n_pipe} pipelines"
    for label, args, limit in cmds:
        wall(args, cwd=ws_root, env=env)  # warm the page cache once
        xs = [wall(args, cwd=ws_root, env=env) for _ in range(max(2, repeat * 2 - 1))]
        rows.append(Row("reads", f"{label} (whole process)", med(xs), "s", f"<= {limit} s", med(xs) <= limit,
                        note=scale_note, samples=xs))
    shutil.rmtree(ws_root)
    return rows


TYPER_MIN = ("import typer\napp = typer.Typer()\n\n@app.command()\ndef hello(name: str = 'world'):\n"
             "    print(name)\n\napp()\n")
# `--help` and `mail send` are held to at most 1.3x the code before issue 13 (the commit before its
# first one), run from this checkout's history in the same run. Without that history (a shallow
# clone) they fall back to ratios to the minimal typer app measured with that code on 2026-12-04.
BEFORE_REF = "41caac3^"
BEFORE = {"--help": 0.127, "send": 0.238, "send-daemon": 0.130}


def before_code(tmp: Path) -> Path | None:
    """The agentops of BEFORE_REF with the roles, templates and example specs it packages, unpacked
    from git history into `tmp`; None when this checkout does not have that commit."""
    import io
    import tarfile

    try:
        archive = sh(["git", "-C", str(REPO), "archive", BEFORE_REF, "agentops", "roles", "templates",
                      ".agent/data/pipelines"]).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    dest = tmp / "before-code"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    sh([PY, "-m", "compileall", "-q", str(dest / "agentops")])
    return dest


def case_startup(tmp: Path, scale: dict, repeat: int) -> list[Row]:
    """Every command runs as `python -m agentops` with PYTHONPATH naming its code, so the code before
    issue 13 and today's start the same way, each in a workspace of its own."""
    reps = scale["startup"]
    base_cmd = [PY, "-c", TYPER_MIN, "--name", "x"]
    send = ["mail", "send", "--from", "devops", "--to", "data-engineer", "--subject", "hello",
            "--body", "a short note"]

    def setup(code: Path, name: str) -> tuple[Path, dict]:
        env = clean_env()
        env["PYTHONPATH"] = str(code)
        ws = tmp / name
        sh([PY, "-m", "agentops", "init", str(ws)], env=env)
        env["AGENTOPS_WORKSPACE"] = str(ws)
        return ws, env

    ws, env = setup(REPO, "startup")
    old = before_code(tmp)
    old_ws, old_env = setup(old, "startup-before") if old else (None, None)
    time.sleep(1.1)  # a workspace's agentops.toml and roles are cached once over a second old (git's racy rule)

    def interleaved(cmds: list[tuple[str, list[str], Path, dict]]) -> tuple[dict[str, list[float]], float]:
        for _, args, cwd, e in cmds:
            wall([PY, "-m", "agentops", *args], cwd=cwd, env=e)  # the first builds .agent/run/ caches
        wall(base_cmd, cwd=ws, env=env)
        samples = {label: [] for label, _, _, _ in cmds}
        base = []
        for _ in range(reps):  # interleaved, so noise hits the baseline and the commands alike
            base.append(wall(base_cmd, cwd=ws, env=env))
            for label, args, cwd, e in cmds:
                samples[label].append(wall([PY, "-m", "agentops", *args], cwd=cwd, env=e))
        return samples, med(base)

    def rows_for(samples, b, labels) -> list[Row]:
        rows = []
        for label, key in labels:
            xs = samples[label]
            if key and old:  # against the code before issue 13, in this run
                was = med(samples[label + " (before)"])
                ratio = med(xs) / was
                rows.append(Row("startup", f"{label} (whole process)", med(xs), "s", "<= 1.3x before",
                                ratio <= 1.3, was, f"{BEFORE_REF} s", ratio, samples=xs,
                                note=f"{key}: {med(xs) / b:.2f}x the minimal typer app ({b:.3f} s)"))
            else:
                limit = 1.3 * BEFORE[key] if key else 1.2
                ratio = med(xs) / b
                rows.append(Row("startup", f"{label} (whole process)", med(xs), "s",
                                f"<= {limit:.2f}x" + (" (1.3x before)" if key else ""), ratio <= limit, b,
                                "minimal typer app, one command s", ratio, samples=xs))
        return rows

    compared = [("agentops --help", "--help", ["--help"]),
                ("agentops mail send, no daemon (routes the message itself)", "send", send)]
    others = [("agentops mail inbox data-engineer", ["mail", "inbox", "data-engineer"]),
              ("agentops status", ["status"]), ("agentops roles list", ["roles", "list"]),
              ("agentops orbit runs", ["orbit", "runs"]), ("agentops pipeline list", ["pipeline", "list"])]

    def with_before(label, args):
        cmds = [(label, args, ws, env)]
        return cmds + ([(label + " (before)", args, old_ws, old_env)] if old else [])

    cmds = [c for label, _, args in compared for c in with_before(label, args)]
    samples, b = interleaved(cmds + [(label, args, ws, env) for label, args in others])
    rows = rows_for(samples, b, [(label, key) for label, key, _ in compared] + [(label, "") for label, _ in others])
    daemons = [LiveDaemon(w, e) for w, e in ((ws, env), (old_ws, old_env)) if w is not None]
    try:
        for d in daemons:
            d.wait_ready()
        label = "agentops mail send, daemon running (writes the drop file)"
        samples, b = interleaved(with_before(label, send))
        rows += rows_for(samples, b, [(label, "send-daemon")])
    finally:
        for d in daemons:
            d.stop()
    heavy = sh([PY, "-c", "import sys, agentops.cli; "
                "print(','.join(m for m in ('networkx','jinja2','watchdog','mcp','rich') if m in sys.modules))"],
               cwd=ws, env=env).stdout.decode().strip()
    rows[0].note = "; ".join(filter(None, [rows[0].note, f"heavy modules imported by the CLI module: {heavy or 'none'}"]))
    for w in (ws, old_ws, old):
        if w is not None:
            shutil.rmtree(w)
    return rows


def case_memory(tmp: Path, scale: dict, repeat: int) -> list[Row]:
    n = scale["memory"]
    ws = new_workspace(tmp, "memory")
    daemon = LiveDaemon(ws)
    try:
        daemon.wait_ready()
        start_rss = proc_status(daemon.proc.pid)
        zone = ws / ".agent/email"
        chunk = 5000
        for s in range(0, n, chunk):
            write_drops(zone, s, min(chunk, n - s))
            deadline = time.monotonic() + 120
            while drops_left(ws) and time.monotonic() < deadline:
                time.sleep(0.05)
        deadline = time.monotonic() + 60
        while count_new(ws) < n + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        got = count_new(ws) - 1
        if got != n:
            raise RuntimeError(f"memory: {got} of {n} delivered")
        st = proc_status(daemon.proc.pid)
    finally:
        daemon.stop()
    shutil.rmtree(ws)
    rss = st["VmRSS"] / 1024
    return [Row("memory", f"daemon VmRSS after routing {n:,} messages", rss, "MB", "<= 100 MB", rss <= 100,
                note=f"VmHWM {st['VmHWM'] / 1024:.1f} MB; at start {start_rss['VmRSS'] / 1024:.1f} MB")]


def case_pipelines(tmp: Path, scale: dict, repeat: int) -> list[Row]:
    stages, (days, bstages) = scale["pipelines"]
    ws_root = new_workspace(tmp, "pipelines")
    sys.path.insert(0, str(REPO / "tests"))
    from pipeline_helpers import chain_spec

    pdir = ws_root / ".agent/data/pipelines"
    (pdir / "big.yaml").write_text(chain_spec(stages, "big"))
    (pdir / "wide.yaml").write_text(chain_spec(bstages, "wide"))
    env = clean_env(ws_root)
    code = ("import sys, time; t0 = time.perf_counter();"
            "from agentops.workspace import Workspace; from agentops.pipelines import check_one;"
            "from agentops.pipelines.graph import plan, recorded_durations;"
            "ws = Workspace(sys.argv[1]); spec, problems = check_one(ws, 'big');"
            "assert spec is not None and not [p for p in problems if p.level == 'error'], problems;"
            "p = plan(spec, recorded_durations(ws, 'big')); assert len(p['order']) == int(sys.argv[2]);"
            "print(time.perf_counter() - t0)")
    bcode = ("import sys, time; t0 = time.perf_counter();"
             "from agentops.workspace import Workspace; from agentops.pipelines import check_one;"
             "from agentops.pipelines.backfill import plan_backfill;"
             "ws = Workspace(sys.argv[1]); spec, _ = check_one(ws, 'wide');"
             "bp = plan_backfill(ws, spec, '2025-01-01', sys.argv[2], 'none');"
             "assert len(bp['tasks']) == int(sys.argv[3]), len(bp['tasks']);"
             "print(time.perf_counter() - t0)")
    end = (datetime(2025, 1, 1) + __import__("datetime").timedelta(days=days - 1)).strftime("%Y-%m-%d")
    a, b, wa, wb = [], [], [], []
    for _ in range(max(3, repeat)):
        t0 = time.perf_counter()
        a.append(float(sh([PY, "-c", code, str(ws_root), str(stages)], env=env).stdout))
        wa.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        b.append(float(sh([PY, "-c", bcode, str(ws_root), end, str(days * bstages)], env=env).stdout))
        wb.append(time.perf_counter() - t0)
    shutil.rmtree(ws_root)
    return [Row("pipelines", f"check+plan, {stages:,}-stage spec (in a fresh process)", med(a), "s", "<= 1 s",
                med(a) <= 1, note=f"whole process {med(wa):.2f} s", samples=a),
            Row("pipelines", f"backfill dry run, {days} days x {bstages} stages (fresh process)", med(b), "s",
                "<= 1 s", med(b) <= 1, note=f"whole process {med(wb):.2f} s", samples=b)]


def case_quality(tmp: Path, scale: dict, repeat: int) -> list[Row]:
    from quality_bench import case_quality as run_case

    return run_case(tmp, scale, repeat, new_workspace, Row)


CASES = {"routing": case_routing, "latency": case_latency, "orbit": case_orbit, "reads": case_reads,
         "startup": case_startup, "memory": case_memory, "pipelines": case_pipelines, "quality": case_quality}
FULL = {"routing": 5000, "latency": 1000, "orbit": 1_000_000, "reads": (1_000_000, 100_000, 200),
        "memory": 100_000, "pipelines": (5000, (365, 50)), "startup": 21, "quality": 10_000_000}
QUICK = {"routing": 300, "latency": 60, "orbit": 3000, "reads": (2000, 300, 5),
         "memory": 300, "pipelines": (300, (30, 10)), "startup": 3, "quality": 20_000}


# output ---------------------------------------------------------------------------------------
def fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return "-"
    if unit in ("s",):
        return f"{v:.3f} s"
    if unit in ("ms", "MB"):
        return f"{v:.1f} {unit}"
    if v >= 1000:
        return f"{v:,.0f} {unit}".strip()
    return f"{v:.3g} {unit}".strip()


def render(rows: list[Row]) -> str:
    head = ("case", "figure", "value", "same-run baseline", "ratio", "target", "result")
    body = []
    for r in rows:
        base = "-" if r.baseline is None else f"{fmt(r.baseline, '')} ({r.baseline_what})"
        body.append((r.case, r.metric, fmt(r.value, r.unit), base,
                     "-" if r.ratio is None else f"{r.ratio:.2f}x", r.target, "pass" if r.ok else "MISS"))
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths)).rstrip() for b in body]
    notes = [f"  {r.case}: {r.note}" for r in rows if r.note]
    return "\n".join(lines + (["", "notes:"] + notes if notes else []))


def machine() -> dict:
    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = ""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "ram": ram, "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version, "platform": platform.platform()}


def compile_package() -> None:
    """Write agentops' bytecode, as `pip install` does: with PYTHONDONTWRITEBYTECODE set (as on some CI
    machines) an editable install would otherwise compile every module again in every process, and the
    start-up cases would measure the compiler."""
    import compileall

    import agentops

    compileall.compile_dir(str(Path(agentops.__file__).parent), quiet=2)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="", help=f"comma-separated cases: {','.join(CASES)}")
    ap.add_argument("--quick", action="store_true", help="small scale: a smoke run in seconds")
    ap.add_argument("--repeat", type=int, default=None, help="repeats per case (default 3, quick 1)")
    ap.add_argument("--json", default=str(HERE / "results" / "latest.json"), help="where to write the JSON")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        ap.error(f"unknown case(s): {', '.join(unknown)} (known: {', '.join(CASES)})")
    scale = QUICK if args.quick else FULL
    compile_package()
    repeat = args.repeat or (1 if args.quick else 3)
    rows: list[Row] = []
    errors = {}
    started = time.time()
    tmp = Path(tempfile.mkdtemp(prefix="agentops-bench-"))
    try:
        for name in names:
            t0 = time.perf_counter()
            print(f"[{name}] ...", file=sys.stderr, flush=True)
            try:
                got = CASES[name](tmp, scale, repeat)
            except Exception as exc:  # one broken case must not hide the others' figures
                errors[name] = f"{type(exc).__name__}: {exc}"
                print(f"[{name}] failed: {errors[name]}", file=sys.stderr, flush=True)
                continue
            rows += got
            print(f"[{name}] {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(render(rows))
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "quick": args.quick,
              "repeat": repeat, "machine": machine(), "seconds": round(time.time() - started, 1),
              "rows": [asdict(r) for r in rows], "errors": errors}
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {out}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
