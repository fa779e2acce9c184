"""The Postgres connection against a real PostgreSQL server: a throwaway cluster (initdb + pg_ctl,
as a non-root user, on a unix socket in a temp folder) started for this module. Skipped, with the
reason, only where no PostgreSQL server binaries exist (`.ci/run` installs Debian's `postgresql`)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from agentops.data import quality, register_inputs
from agentops.data.connections import duckdb_connect
from agentops.pipelines.spec import find_spec
from agentops.workspace import Workspace, init_workspace
from tests.test_data_quality import CHECKS, LABELS, _now

DSN_ENV = "AGENTOPS_TEST_PG_DSN"


def _pg_bin() -> Path | None:
    for name in ("initdb", "pg_ctl"):
        found = shutil.which(name)
        if found and shutil.which("pg_ctl" if name == "initdb" else "initdb"):
            return Path(found).parent
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.access(f"{d}/initdb", os.X_OK) and os.access(f"{d}/pg_ctl", os.X_OK):
            return Path(d)
    return None


def _as_user(argv: list[str], user: str | None) -> list[str]:
    if user is None:
        return argv
    if shutil.which("runuser"):
        return ["runuser", "-u", user, "--", *argv]
    return ["su", user, "-s", "/bin/sh", "-c", " ".join(map(_quote, argv))]


def _quote(a: str) -> str:
    import shlex

    return shlex.quote(a)


@pytest.fixture(scope="module")
def pg_dsn():
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on this machine; .ci/run installs postgresql")
    user = None
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        import pwd

        user = "nobody"
        pw = pwd.getpwnam(user)
    base = Path(tempfile.mkdtemp(prefix="agentops-pg-"))
    data, sock = base / "data", base
    if user:
        os.chown(base, pw.pw_uid, pw.pw_gid)
    run = lambda argv, **kw: subprocess.run(_as_user(argv, user), capture_output=True, text=True, timeout=120,  # noqa: E731
                                             cwd=str(base), **kw)
    init = run([str(bindir / "initdb"), "-D", str(data), "-U", "agentops", "--auth=trust", "-E", "UTF8",
                "--no-sync"])
    assert init.returncode == 0, init.stderr
    port = str(20000 + os.getpid() % 20000)
    start = run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-w", "-t", "60", "-o",
                 f"-k {sock} -p {port} -c listen_addresses='' -c fsync=off", "start"])
    assert start.returncode == 0, start.stderr + (base / "log").read_text(errors="replace")
    try:
        yield f"host={sock} port={port} user=agentops dbname=postgres"
    finally:
        run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"])
        shutil.rmtree(base, ignore_errors=True)


SPEC = """name: shop
owner: data-engineer
schedule: "@daily"
sources:
  - {name: pg.good, kind: database, format: table, location: {connection: pg, table: app.good}}
  - {name: pg.bad, kind: database, format: table, location: {connection: pg, table: app.bad}}
  - {name: pg.gone, kind: database, format: table, location: {connection: pg, table: app.gone}}
stages:
  - {name: s, kind: transform, inputs: [pg.good, pg.bad, pg.gone], outputs: [o]}
quality:
"""


@pytest.fixture
def pg_ws(_workspace_env, pg_dsn, monkeypatch):
    import psycopg

    monkeypatch.setenv(DSN_ENV, pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS app CASCADE")
        conn.execute("CREATE SCHEMA app")
        ts = _now()
        conn.execute("CREATE TABLE app.good AS SELECT g::bigint AS id, CASE WHEN g %% 2 = 0 THEN 'a' ELSE 'b' END "
                     "AS status, (g %% 100)::int AS amount, %s::timestamp - g * interval '1 minute' AS ts, "
                     "'n'::text AS note FROM generate_series(0, 199) g", (ts,))
        conn.execute("UPDATE app.good SET id = id + 1")
        conn.execute("CREATE TABLE app.bad AS SELECT CASE WHEN g = 4 THEN NULL ELSE g %% 2 END::bigint AS id, "
                     "CASE WHEN g = 0 THEN 'zzz' ELSE 'a' END AS status, (g * 100)::int AS amount, "
                     "%s::timestamp - interval '10 days' AS ts FROM generate_series(0, 4) g", (ts,))
    init_workspace(_workspace_env)
    (_workspace_env / "agentops.toml").write_text(f'[connections.pg]\nkind = "postgres"\ndsn_env = "{DSN_ENV}"\n')
    ws = Workspace(_workspace_env)
    ws.pipelines_dir.mkdir(parents=True, exist_ok=True)
    checks = CHECKS.replace("DS", "pg.good") + CHECKS.replace("DS", "pg.bad") + \
        "  - {dataset: pg.gone, check: row_count, min: 1}\n"
    (ws.pipelines_dir / "shop.yaml").write_text(SPEC + checks, "utf-8")
    return ws


def test_postgres_checks_pass_and_fail_on_a_real_server(pg_ws):
    report = quality.run(pg_ws, "shop")
    by = {(r.dataset, r.check): r for r in report.results}
    for label in LABELS:
        assert by[("pg.good", label)].status == "passed", by[("pg.good", label)]
        assert by[("pg.bad", label)].status == "failed", by[("pg.bad", label)]
    assert by[("pg.bad", "unique:id")].observed == 2 and by[("pg.bad", "range:amount")].observed == 3
    assert by[("pg.bad", "not_null:id")].samples[0]["id"] is None
    gone = by[("pg.gone", "row_count")]
    assert gone.status == "error" and 'relation "app.gone" does not exist' in gone.reason
    assert quality.line(gone).startswith("pg.gone row_count (pg:app.gone): error: ")
    prof = next(d for d in report.datasets if d.dataset == "pg.good").profile
    assert prof.metrics["row_count"] == 200 and prof.metrics["distinct:id"] == 200
    assert prof.metrics["mean:amount"] == pytest.approx(49.5)


def test_postgres_drift_and_register_inputs(pg_ws, pg_dsn):
    import psycopg

    quality.run(pg_ws, "shop", dataset="pg.good")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE app.good ADD COLUMN extra int")
        conn.execute("ALTER TABLE app.good ALTER COLUMN amount TYPE text")
    report = quality.run(pg_ws, "shop", dataset="pg.good")
    change = report.datasets[0].change
    assert change["added"] == ["extra"] and change["changed"] == [{"column": "amount", "old": "integer", "new": "text"}]
    assert change["breaking"] is True
    assert next(r for r in report.results if r.check == "schema").status == "failed"
    con = duckdb_connect()
    register_inputs(con, pg_ws, find_spec(pg_ws, "shop"), ["pg.good"])
    assert con.execute("SELECT count(*), count(DISTINCT id), max(status) FROM pg.good").fetchone() == (200, 200, "b")
    con.close()


def test_postgres_error_never_echoes_the_dsn(pg_ws, monkeypatch):
    monkeypatch.setenv(DSN_ENV, "host=/nonexistent-agentops port=1 user=agentops password=s3cr3t-pw dbname=x")
    report = quality.run(pg_ws, "shop", dataset="pg.good")
    r = report.results[0]
    assert r.status == "error" and "cannot connect to Postgres ($AGENTOPS_TEST_PG_DSN)" in r.reason
    assert "s3cr3t-pw" not in quality.line(r)


def test_a_sql_check_cannot_change_the_database(pg_ws, pg_dsn):
    import psycopg

    spec = pg_ws.pipelines_dir / "shop.yaml"
    spec.write_text(spec.read_text() + '  - {dataset: pg.good, check: sql, name: evil, query: "DROP TABLE app.good"}\n'
                    '  - {dataset: pg.good, check: sql, name: evil2, query: "SELECT 1 FROM app.good; DROP TABLE app.good"}\n')
    report = quality.run(pg_ws, "shop", dataset="pg.good")
    by = {r.check: r for r in report.results}
    assert by["sql:evil"].status == "error" and by["sql:evil2"].status == "error"
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM app.good").fetchone()[0] == 200
