"""Reservations (SPEC §13): glob overlap, the life cycle, expiry, the 8-way race, lineage notices."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings, strategies as st

from agentops import reservations as rs
from agentops.errors import ConflictError, NotFoundError, ValidationError
from agentops.globs import matches, overlap
from tests.conftest import run_agentops
from tests.pipeline_helpers import add_examples

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


# glob overlap ------------------------------------------------------------------------------------
def _reference(pattern: str) -> re.Pattern:
    """An independent matcher: the glob as a regular expression (not the automaton under test)."""
    segments = pattern.split("/")
    out = []
    for n, seg in enumerate(segments):
        last = n == len(segments) - 1
        if seg == "**":
            out.append(".+" if last else "(?:[^/]+/)*")
            continue
        part, i = "", 0
        while i < len(seg):
            c = seg[i]
            if c == "*":
                part += "[^/]*"
                while i + 1 < len(seg) and seg[i + 1] == "*":
                    i += 1
            elif c == "?":
                part += "[^/]"
            elif c == "[":  # the generated sets: [a], [ab], [!a] (no `]` member, no ranges)
                end = seg.index("]", i)
                body = seg[i + 1:end]
                if body.startswith("!"):
                    part += f"[^/{re.escape(body[1:])}]"
                else:
                    part += f"[{re.escape(body)}]"
                i = end
            else:
                part += re.escape(c)
            i += 1
        out.append(part + ("" if last else "/"))
    return re.compile("".join(out))


ALPHABET = "ab"
# every normalized path over {a, b} with at most 3 segments of at most 2 characters
SEGMENTS = ["".join(p) for n in (1, 2) for p in itertools.product(ALPHABET, repeat=n)]
PATHS = ["/".join(p) for n in (1, 2, 3) for p in itertools.product(SEGMENTS, repeat=n)]

segment = st.one_of(
    st.just("**"),
    st.lists(st.sampled_from(["a", "b", "*", "?", "[a]", "[!a]", "[ab]"]), min_size=1, max_size=3).map("".join),
)
glob = st.lists(segment, min_size=1, max_size=3).map("/".join)


@settings(max_examples=400, deadline=None)
@given(glob, glob)
def test_overlap_agrees_with_brute_force_over_generated_paths(a, b):
    ra, rb = _reference(a), _reference(b)
    common = [p for p in PATHS if ra.fullmatch(p) and rb.fullmatch(p)]
    witness = overlap(a, b)
    if common:
        assert witness is not None, f"{a!r} and {b!r} both match {common[0]!r}"
    if witness is not None:  # the witness really is a common, normalized path
        assert ra.fullmatch(witness) and rb.fullmatch(witness), (a, b, witness)
        assert not witness.startswith("/") and not witness.endswith("/") and "//" not in witness
    assert (overlap(b, a) is None) == (witness is None)


@settings(max_examples=200, deadline=None)
@given(glob, st.sampled_from(PATHS))
def test_matching_agrees_with_the_reference(pattern, path):
    assert matches(pattern, path) == bool(_reference(pattern).fullmatch(path))


@pytest.mark.parametrize("a,b,common", [
    ("sql/orders/**", "sql/*/x.sql", True),
    ("sql/**/x.sql", "sql/x.sql", True),
    ("a/*", "b/*", False),
    ("*.yaml", "orders_*", True),
    ("a*b", "*ab*c", False),
    ("warehouse.*", "warehouse.dim_customers", True),
    ("warehouse.*", "staging.orders", False),
    ("a/[!b]c", "a/[b]*", False),
])
def test_overlap_examples(a, b, common):
    assert (overlap(a, b) is not None) is common


# the life cycle ----------------------------------------------------------------------------------
def test_reserve_conflict_is_all_or_nothing_and_exits_6(ws, cli):
    r = cli("reserve", "--as", "database-engineer", "sql/orders/**", "dataset:warehouse.*", "--reason", "migration")
    assert r.exit_code == 0, r.output
    ids = re.findall(r"^(r-[0-9a-f]{8})", r.output, re.M)
    assert len(ids) == 2
    # one target free, one overlapping: nothing is taken, one line per conflict
    r = run_agentops("reserve", "--as", "data-engineer", "docs/free.md", "sql/*/a.sql",
                     "dataset:warehouse.fact_orders")
    assert r.returncode == 6
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 2, r.stderr
    assert lines[0].startswith("Error: sql/*/a.sql overlaps sql/orders/**")
    assert "database-engineer" in lines[0] and "migration" in lines[0] and "UTC" in lines[0]
    assert "dataset:warehouse.fact_orders" in lines[1] and "database-engineer" in lines[1]
    mine = rs.reservations(ws, agent="data-engineer")
    assert mine == []  # docs/free.md was not taken either
    events = _events(ws)
    assert [e["action"] for e in events].count("conflict") == 2
    # shared beside shared is fine; shared beside exclusive is not
    assert rs.reserve(ws, "data-engineer", ["docs/*"], shared=True).reservations
    assert rs.reserve(ws, "developer", ["docs/readme.md"], shared=True).reservations
    with pytest.raises(ConflictError):
        rs.reserve(ws, "devops", ["docs/readme.md"])
    # an agent's own reservations never conflict
    assert rs.reserve(ws, "database-engineer", ["sql/orders/x.sql"]).reservations


def test_a_plain_folder_means_everything_below_it(ws):
    (ws.root / "sql" / "orders").mkdir(parents=True)
    got = rs.reserve(ws, "database-engineer", ["sql/orders"]).reservations[0]
    assert got.target == "sql/orders/**"
    with pytest.raises(ConflictError, match="sql/orders/new.sql"):
        rs.reserve(ws, "data-engineer", ["sql/orders/new.sql"])


def test_bad_targets_are_refused(ws):
    for bad, msg in (("../x", "leaves the workspace"), ("/etc/passwd", "outside the workspace"),
                     ("dataset:", "name a dataset"), ("a/[a-\U0010ffff]", "range")):
        with pytest.raises(ValidationError, match=re.escape(msg)):
            rs.reserve(ws, "data-engineer", [bad])
    with pytest.raises(ValidationError, match="ttl"):
        rs.reserve(ws, "data-engineer", ["x"], ttl="30d")
    with pytest.raises(NotFoundError):
        rs.reserve(ws, "nobody", ["x"])


def test_expiry_with_a_controlled_clock(ws):
    r = rs.reserve(ws, "database-engineer", ["dataset:warehouse.fact_orders"], ttl="1h", now=T0).reservations[0]
    with pytest.raises(ConflictError):
        rs.reserve(ws, "data-engineer", ["dataset:warehouse.fact_orders"], now=T0 + timedelta(minutes=59))
    assert [x.id for x in rs.reservations(ws, now=T0 + timedelta(minutes=59, seconds=59))] == [r.id]
    later = T0 + timedelta(hours=1)
    assert rs.reservations(ws, now=later) == []  # expired: stops counting with nothing cleaned up
    assert rs.check_datasets(ws, "data-engineer", writes=["warehouse.fact_orders"], now=later) == []
    with pytest.raises(ConflictError):
        rs.check_datasets(ws, "data-engineer", writes=["warehouse.fact_orders"], now=T0 + timedelta(minutes=30))
    assert not any(e["action"] == "expired" for e in _events(ws))
    took = rs.reserve(ws, "data-engineer", ["dataset:warehouse.fact_orders"], now=later).reservations[0]
    expired = [e for e in _events(ws) if e["action"] == "expired"]
    assert [(e["reservation"], e["ts"][:19]) for e in expired] == [(r.id, "2026-12-01T10:00:00")]
    # the old holder cannot renew it now that someone else holds the target
    with pytest.raises(ConflictError, match="data-engineer"):
        rs.renew(ws, r.id, ttl="1h", now=later + timedelta(minutes=1))
    renewed = rs.renew(ws, took.id, ttl="3h", now=later + timedelta(minutes=1))
    assert renewed.expires_at.startswith("2026-12-01T13:01")
    assert [x.id for x in rs.reservations(ws, now=T0 + timedelta(hours=3, minutes=59))] == [took.id]


def test_release_by_id_target_and_all_and_force(ws, cli):
    a, b = rs.reserve(ws, "database-engineer", ["sql/a.sql", "sql/b.sql"], reason="rewrite").reservations
    c = rs.reserve(ws, "database-engineer", ["dataset:raw.orders"]).reservations[0]
    with pytest.raises(ConflictError, match="--force"):
        rs.release(ws, "data-engineer", [a.id])
    with pytest.raises(NotFoundError):
        rs.release(ws, "database-engineer", ["sql/zzz.sql"])
    assert [r.id for r in rs.release(ws, "database-engineer", ["sql/b.sql"])] == [b.id]
    r = cli("release", "--as", "database-engineer", a.id)
    assert r.exit_code == 0 and f"{a.id}  sql/a.sql  released" in r.output
    # --force by anyone, with a reason: logged and the holder mailed
    r = cli("release", "--force", c.id)
    assert r.exit_code == 4 and "--reason" in r.output
    r = cli("release", "--force", c.id, "--reason", "stale since yesterday", "--as", "devops")
    assert r.exit_code == 0, r.output
    assert rs.reservations(ws) == []
    forced = [e for e in _events(ws) if e["action"] == "forced"]
    assert forced[0]["agent"] == "devops" and forced[0]["holder"] == "database-engineer"
    mail = json.loads(run_agentops("mail", "inbox", "database-engineer", "--json").stdout)
    assert any(c.id in m["subject"] and m["sender"] == "postmaster" for m in mail), mail
    everything = json.loads(cli("reservations", "--all", "--json").output)
    assert {x["id"]: x["state"] for x in everything} == {a.id: "released", b.id: "released", c.id: "forced"}


def test_release_with_no_target_releases_all_of_mine(ws):
    rs.reserve(ws, "developer", ["src/**", "dataset:x"])
    rs.reserve(ws, "devops", ["infra/**"])
    assert len(rs.release(ws, "developer")) == 2
    assert [r.agent for r in rs.reservations(ws)] == ["devops"]


RACER = """
import sys
from agentops.cli import main
sys.stdin.read(1)   # the start gate: every racer is loaded and waiting before any reserves
sys.argv = ["agentops", "reserve", "--as", sys.argv[1], sys.argv[2], "--reason", "race"]
main()
"""


def test_eight_processes_race_and_exactly_one_wins(ws):
    roster = "".join(f'[[agents]]\nname = "racer{i}"\nrole = "Data Engineer"\n\n' for i in range(8))
    (ws.root / "agentops.toml").write_text(roster)
    targets = ["sql/**", "sql/orders/*", "sql/orders/daily.sql", "sql/*/daily.sql", "**/daily.sql",
               "sql/orders/**", "sql/?rders/d*", "s*/orders/daily.sql"]
    ws.db().conn.close()  # migrate once up front: the race is about the reservation, not the schema
    procs = [subprocess.Popen([sys.executable, "-c", RACER, f"racer{i}", targets[i]], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ws.root)
             for i in range(8)]
    for p in procs:
        p.stdin.write("x")
        p.stdin.flush()
    for p in procs:
        p.stdin.close()
    results = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    codes = [c for c, _, _ in results]
    assert sorted(codes) == [0] + [6] * 7, results
    held = rs.reservations(ws)
    assert len(held) == 1 and held[0].exclusive
    winner = held[0].agent
    assert all(winner in err for c, _, err in results if c == 6)
    actions = [e["action"] for e in _events(ws)]
    assert actions.count("reserved") == 1 and actions.count("conflict") == 7


# lineage and enforcement ---------------------------------------------------------------------------
def test_reserving_a_dataset_names_downstream_and_mails_owners_once(ws, cli):
    add_examples(ws)
    r = cli("reserve", "--as", "database-engineer", "dataset:warehouse.dim_customers", "--reason", "add column tier",
            "--json")
    assert r.exit_code == 0, r.output
    got = json.loads(r.output)
    rid = got["reservations"][0]["id"]
    info = got["downstream"][rid]
    assert info["writers"] == ["customers_dim.scd2_merge"]
    assert info["pipelines"] == ["clickstream", "orders_daily"]
    assert info["owners"] == ["data-engineer"]  # the reserver owns customers_dim: not told about itself
    assert "warehouse.fact_orders" in info["downstream_datasets"]
    assert [n["to"] for n in got["notices"]] == ["data-engineer"]
    mail = json.loads(run_agentops("mail", "inbox", "data-engineer", "--json").stdout)
    notices = [m for m in mail if rid in m["subject"]]
    assert len(notices) == 1
    # a shared reservation, a renewal: no more notices
    rs.renew(ws, rid, ttl="3h")
    mail = json.loads(run_agentops("mail", "inbox", "data-engineer", "--json").stdout)
    assert len([m for m in mail if rid in m["subject"]]) == 1


def test_check_datasets_refuses_writes_warns_reads_and_logs_overrides(ws):
    rs.reserve(ws, "database-engineer", ["dataset:warehouse.fact_orders", "dataset:warehouse.dim_customers"],
               reason="schema migration")
    with pytest.raises(ConflictError) as err:
        rs.check_datasets(ws, "data-engineer", writes=["warehouse.fact_orders"], reads=["warehouse.dim_customers"],
                          action="backfill orders_daily")
    assert "database-engineer" in str(err.value) and "schema migration" in str(err.value)
    warnings = rs.check_datasets(ws, "data-engineer", reads=["warehouse.dim_customers"])
    assert len(warnings) == 1 and "database-engineer" in warnings[0]
    assert rs.check_datasets(ws, "database-engineer", writes=["warehouse.fact_orders"]) == []
    out = rs.check_datasets(ws, "data-engineer", writes=["warehouse.fact_orders"], ignore=True)
    assert out[0].startswith("ignored reservation")
    assert [e["action"] for e in _events(ws)][-2:] == ["conflict", "overridden"]
    with pytest.raises(ConflictError, match="unnamed agent"):
        rs.check_datasets(ws, None, writes=["warehouse.fact_orders"])


def _events(ws) -> list[dict]:
    from agentops.orbit import Orbit

    with Orbit.open(ws) as orbit:
        return orbit.events(kind="reservation", limit=None)


def test_backfill_is_refused_before_anything_is_queued(ws):
    add_examples(ws)
    rs.reserve(ws, "database-engineer", ["dataset:warehouse.fact_orders"], reason="partitioning fact_orders")
    args = ("pipeline", "backfill", "orders_daily", "--start", "2026-11-01", "--end", "2026-11-03")
    r = run_agentops(*args, "--as", "data-engineer", "--dry-run")
    assert r.returncode == 0 and "warning: would be refused: dataset:warehouse.fact_orders" in r.stderr
    r = run_agentops(*args, "--as", "data-engineer")
    assert r.returncode == 6, r.stderr
    assert "warehouse.fact_orders" in r.stderr and "database-engineer" in r.stderr
    assert "partitioning fact_orders" in r.stderr
    r = run_agentops(*args, env={"AGENTOPS_AGENT": "data-engineer"})
    assert r.returncode == 6 and "database-engineer" in r.stderr
    assert json.loads(run_agentops("orbit", "runs", "--json").stdout) == []
    r = run_agentops(*args, "--as", "data-engineer", "--ignore-reservations")
    assert r.returncode == 0, r.stderr
    assert "warning: ignored reservation" in r.stderr and "database-engineer" in r.stderr
    assert json.loads(run_agentops("orbit", "runs", "--json").stdout)
    over = [e for e in _events(ws) if e["action"] == "overridden"]
    assert over and over[0]["agent"] == "data-engineer" and "backfill orders_daily" in over[0]["detail"]
    # the holder itself may backfill what it reserved
    r = run_agentops(*args, "--as", "database-engineer", "--reprocess", "completed")
    assert r.returncode == 0, r.stderr
