"""Orbit through the CLI, the drop zone, alerts to inboxes, and OpenLineage."""

from __future__ import annotations

import json
import mailbox
import subprocess
import sys
from types import SimpleNamespace

from agentops.orbit import Orbit
from agentops.orbit.ingest import ingest_pending
from tests.conftest import run_agentops


def inbox(ws, agent):
    path = ws.inbox(agent)
    return list(mailbox.Maildir(path, create=False)) if path.exists() else []


def test_log_runs_events_search(ws, cli):
    r = cli("orbit", "log", "run", "--pipeline", "orders", "--run-id", "r1", "--state", "running",
            "--logical-date", "2026-11-25")
    assert r.exit_code == 0 and "logged run" in r.output
    r = cli("orbit", "log", "run", "--pipeline", "orders", "--run-id", "r1", "--state", "failed",
            "--error", "timeout talking to warehouse")
    assert r.exit_code == 0
    r = cli("orbit", "log", "run", "--pipeline", "orders", "--run-id", "r1", "--state", "succeeded")
    assert r.exit_code == 4 and "failed -> succeeded" in r.output
    r = cli("orbit", "log", "check", "--event", '{"pipeline": "orders", "dataset": "orders"}', "--check", "unique:id",
            "--passed", "false", "--observed", "3", "--threshold", "0", "--run-id", "r1")
    assert r.exit_code == 0
    r = cli("orbit", "log", "run", "--pipeline", "orders", "--run-id", "r2", "--state", "nope")
    assert r.exit_code == 4 and "run.state" in r.output
    runs = json.loads(cli("orbit", "runs", "--json", "--since", "1h").output)
    assert [(x["run_id"], x["state"]) for x in runs] == [("r1", "failed")]
    assert "orders" in cli("orbit", "runs", "--state", "failed").output
    assert json.loads(cli("orbit", "runs", "--json", "--state", "running").output) == []
    evs = json.loads(cli("orbit", "events", "--json", "--kind", "run").output)
    assert [e["state"] for e in evs] == ["running", "failed"]
    found = json.loads(cli("orbit", "search", "warehouse", "--json").output)
    assert found[0]["error"] == "timeout talking to warehouse"
    assert "unique:id" in cli("orbit", "checks", "--failed").output
    assert cli("orbit", "events", "--since", "soon").exit_code == 2


def test_read_commands_import_no_event_models(ws):
    with Orbit.open(ws) as orbit:
        orbit.log({"kind": "run", "pipeline": "orders", "run_id": "r1", "state": "running"})
    code = ("import sys\nfrom agentops.cli import main\nsys.argv = ['agentops', 'orbit', sys.argv[1], '--json']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('agentops.orbit.events', 'agentops.orbit.log') if m in sys.modules))\n")
    for command in ("runs", "events", "checks", "anomalies"):
        out = subprocess.run([sys.executable, "-c", code, command], capture_output=True, text=True, cwd=ws.root)
        assert out.returncode == 0 and out.stdout.splitlines()[-1] == "[]", (command, out.stdout, out.stderr)
        assert ('"run_id": "r1"' in out.stdout) == (command in ("runs", "events")), command


def test_ingest_file_reports_bad_lines_and_keeps_good_ones(ws, cli, tmp_path):
    f = tmp_path / "events.jsonl"
    f.write_text("\n".join([
        json.dumps({"kind": "run", "pipeline": "p", "run_id": "r", "state": "running"}),
        "{oops",
        json.dumps({"kind": "metric", "pipeline": "p", "name": "n", "value": "lots"}),
        json.dumps({"kind": "note", "text": "hello"}),
    ]) + "\n")
    r = cli("orbit", "ingest", f)
    assert r.exit_code == 4
    assert f"{f}:2: not valid JSON" in r.output and f"{f}:3: metric.value" in r.output
    assert "2 event(s) logged" in r.output
    with Orbit.open(ws) as orbit:
        assert len(orbit.events()) == 2


def test_drop_zone_ingest_moves_files_and_keeps_rejects(ws):
    drop = ws.orbit_dir / "batch.jsonl"
    drop.write_text(json.dumps({"kind": "note", "id": "n1", "text": "a"}) + "\n{bad\n"
                    + json.dumps({"kind": "note", "id": "n2", "text": "b"}) + "\n")
    report = ingest_pending(ws)
    assert report.accepted == 2 and report.rejected[0][0] == 2
    assert not drop.exists() and (ws.orbit_dir / "processed" / "batch.jsonl").exists()
    rej = [json.loads(x) for x in (ws.orbit_dir / "rejected" / "batch.jsonl.rejected.jsonl").read_text().splitlines()]
    assert rej[0]["line"] == 2 and rej[0]["text"] == "{bad" and "JSON" in rej[0]["reason"]
    # the same file dropped again (same ids) changes nothing, and lands beside the first
    drop.write_text(json.dumps({"kind": "note", "id": "n1", "text": "a"}) + "\n")
    assert ingest_pending(ws).duplicates == 1
    assert (ws.orbit_dir / "processed" / "batch.1.jsonl").exists()
    assert ingest_pending(ws).lines == 0


def test_alerts_go_once_to_the_owner(ws, monkeypatch):
    monkeypatch.setattr(Orbit, "spec", lambda self, p: SimpleNamespace(owner="data-engineer", stages=[])
                        if p == "orders" else None)
    with Orbit.open(ws) as orbit:
        for attempt in (1, 2):
            orbit.log({"kind": "run", "pipeline": "orders", "run_id": "r1", "task": "load", "state": "running",
                       "attempt": attempt})
            orbit.log({"kind": "run", "pipeline": "orders", "run_id": "r1", "task": "load", "state": "failed",
                       "error": "disk full"})
        orbit.log({"kind": "run", "pipeline": "orders", "run_id": "r1", "state": "failed"})
        chk = {"kind": "check", "pipeline": "orders", "run_id": "r1", "dataset": "orders", "check": "not_null:id",
               "passed": False, "severity": "error", "observed": 4, "threshold": 0}
        orbit.log(chk)
        orbit.log(chk)
        orbit.log({**chk, "severity": "warn", "check": "row_count"})
        orbit.log({"kind": "run", "pipeline": "adhoc", "run_id": "x", "state": "failed", "owner": "devops"})
        alerts = orbit.alerts()
    assert sorted((a["cause"], a["owner"], a["status"]) for a in alerts) == [
        ("check", "data-engineer", "sent"), ("run", "data-engineer", "sent"), ("run", "devops", "sent")]
    subjects = sorted(m["Subject"] for m in inbox(ws, "data-engineer"))
    assert len(subjects) == 2 and all(s.startswith("[orbit]") for s in subjects)
    assert all(m["From"] and "postmaster" in m["From"] for m in inbox(ws, "data-engineer"))
    assert len(inbox(ws, "devops")) == 1


def test_openlineage_export_validates_and_round_trips(ws, cli, tmp_path, monkeypatch):
    from openlineage.client.event_v2 import InputDataset, Job, Run, RunEvent, RunState
    from openlineage.client.facet_v2 import data_quality_assertions_dataset as dq, error_message_run, parent_run
    from openlineage.client.serde import Serde

    with Orbit.open(ws) as orbit:
        orbit.log_many([
            {"kind": "run", "pipeline": "orders", "run_id": "r1", "state": "queued", "run_type": "backfill",
             "logical_date": "2026-11-25"},
            {"kind": "run", "pipeline": "orders", "run_id": "r1", "state": "running"},
            {"kind": "run", "pipeline": "orders", "run_id": "r1", "task": "load", "state": "running"},
            {"kind": "run", "pipeline": "orders", "run_id": "r1", "task": "load", "state": "failed", "error": "boom"},
            {"kind": "run", "pipeline": "orders", "run_id": "r1", "state": "failed", "error": "load failed"},
            {"kind": "check", "pipeline": "orders", "run_id": "r1", "dataset": "orders", "check": "not_null:id",
             "passed": False, "severity": "error", "observed": 12, "threshold": 0},
            {"kind": "run", "pipeline": "orders", "run_id": "r2", "state": "canceled"},
        ])
        runs_before = orbit.runs()
        checks_before = orbit.checks()
    out = tmp_path / "ol.jsonl"
    assert cli("orbit", "export", "--openlineage", "--out", out).exit_code == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["eventType"] for x in lines] == ["OTHER", "START", "START", "FAIL", "FAIL", "OTHER", "ABORT"]
    for d in lines:  # rebuilt with openlineage-python's own classes: they validate and serialize the same
        facets = {}
        for name, f in d["run"]["facets"].items():
            if name == "errorMessage":
                facets[name] = error_message_run.ErrorMessageRunFacet(message=f["message"],
                                                                      programmingLanguage=f["programmingLanguage"])
            elif name == "parent":
                facets[name] = parent_run.ParentRunFacet(run=parent_run.Run(runId=f["run"]["runId"]),
                                                         job=parent_run.Job(**f["job"]))
        inputs = [InputDataset(namespace=i["namespace"], name=i["name"], inputFacets={
            "dataQualityAssertions": dq.DataQualityAssertionsDatasetFacet(assertions=[
                dq.Assertion(**a) for a in i["inputFacets"]["dataQualityAssertions"]["assertions"]])})
            for i in d["inputs"]]
        ev = RunEvent(eventType=RunState(d["eventType"]), eventTime=d["eventTime"], producer=d["producer"],
                      run=Run(runId=d["run"]["runId"], facets=facets), job=Job(namespace="agentops", name=d["job"]["name"]),
                      inputs=inputs)
        ser = Serde.to_dict(ev)
        assert ser["run"]["runId"] == d["run"]["runId"] and ser["eventType"] == d["eventType"]
        assert ser["schemaURL"] == d["schemaURL"]
        for name in facets:
            assert ser["run"]["facets"][name]["_schemaURL"] == d["run"]["facets"][name]["_schemaURL"]
        for got, want in zip(ser.get("inputs", []), d["inputs"]):
            assert [{k: v for k, v in a.items() if k != "params"}
                    for a in got["inputFacets"]["dataQualityAssertions"]["assertions"]] == \
                want["inputFacets"]["dataQualityAssertions"]["assertions"]
    # round trip into a fresh workspace
    from agentops.workspace import Workspace, init_workspace

    init_workspace(tmp_path / "other")
    monkeypatch.setenv("AGENTOPS_WORKSPACE", str(tmp_path / "other"))
    r = cli("orbit", "import", "--openlineage", out)
    assert r.exit_code == 0, r.output
    assert cli("orbit", "import", "--openlineage", out).output.startswith("0 event(s) logged")
    with Orbit.open(Workspace(tmp_path / "other")) as other:
        strip = lambda rows: [{k: v for k, v in x.items() if k != "seq"} for x in rows]  # noqa: E731
        assert strip(other.runs()) == strip(runs_before)
        assert strip(other.checks()) == strip(checks_before)


def test_openlineage_import_of_foreign_events(ws, tmp_path):
    from agentops.orbit.openlineage import import_file

    ns = "airflow"
    parent = {"run": {"runId": "0192c0a0-0000-7000-8000-000000000001"}, "job": {"namespace": ns, "name": "sales"}}
    lines = [
        {"eventTime": "2026-11-25T02:00:00Z", "eventType": "START", "producer": "x", "schemaURL": "y",
         "run": {"runId": "0192c0a0-0000-7000-8000-000000000002", "facets": {
             "parent": parent, "nominalTime": {"nominalStartTime": "2026-11-25T00:00:00Z"}}},
         "job": {"namespace": ns, "name": "sales.extract"}},
        {"eventTime": "2026-11-25T02:05:00Z", "eventType": "FAIL", "producer": "x", "schemaURL": "y",
         "run": {"runId": "0192c0a0-0000-7000-8000-000000000002", "facets": {
             "parent": parent, "errorMessage": {"message": "403", "programmingLanguage": "python"}}},
         "job": {"namespace": ns, "name": "sales.extract"}},
        {"not": "an event"},
    ]
    f = tmp_path / "ol.jsonl"
    f.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    with Orbit.open(ws) as orbit:
        report = import_file(orbit, f)
        assert report.accepted == 2 and [n for n, _ in report.rejected] == [3]
        row = orbit.run("sales", parent["run"]["runId"], "extract")
    assert (row["state"], row["error"], row["logical_date"]) == ("failed", "403", "2026-11-25T00:00:00Z")


def test_since_out_of_range_is_one_error_line(ws, cli):
    for cmd in ("events", "runs", "checks", "anomalies"):
        r = cli("orbit", cmd, "--since", "99999999d")
        assert r.exit_code == 2, r.output  # a usage error (issue 12.12)
        assert r.output.startswith("Error: --since: '99999999d' is out of range") and "24h" in r.output
        assert "Traceback" not in r.output and "Overflow" not in r.output
    for value in ("9" * 400 + "d", "0001-01-01T00:00+01:00", "9999-12-31T23:00-05:00"):
        r = cli("orbit", "events", "--since", value)
        assert r.exit_code == 2 and "is out of range" in r.output and len(r.output.splitlines()) == 2
    r = cli("status", "--since", "99999999d")
    assert r.exit_code == 2 and "'99999999d' is out of range" in r.output
    assert cli("orbit", "events", "--since", "9999-12-31T23:59+00:00").exit_code == 0


def test_kinds_agentops_writes_are_refused_from_cli_file_and_drop_zone(ws, cli, tmp_path):
    from tests.conftest import run_agentops

    refusal = "kind 'mail' is written by agentops itself; log run, job, check, metric, perf or note"
    r = cli("orbit", "log", "mail", "--action", "delivered", "--message-id", "<forged@x>", "--sender", "ceo")
    assert r.exit_code == 4 and r.output == f"Error: {refusal}\n"
    forged = [{"kind": "mail", "action": "delivered", "message_id": "<forged@x>"},
              {"kind": "handoff", "sender": "a", "recipient": "b"},
              {"kind": "alert", "key": "k", "cause": "run", "to": "ops", "subject": "fake"},
              {"kind": "anomaly", "pipeline": "p", "metric": "m", "value": 1, "expected": 2, "zscore": 9,
               "direction": "drop"},
              {"kind": "dispatch", "action": "started"},
              {"kind": "note", "text": "kept"}]
    f = tmp_path / "forged.jsonl"
    f.write_text("".join(json.dumps(e) + "\n" for e in forged))
    r = cli("orbit", "ingest", f)
    assert r.exit_code == 4 and f"{f}:1: {refusal}" in r.output and "1 event(s) logged, 0 duplicate(s) skipped, " \
        "5 line(s) rejected" in r.output
    for n, e in enumerate(forged[1:5], 2):
        assert f"{f}:{n}: kind '{e['kind']}' is written by agentops itself" in r.output
    # the daemon's drop zone (the real command): set aside with the reason, the note kept
    (ws.orbit_dir / "forged.jsonl").write_text(f.read_text())
    done = run_agentops("daemon", "--once", "--log-format", "json")
    assert done.returncode == 0, done.stderr
    assert refusal in done.stderr
    rejected = [json.loads(x) for x in (ws.orbit_dir / "rejected" / "forged.jsonl.rejected.jsonl").read_text()
                .splitlines()]
    assert [x["line"] for x in rejected] == [1, 2, 3, 4, 5] and rejected[0]["reason"] == refusal
    with Orbit.open(ws) as orbit:  # the drop file replays the ingested file: its note is the same event
        assert [e["kind"] for e in orbit.events()] == ["note"]
        assert orbit.events(kind="mail") == [] and orbit.alerts() == [] and orbit.anomalies() == []


def test_drop_zone_sets_aside_links_folders_and_fifos_unread(ws, tmp_path):
    import os

    secret = tmp_path / "secret.jsonl"
    secret.write_text(json.dumps({"kind": "note", "text": "never read through a link"}) + "\n")
    (ws.orbit_dir / "a.jsonl").write_text(json.dumps({"kind": "note", "text": "kept"}) + "\n")
    os.symlink(secret, ws.orbit_dir / "c.jsonl")
    os.symlink(tmp_path / "nowhere", ws.orbit_dir / "e.jsonl")
    (ws.orbit_dir / "d.jsonl").mkdir()
    (ws.orbit_dir / "d.jsonl" / "inner.jsonl").write_text(json.dumps({"kind": "note", "text": "inner"}) + "\n")
    os.mkfifo(ws.orbit_dir / "f.jsonl")
    os.link(secret, ws.orbit_dir / "g.jsonl")
    report = ingest_pending(ws)
    assert report.accepted == 1 and report.rejected == []
    assert report.set_aside == [("c.jsonl", "a symbolic link (never followed)"),
                                ("d.jsonl", "not a regular file (a directory)"),
                                ("e.jsonl", "a symbolic link (never followed)"),
                                ("f.jsonl", "not a regular file (a FIFO)"),
                                ("g.jsonl", "a hard link to another file (never read)")]
    assert secret.read_text().endswith("never read through a link\"}\n")
    assert "5 file(s) set aside" in str(report) and report.as_dict()["set_aside"][0]["file"] == "c.jsonl"
    rejected = ws.orbit_dir / "rejected"
    assert sorted(p.name for p in ws.orbit_dir.iterdir()) == ["processed", "rejected"]
    assert os.readlink(rejected / "c.jsonl") == str(secret) and secret.exists()   # the link moved, not its target
    assert (rejected / "d.jsonl" / "inner.jsonl").exists()                       # the folder as a whole
    reason = json.loads((rejected / "c.jsonl.reason").read_text())
    assert reason["file"] == "c.jsonl" and reason["reason"] == "a symbolic link (never followed)" and reason["time"]
    with Orbit.open(ws) as orbit:
        assert [e["text"] for e in orbit.events()] == ["kept"]
    # the same names again land beside the first ones; the daemon (the real command) reports them
    os.symlink(secret, ws.orbit_dir / "c.jsonl")
    from tests.conftest import run_agentops

    done = run_agentops("daemon", "--once", "--log-format", "json")
    assert done.returncode == 0, done.stderr
    logged = [json.loads(x) for x in done.stderr.splitlines() if x.startswith("{")]
    assert {"event": "rejected-file", "file": "c.jsonl", "reason": "a symbolic link (never followed)"}.items() <= \
        next(x for x in logged if x["event"] == "rejected-file").items()
    assert next(x for x in logged if x["event"] == "ingested")["set_aside"] == 1
    assert os.path.islink(rejected / "c.1.jsonl") and (rejected / "c.1.jsonl.reason").exists()


def test_ingest_of_something_not_a_file_says_so(ws, cli, tmp_path):
    import os

    fifo = tmp_path / "events.fifo"
    os.mkfifo(fifo)
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"kind": "note", "text": "via a link"}) + "\n")
    for target, name in ((tmp_path, "to-dir.jsonl"), (tmp_path / "gone", "dangling.jsonl"), (good, "good-link.jsonl")):
        os.symlink(target, tmp_path / name)
    r = cli("orbit", "ingest", "/etc")
    assert r.exit_code == 4 and r.output.startswith("Error: /etc: not a regular file (a directory)")
    r = cli("orbit", "ingest", fifo)  # never blocks waiting for a writer
    assert r.exit_code == 4 and f"Error: {fifo}: not a regular file (a FIFO)" in r.output
    r = cli("orbit", "ingest", tmp_path / "to-dir.jsonl")
    assert r.exit_code == 4 and f"(a symbolic link to {tmp_path}): not a regular file (a directory)" in r.output
    r = cli("orbit", "ingest", tmp_path / "dangling.jsonl")
    assert r.exit_code == 5 and "its target does not exist" in r.output and "no such file" not in r.output
    r = cli("orbit", "ingest", tmp_path / "missing.jsonl")
    assert r.exit_code == 5 and "missing.jsonl: no such file" in r.output
    r = cli("orbit", "ingest", tmp_path / "good-link.jsonl")  # the user's own link: followed
    assert r.exit_code == 0 and "1 event(s) logged" in r.output
    r = cli("orbit", "import", "--openlineage", "/etc")
    assert r.exit_code == 4 and "not a regular file (a directory)" in r.output


def test_an_alert_whose_mail_is_refused_never_holds_back_the_next(ws):
    """A run id with a line break and escapes makes a one-line alert subject that is delivered; an
    alert row with a line break in its subject (as an older release wrote them) is `failed` with the
    reason, and the alerts after it are still sent."""
    with Orbit.open(ws) as orbit:
        orbit.log({"kind": "run", "pipeline": "adhoc", "run_id": "r1\nBcc: x\x1b[31m\x9b", "state": "failed",
                   "owner": "devops"})
        orbit.db.conn.execute("INSERT INTO alerts (key, ts, cause, pipeline, run_id, owner, subject, body) VALUES "
                              "('old', '2000-01-01T00:00:00Z', 'run', 'adhoc', 'r0', 'devops', 'bad\nBcc: x', 'b')")
        orbit.db.conn.commit()
        orbit.log({"kind": "run", "pipeline": "adhoc", "run_id": "r2", "state": "failed", "owner": "devops"})
        alerts = {a["run_id"]: a for a in orbit.alerts()}
    assert alerts["r0"]["status"] == "failed" and "line break" in alerts["r0"]["error"]
    assert alerts["r1\nBcc: x\x1b[31m\x9b"]["status"] == "sent" and alerts["r2"]["status"] == "sent"
    subjects = sorted(m["Subject"] for m in inbox(ws, "devops"))
    assert subjects == ["[orbit] run failed: adhoc r1 Bcc: x [31m", "[orbit] run failed: adhoc r2"]
    # through the CLI: what `orbit log` prints of the alert it caused is one line, with no escapes
    r = run_agentops("-w", ws.root, "orbit", "log", "run", "--pipeline", "adhoc", "--run-id", "r3\x1b[2J\x9b\nx",
                     "--state", "failed", "--owner", "devops")
    assert r.returncode == 0 and "r3 [2J  x" in r.stdout, r.stdout
    assert not any(c in r.stdout for c in "\x1b\x9b") and len(r.stdout.splitlines()) == 2
