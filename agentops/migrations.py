"""The Orbit schema, as numbered migrations. Never edit one that has landed: add the next.

Numbering by concept: m001 foundation (the event log itself); later migrations add the tables
each concept derives from the log (mail, orbit state, pipelines, dispatch).
"""

from __future__ import annotations

from sqlite_utils import Database, Migrations

migrations = Migrations("agentops")


@migrations()
def m001_events(db: Database) -> None:
    """The append-only event log. `data` is the whole event as JSON; the other columns index it.

    `id` is the writer's idempotency key (NULL when the writer gave none); `seq` orders events.
    """
    db.execute(
        """
        CREATE TABLE events (
            seq      INTEGER PRIMARY KEY,
            id       TEXT,
            ts       TEXT NOT NULL,
            kind     TEXT NOT NULL,
            pipeline TEXT,
            run_id   TEXT,
            agent    TEXT,
            data     TEXT NOT NULL
        )
        """
    )
    db.execute("CREATE UNIQUE INDEX events_id ON events(id) WHERE id IS NOT NULL")
    db.execute("CREATE INDEX events_kind_ts ON events(kind, ts)")
    db.execute("CREATE INDEX events_pipeline_ts ON events(pipeline, ts)")
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")


@migrations()
def m005_dispatch(db: Database) -> None:
    """Each agent's latest dispatch run, derived from `dispatch` events (agentops.dispatch.record).

    `action` is the latest event's (started|succeeded|failed|timed_out|retrying|gave_up); `started`,
    `finished`, `exit_code`, `duration_s`, `log` describe the latest run; the counters are totals.
    """
    db.execute(
        """
        CREATE TABLE dispatch_runs (
            agent      TEXT PRIMARY KEY,
            action     TEXT NOT NULL,
            attempt    INTEGER,
            started    TEXT,
            finished   TEXT,
            exit_code  INTEGER,
            duration_s REAL,
            log        TEXT,
            updated    TEXT NOT NULL,
            runs       INTEGER NOT NULL DEFAULT 0,
            failures   INTEGER NOT NULL DEFAULT 0,
            gave_up    INTEGER NOT NULL DEFAULT 0
        )
        """
    )
