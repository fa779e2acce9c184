"""Alerts: one mail from `postmaster` to the pipeline's owner per failed run, failed error-severity
check, or the anomalies of one run in one dataset.

The alert row (table `alerts`, keyed by what it is about: `run failed: P run R`, `check failed: P D C
run R`, `anomaly: P.D run R`, or `anomaly: P.D at TS` for points logged without a run) and its
`alert` event are written in the same transaction as the event that caused it; `INSERT OR IGNORE`
on the key is the dedupe, so a retry, a second failing task of the same run, a second profile of
the same run, or a re-ingest never alerts twice. The mail is sent after the commit
(`send_pending`); an alert whose mail could not be sent stays `pending` (with the error) and is
retried the next time any write sends alerts, and one the mail library refuses as a message (an
alert row an older release wrote with a line break in its subject) is `failed` with the reason, so
it never holds back the alerts after it. Subjects are one line: agent-written names and ids in them
have their control characters blanked when the alert is written.

The owner is the pipeline spec's `owner` when the spec is known, else the event's `owner`, else
`user`.
"""

from __future__ import annotations

import os

from agentops.errors import AgentOpsError, ValidationError
from agentops.store import utcnow, write_tx


def owner_of(spec, event_owner: str | None) -> str:
    owner = spec.owner if spec is not None else None
    return owner or event_owner or "user"


# What each alert says: (key, subject, body). The key is the dedupe (module docstring).

def run_failed(pipeline: str, run_id: str, task: str, logical_date: str | None, attempt: int,
               error: str | None) -> tuple[str, str, str]:
    what = f" task {task}" if task else ""
    return (f"run failed: {pipeline} run {run_id}",
            f"[orbit] run failed: {pipeline} {run_id}" + (f" ({task})" if task else ""),
            f"Pipeline {pipeline} run {run_id}{what}" + (f" (logical date {logical_date})" if logical_date else "")
            + f" failed on attempt {attempt}.\n" + (f"\nError: {error}\n" if error else ""))


def check_failed(pipeline: str, dataset: str, check: str, run_id: str | None, ts: str, observed,
                 threshold) -> tuple[str, str, str]:
    when = f"run {run_id}" if run_id else f"on {ts[:10]}"
    return (f"check failed: {pipeline} {dataset} {check} {when}",
            f"[orbit] check failed: {pipeline} {dataset} {check}",
            f"Data-quality check {check} on {dataset} (pipeline {pipeline}, {when}) failed with severity error: "
            f"observed {observed!r}, threshold {threshold!r}.\n")


def check_error(pipeline: str, dataset: str, check: str, run_id: str | None, ts: str, location: str | None,
                reason: str | None) -> tuple[str, str, str]:
    when = f"run {run_id}" if run_id else f"on {ts[:10]}"
    return (f"check error: {pipeline} {dataset} {check} {when}",
            f"[orbit] check could not run: {pipeline} {dataset} {check}",
            f"Data-quality check {check} on {dataset} ({location or 'no location'}, pipeline {pipeline}, {when}) "
            f"could not run: {reason}\n")


def schema_change(pipeline: str, dataset: str, run_id: str | None, ts: str, added: list, removed: list,
                  changed: list, policy: str, to: str | None) -> tuple[str, str, str]:
    when = f"run {run_id}" if run_id else f"on {ts[:10]}"
    what = "; ".join([*(f"added {c}" for c in added), *(f"removed {c}" for c in removed),
                      *(f"{c.get('column')} {c.get('old')} -> {c.get('new')}" for c in changed)])
    return (f"schema change: {dataset} {when} to {to or 'owner'}",
            f"[orbit] breaking schema change: {dataset}",
            f"The schema of {dataset} changed ({what}), which its schema_evolution policy '{policy}' does not "
            f"allow (seen by pipeline {pipeline}, {when}). You own it or a pipeline downstream of it.\n")


def anomaly_key(pipeline: str, dataset: str | None, run_id: str | None, ts: str) -> str:
    """The key of the one anomaly alert of a dataset (or task) and run."""
    where = f"{pipeline}.{dataset}" if dataset else pipeline
    return f"anomaly: {where} " + (f"run {run_id}" if run_id else f"at {ts}")


def anomalies(pipeline: str, dataset: str | None, run_id: str | None, ts: str,
              found: list[dict]) -> tuple[str, str, str]:
    """One alert for every anomaly one run found in one dataset (or a job's task): the worst (largest
    |z|) in the subject, all of them in the body, worst first."""
    where = f"{pipeline}.{dataset}" if dataset else pipeline
    when = f"run {run_id}" if run_id else f"at {ts}"
    found = sorted(found, key=lambda a: -abs(a["zscore"]))
    worst = found[0]
    more = f" and {len(found) - 1} more" if len(found) > 1 else ""
    lines = "".join(f"  {a['metric']} = {a['value']:g}: {a['direction']}, expected {a['expected']:.6g} "
                    f"(z-score {a['zscore']:.2f}, {a['method'] or 'rolling'} comparison)\n" for a in found)
    return (anomaly_key(pipeline, dataset, run_id, ts),
            f"[orbit] anomaly: {where} {worst['metric']} {worst['direction']} ({worst['value']:g}, expected "
            f"{worst['expected']:.6g}){more}",
            f"{len(found)} series of {where} moved ({when}, {ts}), worst first:\n{lines}"
            f"\n`agentops orbit anomalies --pipeline {pipeline}` lists them.\n")


def send_pending(orbit, limit: int = 100) -> list[dict]:
    """Send pending alerts (claimed one by one, so two writers never send the same alert)."""
    from agentops.mail import notify  # agentops' own voice: from postmaster

    conn = orbit.db.conn
    if orbit.ws is None:
        return []
    sent = []
    pending = conn.execute("SELECT key, owner, subject, body FROM alerts WHERE status = 'pending' ORDER BY ts "
                           "LIMIT ?", (limit,)).fetchall()
    claim = f"sending:{os.getpid()}"
    for key, owner, subject, body in pending:
        with write_tx(orbit.db) as c:
            if not c.execute("UPDATE alerts SET status = ? WHERE key = ? AND status = 'pending'",
                             (claim, key)).rowcount:
                continue
        status, message_id, error = "sent", None, None
        try:
            message_id = notify(orbit.ws, to=[owner], subject=subject, body=body)[0]
        except ValidationError as exc:  # this alert's own mail is refused: no retry will take it
            status, error = "failed", str(exc)
        except AgentOpsError as exc:
            status, error = "pending", str(exc)
        except Exception as exc:  # the mail library is another module: never lose the alert over it
            status, error = "pending", f"{type(exc).__name__}: {exc}"
        with write_tx(orbit.db) as c:
            c.execute("UPDATE alerts SET status = ?, message_id = ?, error = ?, sent_at = ? WHERE key = ?",
                      (status, message_id, error, utcnow() if status == "sent" else None, key))
        sent.append({"key": key, "owner": owner, "status": status, "error": error})
        if status == "pending":
            break  # mail is failing: keep the rest for the next attempt
    return sent
