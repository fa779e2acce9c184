"""`agentops quality run` on real data (SPEC §11): Parquet, CSV, JSON and NDJSON files, DuckDB and
SQLite databases made in temp folders; every check passing on good data and failing on bad data;
bad input recorded as `error` with a reason; profiles as metric events; results in Orbit."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta, timezone

import duckdb
import pytest

from agentops.data import quality
from agentops.orbit.log import Orbit
from agentops.workspace import Workspace, init_workspace
from tests.conftest import run_agentops

CHECKS = """
  - {dataset: DS, check: not_null, column: id}
  - {dataset: DS, check: unique, column: id}
  - {dataset: DS, check: unique, columns: [id, status]}
  - {dataset: DS, check: row_count, min: 10, max: 1000}
  - {dataset: DS, check: freshness, column: ts, max_age: 1d}
  - {dataset: DS, check: accepted_values, column: status, values: [a, b]}
  - {dataset: DS, check: range, column: amount, min: 0, max: 100}
  - {dataset: DS, check: schema, columns: [id, status, amount, ts, note]}
  - {dataset: DS, check: sql, name: no_big, query: "SELECT id, amount FROM {dataset} WHERE amount > 100"}
"""
LABELS = ["not_null:id", "unique:id", "unique:id,status", "row_count", "freshness:ts", "accepted_values:status",
          "range:amount", "schema", "sql:no_big"]

GOOD = ("SELECT range + 1 AS id, CASE WHEN range % 2 = 0 THEN 'a' ELSE 'b' END AS status, range % 100 AS amount, "
        "CAST(? AS TIMESTAMP) - INTERVAL (range) MINUTE AS ts, 'n' AS note FROM range(200)")
# duplicates and a null id, an unknown status, amounts over 100, old timestamps, 5 rows, no `note`
BAD = ("SELECT CASE WHEN range = 4 THEN NULL ELSE range % 2 END AS id, CASE WHEN range = 0 THEN 'zzz' ELSE 'a' END "
       "AS status, range * 100 AS amount, CAST(? AS TIMESTAMP) - INTERVAL 10 DAY AS ts FROM range(5)")


def _now() -> str:
    return (datetime.now(timezone.utc) - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")


def write_dataset(ws, fmt: str, kind: str) -> str:
    """Write the good or bad rows in `fmt`; return the location YAML."""
    root = ws.root
    sql = GOOD if kind == "good" else BAD
    con = duckdb.connect()
    folder = root / "data" / kind
    folder.mkdir(parents=True, exist_ok=True)
    try:
        if fmt in ("parquet", "csv", "ndjson", "json"):
            ext = {"parquet": "parquet", "csv": "csv", "ndjson": "ndjson", "json": "json"}[fmt]
            opts = {"parquet": "FORMAT parquet", "csv": "FORMAT csv, HEADER true", "ndjson": "FORMAT json",
                    "json": "FORMAT json, ARRAY true"}[fmt]
            path = folder / f"part-0.{ext}"
            con.execute(f"COPY ({sql}) TO '{path}' ({opts})", [_now()])
            return f"{{path: 'data/{kind}/*.{ext}', format: {fmt}}}"
        rows = con.execute(sql, [_now()]).fetchall()
        names = [d[0] for d in con.description]
        if fmt == "duckdb":
            db = duckdb.connect(str(root / f"{kind}.duckdb"))
            db.execute(f"CREATE SCHEMA IF NOT EXISTS app; CREATE TABLE app.t AS {sql}", [_now()])
            db.close()
            return f"{{connection: duck_{kind}, table: app.t}}"
        db = sqlite3.connect(root / f"{kind}.db")
        types = {"id": "INTEGER", "status": "TEXT", "amount": "INTEGER", "ts": "TEXT", "note": "TEXT"}
        db.execute(f"CREATE TABLE t ({', '.join(f'{n} {types[n]}' for n in names)})")
        db.executemany(f"INSERT INTO t VALUES ({', '.join('?' * len(names))})",
                       [tuple(v.isoformat(sep=' ') if isinstance(v, datetime) else v for v in r) for r in rows])
        db.commit()
        db.close()
        return f"{{connection: lite_{kind}, table: t}}"
    finally:
        con.close()


def make_ws(root, fmt: str) -> Workspace:
    init_workspace(root)
    ws = Workspace(root)
    (root / "agentops.toml").write_text(
        "".join(f'[connections.duck_{k}]\nkind = "duckdb"\npath = "{k}.duckdb"\n'
                f'[connections.lite_{k}]\nkind = "sqlite"\npath = "{k}.db"\n' for k in ("good", "bad")), "utf-8")
    ws.refresh()
    locs = {k: write_dataset(ws, fmt, k) for k in ("good", "bad")}
    spec = f"""name: shop
owner: data-engineer
schedule: "@daily"
sources:
  - {{name: raw.good, kind: file, format: csv, location: {locs['good']}}}
  - {{name: raw.bad, kind: file, format: csv, location: {locs['bad']}}}
stages:
  - {{name: clean, kind: transform, inputs: [raw.good, raw.bad], outputs: [staging.orders]}}
quality:
{CHECKS.replace('DS', 'raw.good')}
{CHECKS.replace('DS', 'raw.bad')}
"""
    ws.pipelines_dir.mkdir(parents=True, exist_ok=True)
    (ws.pipelines_dir / "shop.yaml").write_text(spec, "utf-8")
    return ws


@pytest.mark.parametrize("fmt", ["parquet", "csv", "json", "ndjson", "duckdb", "sqlite"])
def test_every_check_passes_on_good_data_and_fails_on_bad(_workspace_env, fmt):
    ws = make_ws(_workspace_env, fmt)
    report = quality.run(ws, "shop")
    by = {(r.dataset, r.check): r for r in report.results}
    for label in LABELS:
        good, bad = by[("raw.good", label)], by[("raw.bad", label)]
        assert good.status == "passed", (fmt, label, good)
        assert bad.status == "failed", (fmt, label, bad)
    assert by[("raw.bad", "not_null:id")].observed == 1
    assert by[("raw.bad", "unique:id")].observed == 2  # 0,1,0,1 -> two surplus rows
    assert by[("raw.bad", "row_count")].observed == 5
    assert by[("raw.bad", "accepted_values:status")].observed == 1
    assert by[("raw.bad", "range:amount")].observed == 3  # 200, 300, 400
    assert by[("raw.bad", "sql:no_big")].observed == 3
    assert by[("raw.bad", "freshness:ts")].observed > 9 * 86400
    assert by[("raw.good", "freshness:ts")].observed < 86400
    assert "missing note" in by[("raw.bad", "schema")].observed
    # failing rows: at most 5, the real ones
    assert by[("raw.bad", "not_null:id")].samples[0]["id"] is None
    assert by[("raw.bad", "accepted_values:status")].samples[0]["status"] == "zzz"
    assert {s["amount"] for s in by[("raw.bad", "range:amount")].samples} == {200, 300, 400}
    assert sorted(s["id"] for s in by[("raw.bad", "unique:id")].samples) == [0, 1]
    assert {s["amount"] for s in by[("raw.bad", "sql:no_big")].samples} == {200, 300, 400}
    assert not report.ok

    # the profile: row count and per column null fraction, distinct, min, max, mean
    prof = next(d for d in report.datasets if d.dataset == "raw.good").profile
    assert prof.metrics["row_count"] == 200
    assert prof.metrics["null_fraction:id"] == 0 and prof.metrics["min:id"] == 1 and prof.metrics["max:id"] == 200
    assert prof.metrics["mean:amount"] == pytest.approx(49.5)
    assert 190 <= prof.metrics["distinct:id"] <= 210  # approximate is fine
    bad_prof = next(d for d in report.datasets if d.dataset == "raw.bad").profile
    assert bad_prof.metrics["null_fraction:id"] == pytest.approx(0.2)

    # everything is in Orbit: check events with status and samples, metric events per column
    with Orbit.open(ws) as orbit:
        checks = {(c["dataset"], c["check"]): c for c in orbit.checks(pipeline="shop", limit=None)}
        assert checks[("raw.bad", "not_null:id")]["status"] == "failed"
        assert checks[("raw.bad", "not_null:id")]["samples"][0]["id"] is None
        assert checks[("raw.good", "unique:id")]["passed"] is True
        metrics = orbit.metrics("shop", "null_fraction:id", dataset="raw.bad")
        assert [m["value"] for m in metrics] == [pytest.approx(0.2)]


def test_one_aggregate_pass_per_dataset(_workspace_env):
    """All column checks and the profile of a dataset come from one SELECT over it (every statement
    the engine runs is recorded)."""
    from agentops.data.checks import measure
    from agentops.data.datasets import open_dataset
    from agentops.pipelines.spec import find_spec

    ws = make_ws(_workspace_env, "parquet")
    spec = find_spec(ws, "shop")
    ds = open_dataset(ws, "raw.good", spec.location("raw.good"))
    columns = ds.engine.columns(ds.relation)
    seen: list[str] = []
    run = ds.engine.run
    ds.engine.run = lambda sql, params=(): (seen.append(sql), run(sql, params))[1]
    column_checks = [q for q in spec.checks_for("raw.good") if q.check not in ("sql", "schema")]
    results, prof = measure(ds, columns, column_checks)
    ds.close()
    assert all(r.status == "passed" for r in results) and len(results) == 7
    assert len(seen) == 1 and seen[0].count("read_parquet") == 1 and seen[0].startswith("SELECT COUNT(*)")


BAD_INPUT = """name: shop
owner: data-engineer
schedule: "@daily"
sources:
  - {name: raw.missing, kind: file, format: parquet, location: {path: "data/none/date={partition}/*.parquet"}}
  - {name: raw.broken, kind: file, format: parquet, location: {path: data/broken.parquet}}
  - {name: raw.ok, kind: file, format: csv, location: {path: data/ok.csv}}
  - {name: lite.gone, kind: database, format: table, location: {connection: lite, table: gone}}
  - {name: pg.orders, kind: database, format: table, location: {connection: pg, table: public.orders}}
stages:
  - {name: s, kind: transform, inputs: [raw.missing, raw.broken, raw.ok, lite.gone, pg.orders], outputs: [o]}
quality:
  - {dataset: raw.missing, check: row_count, min: 1}
  - {dataset: raw.broken, check: not_null, column: id}
  - {dataset: raw.ok, check: sql, name: bad_sql, query: "SELEC nonsense"}
  - {dataset: raw.ok, check: range, column: name, min: 0}
  - {dataset: raw.ok, check: not_null, column: nope}
  - {dataset: raw.ok, check: not_null, column: id}
  - {dataset: lite.gone, check: row_count, min: 1}
  - {dataset: pg.orders, check: row_count, min: 1}
"""


@pytest.fixture
def bad_ws(_workspace_env):
    root = _workspace_env
    init_workspace(root)
    (root / "agentops.toml").write_text('[connections.lite]\nkind = "sqlite"\npath = "lite.db"\n'
                                        '[connections.pg]\nkind = "postgres"\ndsn_env = "AGENTOPS_TEST_UNSET_DSN"\n',
                                        "utf-8")
    (root / "data").mkdir()
    (root / "data" / "broken.parquet").write_bytes(b"PAR1 this is not parquet at all")
    (root / "data" / "ok.csv").write_text("id,name\n1,ann\n2,bob\n", "utf-8")
    sqlite3.connect(root / "lite.db").close()
    ws = Workspace(root)
    ws.pipelines_dir.mkdir(parents=True, exist_ok=True)
    (ws.pipelines_dir / "shop.yaml").write_text(BAD_INPUT, "utf-8")
    return ws


EXPECTED_ERRORS = {
    ("raw.missing", "row_count"): "(data/none/date=2026-01-01/*.parquet): error: no file matches the path",
    ("raw.broken", "not_null:id"): "(data/broken.parquet): error: ",
    ("raw.ok", "sql:bad_sql"): "(data/ok.csv): error: SQL error: Parser Error: syntax error",
    ("raw.ok", "range:name"): "(data/ok.csv): error: range needs a numeric column; 'name' is VARCHAR",
    ("raw.ok", "not_null:nope"): "(data/ok.csv): error: no column 'nope' (columns: id, name)",
    ("lite.gone", "row_count"): "(lite:gone): error: no such table: gone",
    ("pg.orders", "row_count"): "(pg:public.orders): error: environment variable AGENTOPS_TEST_UNSET_DSN is not set",
}


def test_bad_input_is_an_error_per_check_and_the_rest_still_run(bad_ws, monkeypatch):
    monkeypatch.delenv("AGENTOPS_TEST_UNSET_DSN", raising=False)
    report = quality.run(bad_ws, "shop", partition="2026-01-01")
    by = {(r.dataset, r.check): r for r in report.results}
    for key, text in EXPECTED_ERRORS.items():
        r = by[key]
        assert r.status == "error", r
        assert text in quality.line(r) and quality.line(r).startswith(f"{key[0]} {key[1]} ("), quality.line(r)
    assert by[("raw.ok", "not_null:id")].status == "passed"  # the good check on the same dataset still ran
    with Orbit.open(bad_ws) as orbit:
        rows = {(c["dataset"], c["check"]): c for c in orbit.checks(pipeline="shop")}
    assert rows[("pg.orders", "row_count")]["status"] == "error"
    assert "AGENTOPS_TEST_UNSET_DSN is not set" in rows[("pg.orders", "row_count")]["reason"]
    assert rows[("raw.ok", "not_null:id")]["status"] == "passed"


def test_cli_bad_input_exits_non_zero_without_traceback(bad_ws):
    out = run_agentops("quality", "run", "shop", "--partition", "2026-01-01", env={"AGENTOPS_WORKSPACE": str(bad_ws.root)})
    assert out.returncode == 1, out
    assert "Traceback" not in out.stdout + out.stderr
    for (dataset, check), text in EXPECTED_ERRORS.items():
        assert any(line.strip().startswith(f"{dataset} {check} (") and text in line for line in out.stdout.splitlines()), \
            (dataset, check, out.stdout)
    assert "1 passed, 0 failed, 7 error(s)" in out.stderr
    js = run_agentops("quality", "run", "shop", "--json", "--dataset", "raw.ok", env={"AGENTOPS_WORKSPACE": str(bad_ws.root)})
    assert js.returncode == 1
    data = json.loads(js.stdout)
    assert data["counts"] == {"passed": 1, "failed": 0, "error": 3} and data["ok"] is False


def test_cli_passing_run_exits_zero_and_dataset_commands(_workspace_env, cli):
    ws = make_ws(_workspace_env, "parquet")
    good_only = (ws.pipelines_dir / "shop.yaml").read_text().split("  - {dataset: raw.bad")[0]
    (ws.pipelines_dir / "shop.yaml").write_text(good_only, "utf-8")
    result = cli("quality", "run", "shop")
    assert result.exit_code == 0, result.output
    assert "9 passed, 0 failed, 0 error(s)" in result.output
    shown = json.loads(cli("dataset", "show", "raw.good", "--json").output)
    assert shown["where"] == "data/good/*.parquet" and shown["readers"] == ["shop.clean"]
    assert shown["schema"]["columns"]["id"] == "BIGINT" and shown["profile"]["row_count"] == 200
    assert {c["check"] for c in shown["checks"]} == set(LABELS)
    listed = {r["name"]: r for r in json.loads(cli("dataset", "list", "--json").output)}
    assert listed["raw.good"]["checks"] == {"passed": 9, "failed": 0, "error": 0}
    assert listed["staging.orders"]["where"] == "warehouse:staging.orders"
    text = cli("dataset", "show", "raw.good").output
    assert "schema (" in text and "null_fraction:id" in text and "sql:no_big: passed" in text
    prof = cli("dataset", "profile", "raw.bad")
    assert prof.exit_code == 0 and "raw.bad (data/bad/*.parquet): 5 rows, 4 columns" in prof.output


def test_anomaly_check_from_profiles_of_real_data(_workspace_env):
    """Fourteen days of ~1,000 rows, then a day with a tenth of the rows and nulls in the key:
    the profile's row_count and null_fraction:id series flag it, and the anomaly checks fail."""
    root = _workspace_env
    init_workspace(root)
    ws = Workspace(root)
    con = duckdb.connect()
    days = [f"2026-01-{d:02d}" for d in range(1, 16)]
    for i, day in enumerate(days):
        n, nulls = (100, 30) if day == days[-1] else (1000 + 7 * (i % 3), 0)
        (root / "data" / f"date={day}").mkdir(parents=True)
        con.execute(f"COPY (SELECT CASE WHEN range < {nulls} THEN NULL ELSE range END AS id FROM range({n})) "
                    f"TO '{root}/data/date={day}/p.parquet' (FORMAT parquet)")
    ws.pipelines_dir.mkdir(parents=True, exist_ok=True)
    (ws.pipelines_dir / "p.yaml").write_text("""name: p
owner: data-engineer
schedule: "@daily"
sources: [{name: raw.o, kind: file, format: parquet, location: {path: "data/date={partition}/*.parquet"}}]
stages: [{name: s, kind: transform, inputs: [raw.o], outputs: [o]}]
quality:
  - {dataset: raw.o, check: anomaly, metric: row_count}
  - {dataset: raw.o, check: anomaly, metric: null_fraction, column: id}
""", "utf-8")
    for i, day in enumerate(days):
        report = quality.run(ws, "p", partition=day,
                             now=datetime(2026, 1, 1, 6, tzinfo=timezone.utc) + timedelta(days=i))
        # metric timestamps are "now" of the run; keep the series in day order
        by = {r.check: r for r in report.results}
        if day != days[-1]:
            assert by["anomaly:row_count"].status == "passed", (day, by)
    assert by["anomaly:row_count"].status == "failed" and by["anomaly:row_count"].observed == 100
    assert "drop" in by["anomaly:row_count"].reason
    assert by["anomaly:null_fraction:id"].status == "failed"
    with Orbit.open(ws) as orbit:
        anomalies = {a["metric"] for a in orbit.anomalies("p")}
        alerts = orbit.alerts()
    assert {"row_count", "null_fraction:id"} <= anomalies
    # one mail: the anomaly alert of the run lists both series; the two failed anomaly checks add none
    assert [(a["cause"], a["key"]) for a in alerts] == [("anomaly", "anomaly: p.raw.o run quality-2026-01-15")]
    assert "row_count = 100" in alerts[0]["body"] and "null_fraction:id = 0.3" in alerts[0]["body"]


def test_mcp_quality_run(bad_ws, monkeypatch):
    from tests.test_mcp import error, ok, session

    monkeypatch.delenv("AGENTOPS_TEST_UNSET_DSN", raising=False)

    async def script(call):
        return (await call("quality_run", {"pipeline": "shop", "dataset": "raw.ok"}),
                await call("quality_run", {"pipeline": "nope"}))

    done, missing = session(bad_ws, script)
    out = ok(done)
    assert out["ok"] is False and out["run_id"].startswith("quality-")
    by = {c["check"]: c for c in out["checks"]}
    assert by["not_null:id"]["status"] == "passed" and by["range:name"]["status"] == "error"
    assert "numeric column" in by["range:name"]["reason"]
    assert "no pipeline 'nope'" in error(missing)


def test_errors_and_samples_show_in_the_report_status_and_orbit_checks(bad_ws, cli, monkeypatch):
    monkeypatch.delenv("AGENTOPS_TEST_UNSET_DSN", raising=False)
    quality.run(bad_ws, "shop", partition="2026-01-01")
    out = bad_ws.root / "out"
    result = cli("pipeline", "render", "shop", "--template", "quality_report", "--out", out)
    assert result.exit_code == 0, result.output
    report = next(out.glob("*quality*")).read_text()
    assert "| ERROR | `raw.ok` | range:name |" in report
    assert "range needs a numeric column; 'name' is VARCHAR" in report
    status = json.loads(cli("status", "--json").output)
    errors = {(c["dataset"], c["check"]): c for c in status["quality"]["failed_checks"]}
    assert errors[("lite.gone", "row_count")]["status"] == "error"
    text = cli("status").output
    assert "check row_count on lite.gone could not run (shop): no such table: gone" in text
    checks = cli("orbit", "checks").output
    assert "ERROR" in checks and "pass" in checks


@pytest.mark.parametrize("fmt, statement", [
    ("parquet", "COPY (SELECT 1) TO 'leak.csv'"),
    ("sqlite", "DROP TABLE t"),
    ("duckdb", "DROP TABLE app.t"),
])
def test_a_sql_check_runs_no_statement_but_its_select(_workspace_env, fmt, statement):
    ws = make_ws(_workspace_env, fmt)
    spec = ws.pipelines_dir / "shop.yaml"
    spec.write_text(spec.read_text() + f'  - {{dataset: raw.good, check: sql, name: evil, query: "{statement}"}}\n')
    report = quality.run(ws, "shop", dataset="raw.good")
    assert next(r for r in report.results if r.check == "sql:evil").status == "error"
    assert not (ws.root / "leak.csv").exists()
    again = quality.run(ws, "shop", dataset="raw.good")  # the table is still there
    assert next(r for r in again.results if r.check == "row_count").observed == 200


# issue 14 follow-ups: grouped alerts, key columns, the spread floor, on profiles of generated files --------
PROFILED = """name: p
owner: data-engineer
schedule: "@daily"
sources: [{name: raw.o, kind: file, format: parquet, location: {path: "data/date={partition}/*.parquet"}}]
stages: [{name: s, kind: transform, inputs: [raw.o], outputs: [o]}]
quality:
  - {dataset: raw.o, check: row_count, min: 1}
"""


def _orders_ws(root, spec: str = PROFILED) -> Workspace:
    init_workspace(root)
    ws = Workspace(root)
    ws.pipelines_dir.mkdir(parents=True, exist_ok=True)
    (ws.pipelines_dir / "p.yaml").write_text(spec, "utf-8")
    return ws


def _write_day(root, i: int, rows: int = 1000, nulls: int = 0, base: int | None = None) -> str:
    """Day i of orders: `id` a key growing day by day (i x 10,000 + n), `cust` a repeating customer
    (1..50), `coupon` never null but for the first `nulls` rows, `amount` 1..100, `cents` distinct
    integers over the same wide range every day (distinct, but no growing key)."""
    day = (datetime(2026, 1, 1) + timedelta(days=i)).strftime("%Y-%m-%d")
    folder = root / "data" / f"date={day}"
    folder.mkdir(parents=True, exist_ok=True)
    base = i * 10000 if base is None else base
    duckdb.connect().execute(
        f"COPY (SELECT {base} + range AS id, 1 + range % 50 AS cust, "
        f"CASE WHEN range < {nulls} THEN NULL ELSE range % 7 END AS coupon, 1 + (range * 37) % 100 AS amount, "
        f"100000 + (range * 7919) % 1000003 AS cents FROM range({rows})) TO '{folder}/p.parquet' (FORMAT parquet)")
    return day


def _measure(ws, day: str, n: int):
    """One quality run of partition `day`, its metrics stamped n days after 2026-01-01 06:00."""
    return quality.run(ws, "p", partition=day, now=datetime(2026, 1, 1, 6, tzinfo=timezone.utc) + timedelta(days=n))


def test_one_profile_run_alerts_once_per_dataset_and_status_shows_one_row(_workspace_env, cli):
    """Issue 14 follow-up 1: a short day with nulls moves several profile series; the owner gets ONE
    anomaly alert for the dataset and run listing each of them, and `status` one row for the dataset,
    while `orbit anomalies` still lists every series."""
    import mailbox

    ws = _orders_ws(_workspace_env)
    for i in range(10):
        _measure(ws, _write_day(_workspace_env, i, rows=1000 + 7 * (i % 3)), i)
    report = _measure(ws, _write_day(_workspace_env, 10, rows=100, nulls=30), 10)
    moved = {a["metric"] for d in report.datasets for a in d.anomalies}
    assert {"row_count", "null_fraction:coupon", "distinct:id"} <= moved and len(moved) >= 3
    with Orbit.open(ws) as orbit:
        listed = orbit.anomalies("p")
        alerts = [a for a in orbit.alerts() if a["cause"] == "anomaly"]
    assert {a["metric"] for a in listed} == moved
    assert len(alerts) == 1, [a["subject"] for a in alerts]
    assert alerts[0]["key"] == "anomaly: p.raw.o run quality-2026-01-11" and alerts[0]["status"] == "sent"
    assert f"and {len(moved) - 1} more" in alerts[0]["subject"]
    mails = [m for m in mailbox.Maildir(ws.inbox("data-engineer"), create=False)
             if str(m["Subject"]).startswith("[orbit] anomaly")]
    assert len(mails) == 1
    body = mails[0].get_payload(decode=True).decode()
    assert all(f"  {metric} = " in body for metric in moved), body
    status = json.loads(cli("status", "--json", "--since", "2026-01-01").output)
    groups = status["quality"]["anomaly_groups"]
    assert [(g["pipeline"], g["dataset"], g["anomalies"], g["runs"]) for g in groups] == [("p", "raw.o", len(moved), 1)]
    assert groups[0]["worst"]["metric"] == "null_fraction:coupon" and set(groups[0]["metrics"]) == moved
    text = cli("status", "--since", "2026-01-01").output
    assert text.count("anomalies in raw.o") == 1 and "null_fraction:coupon" in text
    assert sum(1 for p in status["problems"] if p.startswith("anomaly:")) == 1
    listing = cli("orbit", "anomalies", "--pipeline", "p").output.strip().splitlines()
    assert len(listing) == 1 + len(moved) and all(" quality-2026-01-11 " in line for line in listing[1:])
    # the same run profiled again alerts no more; another run with anomalies is its own alert
    _measure(ws, "2026-01-11", 10)
    _measure(ws, _write_day(_workspace_env, 11, rows=100, nulls=30), 11)
    with Orbit.open(ws) as orbit:
        assert [a["key"] for a in orbit.alerts() if a["cause"] == "anomaly"] == [
            "anomaly: p.raw.o run quality-2026-01-12", "anomaly: p.raw.o run quality-2026-01-11"]


def test_a_growing_key_is_not_flagged_when_a_backfill_measures_an_older_day(_workspace_env):
    """Issue 14 follow-up 2: `id` grows by 10,000 a day. After a week of daily runs (days 20-27), a
    backfill measures day 1: its ids are far below the week's, and min, mean and max of `id` were
    flagged as drops. A key column's level is a trend, not an anomaly: its min/mean/max are recorded
    but not scored. A non-key column still is, and a declared anomaly check on a key metric still
    scores it."""
    ws = _orders_ws(_workspace_env)
    for i in range(20, 28):
        _measure(ws, _write_day(_workspace_env, i), i)
    report = _measure(ws, _write_day(_workspace_env, 1), 28)  # the backfill of day 1
    assert report.datasets[0].anomalies == []
    assert report.datasets[0].profile.keys() == ["id", "cents"]  # distinct integers; only id moved on
    with Orbit.open(ws) as orbit:
        assert [m["value"] for m in orbit.metrics("p", "min:id", "raw.o")][-2:] == [270000, 10000]  # still recorded
        watched = orbit.events(kind="metric", limit=None)
    assert {e["name"] for e in watched if e.get("watch") is False} == {"min:id", "mean:id", "max:id"}
    # cust (1..50, repeating) is no key: a day of customers 1001..1050 is flagged
    day = (datetime(2026, 1, 1) + timedelta(days=28)).strftime("%Y-%m-%d")
    folder = _workspace_env / "data" / f"date={day}"
    folder.mkdir(parents=True)
    duckdb.connect().execute(f"COPY (SELECT 280000 + range AS id, 1001 + range % 50 AS cust, range % 7 AS coupon, "
                             f"1 + (range * 37) % 100 AS amount, 100000 + (range * 7919) % 300007 AS cents "
                             f"FROM range(1000)) TO '{folder}/p.parquet' (FORMAT parquet)")
    moved = {a["metric"] for a in _measure(ws, day, 29).datasets[0].anomalies}
    assert {"min:cust", "mean:cust", "max:cust"} <= moved and not {m for m in moved if m.endswith(":id")}
    # cents: distinct integers too, but within the range it always had: no growing key, its mean still scored
    assert {"mean:cents", "max:cents"} <= moved
    # an anomaly check on a key metric is a request to watch it
    (ws.pipelines_dir / "p.yaml").write_text(PROFILED + "  - {dataset: raw.o, check: anomaly, metric: min, column: id}\n")
    by = {r.check: r for r in _measure(ws, _write_day(_workspace_env, 2), 30).results}
    assert by["anomaly:min:id"].status == "failed" and "drop" in by["anomaly:min:id"].reason


def test_a_never_null_column_flags_a_material_null_rate_with_a_meaningful_score(_workspace_env):
    """Issue 14 follow-up 3: null_fraction of a column that was never null is a flat series at 0; its
    MAD is 0, and the old 1e-9 floor scored 0.3 as z = 300,000,000 and flagged one null in 1,000.
    Now a move under min_null_fraction_change (0.01) is no anomaly, and the spread is floored at
    material change / threshold, so 0.3 scores 3 x 0.3 / 0.01 = 90."""
    ws = _orders_ws(_workspace_env)
    for i in range(8):
        _measure(ws, _write_day(_workspace_env, i), i)
    one_null = _measure(ws, _write_day(_workspace_env, 8, nulls=1), 8)
    assert [a for a in one_null.datasets[0].anomalies if a["metric"] == "null_fraction:coupon"] == []
    many = _measure(ws, _write_day(_workspace_env, 9, nulls=300), 9)
    found = {a["metric"]: a for a in many.datasets[0].anomalies}
    assert found["null_fraction:coupon"]["zscore"] == pytest.approx(90.0)
    assert all(abs(a["zscore"]) < 1000 for a in found.values()), found


def test_an_intermediate_table_is_checked_for_the_runs_partition(_workspace_env):
    """An intermediate warehouse table carries each row's partition (`agentops_partition`); a check
    for one partition measures that partition's rows, as the stages read it, not every partition a
    backfill loaded (whose growing row count the profile flagged as spikes)."""
    from agentops.data import warehouse_path

    ws = _orders_ws(_workspace_env, PROFILED.replace("outputs: [o]", "outputs: [staging.o]")
                    + "  - {dataset: staging.o, check: row_count, min: 1, max: 150}\n")
    path = warehouse_path(ws)
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path))
    con.execute("CREATE SCHEMA staging")
    con.execute("CREATE TABLE staging.o AS SELECT range AS id, CASE WHEN range < 100 THEN '2026-01-01' "
                "ELSE '2026-01-02' END AS agentops_partition FROM range(300)")
    con.close()
    day1 = quality.run(ws, "p", dataset="staging.o", partition="2026-01-01")
    day2 = quality.run(ws, "p", dataset="staging.o", partition="2026-01-02")
    whole = quality.run(ws, "p", dataset="staging.o")
    assert [d.datasets[0].profile.rows for d in (day1, day2, whole)] == [100, 200, 300]
    assert day1.ok and not day2.ok
    assert day1.datasets[0].change is None and day2.datasets[0].change is None  # the same columns either way
