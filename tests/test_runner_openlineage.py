"""OpenLineage as it happens (issue 15 point 7): `[orbit.openlineage]` with the http transport sends
each run event, with its datasets and schema facets, to a loopback server that records what it
gets; the file transport appends them; a server that is down never fails the run."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agentops.pipelines import find_spec
from agentops.pipelines.runner import execute, plan_run
from pipeline_helpers import write_spec
from test_runner_sql import SPEC, make_data


class _Recorder(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).received.append((self.path, dict(self.headers), json.loads(body)))
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Recorder.received = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=httpd.serve_forever, name="ol-server", daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def _configure(ws, text: str) -> None:
    ws.config_path.write_text(ws.config_path.read_text() + "\n" + text)
    ws.refresh()


def test_http_transport_sends_each_run_event_with_datasets_and_schema(ws, server, monkeypatch):
    monkeypatch.setenv("OL_TEST_KEY", "k-123")
    _configure(ws, f'[orbit.openlineage]\ntransport = "http"\nurl = "http://127.0.0.1:{server.server_port}"\n'
                   'api_key_env = "OL_TEST_KEY"\nnamespace = "shopns"\n')
    write_spec(ws, "shop", SPEC)
    make_data(ws.root, ["2026-03-01", "2026-03-02"])
    result = execute(ws, plan_run(ws, find_spec(ws, "shop"), partitions=["2026-03-01"]))
    assert result.ok and result.warnings == []
    got = _Recorder.received
    assert {p for p, _, _ in got} == {"/api/v1/lineage"}
    assert all(h.get("Authorization") == "Bearer k-123" for _, h, _ in got)
    events = [e for _, _, e in got]
    jobs = [(e["job"]["name"], e["eventType"]) for e in events]
    assert jobs == [("shop", "START"), ("shop.clean", "START"), ("shop.clean", "COMPLETE"),
                    ("shop.enrich", "START"), ("shop.enrich", "COMPLETE"), ("shop.daily", "START"),
                    ("shop.daily", "COMPLETE"), ("shop", "COMPLETE")]
    assert all(e["job"]["namespace"] == "shopns" for e in events)
    enrich = next(e for e in events if e["job"]["name"] == "shop.enrich" and e["eventType"] == "COMPLETE")
    assert {(i["namespace"], i["name"]) for i in enrich["inputs"]} == {
        ("duckdb:warehouse", "staging.orders"), ("file", str(ws.root / "input/customers.csv"))}
    (out,) = enrich["outputs"]
    assert out["name"] == str(ws.root / "out/fact/order_date=2026-03-01/*.parquet")
    fields = {f["name"]: f["type"] for f in out["facets"]["schema"]["fields"]}
    assert fields == {"order_id": "BIGINT", "amount": "DOUBLE", "order_date": "DATE", "country": "VARCHAR"}
    assert enrich["run"]["facets"]["parent"]["job"]["name"] == "shop"
    assert enrich["run"]["facets"]["agentops"]["state"] == "succeeded"


def test_http_events_carry_input_schemas_nominal_time_and_job_facets(ws, server):
    """Input schema facets from the three places agentops knows them (measured earlier in the run,
    recorded in Orbit from the data, declared in the spec), the partition's interval as nominalTime,
    and the parent/root, job type, owner, SQL, engine and output statistics facets."""
    from agentops.data import quality

    _configure(ws, f'[orbit.openlineage]\ntransport = "http"\nurl = "http://127.0.0.1:{server.server_port}"\n')
    write_spec(ws, "shop", SPEC + "  - {dataset: customers_csv, check: schema, types: {customer_id: BIGINT, "
                                  "country: VARCHAR}}\n")
    make_data(ws.root, ["2026-03-01"])
    quality.profile(ws, "orders_api", pipeline="shop", partition="2026-03-01")  # Orbit records its columns
    assert execute(ws, plan_run(ws, find_spec(ws, "shop"), partitions=["2026-03-01"])).ok
    events = [e for _, _, e in _Recorder.received]
    assert len(events) == 8
    for e in events:
        assert e["run"]["facets"]["nominalTime"]["nominalStartTime"] == "2026-03-01T00:00:00Z"
        assert e["run"]["facets"]["nominalTime"]["nominalEndTime"] == "2026-03-02T00:00:00Z"
        engine = e["run"]["facets"]["processing_engine"]
        assert engine["name"] == "agentops" and engine["version"] and engine["openlineageAdapterVersion"]
    by = {(e["job"]["name"], e["eventType"]): e for e in events}

    def schema(ds):
        return {f["name"]: f.get("type") for f in ds["facets"]["schema"]["fields"]}

    clean = by[("shop.clean", "START")]
    (orders,) = clean["inputs"]  # recorded in Orbit by the profile, read from the files
    assert set(schema(orders)) == {"order_id", "customer_id", "amount", "order_date", "updated_at"}
    enrich = by[("shop.enrich", "COMPLETE")]
    inputs = {i["name"].rsplit("/", 1)[-1]: schema(i) for i in enrich["inputs"]}
    assert inputs == {  # measured when clean wrote it in this run; declared in the spec
        "staging.orders": {"order_id": "BIGINT", "customer_id": "BIGINT", "amount": "DOUBLE", "order_date": "DATE"},
        "customers.csv": {"customer_id": "BIGINT", "country": "VARCHAR"}}
    (out,) = enrich["outputs"]
    assert out["outputFacets"]["outputStatistics"]["rowCount"] == 50
    assert out["outputFacets"]["outputStatistics"]["size"] > 0
    assert "outputStatistics" not in by[("shop.enrich", "START")]["outputs"][0].get("outputFacets", {})
    parent = enrich["run"]["facets"]["parent"]
    assert parent["job"]["name"] == "shop" and parent["root"]["run"] == parent["run"]
    assert parent["run"]["runId"] == by[("shop", "START")]["run"]["runId"]
    facets = enrich["job"]["facets"]
    assert facets["jobType"]["jobType"] == "TASK" and facets["jobType"]["processingType"] == "BATCH"
    assert facets["sql"]["query"] == find_spec(ws, "shop").stage("enrich").sql.strip()
    assert facets["sql"]["dialect"] == "duckdb"
    assert facets["ownership"]["owners"] == [{"name": "data-engineer", "type": "MAINTAINER"}]
    assert by[("shop", "START")]["job"]["facets"]["jobType"]["jobType"] == "DAG"


def test_file_transport_and_a_server_that_is_down(ws, tmp_path):
    _configure(ws, '[orbit.openlineage]\ntransport = "file"\npath = "lineage.jsonl"\n')
    write_spec(ws, "shop", SPEC)
    make_data(ws.root, ["2026-03-01"])
    spec = find_spec(ws, "shop")
    assert execute(ws, plan_run(ws, spec, partitions=["2026-03-01"])).ok
    lines = [json.loads(x) for x in (ws.root / "lineage.jsonl").read_text().splitlines()]
    assert len(lines) == 8 and lines[-1]["eventType"] == "COMPLETE"
    from openlineage.client.serde import Serde  # noqa: F401 - the client's own reader parses them
    # a server that refuses connections: the run still succeeds and says so once per problem
    text = ws.config_path.read_text().replace('transport = "file"\npath = "lineage.jsonl"',
                                              'transport = "http"\nurl = "http://127.0.0.1:9"\ntimeout = 0.5')
    ws.config_path.write_text(text)
    ws.refresh()
    result = execute(ws, plan_run(ws, spec, partitions=["2026-03-01"], rerun=True))
    assert result.ok and len(result.warnings) == 1 and result.warnings[0].startswith("OpenLineage:")


def test_a_missing_api_key_is_one_clear_error(ws, monkeypatch):
    from conftest import run_agentops

    monkeypatch.delenv("OL_MISSING", raising=False)
    _configure(ws, '[orbit.openlineage]\ntransport = "http"\nurl = "http://127.0.0.1:9"\napi_key_env = "OL_MISSING"\n')
    write_spec(ws, "shop", SPEC)
    r = run_agentops("pipeline", "run", "shop", "--partition", "2026-03-01")
    assert r.returncode == 4 and r.stderr.startswith("Error: [orbit.openlineage] api_key_env: $OL_MISSING is not set")
