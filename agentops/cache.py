"""Derived state cached under `.agent/run/`, rebuilt whenever a file it was built from changes.

Validating agentops.toml and parsing every role file (YAML + pydantic) cost a short command such
as `agentops mail send` several times its own work. What they produce is kept as JSON in
`.agent/run/<name>` together with the (name, mtime_ns, size, inode) of each source; any change to
those rebuilds it. As git does with its index, a file changed in the last second is not trusted to
that key (file-system timestamps are coarse): while a source is that fresh, the value is built and
not cached. A workspace whose `.agent/run/` is unsafe or read-only works, only without the cache.

The caches: `config.json` (agentops.settings), `addresses.json` (agentops.addresses), `roles.json`
(agentops.roles) and `pipelines.json` (`agentops pipeline list`, agentops.pipelines.listing).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

RACY_NS = 1_000_000_000


def stat_key(path: Path) -> list:
    """The part of a source's key that changes when the file does: [name, mtime_ns, size, inode]."""
    try:
        st = os.stat(path)
        return [path.name, st.st_mtime_ns, st.st_size, st.st_ino]
    except OSError:
        return [path.name, None, None]


def folder_sources(folder: Path, suffixes: str | tuple[str, ...]) -> list:
    """The key of the files in `folder` whose names end with `suffixes`: the folder's `stat_key`
    (an entry added or removed changes its mtime), then [name, mtime_ns, size, inode, mode] of each
    file, by name, not following links (a link's target's `stat_key` follows it)."""
    out = [stat_key(folder)]
    try:
        with os.scandir(folder) as it:
            for e in sorted(it, key=lambda e: e.name):
                if e.name.endswith(suffixes):
                    st = e.stat(follow_symlinks=False)
                    row = [e.name, st.st_mtime_ns, st.st_size, st.st_ino, st.st_mode]
                    out.append(row + stat_key(Path(e.path))[1:] if e.is_symlink() else row)
    except OSError:
        pass
    return out


def plain(value) -> bool:
    """True when JSON gives `value` back as it is: dicts with string keys, lists, strings, numbers,
    booleans and None (not a date, a set, a tuple or a number as a key)."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(plain(v) for v in value)
    return value is None or isinstance(value, (str, int, float))


def cached(ws, name: str, version: int, sources: Callable[[], list], build: Callable[[], object],
           encode: Callable[[object], object], decode: Callable[[object], object]):
    """`build()`, or `decode(...)` of what an earlier call cached while no source has changed.

    `sources()` lists one entry per source file, each a list whose second item is its mtime_ns (or
    None when the file is missing); other entries (strings) are part of the key as they are. A value
    is not cached when `encode` raises ValueError or returns what JSON would not give back as it is."""
    from agentops import safefs
    from agentops.errors import AgentOpsError, WorkspaceError

    path = ws.run_dir / name
    key = sources()
    try:
        ws.check_layout()  # never read or write through a state folder linked outside the workspace
    except WorkspaceError:
        return build()
    try:
        data = json.loads(safefs.read_text(ws, path))
        if data.get("version") == version and data.get("sources") == key:
            return decode(data["value"])
    except WorkspaceError:
        return build()  # a linked, hard-linked or odd cache file: neither read nor replaced
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        pass
    value = build()
    newest = max((s[1] for s in key if isinstance(s, list) and isinstance(s[1], int)), default=0)
    if time.time_ns() - newest < RACY_NS or sources() != key:
        return value  # too fresh to trust its timestamp, or changed while we read it
    try:
        data = encode(value)
    except ValueError:
        return value  # a value `encode` says it cannot keep
    if not plain(data):
        return value  # e.g. a date in a role's frontmatter: JSON would give it back as text
    try:
        safefs.write_atomic(ws, path, json.dumps({"version": version, "sources": key, "value": data},
                                                 ensure_ascii=False))
    except (OSError, WorkspaceError, AgentOpsError):
        pass  # a read-only, full or unsafe workspace works, only without the cache
    return value
