"""Hostile and faulty Orbit input (issue 12 points 4, 7 and 11): every input ends ingested or set
aside with its reason, nothing blocks the queue, and bad values are one clear line naming the field."""

from __future__ import annotations

import json
import os

import pytest
from conftest import run_agentops

from agentops.orbit import Orbit
from agentops.orbit.ingest import ingest_pending


def drop(ws, name: str | bytes, events: list[dict]) -> None:
    path = os.path.join(os.fsencode(ws.orbit_dir), os.fsencode(name))
    with open(path, "wb") as f:
        f.write("".join(json.dumps(e) + "\n" for e in events).encode())


def metric(value, day: int) -> dict:
    return {"kind": "metric", "pipeline": "p", "name": "rows", "value": value, "ts": f"2026-11-{day:02d}T06:00:00Z"}


def test_a_value_that_overflowed_its_series_neither_stalls_the_queue_nor_poisons_the_series(ws):
    drop(ws, "a.jsonl", [metric(1000 + d % 3, d) for d in range(1, 8)])
    drop(ws, "b.jsonl", [metric(1.7e308, 8), metric(-1.7e308, 9), metric(1.7e308, 10)])
    drop(ws, "c.jsonl", [metric(1001, 11)])
    done = run_agentops("daemon", "--once")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert sorted(os.listdir(ws.orbit_dir)) == ["processed"]
    drop(ws, "d.jsonl", [metric(1002, 12)])  # a normal value later still works
    assert ingest_pending(ws).accepted == 1
    with Orbit.open(ws) as orbit:
        assert [m["value"] for m in orbit.metrics("p", "rows")][-2:] == [1001, 1002]


def test_a_drop_file_whose_name_is_not_utf8_is_set_aside_and_the_next_file_is_ingested(ws):
    drop(ws, b"ev\xff.jsonl", [{"kind": "note", "text": "bad name"}])
    drop(ws, "zz.jsonl", [{"kind": "note", "text": "good"}])
    done = run_agentops("daemon", "--once")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert sorted(os.listdir(ws.orbit_dir)) == ["processed", "rejected"]
    reasons = [json.loads((ws.orbit_dir / "rejected" / n).read_text()) for n in os.listdir(ws.orbit_dir / "rejected")
               if n.endswith(".reason")]
    assert reasons[0]["file"] == "ev\\xff.jsonl" and "not valid UTF-8" in reasons[0]["reason"]
    with Orbit.open(ws) as orbit:
        assert [e["text"] for e in orbit.events()] == ["good"]


def test_ingest_keeps_good_lines_and_rejects_wrong_types_with_line_numbers(ws, cli, tmp_path):
    f = tmp_path / "mixed.jsonl"
    f.write_text("\n".join(json.dumps(e) for e in [
        {"kind": "metric", "pipeline": "p", "name": "rows", "value": 12},
        {"kind": "metric", "pipeline": "p", "name": "rows", "value": "12"},
        {"kind": "check", "pipeline": "p", "dataset": "d", "check": "c", "passed": "true"},
        {"kind": "job", "pipeline": "p", "rows_in": "5"},
        {"kind": "job", "pipeline": "p", "rows_in": 10 ** 20},
        {"kind": "run", "pipeline": "p", "run_id": "r", "state": "running", "attempt": True},
        {"kind": "note", "text": "x", "ts": "9999-12-31T23:00:00-05:00"},
        {"kind": "note", "text": "kept"},
    ]) + "\n" + '{"kind": "perf", "pipeline": "p", "bottleneck": "io", "before": {"x": NaN}}\n'
        + '{"kind": "metric", "pipeline": "p", "name": "rows", "value": Infinity}\n')
    r = cli("orbit", "ingest", f, "--json")
    out = json.loads(r.output)
    assert r.exit_code == 4 and out["accepted"] == 2
    reasons = {x["line"]: x["reason"] for x in out["rejected"]}
    assert sorted(reasons) == [2, 3, 4, 5, 6, 7, 9, 10]
    assert reasons[2].startswith("metric.value:") and reasons[3].startswith("check.passed:")
    assert reasons[4].startswith("job.rows_in:") and reasons[5].startswith("job.rows_in:")
    assert reasons[6].startswith("run.attempt:") and "out of range" in reasons[7]
    assert "NaN" in reasons[9] and reasons[10].startswith(("metric.value:", "not valid JSON"))
    with Orbit.open(ws) as orbit:
        assert [e["kind"] for e in orbit.events()] == ["metric", "note"]


@pytest.mark.parametrize("args, expected", [
    (["perf", "--pipeline", "p", "--bottleneck", "io", "--before", "[" * 100_000 + "]" * 100_000],
     "--before: JSON nested deeper than 16 levels"),
    (["perf", "--pipeline", "p", "--bottleneck", "io", "--before", '{"a":' * 40 + "1" + "}" * 40],
     "--before: JSON nested deeper than 16 levels"),
    (["note", "--event", "[" * 100_000 + "]" * 100_000], "--event: JSON nested deeper than 16 levels"),
    (["perf", "--pipeline", "p", "--bottleneck", "io", "--before", '{"x": NaN}'], "--before: not valid JSON: NaN"),
    (["metric", "--pipeline", "p", "--name", "n", "--value", "nan"], "--value: 'nan' is not a finite number"),
    (["metric", "--pipeline", "p", "--name", "n", "--value", "1e999"], "--value: '1e999' is not a finite number"),
    (["job", "--pipeline", "p", "--rows-in", "99999999999999999999"], "job.rows_in: Input should be less than"),
    (["note", "--text", "x", "--ts", "9999-12-31T23:00:00-05:00"], "note.ts: Value error, out of range in UTC"),
    (["note", "--text", "x", "--ts", "0001-01-01T00:00:00+01:00"], "note.ts: Value error, out of range in UTC"),
])
def test_bad_values_are_one_clear_line(ws, cli, args, expected):
    r = cli("orbit", "log", *args)
    assert r.exit_code == 4 and r.output.startswith(f"Error: {expected}"), r.output
    assert len(r.output.strip().splitlines()) <= 2 and "Traceback" not in r.output
    with Orbit.open(ws) as orbit:
        assert orbit.events() == []


def test_cli_values_take_the_model_types(ws, cli):
    r = cli("orbit", "log", "check", "--pipeline", "p", "--dataset", "d", "--check", "c", "--passed", "false",
            "--observed", "12", "--threshold", "0", "--run-id", "r1")
    assert r.exit_code == 0, r.output
    r = cli("orbit", "log", "job", "--pipeline", "p", "--rows-in", "5", "--duration-s", "1.5")
    assert r.exit_code == 0, r.output
    with Orbit.open(ws) as orbit:
        check = orbit.checks()[0]
        assert (check["observed"], check["threshold"], check["passed"]) == (12, 0, False)
        job = orbit.events(kind="job")[0]
        assert (job["rows_in"], job["duration_s"]) == (5, 1.5)
    status = json.loads(cli("status", "--json").output)
    failed = status["quality"]["failed_checks"][0]
    assert (failed["observed"], failed["threshold"]) == (12, 0)


@pytest.mark.parametrize("args, expected", [
    (["note", "--text"], "orbit log: --text needs a value"),
    (["note", "--text", "--pipeline", "p"], "orbit log: --text needs a value"),
    (["metric", "--pipeline", "p", "--name", "n", "--value", "1", "--value", "2"], "orbit log: --value given twice"),
    (["job", "--pipeline", "p", "--rows-in", "many"], "--rows-in: 'many' is not a whole number"),
    (["check", "--pipeline", "p", "--dataset", "d", "--check", "c", "--passed", "perhaps"],
     "--passed: 'perhaps' is not true or false"),
])
def test_flags_without_values_repeated_or_unconvertible_are_errors(ws, cli, args, expected):
    r = cli("orbit", "log", *args)
    assert r.exit_code == 4 and r.output.startswith(f"Error: {expected}"), r.output
    with Orbit.open(ws) as orbit:
        assert orbit.events() == []


def test_nan_never_reaches_json_output(ws, cli):
    from agentops.errors import ValidationError

    with Orbit.open(ws) as orbit:
        for bad in ({"kind": "check", "pipeline": "p", "dataset": "d", "check": "c", "passed": False,
                     "observed": float("nan")},
                    {"kind": "perf", "pipeline": "p", "bottleneck": "io", "after": {"s": float("inf")}},
                    {"kind": "metric", "pipeline": "p", "name": "n", "value": float("-inf")}):
            with pytest.raises(ValidationError):
                orbit.log(bad)
    for command in (["orbit", "events", "--json"], ["orbit", "checks", "--json"], ["status", "--json"]):
        text = cli(*command).output
        assert "NaN" not in text and "Infinity" not in text
