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
from pathlib import Path
from typing import Any

HEARTBEAT_SECONDS = 5.0
MIN_WRITE_INTERVAL = 0.25


def state_path(ws) -> Path:
    return ws.run_dir / "daemon.json"


def write_state(ws, state: dict[str, Any]) -> None:
    from agentops import safefs

    safefs.write_atomic(ws, state_path(ws), json.dumps(state, indent=2, default=str) + "\n")


def read_state(ws) -> dict[str, Any] | None:
    """The last heartbeat the daemon wrote, or None when there is none (or it is unreadable, or
    not a plain file of the workspace's own)."""
    from agentops import safefs
    from agentops.errors import UnsafePathError

    try:
        data = json.loads(safefs.read_text(ws, state_path(ws)))
    except (OSError, ValueError, UnsafePathError):
        return None
    return data if isinstance(data, dict) else None
