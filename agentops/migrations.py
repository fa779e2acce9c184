"""The Orbit schema, as numbered migrations. Never edit one that has landed: add the next.

Numbering by concept: m001 foundation (the event log itself); later migrations add the tables
each concept derives from the log (mail, orbit state, pipelines, dispatch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlite_utils import Database, Migrations

_STEPS: list = []


def _step(fn):
    """Register the next migration (in file order). Opening a store compares `NAMES` with
    sqlite-utils' `_sqlite_migrations` table without importing sqlite-utils, which costs more
    start-up time than a short command's whole work."""
    _STEPS.append(fn)
    return fn


def migrations() -> "Migrations":
    """The sqlite-utils migration set "agentops": every step below, in order."""
    from sqlite_utils import Migrations

    m = Migrations("agentops")
    for fn in _STEPS:
        m()(fn)
    return m


@_step
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


@_step
def m002_mail(db: Database) -> None:
    """Mail, derived from the `mail` events in the same transaction (agentops/mail/store.py).

    messages: one row per delivered message (`key` is its Maildir file name, the same in every
    inbox); deliveries: one row per inbox or role queue it went to, with read/ack/claim state;
    messages_fts: FTS5 over subject and body (external content, filled by the writer);
    dead_letters: one row per dead letter (`id` names `.agent/email/dead/<id>`).
    """
    for statement in (
        """CREATE TABLE messages (
            seq INTEGER PRIMARY KEY, message_id TEXT NOT NULL UNIQUE, key TEXT NOT NULL UNIQUE,
            sender TEXT NOT NULL, recipients TEXT NOT NULL, cc TEXT NOT NULL DEFAULT '[]',
            subject TEXT NOT NULL, body TEXT NOT NULL, priority TEXT NOT NULL DEFAULT 'normal',
            date TEXT NOT NULL, in_reply_to TEXT, refs TEXT NOT NULL DEFAULT '[]',
            thread_id TEXT NOT NULL, topic TEXT, drop_name TEXT, size INTEGER NOT NULL DEFAULT 0,
            delivered_at TEXT NOT NULL)""",
        "CREATE INDEX messages_thread ON messages(thread_id, date)",
        "CREATE INDEX messages_sender ON messages(sender, date)",
        """CREATE TABLE deliveries (
            message_id TEXT NOT NULL REFERENCES messages(message_id), kind TEXT NOT NULL,
            box TEXT NOT NULL, key TEXT NOT NULL, delivered_at TEXT NOT NULL,
            read_at TEXT, acked_at TEXT, claimed_by TEXT, claimed_at TEXT,
            PRIMARY KEY (kind, box, message_id))""",
        "CREATE INDEX deliveries_message ON deliveries(message_id)",
        "CREATE INDEX deliveries_box ON deliveries(kind, box, delivered_at)",
        "CREATE VIRTUAL TABLE messages_fts USING fts5(subject, body, content='messages', content_rowid='seq', tokenize='porter unicode61')",
        """CREATE TABLE dead_letters (
            id TEXT PRIMARY KEY, cause TEXT NOT NULL, reason TEXT NOT NULL, original_name TEXT NOT NULL,
            sender TEXT, ts TEXT NOT NULL, bounce_id TEXT, retried_at TEXT, retried_as TEXT)""",
    ):
        db.execute(statement)


@_step
def m003_orbit(db: Database) -> None:
    """Orbit's current state, derived from `events` in the same transaction as each event.

    runs: one row per pipeline run (task = '') and per task run, at its latest state.
    checks: latest result per (pipeline, run, dataset, check). metrics: every metric point (the
    series anomaly detection reads; job figures are read back from jobs). jobs, anomalies, perf,
    alerts (keyed by subject: one alert per run/check). events_fts: full-text index over event text,
    brought up to date before each search (meta 'orbit.fts_seq').
    """
    schema = """
        CREATE TABLE runs (
            pipeline TEXT NOT NULL, run_id TEXT NOT NULL, task TEXT NOT NULL DEFAULT '',
            state TEXT NOT NULL, attempt INTEGER NOT NULL, run_type TEXT NOT NULL,
            logical_date TEXT, error TEXT, owner TEXT,
            started_at TEXT, ended_at TEXT, updated_at TEXT NOT NULL, seq INTEGER NOT NULL,
            PRIMARY KEY (pipeline, run_id, task)
        );
        CREATE INDEX runs_updated ON runs(updated_at);
        CREATE INDEX runs_pipeline_updated ON runs(pipeline, updated_at);
        CREATE INDEX runs_state_updated ON runs(state, updated_at);
        CREATE INDEX runs_pipeline_date ON runs(pipeline, logical_date, task);

        CREATE TABLE jobs (
            seq INTEGER PRIMARY KEY, ts TEXT NOT NULL, pipeline TEXT NOT NULL, run_id TEXT, task TEXT,
            rows_in INTEGER, rows_out INTEGER, bytes INTEGER, duration_s REAL
        );
        CREATE INDEX jobs_pipeline_ts ON jobs(pipeline, ts);
        CREATE INDEX jobs_series ON jobs(pipeline, task, seq);

        CREATE TABLE checks (
            pipeline TEXT NOT NULL, run_id TEXT NOT NULL DEFAULT '', dataset TEXT NOT NULL,
            "check" TEXT NOT NULL, passed INTEGER NOT NULL, severity TEXT NOT NULL,
            observed TEXT, threshold TEXT, ts TEXT NOT NULL, seq INTEGER NOT NULL,
            PRIMARY KEY (pipeline, run_id, dataset, "check")
        );
        CREATE INDEX checks_ts ON checks(ts);
        CREATE INDEX checks_failed_ts ON checks(passed, severity, ts);
        CREATE INDEX checks_pipeline_ts ON checks(pipeline, ts);

        CREATE TABLE metrics (
            seq INTEGER NOT NULL, series TEXT NOT NULL, pipeline TEXT NOT NULL, dataset TEXT,
            name TEXT NOT NULL, value REAL NOT NULL, ts TEXT NOT NULL,
            PRIMARY KEY (series, seq)
        ) WITHOUT ROWID;
        CREATE INDEX metrics_pipeline_ts ON metrics(pipeline, ts);

        CREATE TABLE anomalies (
            seq INTEGER PRIMARY KEY, ts TEXT NOT NULL, pipeline TEXT NOT NULL, dataset TEXT,
            metric TEXT NOT NULL, value REAL NOT NULL, expected REAL NOT NULL, zscore REAL NOT NULL,
            direction TEXT NOT NULL, method TEXT, source_seq INTEGER
        );
        CREATE INDEX anomalies_ts ON anomalies(ts);
        CREATE INDEX anomalies_pipeline_ts ON anomalies(pipeline, ts);

        CREATE TABLE perf (
            pipeline TEXT NOT NULL, task TEXT NOT NULL DEFAULT '', bottleneck TEXT NOT NULL,
            status TEXT NOT NULL, note TEXT, before TEXT, after TEXT,
            opened_at TEXT NOT NULL, updated_at TEXT NOT NULL, seq INTEGER NOT NULL,
            PRIMARY KEY (pipeline, task, bottleneck)
        );
        CREATE INDEX perf_status ON perf(status, updated_at);

        CREATE TABLE alerts (
            key TEXT PRIMARY KEY, ts TEXT NOT NULL, cause TEXT NOT NULL, pipeline TEXT,
            run_id TEXT, owner TEXT NOT NULL, subject TEXT NOT NULL, body TEXT NOT NULL,
            source_seq INTEGER, status TEXT NOT NULL DEFAULT 'pending', message_id TEXT,
            error TEXT, sent_at TEXT
        );
        CREATE INDEX alerts_ts ON alerts(ts);
        CREATE INDEX alerts_status ON alerts(status);

        CREATE VIRTUAL TABLE events_fts USING fts5(text, content='', tokenize='unicode61');
        """
    for statement in schema.split(";"):  # one by one: executescript would commit mid-migration
        if statement.strip():
            db.execute(statement)


@_step
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


@_step
def m006_runs_latest(db: Database) -> None:
    """Each pipeline's latest run (`status`, `orbit runs --pipeline`) is one index seek, however many
    task rows the pipeline has."""
    db.execute("CREATE INDEX IF NOT EXISTS runs_pipeline_task_updated ON runs(pipeline, task, updated_at, seq)")


@_step
def m007_one_schema_version(db: Database) -> None:
    """sqlite-utils' `_sqlite_migrations` table is the one record of the schema version: clear the
    `PRAGMA user_version` counter that stores made before this migration also kept."""
    db.execute("PRAGMA user_version = 0")



@_step
def m008_reservations(db: Database) -> None:
    """Reservations (agentops/reservations.py), derived from `reservation` events in the same
    transaction (`ReservationEvent.derive`). `kind` path|dataset; `pattern` the normalized glob or
    dataset name; active while `released_at` is NULL and `expires_at` (ISO 8601 UTC text) is later
    than now; `expiry_logged` says an `expired` event was written once it was seen past its expiry."""
    db.execute(
        """
        CREATE TABLE reservations (
            id            TEXT PRIMARY KEY,
            agent         TEXT NOT NULL,
            kind          TEXT NOT NULL,
            pattern       TEXT NOT NULL,
            exclusive     INTEGER NOT NULL,
            reason        TEXT,
            created_at    TEXT NOT NULL,
            expires_at    TEXT NOT NULL,
            released_at   TEXT,
            released_by   TEXT,
            release_note  TEXT,
            expiry_logged INTEGER NOT NULL DEFAULT 0
        )
        """
    )
    db.execute("CREATE INDEX reservations_live ON reservations(released_at, expires_at)")
    db.execute("CREATE INDEX reservations_agent ON reservations(agent, expires_at)")


@_step
def m009_data(db: Database) -> None:
    """Data quality measured by agentops (SPEC §11): a check result's status (passed|failed|error,
    where error means it could not run), the reason, up to 5 failing rows (JSON) and the dataset's
    location; `schemas` holds each dataset's latest recorded columns and types (JSON {column: type})."""
    for column in ("status", "reason", "samples", "location"):
        db.execute(f"ALTER TABLE checks ADD COLUMN {column} TEXT")
    db.execute(
        """
        CREATE TABLE schemas (
            dataset  TEXT PRIMARY KEY,
            pipeline TEXT NOT NULL,
            columns  TEXT NOT NULL,
            run_id   TEXT,
            ts       TEXT NOT NULL,
            seq      INTEGER NOT NULL
        )
        """
    )


NAMES = [fn.__name__ for fn in _STEPS]
