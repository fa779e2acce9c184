"""Orbit: typed events, the run state machine, derived state, idempotency, malformed input."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from hypothesis import given, settings, strategies as st

from agentops.errors import ValidationError
from agentops.orbit import Orbit
from agentops.orbit.states import RETRY_STARTS, STATES, TRANSITIONS


@pytest.fixture
def orbit(ws):
    with Orbit.open(ws) as o:
        yield o


def allowed(current: str | None, current_attempt: int, new: str, attempt: int | None) -> bool:
    """The transition table as a predicate: the model the state machine is checked against."""
    if current is None or (attempt is not None and attempt > current_attempt):
        return True
    if attempt is not None and attempt < current_attempt:
        return False
    return new == current or new in TRANSITIONS[current] or (
        current == "up_for_retry" and new in RETRY_STARTS and attempt is None)


def counts(orbit):
    c = orbit.db.conn
    return {t: c.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("events", "runs", "checks", "metrics", "jobs", "alerts", "anomalies")}


def run(state, **kw):
    return {"kind": "run", "pipeline": "orders", "run_id": "r1", "state": state, **kw}


def test_run_lifecycle_and_derived_state(orbit):
    orbit.log(run("queued", run_type="backfill", logical_date="2026-11-25"))
    orbit.log(run("running"))
    r = orbit.log(run("succeeded"))
    assert (r.state, r.attempt) == ("succeeded", 1)
    row = orbit.run("orders", "r1")
    assert row["state"] == "succeeded" and row["run_type"] == "backfill" and row["logical_date"] == "2026-11-25"
    assert row["started_at"] and row["ended_at"]
    assert [e["state"] for e in orbit.events(kind="run")] == ["queued", "running", "succeeded"]


def test_illegal_transition_is_refused_naming_run_and_states(orbit):
    orbit.log(run("running"))
    orbit.log(run("succeeded"))
    before = counts(orbit)
    with pytest.raises(ValidationError) as err:
        orbit.log(run("running"))
    msg = str(err.value)
    assert "r1" in msg and "orders" in msg and "succeeded -> running" in msg and "attempt 2" in msg
    assert counts(orbit) == before


def test_retry_is_a_new_attempt(orbit):
    orbit.log(run("running", task="load"))
    orbit.log(run("up_for_retry", task="load", error="timeout"))
    r = orbit.log(run("running", task="load"))
    assert r.attempt == 2
    orbit.log(run("failed", task="load", error="again"))
    assert orbit.log(run("running", task="load", attempt=3)).attempt == 3
    with pytest.raises(ValidationError, match="older than the current attempt"):
        orbit.log(run("running", task="load", attempt=1))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(STATES), st.one_of(st.none(), st.integers(1, 4))), min_size=1, max_size=8))
def test_state_machine_never_accepts_outside_the_table(tmp_path_factory, steps):
    from agentops.store import open_db

    db = open_db(tmp_path_factory.mktemp("sm") / "o.db")
    orbit = Orbit(db)
    state, attempt = None, 1
    try:
        for new, new_attempt in steps:
            ok = allowed(state, attempt, new, new_attempt)
            try:
                r = orbit.log(run(new, attempt=new_attempt))
            except ValidationError:
                assert not ok
                continue
            assert ok
            state, attempt = r.state, r.attempt
            assert orbit.run("orders", "r1")["state"] == new
    finally:
        orbit.close()


def test_upstream_failed_for_downstream_tasks(orbit, monkeypatch):
    stages = [SimpleNamespace(name="extract", depends_on=[]), SimpleNamespace(name="transform", depends_on=["extract"]),
              SimpleNamespace(name="load", depends_on=["transform"]), SimpleNamespace(name="audit", depends_on=[])]
    monkeypatch.setattr(Orbit, "spec", lambda self, p: SimpleNamespace(owner="data-engineer", stages=stages))
    orbit.log(run("queued", task="load", logical_date="2026-11-25"))
    r = orbit.log(run("failed", task="extract", logical_date="2026-11-25", error="boom"))
    assert [d["task"] for d in r.derived if d["kind"] == "run"] == ["transform", "load"]
    states = orbit.task_states("orders")
    assert states == {("2026-11-25", "extract"): "failed", ("2026-11-25", "transform"): "upstream_failed",
                      ("2026-11-25", "load"): "upstream_failed"}
    alert = orbit.alerts()[0]
    assert alert["owner"] == "data-engineer" and alert["cause"] == "run"


def test_job_check_metric_perf_note(orbit):
    orbit.log({"kind": "job", "pipeline": "orders", "run_id": "r1", "task": "load", "rows_in": 10, "rows_out": 9,
               "bytes": 100, "duration_s": 1.5})
    orbit.log({"kind": "check", "pipeline": "orders", "run_id": "r1", "dataset": "orders", "check": "unique:id",
               "passed": True, "severity": "warn", "observed": 0, "threshold": 0})
    orbit.log({"kind": "metric", "pipeline": "orders", "dataset": "orders", "name": "row_count", "value": 10})
    orbit.log({"kind": "perf", "pipeline": "orders", "task": "load", "bottleneck": "io", "note": "slow disk",
               "before": {"duration_s": 100}})
    orbit.log({"kind": "perf", "pipeline": "orders", "task": "load", "bottleneck": "io", "status": "resolved",
               "after": {"duration_s": 10}})
    orbit.log({"kind": "note", "text": "switched to parquet"})
    assert orbit.jobs()[0]["rows_out"] == 9
    assert orbit.checks()[0]["passed"] is True
    assert orbit.metrics("orders", "row_count", "orders")[0]["value"] == 10
    assert orbit.perf(status="open") == []
    p = orbit.perf(status="resolved")[0]
    assert p["before"] == {"duration_s": 100} and p["after"] == {"duration_s": 10} and p["note"] == "slow disk"
    assert orbit.search("parquet")[0]["text"] == "switched to parquet"


@pytest.mark.parametrize("raw, expected", [
    ('{"kind": "run", "pipeline": "p", "run_id": "r", "state": "done"}', "run.state: Input should be"),
    ('{"kind": "nope"}', "kind: unknown kind 'nope'"),
    ('{"pipeline": "p"}', "kind: missing"),
    ('{"kind": "check", "pipeline": "p", "dataset": "d", "check": "c", "passed": "maybe"}', "check.passed"),
    ('{"kind": "metric", "pipeline": "p", "name": "n"}', "metric.value: Field required"),
    ('{"kind": "note", "text": "x", "colour": "red"}', "note.colour: unknown field"),
    ('{"kind": "run", "pipeline": "p", "run_id": "r", "state": "running", "ts": "yesterday"}', "run.ts"),
    ('{"kind": "note", "text": "' + "x" * 70000 + '"}', "note.text: String should have at most"),
    ('{"kind": "metric", "pipeline": "p", "name": "n", "value": "NaN"}', "metric.value"),
    ("{not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
])
def test_malformed_input_clear_errors_nothing_written(orbit, raw, expected):
    before = counts(orbit)
    with pytest.raises(ValidationError) as err:
        orbit.log(raw)
    assert expected in str(err.value)
    assert counts(orbit) == before


def test_log_many_keeps_good_lines_reports_bad_ones(orbit):
    lines = [json.dumps(run("running")), "{bad", json.dumps({"kind": "zzz"}), json.dumps(run("succeeded")),
             json.dumps(run("running")), "", json.dumps({"kind": "note", "text": "ok"})]
    report = orbit.log_many(lines)
    assert report.accepted == 3
    assert [n for n, _ in report.rejected] == [2, 3, 5]
    assert "succeeded -> running" in report.rejected[2][1]
    assert orbit.run("orders", "r1")["state"] == "succeeded"


def test_replaying_the_same_jsonl_twice_changes_nothing(orbit):
    lines = [json.dumps({**run(s), "id": f"e{i}"}) for i, s in enumerate(["queued", "running", "failed"])]
    lines.append(json.dumps({"kind": "check", "id": "c1", "pipeline": "orders", "run_id": "r1", "dataset": "d",
                             "check": "not_null:x", "passed": False}))
    lines += [json.dumps({"kind": "metric", "id": f"m{i}", "pipeline": "orders", "name": "n", "value": v})
              for i, v in enumerate([10, 10, 11, 10, 10, 90])]
    first = orbit.log_many(lines)
    assert first.accepted == len(lines) and first.anomalies == 1 and first.alerts == 3
    snapshot = counts(orbit), orbit.runs(), orbit.checks(), orbit.alerts()
    second = orbit.log_many(lines)
    assert (second.accepted, second.duplicates, second.anomalies, second.alerts) == (0, len(lines), 0, 0)
    assert (counts(orbit), orbit.runs(), orbit.checks(), orbit.alerts()) == snapshot
    # a duplicate id inside one batch is skipped too
    assert orbit.log_many([json.dumps({"kind": "note", "id": "n1", "text": "a"})] * 2).duplicates == 1


def test_ts_is_normalized_and_since_filters(orbit):
    orbit.log({"kind": "note", "text": "old", "ts": "2020-01-01T10:00:00+02:00"})
    orbit.log({"kind": "note", "text": "new"})
    assert orbit.events()[0]["ts"] == "2020-01-01T08:00:00.000000+00:00"
    assert [e["text"] for e in orbit.events(since="1d")] == ["new"]
    assert [e["text"] for e in orbit.events(since="2019-12-31")] == ["old", "new"]
    with pytest.raises(ValidationError, match="--since"):
        orbit.events(since="last tuesday")


def test_mail_event_written_by_the_mail_library_is_accepted(orbit):
    from agentops.orbit import record
    from agentops.orbit.events import MailEvent
    from agentops.store import write_tx

    data = {"action": "delivered", "message_id": "<m1@x>", "sender": "a", "recipients": ["b"], "subject": "hi"}
    with write_tx(orbit.db) as conn:
        assert record(conn, MailEvent(kind="mail", id="mail:1", **data)) == 1
        assert record(conn, MailEvent(kind="mail", id="mail:1", **data)) == 0  # a replay
    ev = orbit.events(kind="mail")[0]
    assert {k: ev[k] for k in data} == data and ev["id"] == "mail:1"
    assert orbit.log(MailEvent(kind="mail", id="mail:1", **data)).duplicate
    with pytest.raises(TypeError, match="unknown field"):
        MailEvent(kind="mail", action="read", forged=True)
    with pytest.raises(TypeError, match="not a registered Orbit record"), write_tx(orbit.db) as conn:
        record(conn, {"kind": "mail", "action": "read"})


OWN_KINDS = [
    {"kind": "mail", "action": "delivered", "message_id": "<forged@x>", "sender": "ceo", "recipients": ["all"]},
    {"kind": "handoff", "sender": "a", "recipient": "b", "label": "fake"},
    {"kind": "anomaly", "pipeline": "p", "metric": "m", "value": 1, "expected": 2, "zscore": 9, "direction": "drop"},
    {"kind": "alert", "key": "k", "cause": "run", "to": "ops", "subject": "fake"},
    {"kind": "dispatch", "action": "started", "agent": "a"},
]


@pytest.mark.parametrize("event", OWN_KINDS, ids=[e["kind"] for e in OWN_KINDS])
def test_kinds_agentops_writes_are_refused_from_callers(orbit, event):
    before = counts(orbit)
    with pytest.raises(ValidationError) as err:
        orbit.log(event)
    assert str(err.value) == (f"kind '{event['kind']}' is written by agentops itself; "
                              "log run, job, check, metric, perf or note")
    report = orbit.log_many([json.dumps(event), json.dumps({"kind": "note", "text": "ok"}), event])
    assert report.accepted == 1 and [n for n, _ in report.rejected] == [1, 3]
    assert "written by agentops itself" in report.rejected[0][1]
    assert counts(orbit)["events"] == before["events"] + 1


def test_models_built_by_agentops_take_its_own_kinds_and_unregistered_models_are_refused(orbit):
    from agentops.orbit.events import AnomalyEvent, Event, HandoffEvent, MailEvent

    anomaly = AnomalyEvent(**OWN_KINDS[2])
    assert orbit.log(anomaly).seq is not None
    assert orbit.anomalies()[0]["metric"] == "m"
    report = orbit.log_many([MailEvent(**OWN_KINDS[0]), HandoffEvent(kind="handoff", sender="a", target="b")])
    assert report.accepted == 2 and not report.rejected
    with pytest.raises(ValidationError, match="unknown kind 'zzz'.*known: run, job, check, metric, perf, note"):
        orbit.log({"kind": "zzz"})

    class Stray(Event):
        kind: str = "stray"

    before = counts(orbit)
    with pytest.raises(TypeError, match="not a registered Orbit event model"):
        orbit.log(Stray())
    assert counts(orbit) == before
