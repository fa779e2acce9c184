"""Plans (order, levels, critical path) and lineage across the example specs."""

from __future__ import annotations

import json

from hypothesis import given, settings, strategies as st

from agentops.pipelines import find_spec, parse_spec
from agentops.pipelines.graph import plan
from agentops.pipelines.lineage import lineage
from agentops.pipelines import load_specs
from tests.pipeline_helpers import add_examples


def test_plan_orders_daily(ws, cli):
    add_examples(ws)
    p = plan(find_spec(ws, "orders_daily"))
    assert p["levels"][0] == ["extract_orders", "wait_for_cdc"]
    assert p["critical_path"] == ["extract_orders", "clean_orders", "enrich_orders", "check_orders",
                                  "load_fact_orders", "publish_daily_revenue"]
    assert p["critical_path_s"] == (20 + 10 + 30 + 5 + 15 + 5) * 60 and p["weights"] == "timeouts"
    r = cli("pipeline", "plan", "orders_daily", "--json")
    assert r.exit_code == 0 and json.loads(r.output)["order"] == p["order"]


def test_plan_uses_orbit_durations(ws, cli):
    from agentops.orbit import Orbit

    add_examples(ws)
    with Orbit.open(ws) as orbit:
        for task, secs in [("extract_order_items", 5000), ("extract_orders", 10)]:
            orbit.log({"kind": "job", "pipeline": "orders_daily", "run_id": "r1", "task": task, "duration_s": secs},
                      send_alerts=False)
    r = cli("pipeline", "plan", "orders_daily", "--json")
    p = json.loads(r.output)
    assert p["weights"] == "orbit+timeouts"
    assert p["critical_path"][:2] == ["wait_for_cdc", "extract_order_items"]


@st.composite
def dag_specs(draw):
    n = draw(st.integers(1, 25))
    stages = []
    for i in range(n):
        deps = draw(st.lists(st.integers(0, max(i - 1, 0)), max_size=3, unique=True)) if i else []
        reads = draw(st.lists(st.integers(0, max(i - 1, 0)), max_size=2, unique=True)) if i else []
        stages.append({"name": f"t{i}", "kind": "transform", "depends_on": [f"t{d}" for d in deps],
                       "inputs": ["src", *(f"d{r}" for r in reads)], "outputs": [f"d{i}"],
                       "timeout": draw(st.integers(1, 100))})
    order = draw(st.permutations(range(n)))
    return {"name": "gen", "owner": "data-engineer", "schedule": "@daily",
            "sources": [{"name": "src", "kind": "file", "format": "csv"}], "stages": [stages[i] for i in order]}


@settings(max_examples=120, deadline=None)
@given(dag_specs())
def test_any_dag_plans_dependencies_first(doc):
    result = parse_spec(json.dumps(doc), "gen.yaml")
    assert result.spec is not None, result.problems
    p = plan(result.spec)
    pos = {n: i for i, n in enumerate(p["order"])}
    level = {n: i for i, lvl in enumerate(p["levels"]) for n in lvl}
    assert sorted(pos) == sorted(s["name"] for s in doc["stages"])
    for s in doc["stages"]:
        for dep in s["depends_on"] + [f"t{d[1:]}" for d in s["inputs"] if d != "src"]:
            assert pos[dep] < pos[s["name"]] and level[dep] < level[s["name"]]
    assert p["critical_path_s"] >= max(s["timeout"] for s in doc["stages"])


def test_lineage_across_specs(ws, cli):
    add_examples(ws)
    specs, _ = load_specs(ws)
    down = lineage(specs, "warehouse.dim_customers", "downstream")["downstream"]
    names = [d["name"] for d in down["datasets"]]
    assert names[0] == "staging.orders_enriched"
    assert {"warehouse.fact_orders", "mart.daily_revenue", "mart.order_attribution"} <= set(names)
    assert down["pipelines"] == ["clickstream", "orders_daily"]
    assert "clickstream.attribute_orders" in down["stages"] and "orders_daily.check_orders" in down["stages"]
    assert down["owners"] == ["data-engineer"]
    up = lineage(specs, "mart.order_attribution", "upstream")["upstream"]
    assert {"crm_db.customers", "orders_api", "kafka.web_events", "shop_db.order_items"} <= {d["name"] for d in up["datasets"]}
    assert up["pipelines"] == ["clickstream", "customers_dim", "orders_daily"]
    assert "database-engineer" in up["owners"]
    r = cli("pipeline", "lineage", "warehouse.fact_orders", "--downstream")
    assert r.exit_code == 0 and "mart.order_attribution" in r.output and "upstream" not in r.output
    assert "impact:" in r.output
    r = cli("pipeline", "lineage", "warehouse.fact_order")
    assert r.exit_code == 5 and "did you mean" in r.output


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12).flatmap(lambda n: st.tuples(
    st.just(n), st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=30))))
def test_the_stage_graph_agrees_with_networkx(case):
    # the runner's own graph (no networkx import per run): levels, descendants and cycles as networkx finds them
    import networkx as nx

    from agentops.pipelines.graph import StageGraph, descendants, find_cycles, generations

    n, pairs = case
    g, ng = StageGraph(), nx.DiGraph()
    for i in range(n):
        g.add_node(f"s{i}")
        ng.add_node(f"s{i}")
    for a, b in pairs:
        g.add_edge(f"s{a}", f"s{b}", via="x")
        ng.add_edge(f"s{a}", f"s{b}", via="x")
    assert g.edges(data=True) == list(ng.edges(data=True))
    for node in ng:
        assert descendants(g, node) == nx.descendants(ng, node)
        assert list(g.predecessors(node)) == list(ng.predecessors(node))
    levels = generations(g)
    if nx.is_directed_acyclic_graph(ng):
        assert [sorted(x) for x in levels] == [sorted(x) for x in nx.topological_generations(ng)]
    else:
        assert levels is None

        class Spec:
            stages = [type("S", (), {"name": f"s{i}"})() for i in range(n)]
        cycles = find_cycles(Spec(), g)
        assert cycles and all(ng.has_edge(c[i], c[(i + 1) % len(c)]) for c in cycles for i in range(len(c)))
