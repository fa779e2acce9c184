"""Datasets with locations (SPEC §11): the spec's `location`, `[connections]` in agentops.toml, and
`register_inputs` making real files and databases DuckDB relations under their own names."""

from __future__ import annotations

import sqlite3

import duckdb
import pytest

from agentops.data import register_inputs
from agentops.data.connections import connections, duckdb_connect, warehouse_path
from agentops.errors import DataError, WorkspaceError
from agentops.pipelines.spec import parse_spec
from agentops.workspace import Workspace

HEAD = "name: p\nowner: data-engineer\nschedule: '@daily'\n"


def spec_of(text: str):
    result = parse_spec(HEAD + text, "p.yaml")
    assert result.spec is not None, [str(p) for p in result.problems]
    return result.spec


def problems_of(text: str) -> list[str]:
    return [str(p) for p in parse_spec(HEAD + text, "p.yaml").problems]


def test_location_forms_and_defaults():
    spec = spec_of("""
sources:
  - {name: raw.orders, kind: file, format: parquet, location: {path: "data/orders/date={partition}/*.parquet"}}
  - {name: raw.events, kind: file, format: json, location: {path: /abs/events/*.jsonl}}
external: [ref.fx]
datasets:
  ref.fx: {location: {table: ref.fx_rates}, schema_evolution: add_columns, owner: devops}
stages:
  - {name: a, kind: transform, inputs: [raw.orders, raw.events, ref.fx], outputs: [staging.x]}
""")
    orders = spec.location("raw.orders")
    assert (orders.kind, orders.format, orders.describe("2026-01-02")) == (
        "file", "parquet", "data/orders/date=2026-01-02/*.parquet")
    assert spec.location("raw.events").format == "ndjson"  # from the .jsonl suffix
    fx = spec.location("ref.fx")
    assert (fx.kind, fx.connection, fx.table) == ("table", "warehouse", "ref.fx_rates")
    assert spec.location("staging.x") is None  # no location: the warehouse table of that name
    assert spec.schema_evolution("ref.fx") == "add_columns" and spec.dataset_owner("ref.fx") == "devops"
    assert spec.schema_evolution("raw.orders") == "fail"
    assert set(spec.dataset_names()) == {"raw.orders", "raw.events", "ref.fx", "staging.x"}


@pytest.mark.parametrize("location, message", [
    ("{path: a.parquet, table: t}", "either path (files) or table"),
    ("{format: csv}", "either path (files) or table"),
    ("{path: data/x.bin}", "needs format"),
    ("{path: 's3://bucket/x.parquet', format: parquet}", "not a URL"),
    ("{path: x.csv, connection: shop}", "connection goes with table"),
    ("{table: 'x; drop table y'}", "is not a table name"),
    ("{table: t, format: csv}", "go with path"),
    ("{path: x.avro, format: avro}", "Input should be"),
])
def test_bad_locations_are_located_problems(location, message):
    found = problems_of(f"""
sources:
  - {{name: s, kind: file, format: csv, location: {location}}}
stages:
  - {{name: a, kind: transform, inputs: [s], outputs: [o]}}
""")
    assert found and message in found[0] and "p.yaml:" in found[0] and "sources[0].location" in found[0], found


def test_datasets_entry_for_an_unknown_dataset_is_a_problem():
    from agentops.pipelines.spec import check_spec

    spec = spec_of("""
sources: [{name: s, kind: file, format: csv}]
datasets: {nope: {location: {path: x.csv}}}
stages: [{name: a, kind: transform, inputs: [s], outputs: [o]}]
""")
    assert any("unknown dataset 'nope'" in str(p) for p in check_spec(spec))


def _ws(root, toml: str = "") -> Workspace:
    (root / "agentops.toml").write_text(toml, "utf-8")
    return Workspace(root)


def test_connections_from_agentops_toml(_workspace_env):
    ws = _ws(_workspace_env, '[connections.shop]\nkind = "sqlite"\npath = "db/shop.db"\n'
                             '[connections.pg]\nkind = "postgres"\ndsn_env = "SHOP_PG_DSN"\n')
    found = connections(ws)
    assert found["warehouse"].path == ws.root / ".agent" / "data" / "warehouse.duckdb" == warehouse_path(ws)
    assert found["shop"].kind == "sqlite" and found["shop"].path == ws.root / "db" / "shop.db"
    assert found["pg"].kind == "postgres" and found["pg"].dsn_env == "SHOP_PG_DSN" and found["pg"].path is None


@pytest.mark.parametrize("toml, message", [
    ('[connections.pg]\nkind = "postgres"\ndsn = "postgresql://u:secret@h/db"\n', "secret"),
    ('[connections.pg]\nkind = "postgres"\npassword = "hunter2"\n', "secret"),
    ('[connections.pg]\nkind = "postgres"\n', "needs dsn_env"),
    ('[connections.pg]\nkind = "postgres"\ndsn_env = "postgresql://u:p@h/db"\n', "dsn_env"),
    ('[connections.s]\nkind = "sqlite"\n', "needs path"),
    ('[connections.s]\nkind = "mysql"\npath = "x"\n', "kind"),
])
def test_bad_connections_are_refused_without_echoing_secrets(_workspace_env, toml, message):
    ws = _ws(_workspace_env, toml)
    with pytest.raises(WorkspaceError) as err:
        ws.config  # noqa: B018
    assert message in str(err.value) and "hunter2" not in str(err.value) and "u:secret" not in str(err.value)


SPEC = """
sources:
  - {name: raw.orders, kind: file, format: parquet, location: {path: "data/orders/date={partition}/*.parquet"}}
  - {name: raw.customers, kind: file, format: csv, location: {path: data/customers.csv}}
  - {name: raw.events, kind: file, format: json, location: {path: "data/events/*.ndjson"}}
  - {name: raw.fx, kind: file, format: json, location: {path: data/fx.json}}
  - {name: shop.items, kind: database, format: table, location: {connection: shop, table: items}}
  - {name: lake.prices, kind: database, format: table, location: {connection: lake, table: ref.prices}}
external: [staging.totals]
stages:
  - name: a
    kind: transform
    inputs: [raw.orders, raw.customers, raw.events, raw.fx, shop.items, lake.prices, staging.totals]
    outputs: [mart.x]
"""


@pytest.fixture
def data_ws(_workspace_env):
    root = _workspace_env
    ws = _ws(root, '[connections.shop]\nkind = "sqlite"\npath = "shop.db"\n'
                   '[connections.lake]\nkind = "duckdb"\npath = "lake.duckdb"\n')
    con = duckdb.connect()
    for day, n in (("2026-01-01", 10), ("2026-01-02", 7)):
        (root / "data" / "orders" / f"date={day}").mkdir(parents=True)
        con.execute(f"COPY (SELECT range AS order_id, range * 1.5 AS amount FROM range({n})) "
                    f"TO '{root}/data/orders/date={day}/part-0.parquet' (FORMAT parquet)")
    (root / "data" / "customers.csv").write_text("id,name\n1,ann\n2,bob\n3,\n", "utf-8")
    (root / "data" / "events").mkdir()
    (root / "data" / "events" / "a.ndjson").write_text('{"e": "click", "n": 1}\n{"e": "view", "n": 2}\n', "utf-8")
    (root / "data" / "fx.json").write_text('[{"ccy": "EUR", "rate": 1.1}]', "utf-8")
    db = sqlite3.connect(root / "shop.db")
    db.execute("CREATE TABLE items (id INTEGER, name TEXT, price REAL)")
    db.executemany("INSERT INTO items VALUES (?,?,?)", [(1, "a", 1.5), (2, None, 2.0), (3, "", None), (4, 'q"uo,te', 0)])
    db.commit()
    db.close()
    lake = duckdb.connect(str(root / "lake.duckdb"))
    lake.execute("CREATE SCHEMA ref; CREATE TABLE ref.prices AS SELECT 'x' AS sku, 9.5 AS price")
    lake.close()
    warehouse_path(ws).parent.mkdir(parents=True, exist_ok=True)
    wh = duckdb.connect(str(warehouse_path(ws)))
    wh.execute("CREATE SCHEMA staging; CREATE TABLE staging.totals AS SELECT 42 AS total")
    wh.close()
    con.close()
    return ws


def test_register_inputs_makes_every_location_a_relation_under_its_name(data_ws):
    spec = spec_of(SPEC)
    con = duckdb_connect()
    names = spec.stages[0].inputs
    got = register_inputs(con, data_ws, spec, names, partition="2026-01-02")
    assert set(got) == set(names)
    q = con.execute
    assert q("SELECT count(*), max(date) FROM raw.orders").fetchone() == (7, __import__("datetime").date(2026, 1, 2))
    assert q("SELECT count(*), count(name) FROM raw.customers").fetchone() == (3, 2)
    assert q("SELECT string_agg(e, ',' ORDER BY n) FROM raw.events").fetchone() == ("click,view",)
    assert q("SELECT rate FROM raw.fx").fetchone() == (1.1,)
    assert q("SELECT * FROM shop.items ORDER BY id").fetchall() == [
        (1, "a", 1.5), (2, None, 2.0), (3, "", None), (4, 'q"uo,te', 0.0)]
    assert q("SELECT * FROM lake.prices").fetchall() == [("x", 9.5)]
    assert q("SELECT total FROM staging.totals").fetchone() == (42,)
    # no partition: every partition
    register_inputs(con, data_ws, spec, ["raw.orders"])
    assert q("SELECT count(*) FROM raw.orders").fetchone() == (17,)
    con.close()


def test_register_inputs_in_the_warehouse_itself_uses_its_tables(data_ws):
    spec = spec_of(SPEC)
    con = duckdb_connect(warehouse_path(data_ws))
    got = register_inputs(con, data_ws, spec, ["staging.totals", "raw.customers"])
    assert got["staging.totals"] == '"staging"."totals"'
    assert con.execute("SELECT total FROM staging.totals").fetchone() == (42,)
    assert con.execute("SELECT count(*) FROM raw.customers").fetchone() == (3,)
    con.close()


@pytest.mark.parametrize("name, partition, message", [
    ("raw.orders", "2030-01-01", "dataset raw.orders (data/orders/date=2030-01-01/*.parquet): no file matches"),
    ("shop.items", None, None),
])
def test_register_inputs_names_dataset_and_location_when_data_is_missing(data_ws, name, partition, message):
    spec = spec_of(SPEC)
    if name == "shop.items":
        (data_ws.root / "shop.db").unlink()
        message = "dataset shop.items (shop:items): no SQLite database at"
    con = duckdb_connect()
    with pytest.raises(DataError) as err:
        register_inputs(con, data_ws, spec, [name], partition)
    assert message in str(err.value)
    con.close()


def test_register_inputs_missing_warehouse_table_and_unknown_connection(data_ws):
    spec = spec_of(SPEC.replace("staging.totals", "staging.gone").replace("connection: shop", "connection: nope"))
    con = duckdb_connect()
    with pytest.raises(DataError, match=r"dataset staging.gone \(warehouse:staging.gone\): .*gone does not exist"):
        register_inputs(con, data_ws, spec, ["staging.gone"])
    with pytest.raises(DataError, match=r"dataset shop.items \(nope:items\): no connection 'nope'"):
        register_inputs(con, data_ws, spec, ["shop.items"])
    con.close()


def test_init_examples_brings_the_example_specs_with_locations(tmp_path, cli):
    target = tmp_path / "fresh"
    result = cli("init", target, "--examples")
    assert result.exit_code == 0, result.output
    ws = Workspace(target)
    names = sorted(p.name for p in ws.pipelines_dir.glob("*.yaml"))
    assert names == ["clickstream.yaml", "customers_dim.yaml", "orders_daily.yaml"]
    from agentops.pipelines.spec import find_spec, load_specs

    specs, problems = load_specs(ws)
    assert not problems, problems
    orders = find_spec(ws, "orders_daily")
    assert orders.location("raw.orders").describe("2026-11-25") == "data/raw/orders/date=2026-11-25/*.parquet"
    assert orders.location("warehouse.fact_orders").describe("2026-11-25") == \
        "data/warehouse/fact_orders/order_date=2026-11-25/*.parquet"
    plain = tmp_path / "plain"
    assert cli("init", plain).exit_code == 0 and not list(Workspace(plain).pipelines_dir.glob("*.yaml"))


def test_quality_on_the_example_spec_with_generated_orders(tmp_path, cli, monkeypatch):
    """The README's example: `agentops init --examples`, a few days of order files, `quality run`."""
    from agentops.data.sample import write_orders

    target = tmp_path / "w"
    assert cli("init", target, "--examples").exit_code == 0
    monkeypatch.setenv("AGENTOPS_WORKSPACE", str(target))
    written = write_orders(target, ["2026-11-24", "2026-11-25"], short_day="2026-11-25")
    assert written["2026-11-25"] == 20 and 180 <= written["2026-11-24"] <= 220
    good = cli("quality", "run", "orders_daily", "--dataset", "raw.orders", "--partition", "2026-11-24")
    assert good.exit_code == 0, good.output
    bad = cli("quality", "run", "orders_daily", "--dataset", "raw.orders", "--partition", "2026-11-25")
    assert bad.exit_code == 1
    assert "raw.orders not_null:customer_id (data/raw/orders/date=2026-11-25/*.parquet): failed (observed 6" \
        in bad.output
