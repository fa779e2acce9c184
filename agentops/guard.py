"""The reservations guard: a git pre-commit hook that refuses a commit touching paths another agent
holds exclusively (`agentops guard install`), and the check it runs (`agentops guard check`).

The committing agent is `--as`, else $AGENTOPS_AGENT, else `git config agentops.agent`; with none
of them every holder counts as another agent. The workspace may be the repository or a folder in it:
staged paths are made relative to the workspace, and paths outside it are not checked.
"""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path

from agentops.errors import AgentOpsError, ValidationError

MARK = "# agentops guard"


def _git(args: list[str], cwd: Path) -> str:
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise AgentOpsError("git is not installed") from None
    if proc.returncode != 0:
        raise ValidationError(f"`git {' '.join(args)}` in {cwd} failed: {proc.stderr.strip() or proc.returncode}",
                              hint="run this inside a git repository")
    return proc.stdout


def hook_text(ws) -> str:
    python = shlex.quote(sys.executable)
    return (f"#!/bin/sh\n{MARK}: refuse commits touching paths another agent holds exclusively.\n"
            f"# The committing agent: $AGENTOPS_AGENT, else `git config agentops.agent`.\n"
            f"exec {python} -m agentops --workspace {shlex.quote(str(ws.root))} guard check\n")


def install(ws, *, force: bool = False) -> Path:
    """Write the pre-commit hook of the repository holding the workspace; returns its path. An
    existing hook agentops did not write is kept unless `force`."""
    hooks = Path(_git(["rev-parse", "--git-path", "hooks"], ws.root).strip())
    if not hooks.is_absolute():
        hooks = ws.root / hooks
    hooks.mkdir(parents=True, exist_ok=True)
    path = hooks / "pre-commit"
    if path.exists() and MARK not in path.read_text(errors="replace") and not force:
        raise ValidationError(f"{path} exists and is not agentops' hook",
                              hint="add `agentops guard check` to it yourself, or pass --force to replace it")
    tmp = path.with_name(f".pre-commit.tmp-{os.getpid()}")
    tmp.write_text(hook_text(ws))
    tmp.chmod(tmp.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    os.replace(tmp, path)
    return path


def committing_agent(ws, name: str | None) -> str | None:
    from agentops.reservations import AGENT_ENV, agent_name

    name = name or os.environ.get(AGENT_ENV)
    if not name:
        try:
            name = _git(["config", "--get", "agentops.agent"], ws.root).strip() or None
        except (AgentOpsError, OSError):
            name = None
    return agent_name(ws, name, "agent") if name else None


def staged_paths(ws) -> list[str]:
    """Staged paths (added, changed, deleted, renamed both ways), relative to the workspace."""
    top = Path(_git(["rev-parse", "--show-toplevel"], ws.root).strip())
    out = _git(["diff", "--cached", "--name-only", "-z", "--no-renames"], ws.root)
    paths = []
    for name in filter(None, out.split("\0")):
        try:
            paths.append((top / name).resolve().relative_to(ws.root).as_posix())
        except ValueError:
            continue  # outside the workspace
    return paths


def check(ws, paths: list[str] | None, *, agent: str | None = None, cwd: Path | None = None) -> int:
    """Raise ReservationConflict (exit 6, one line per path and holder) when another agent holds one
    of `paths` (default: the staged ones) exclusively. Returns how many paths were checked."""
    from agentops.reservations import ReservationConflict, check_paths

    who = committing_agent(ws, agent)
    if paths is None:
        rel = staged_paths(ws)
    else:
        rel = []
        base = Path(cwd or Path.cwd()).resolve()
        for p in paths:
            full = Path(p) if os.path.isabs(p) else base / p
            try:
                rel.append(Path(os.path.normpath(full)).relative_to(ws.root).as_posix())
            except ValueError:
                continue
    conflicts = check_paths(ws, who, rel)
    if conflicts:
        hint = None if len(conflicts) > 1 else (
            f"commit refused for {who or 'an unnamed agent (set AGENTOPS_AGENT or git config agentops.agent)'}")
        raise ReservationConflict(conflicts, hint=hint)
    return len(rel)
