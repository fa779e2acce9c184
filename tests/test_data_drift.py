"""Schema drift on real data: columns added, removed and retyped between runs, judged by each
`schema_evolution` policy; a breaking change fails the `schema` check and alerts the dataset's owner
and the owners of every pipeline downstream (lineage), by mail from postmaster."""

from __future__ import annotations

import mailbox

import duckdb
import pytest

from agentops.data import drift, quality
from agentops.orbit.log import Orbit
from agentops.workspace import Workspace, init_workspace

PRODUCER = """name: ingest
owner: data-engineer
schedule: "@daily"
sources:
  - {{name: raw.orders, kind: file, format: parquet, schema_evolution: {policy},
     location: {{path: data/orders.parquet}}}}
stages: [{{name: load, kind: load, inputs: [raw.orders], outputs: [staging.orders]}}]
"""
CONSUMER = """name: reporting
owner: devops
schedule: "@daily"
external: [staging.orders]
stages: [{name: report, kind: transform, inputs: [staging.orders], outputs: [mart.report]}]
"""

SCHEMAS = {
    "base": "SELECT range AS id, 'x' AS status FROM range(10)",
    "added": "SELECT range AS id, 'x' AS status, 1.5 AS amount FROM range(10)",
    "removed": "SELECT range AS id FROM range(10)",
    "retyped": "SELECT CAST(range AS VARCHAR) AS id, 'x' AS status FROM range(10)",
}


def make(root, policy: str) -> Workspace:
    init_workspace(root)
    ws = Workspace(root)
    ws.pipelines_dir.mkdir(parents=True, exist_ok=True)
    (ws.pipelines_dir / "ingest.yaml").write_text(PRODUCER.format(policy=policy), "utf-8")
    (ws.pipelines_dir / "reporting.yaml").write_text(CONSUMER, "utf-8")
    (root / "data").mkdir(exist_ok=True)
    return ws


def write(ws, shape: str) -> None:
    con = duckdb.connect()
    con.execute(f"COPY ({SCHEMAS[shape]}) TO '{ws.root}/data/orders.parquet' (FORMAT parquet)")
    con.close()


def _inbox(ws, agent: str) -> list[str]:
    box = ws.inbox(agent)
    if not box.exists():
        return []
    return [m["Subject"] for m in mailbox.Maildir(box, create=False)]


@pytest.mark.parametrize("policy, shape, is_breaking", [
    ("fail", "added", True), ("fail", "removed", True), ("fail", "retyped", True),
    ("add_columns", "added", False), ("add_columns", "removed", True), ("add_columns", "retyped", True),
    ("ignore", "added", False), ("ignore", "removed", False), ("ignore", "retyped", False),
])
def test_drift_each_direction_under_each_policy(_workspace_env, policy, shape, is_breaking):
    ws = make(_workspace_env, policy)
    write(ws, "base")
    first = quality.run(ws, "ingest")
    assert first.datasets[0].change is None and first.ok  # the first record is the baseline
    write(ws, shape)
    report = quality.run(ws, "ingest")
    dr = report.datasets[0]
    assert dr.change is not None and dr.change["breaking"] is is_breaking and dr.change["policy"] == policy
    expected = {"added": ("added", ["amount"]), "removed": ("removed", ["status"]),
                "retyped": ("changed", [{"column": "id", "old": "BIGINT", "new": "VARCHAR"}])}[shape]
    assert dr.change[expected[0]] == expected[1]
    schema = [r for r in report.results if r.check == "schema"]
    if is_breaking:
        assert schema and schema[0].status == "failed" and "breaking change" in schema[0].observed
        assert not report.ok
    else:
        assert not schema and report.ok
    with Orbit.open(ws) as orbit:
        changes = orbit.events(kind="schema_change")
        alerts = orbit.alerts()
    assert len(changes) == 1
    if is_breaking:
        # the dataset's owner and the owner of the pipeline downstream (reporting: devops)
        assert {a["owner"] for a in alerts if a["cause"] == "schema_change"} == {"data-engineer", "devops"}
        assert any("breaking schema change: raw.orders" in s for s in _inbox(ws, "devops"))
        assert any("breaking schema change: raw.orders" in s for s in _inbox(ws, "data-engineer"))
    else:
        assert not [a for a in alerts if a["cause"] == "schema_change"]
    # the new schema is now the record: an unchanged next run records no change
    again = quality.run(ws, "ingest")
    assert again.datasets[0].change is None


def test_declared_schema_check_types_and_synonyms(_workspace_env):
    ws = make(_workspace_env, "fail")
    spec = ws.pipelines_dir / "ingest.yaml"
    spec.write_text(spec.read_text() + "quality:\n  - {dataset: raw.orders, check: schema, columns: [id], "
                    "types: {id: INT8, status: text}}\n", "utf-8")
    write(ws, "base")
    r = next(r for r in quality.run(ws, "ingest").results if r.check == "schema")
    assert r.status == "passed", r
    write(ws, "retyped")
    r = next(r for r in quality.run(ws, "ingest").results if r.check == "schema")
    assert r.status == "failed" and "id is VARCHAR, expected INT8" in r.observed and "breaking change" in r.observed


def test_diff_and_judge_units():
    d = drift.diff({"a": "BIGINT", "b": "VARCHAR"}, {"a": "INT8", "c": "DATE"})
    assert d == {"added": ["c"], "removed": ["b"], "changed": []}
    assert drift.breaking(d, "fail") and drift.breaking(d, "add_columns") and not drift.breaking(d, "ignore")
    assert not drift.breaking(drift.diff({"a": "INT"}, {"a": "INTEGER", "b": "TEXT"}), "add_columns")
    assert drift.describe(d) == "added c; removed b"


def test_schema_kinds_log_and_derive(_workspace_env):
    """The two kinds through the registry: `schema` upserts the dataset's row in `schemas`; a breaking
    `schema_change` alerts each address in `notify`; a user cannot log either."""
    from agentops.errors import ValidationError
    from agentops.orbit.events import SchemaChangeEvent, SchemaEvent

    init_workspace(_workspace_env)
    ws = Workspace(_workspace_env)
    with Orbit.open(ws) as orbit:
        orbit.log(SchemaEvent(kind="schema", pipeline="p", dataset="d", columns={"a": "BIGINT"}, agent="agentops"))
        orbit.log(SchemaEvent(kind="schema", pipeline="p", dataset="d", columns={"a": "VARCHAR"}, agent="agentops"))
        assert quality.last_schema(orbit, "d") == {"a": "VARCHAR"}
        result = orbit.log(SchemaChangeEvent(kind="schema_change", pipeline="p", dataset="d", policy="fail",
                                             breaking=True, changed=[{"column": "a", "old": "BIGINT", "new": "VARCHAR"}],
                                             notify=["devops", "developer"], agent="agentops"))
        assert sorted(d["owner"] for d in result.derived if d["kind"] == "alert") == ["developer", "devops"]
        with pytest.raises(ValidationError, match="written by agentops"):
            orbit.log({"kind": "schema", "pipeline": "p", "dataset": "d", "columns": {}})
