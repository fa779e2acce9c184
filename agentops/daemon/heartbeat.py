"""The daemon's heartbeat: `.agent/run/daemon.json`, rewritten atomically while it runs.

Shape (every key always present; times are ISO 8601 UTC, null until they happen):

    {
      "pid": 4242,                      # the daemon's process id
      "state": "running",               # running | stopped (written on a clean exit)
      "mode": "inotify",                # inotify (native watcher) | poll | once
      "workspace": "/path/to/ws",
      "started": "2026-11-25T09:00:00.000000+00:00",
      "updated": "2026-11-25T09:05:00.000000+00:00",   # at least every HEARTBEAT_SECONDS while running
      "last_routed": "2026-11-25T09:04:59.120000+00:00",  # last time a message was delivered
      "routed": 1234,                   # messages delivered since start
      "dead": 3,                        # drop files dead-lettered since start
      "queue": 0,                       # paths waiting in the daemon (settling or batched)
      "batches": 410,                   # task calls made
      "errors": 0,                      # task calls that raised (logged, daemon went on)
      "last_error": null,               # "task: Error: message" of the latest one
      "rescans": 2,
      "tasks": {"mail": "active", "orbit-ingest": "active", "spec-check": "inactive: ..."}
    }

Liveness comes from the pid lock (`agentops.pidlock.daemon_pid`), not from this file: a daemon
killed with SIGKILL leaves `state: running` behind; `updated` says how stale it is.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

HEARTBEAT_SECONDS = 5.0
MIN_WRITE_INTERVAL = 0.25


def state_path(ws) -> Path:
    return ws.run_dir / "daemon.json"


def write_state(ws, state: dict[str, Any]) -> None:
    path = state_path(ws)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(state, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_state(ws) -> dict[str, Any] | None:
    """The last heartbeat the daemon wrote, or None when there is none (or it is unreadable)."""
    try:
        data = json.loads(state_path(ws).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
