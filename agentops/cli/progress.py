"""Progress of a pipeline run: a rich live table on a terminal, one plain line per task end
otherwise (logs, CI, Airflow)."""

from __future__ import annotations

import sys
import threading


class RunProgress:
    def __init__(self, plan, quiet: bool = False):
        self.plan = plan
        self.quiet = quiet
        self.tty = sys.stderr.isatty() and not quiet
        self.total = sum(len(p.tasks) for p in plan.partitions)
        self.done = 0
        self.running: dict[tuple[str, str], int] = {}
        self.lock = threading.Lock()
        self._progress = None

    def __enter__(self) -> "RunProgress":
        if self.tty and self.total:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), console=Console(stderr=True), transient=False)
            self._progress.start()
            self._bar = self._progress.add_task(self.plan.spec.name, total=self.total)
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()

    def event(self, e: dict) -> None:
        with self.lock:
            kind = e.get("event")
            if kind == "end":
                self.done += 1
            line = _line(e)
            if self._progress is not None:
                if kind == "end":
                    self._progress.advance(self._bar)
                if kind == "start":
                    self._progress.update(self._bar, description=f"{self.plan.spec.name}: {e['partition']} {e['task']}")
                if line and kind != "start":
                    self._progress.console.print(line, markup=False, highlight=False)
            elif line and not self.quiet:
                print(line, file=sys.stderr, flush=True)


def _line(e: dict) -> str | None:
    kind = e.get("event")
    where = f"{e.get('partition')} {e.get('task')}"
    if kind == "end":
        state = e["state"]
        extra = f" in {e['duration_s']:.2f}s" if e.get("duration_s") is not None else ""
        if e.get("rows_out") is not None:
            extra += f", {e['rows_out']:,} row(s)"
        if e.get("error"):
            extra += f": {e['error']}"
        return f"{where}: {state}{extra}"
    if kind == "retry":
        return f"{where}: attempt {e['attempt']} failed ({e['error']}); retrying in {e['delay_s']:g}s"
    if kind == "manual":
        return f"{where}: manual stage, owned by {e['owner']}: the run stops before it"
    if kind == "start":
        return None
    return None
