"""8 processes logging 5,000 events each while a reader polls runs: every event once, no lock
errors, and the derived runs table always agrees with the events it was derived from."""

from __future__ import annotations

import multiprocessing as mp

import pytest

from agentops.orbit import Orbit
from agentops.workspace import Workspace

WRITERS, PER_WRITER = 8, 5000
STATES = ("queued", "running", "succeeded")


def _writer(root: str, w: int, errors) -> None:
    try:
        events = []
        for i in range(PER_WRITER // len(STATES)):
            for s in STATES:
                events.append({"kind": "run", "id": f"w{w}-{i}-{s}", "pipeline": f"p{w}", "run_id": f"r{i}",
                               "state": s})
        for i in range(PER_WRITER - len(events)):
            events.append({"kind": "note", "id": f"w{w}-note{i}", "text": f"writer {w}"})
        with Orbit.open(Workspace(root)) as orbit:
            for k in range(0, len(events), 250):
                report = orbit.log_many(events[k:k + 250])
                assert not report.rejected, report.rejected[:3]
    except BaseException as exc:  # noqa: BLE001
        errors.put(f"writer {w}: {exc!r}")


def _reader(root: str, stop, errors, reads) -> None:
    try:
        with Orbit.open(Workspace(root)) as orbit:
            conn = orbit.db.conn
            n = 0
            while not stop.is_set():
                orbit.runs(limit=50)
                conn.execute("BEGIN")  # one snapshot for both counts
                runs_events = conn.execute("SELECT count(*) FROM events WHERE kind = 'run'").fetchone()[0]
                done = conn.execute("SELECT count(*) FROM runs WHERE state = 'succeeded'").fetchone()[0]
                rows = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
                behind = conn.execute("SELECT count(*) FROM runs r WHERE seq != (SELECT max(seq) FROM events e "
                                      "WHERE e.kind = 'run' AND e.pipeline = r.pipeline AND e.run_id = r.run_id)"
                                      ).fetchone()[0] if n % 10 == 0 else 0
                conn.execute("COMMIT")
                # each run takes 3 events, in order, within a chunk or across chunks
                assert rows <= runs_events <= 3 * rows and done <= rows and behind == 0, (rows, runs_events, behind)
                n += 1
            reads.put(n)
    except BaseException as exc:  # noqa: BLE001
        errors.put(f"reader: {exc!r}")


@pytest.mark.stress
@pytest.mark.timeout(120)
def test_eight_writers_and_a_reader(ws):
    root = str(ws.root)
    Orbit.open(ws).close()  # migrate once up front
    ctx = mp.get_context("spawn")
    errors, reads, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    reader = ctx.Process(target=_reader, args=(root, stop, errors, reads))
    reader.start()
    writers = [ctx.Process(target=_writer, args=(root, w, errors)) for w in range(WRITERS)]
    for p in writers:
        p.start()
    for p in writers:
        p.join(90)
    stop.set()
    reader.join(30)
    problems = []
    while not errors.empty():
        problems.append(errors.get())
    assert not problems, problems
    assert all(p.exitcode == 0 for p in writers + [reader])
    assert reads.get(timeout=5) > 0
    with Orbit.open(ws) as orbit:
        c = orbit.db.conn
        assert c.execute("SELECT count(*) FROM events").fetchone()[0] == WRITERS * PER_WRITER
        assert c.execute("SELECT count(DISTINCT id) FROM events").fetchone()[0] == WRITERS * PER_WRITER
        assert c.execute("SELECT count(*) FROM runs WHERE state = 'succeeded'").fetchone()[0] == \
            WRITERS * (PER_WRITER // 3)
