"""Bulk ingest of JSONL files: `orbit ingest FILE` and the `.agent/orbit/*.jsonl` drop zone.

A drop file is ingested in chunks; each chunk's transaction also records how many lines of that
file are done (meta `orbit.ingest:<name>:<size>:<mtime>`), so a crash mid-file resumes where it
stopped instead of logging lines twice. Then the file moves to `.agent/orbit/processed/` and its
rejected lines, each with its line number and reason, go to `.agent/orbit/rejected/<name>.rejected.jsonl`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Iterable, Iterator

from agentops.errors import NotFoundError
from agentops.orbit.log import IngestReport, Orbit


def read_lines(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        for line in f:
            yield line.rstrip(b"\r\n")


def ingest_file(orbit: Orbit, path: Path, *, progress: Callable[[int], None] | None = None,
                checkpoint: bool = False) -> IngestReport:
    """Log every line of a JSONL file; bad lines are reported (line, reason) and skipped."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"{path}: no such file", hint="give the path of a .jsonl file")
    key, skip = None, 0
    if checkpoint:
        st = path.stat()
        key = f"orbit.ingest:{path.name}:{st.st_size}:{st.st_mtime_ns}"
        got = orbit.db.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        skip = int(got[0]) if got else 0
    return orbit.log_many(read_lines(path), progress=progress, source=str(path), checkpoint=key, skip=skip)


def _unique(dest_dir: Path, name: str) -> Path:
    dest = dest_dir / name
    n = 1
    while dest.exists():
        stem, dot, ext = name.partition(".")
        dest = dest_dir / f"{stem}.{n}{dot}{ext}"
        n += 1
    return dest


def pending_files(ws) -> list[Path]:
    if not ws.orbit_dir.is_dir():
        return []
    return sorted(p for p in ws.orbit_dir.iterdir()
                  if p.suffix == ".jsonl" and p.is_file() and not p.is_symlink() and not p.name.startswith("."))


def ingest_pending(ws, paths: Iterable[os.PathLike | str] | None = None) -> IngestReport:
    """Ingest the drop files (`paths`, or every `*.jsonl` in `.agent/orbit/`): good lines are logged,
    processed files move to `processed/`, rejected lines are kept with reasons in `rejected/`."""
    ws.check_layout()
    total = IngestReport(source=str(ws.orbit_dir))
    files = pending_files(ws) if paths is None else [Path(p) for p in paths]
    files = [p for p in files if p.is_file() and not p.is_symlink() and ws.inside(p)
             and p.parent.resolve() == ws.orbit_dir.resolve()]
    if not files:
        return total
    processed, rejected_dir = ws.orbit_dir / "processed", ws.orbit_dir / "rejected"
    with Orbit.open(ws) as orbit:
        for path in files:
            report = ingest_file(orbit, path, checkpoint=True)
            total.merge(report)
            if report.rejected:
                rejected_dir.mkdir(parents=True, exist_ok=True)
                lines = _line_texts(path, {n for n, _ in report.rejected})
                out = _unique(rejected_dir, f"{path.name}.rejected.jsonl")
                with open(out, "w", encoding="utf-8") as f:
                    for n, reason in report.rejected:
                        f.write(json.dumps({"file": path.name, "line": n, "reason": reason,
                                            "text": lines.get(n, "")}, ensure_ascii=False) + "\n")
            processed.mkdir(parents=True, exist_ok=True)
            st = path.stat()
            os.replace(path, _unique(processed, path.name))
            with orbit.db.conn:
                orbit.db.conn.execute("DELETE FROM meta WHERE key = ?",
                                      (f"orbit.ingest:{path.name}:{st.st_size}:{st.st_mtime_ns}",))
    return total


def _line_texts(path: Path, wanted: set[int], cap: int = 4096) -> dict[int, str]:
    out = {}
    for n, line in enumerate(read_lines(path), 1):
        if n in wanted:
            out[n] = line[:cap].decode("utf-8", "replace")
    return out
