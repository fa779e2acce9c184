"""Re-checking specs when they change (the daemon calls `recheck`): the owner gets one mail per
distinct broken content, not one per save, and a short note when it is fixed.

What was last reported per spec file is kept in `.agent/run/pipeline-checks.json`:
{file: {"hash": sha256(content + problems), "owner": ..., "broken": bool}}. Nothing is mailed when
the content and its problems are what was last reported; a mail that cannot be sent leaves the
record alone, so the next change or rescan tries again.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

STATE_FILE = "pipeline-checks.json"
_OWNER_RE = re.compile(r"^owner:\s*['\"]?([A-Za-z0-9 _.-]+?)['\"]?\s*(#.*)?$", re.M)


@dataclass
class Recheck:
    file: str
    owner: str | None
    problems: list[str] = field(default_factory=list)
    mailed: str | None = None  # "errors" | "fixed" | None
    error: str | None = None  # why a mail could not be sent


def _state_path(ws) -> Path:
    return ws.run_dir / STATE_FILE


def _read_state(ws) -> dict:
    from agentops import safefs
    from agentops.errors import UnsafePathError

    try:
        data = json.loads(safefs.read_text(ws, _state_path(ws)))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError, UnsafePathError):
        return {}


def _write_state(ws, state: dict) -> None:
    from agentops import safefs

    safefs.write_atomic(ws, _state_path(ws), json.dumps(state, indent=1, sort_keys=True))


def _relevant(ws, paths: Iterable) -> list[Path] | None:
    """Spec files to re-check; None means all (a role or the roster changed: owners may differ)."""
    from agentops.pipelines.spec import SPEC_SUFFIXES, spec_files

    chosen: set[Path] = set()
    pipelines = ws.pipelines_dir.resolve()
    for p in paths:
        p = Path(p)
        p = p if p.is_absolute() else ws.root / p
        if p.name.endswith(".agent.md") or p.name == "agentops.toml":
            return spec_files(ws) + [q for q in _known_files(ws) if not q.exists()]
        if p.suffix in SPEC_SUFFIXES and p.parent.resolve() == pipelines:
            chosen.add(p)
    return sorted(chosen)


def _known_files(ws) -> list[Path]:
    return [ws.root / f for f in _read_state(ws)]


def recheck(ws, paths: Iterable) -> list[Recheck]:
    """Re-check the changed spec files among `paths` (roles/agentops.toml: every spec) and mail each
    owner what is new. Returns what was found and sent; never raises for a bad spec."""
    from agentops.pipelines.spec import _addresses, _source, content_hash, load_file

    files = _relevant(ws, paths)
    if not files:
        return []
    addresses = _addresses(ws)
    state = _read_state(ws)
    results: list[Recheck] = []
    changed = False
    for path in files:
        source = _source(ws, path)
        if not path.exists():
            if state.pop(source, None) is not None:
                changed = True
            continue
        result = load_file(ws, path, addresses=addresses)
        problems = [str(p) for p in result.problems]
        owner = _owner(result, addresses, state.get(source, {}).get("owner"))
        digest = content_hash(result.text + "\0" + "\n".join(problems))
        before = state.get(source)
        rc = Recheck(source, owner, problems)
        results.append(rc)
        if problems and (before is None or before.get("hash") != digest):
            rc.mailed, rc.error = _mail(ws, owner, source, problems, result)
        elif not problems and before and before.get("broken"):
            rc.mailed, rc.error = _mail(ws, owner, source, [], result)
        elif before is not None and before.get("hash") == digest:
            continue
        if rc.error is None:
            state[source] = {"hash": digest, "owner": owner, "broken": bool(problems)}
            changed = True
        else:
            rc.mailed = None
    if changed:
        _write_state(ws, state)
    return results


def _owner(result, addresses, previous: str | None) -> str:
    """The spec's owner when it is a known address; else what its text says; else the last owner we
    knew; else `user` (the human sees specs nobody owns)."""
    from agentops.addresses import slug

    candidates = []
    if result.spec is not None:
        candidates.append(result.spec.owner)
    else:
        m = _OWNER_RE.search(result.text or "")
        if m:
            candidates.append(m.group(1))
    if previous:
        candidates.append(previous)
    for c in candidates:
        if addresses is None or addresses.is_known(c):
            return slug(c)
    return "user"


def _mail(ws, owner: str, source: str, problems: list[str], result) -> tuple[str | None, str | None]:
    from agentops.mail import notify  # agentops' own voice: from postmaster

    name = result.spec.name if result.spec is not None else Path(source).stem
    if problems:
        subject = f"Pipeline spec {name}: {len(problems)} problem(s)"
        body = (f"`agentops pipeline check` found {len(problems)} problem(s) in {source}:\n\n"
                + "\n".join(f"- {p}" for p in problems)
                + f"\n\nFix the spec and save it; you will hear again only if the problems change.\n"
                  f"Re-run: agentops pipeline check {name}\n")
        kind = "errors"
    else:
        subject = f"Pipeline spec {name}: fixed"
        body = f"{source} passes `agentops pipeline check` again.\n"
        kind = "fixed"
    try:
        notify(ws, to=[owner], subject=subject, body=body)
    except Exception as exc:  # noqa: BLE001 - the daemon must go on; the next change retries
        return None, f"{type(exc).__name__}: {exc}"
    return kind, None
