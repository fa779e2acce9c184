"""`agentops demo`: a scripted day of the team, played through the real interfaces.

A scratch workspace (seeded from the current workspace's roles, templates and pipeline specs, else
the packaged ones), the real daemon in the background, and "agents" that drop `.email` and `.jsonl`
files and run `agentops` commands as separate processes: a handoff and its reply, DevOps asked for
capacity, orders_daily run for real by the embedded runner on generated landing files (a day whose
late CDC export fails a stage that the retry then passes), a three-day `backfill --run`, fifteen days
of order files (generated on the spot) measured by `agentops quality run` until a short day with
missing keys fails a check and trips the anomaly detection (alert mails), then the status report. Nothing here is simulated inside the process:
every step is a file or a subprocess, so what the demo shows is what a user gets.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Callable

from agentops.errors import AgentOpsError

Say = Callable[[str], None]
STEP_TIMEOUT = 20.0


class DemoError(AgentOpsError):
    pass


class Demo:
    def __init__(self, root: Path, say: Say, source=None):
        self.root = Path(root)
        self.say = say
        self.source = source
        self.daemon: subprocess.Popen | None = None
        self.env = {**os.environ, "AGENTOPS_WORKSPACE": str(self.root)}
        self.env.pop("AGENTOPS_DEMO", None)

    # plumbing -------------------------------------------------------------------------------
    def agentops(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "agentops", *args], env=self.env, cwd=self.root,
                              capture_output=True, text=True, input=input, timeout=60)
        if check and proc.returncode != 0:
            raise DemoError(f"`agentops {' '.join(args)}` exited {proc.returncode}: "
                            f"{(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
        return proc

    def show(self, *args: str, limit: int = 12) -> None:
        out = self.agentops(*args).stdout.rstrip().splitlines()
        import shlex

        self.say(f"    $ agentops {shlex.join(args)}")
        for line in out[:limit]:
            self.say(f"    {line}")
        if len(out) > limit:
            self.say(f"    ... ({len(out) - limit} more lines)")

    def wait_for(self, what: str, predicate: Callable[[], object], timeout: float = STEP_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise DemoError(f"timed out after {timeout:.0f}s waiting for {what}",
                        hint=f"see the daemon log {self.root / '.agent/logs/daemon.log'}")

    def drop_mail(self, name: str, text: str, chunks: int = 1) -> None:
        """Write a drop file the way an agent's editor would: maybe in several writes."""
        path = self.root / ".agent" / "email" / name
        data = text.encode()
        step = max(1, len(data) // chunks)
        with open(path, "wb") as fh:
            for i in range(0, len(data), step):
                fh.write(data[i:i + step])
                fh.flush()
                if chunks > 1:
                    time.sleep(0.05)

    def drop_events(self, name: str, events: list[dict]) -> None:
        orbit = self.root / ".agent" / "orbit"
        tmp = orbit / f".{name}.tmp"
        tmp.write_text("".join(json.dumps(e) + "\n" for e in events))
        os.rename(tmp, orbit / name)
        self.wait_for(f"the daemon to ingest {name}", lambda: not (orbit / name).exists())

    def inbox(self, agent: str) -> list[dict]:
        return json.loads(self.agentops("mail", "inbox", agent, "--json").stdout)

    def wait_mail(self, agent: str, subject_part: str) -> dict:
        def found():
            for m in self.inbox(agent):
                if subject_part.lower() in m["subject"].lower():
                    return m
            return None
        return self.wait_for(f"mail '{subject_part}' in {agent}'s inbox", found)

    # the day ---------------------------------------------------------------------------------
    def setup(self) -> None:
        from agentops.workspace import init_workspace

        init_workspace(self.root)
        if self.source is not None:
            for name in ("roles", "templates"):
                src = self.source.root / name
                if src.is_dir():
                    shutil.copytree(src, self.root / name, dirs_exist_ok=True)
            specs = self.source.pipelines_dir
        else:
            specs = None
        from agentops.resources import example_pipelines

        specs = specs if specs is not None and any(specs.glob("*.yaml")) else example_pipelines()
        for spec in sorted(specs.glob("*.yaml")):
            shutil.copy(spec, self.root / ".agent" / "data" / "pipelines" / spec.name)
        (self.root / "agentops.toml").write_text("[mail]\nsettle_seconds = 0.05\n[daemon]\nrescan_seconds = 5\n")

    def start_daemon(self) -> None:
        log = open(self.root / ".agent" / "logs" / "daemon.log", "ab")
        self.daemon = subprocess.Popen([sys.executable, "-m", "agentops", "daemon", "--log-format", "json"],
                                       env=self.env, cwd=self.root, stdout=log, stderr=log,
                                       start_new_session=True)
        log.close()
        from agentops.pidlock import daemon_pid
        from agentops.workspace import Workspace

        ws = Workspace(self.root)
        self.wait_for("the daemon to start", lambda: daemon_pid(ws) == self.daemon.pid
                      or self.daemon.poll() is not None)
        if self.daemon.poll() is not None:
            raise DemoError("the daemon exited at start", hint=f"see {self.root / '.agent/logs/daemon.log'}")

    def stop_daemon(self) -> None:
        if self.daemon and self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
            try:
                self.daemon.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()

    def play(self) -> None:
        today = date.today()
        day = lambda n: (today - timedelta(days=n)).isoformat()  # noqa: E731
        say = self.say

        say("1. The Data Engineer asks the Database Engineer for a schema review (drops a .email file, "
            "written in 4 chunks).")
        self.drop_mail("to-database-engineer-from-data-engineer-schema-review.email",
                       "Priority: high\n\nCan you review the partitioning of warehouse.fact_orders?\n"
                       "orders_daily loads ~10k rows a day; I plan a daily partition on order_date.\n", chunks=4)
        msg = self.wait_mail("database-engineer", "schema-review")
        say(f"   delivered to .agent/email/inbox/database-engineer/new/ as {msg['message_id']}")

        say("2. The Database Engineer reads it and replies on the thread.")
        self.agentops("mail", "read", msg["message_id"])
        self.agentops("mail", "send", "--from", "database-engineer", "--to", "data-engineer",
                      "--subject", "Re: schema-review", "--reply-to", msg["message_id"],
                      "--body", "Daily partitions on order_date are right; cluster by customer_id. "
                                "Index staging.orders(order_id) for the dedupe.")
        self.wait_mail("data-engineer", "Re: schema-review")
        self.show("mail", "thread", msg["message_id"], limit=24)

        say("3. The Data Engineer hands off to DevOps for backfill capacity (handoff with send: true).")
        self.show("handoff", "--from", "data-engineer", "Coordinate with DevOps",
                  "--context", f"Backfilling orders_daily for {day(4)}..{day(2)}; need 4 workers for an hour.")
        ask = self.wait_mail("devops", "Handoff: Coordinate with DevOps")
        self.agentops("mail", "read", ask["message_id"])
        self.agentops("handoff", "--from", "devops", "Report capacity to Data Engineer",
                      "--context", "4 workers reserved in the batch pool until 18:00 UTC.")
        self.wait_mail("data-engineer", "Handoff: Report capacity")
        say("   DevOps answered with its own handoff back to the Data Engineer.")

        self.pipeline_runs(day)

        say("7. orders_daily's raw.orders lands one Parquet file per day (made now: ~200 orders a day). "
            "agentops measures 14 ordinary days, then today's file, which holds a tenth of the rows and "
            "nulls in customer_id: a failed check and anomalies, from the data itself.")
        self.quality_day_files(today, say)

        self.reservation_step(day)

        say("9. The team's status:")

    def pipeline_runs(self, day) -> None:
        """orders_daily runs for real (`agentops pipeline run`, the embedded runner): its sources are
        landing files generated now (the API's JSON pages, the CDC export as CSV), its stages SQL on
        DuckDB, its load a Parquet fact table partitioned by order date. Last night's CDC export is
        late: wait_for_cdc fails, the export completes while the runner backs off, the retry succeeds.
        Then a three-day backfill runs (`pipeline backfill --run`)."""
        from agentops.data.sample import finish_export, write_customers, write_landing
        from agentops.data import warehouse_path
        from agentops.workspace import Workspace

        say = self.say
        late, backfill = day(1), [day(4), day(3), day(2)]
        # the API returns the orders step 7's files hold for those days (step 7 measures both alike)
        index = {day(n): 14 - n for n in range(1, 5)}
        counts = write_landing(self.root, backfill, index=index)
        more = write_landing(self.root, [late], index=index, complete=False)
        customers = write_customers(warehouse_path(Workspace(self.root)))
        say(f"4. orders_daily's sources land as files (generated now): {counts['api_rows'] + more['api_rows']} "
            f"orders in JSON pages under data/landing/orders_api/ (the REST API's responses) and "
            f"{counts['cdc_rows'] + more['cdc_rows']} CDC changes as CSV under data/landing/cdc/ (the Postgres "
            f"slot's export), {customers} rows of warehouse.dim_customers. The {late} export is still running: "
            "no _SUCCESS marker yet.")
        say(f"5. Last night's run: `agentops pipeline run orders_daily --partition {late}` (SQL stages on DuckDB). "
            "wait_for_cdc finds the export incomplete and fails; while the runner backs off (1s), the export "
            "completes; the retry (attempt 2) succeeds and the run goes on.")
        args = ["pipeline", "run", "orders_daily", "--partition", late, "--as", "data-engineer"]
        proc = subprocess.Popen([sys.executable, "-m", "agentops", *args], env=self.env, cwd=self.root,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        logs = self.root / ".agent" / "logs" / "runs" / "orders_daily"

        def first_attempt_failed():
            return any("not complete" in p.read_text(errors="replace") for p in logs.glob("*/wait_for_cdc.1.log"))
        try:
            self.wait_for("wait_for_cdc's first attempt to fail", first_attempt_failed)
            finish_export(self.root, late)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if proc.returncode != 0:
            raise DemoError(f"`agentops {' '.join(args)}` exited {proc.returncode}: {(err or out).strip()[-300:]}")
        say(f"    $ agentops {' '.join(args)}")
        for line in (err.rstrip() + "\n" + out.rstrip()).strip().splitlines():
            say(f"    {line}")
        self.show("orbit", "runs", "--pipeline", "orders_daily", limit=12)

        say(f"6. A three-day backfill ({backfill[0]}..{backfill[-1]}): plan it, then run it (pipeline backfill --run).")
        self.show("pipeline", "backfill", "orders_daily", "--start", backfill[0], "--end", backfill[-1], "--dry-run",
                  limit=8)
        run = ["pipeline", "backfill", "orders_daily", "--start", backfill[0], "--end", backfill[-1], "--run",
               "--as", "data-engineer"]
        proc = self.agentops(*run)
        say(f"    $ agentops {' '.join(run)}")
        for line in proc.stdout.strip().splitlines()[-1:]:
            say(f"    {line}")
        parts = sorted(p.parent.name for p in self.root.glob("data/warehouse/fact_orders/order_date=*/*.parquet"))
        say(f"   warehouse.fact_orders now has {len(parts)} Parquet partitions under data/warehouse/fact_orders/: "
            + ", ".join(parts))

    def reservation_step(self, day) -> None:
        """The Database Engineer reserves a table for a schema migration; the Data Engineer's backfill
        that writes it is refused before it starts, naming the holder (agentops.reservations)."""
        say = self.say
        say("8. The Database Engineer reserves warehouse.fact_orders for a migration; lineage names who is "
            "affected, and the Data Engineer's backfill of it is refused before it starts.")
        self.show("reserve", "--as", "database-engineer", "dataset:warehouse.fact_orders", "--ttl", "1h",
                  "--reason", "repartitioning fact_orders by order_date")
        notice = self.wait_mail("data-engineer", "reserved dataset:warehouse.fact_orders")
        say(f"   postmaster -> data-engineer: \"{notice['subject']}\"")
        proc = self.agentops("pipeline", "backfill", "orders_daily", "--start", day(2), "--end", day(1),
                             "--reprocess", "completed", "--as", "data-engineer", check=False)
        if proc.returncode != 6:
            raise DemoError(f"the backfill of a reserved table exited {proc.returncode}, not 6 (refused)")
        say(f"    $ agentops pipeline backfill orders_daily --start {day(2)} --end {day(1)} --reprocess completed "
            "--as data-engineer")
        for line in proc.stderr.strip().splitlines():
            say(f"    {line}")
        say(f"    (exit {proc.returncode}: refused, nothing queued)")
        self.agentops("release", "--as", "database-engineer")
        say("   The migration done, the Database Engineer releases it (agentops release --as database-engineer).")


    def quality_day_files(self, today: date, say: Say) -> None:
        """Write 15 days of order files (the last one short), measure them with `agentops quality run`
        (checks, profile, anomaly detection on every column) and wait for the alert mail."""
        from agentops.data.sample import write_orders

        days = [(today - timedelta(days=n)).isoformat() for n in range(14, -1, -1)]
        written = write_orders(self.root, days, short_day=days[-1])
        say(f"   {sum(written.values())} rows in {len(days)} files under data/raw/orders/ "
            f"(today: {written[days[-1]]} rows)")
        history = [a for d in days[:-1] for a in ("--partition", d)]
        self.agentops("quality", "run", "orders_daily", "--dataset", "raw.orders", *history)
        proc = self.agentops("quality", "run", "orders_daily", "--dataset", "raw.orders", "--partition", days[-1],
                             check=False)
        self.say(f"    $ agentops quality run orders_daily --dataset raw.orders --partition {days[-1]}   "
                 f"(exit {proc.returncode})")
        for line in proc.stdout.rstrip().splitlines():
            if "passed (" not in line:
                self.say(f"    {line}")
        anomaly = self.wait_mail("data-engineer", "anomaly: orders_daily.raw.orders")
        say(f"   postmaster -> data-engineer: \"{anomaly['subject']}\"")


def demo_folder(target: Path | None) -> Path:
    """The folder to play into, created here: a new temp folder, or `target` when it does not exist yet
    or is empty and lies in no workspace. Anything else is refused before a file is written: the demo
    replaces agentops.toml, the specs, the mail and the log of the workspace it plays in."""
    from agentops.errors import UsageError
    from agentops.workspace import is_workspace

    if target is None:
        return Path(tempfile.mkdtemp(prefix="agentops-demo-"))
    path = Path(os.path.abspath(Path(target).expanduser()))
    hint = "give a new folder (or omit --dir for a temp folder)"
    for above in (path, *path.parents):
        if is_workspace(above):
            where = "is a workspace" if above == path else f"is inside the workspace {above}"
            raise UsageError("dir", f"{path} {where}; the demo only plays in a folder of its own", hint=hint)
    if os.path.lexists(path):
        if not path.is_dir() or path.is_symlink():
            raise UsageError("dir", f"{path} exists and is not a folder", hint=hint)
        if any(os.scandir(path)):
            raise UsageError("dir", f"{path} is not empty; the demo only plays in a folder of its own", hint=hint)
        return path
    try:
        path.mkdir(parents=True)
    except OSError as exc:
        raise UsageError("dir", f"cannot create {path}: {exc.strerror}", hint=hint) from None
    return path


def run_demo(target: Path | None = None, *, say: Say, source=None) -> Path:
    """Play the demo into `target` (default: a new temp folder; see `demo_folder`). Returns the
    workspace path."""
    root = demo_folder(target)
    demo = Demo(root, say, source)
    started = time.monotonic()
    demo.setup()
    say(f"Scratch workspace: {root}")
    demo.start_daemon()
    say(f"Daemon running (pid {demo.daemon.pid}); its log is .agent/logs/daemon.log\n")
    try:
        demo.play()
    finally:
        demo.stop_daemon()
    say(f"(played in {time.monotonic() - started:.1f}s)")
    return root
