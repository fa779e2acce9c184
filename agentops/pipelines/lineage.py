"""Dataset lineage across every spec (networkx): which stages read and write each dataset, what is
upstream of it, and what a change to it affects downstream (datasets, stages, pipelines, owners).

One graph holds datasets ("d", name) and stages ("s", pipeline, stage): dataset -> stage for an
input, stage -> dataset for an output, stage -> stage for `depends_on`. Datasets are shared by name,
so one pipeline's output that another declares `external:` joins the two.
"""

from __future__ import annotations

from typing import Any

from agentops.errors import NotFoundError


def lineage_graph(specs):
    import networkx as nx

    g = nx.DiGraph()
    for spec in specs:
        for src in spec.sources:
            g.add_node(("d", src.name))
            g.nodes[("d", src.name)].setdefault("sources", []).append(
                {"pipeline": spec.name, "kind": src.kind, "format": src.format})
        for dst in spec.destinations:
            g.add_node(("d", dst.name))
            g.nodes[("d", dst.name)]["destination"] = {"pipeline": spec.name, "format": dst.format,
                                                      "table": dst.table, "path": dst.path}
        for st in spec.stages:
            node = ("s", spec.name, st.name)
            g.add_node(node, owner=st.owner or spec.owner, kind=st.kind)
            for d in st.inputs:
                g.add_edge(("d", d), node)
            for d in st.outputs:
                g.add_edge(node, ("d", d))
            for dep in st.depends_on:
                g.add_edge(("s", spec.name, dep), node)
    return g


def datasets(specs) -> list[str]:
    return sorted(n[1] for n in lineage_graph(specs) if n[0] == "d")


def lineage(specs, dataset: str, direction: str = "both") -> dict[str, Any]:
    """Upstream and/or downstream of `dataset`. Raise NotFoundError for an unknown dataset."""
    import networkx as nx

    g = lineage_graph(specs)
    node = ("d", dataset)
    if node not in g:
        import difflib

        names = [n[1] for n in g if n[0] == "d"]
        close = difflib.get_close_matches(dataset, names, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else "see `agentops pipeline lineage --list`"
        raise NotFoundError(f"no pipeline reads or writes dataset '{dataset}'", hint=hint)
    owners = {s.name: s.owner for s in specs}
    out: dict[str, Any] = {"dataset": dataset,
                           "produced_by": [_stage(n) for n in g.predecessors(node) if n[0] == "s"],
                           "read_by": [_stage(n) for n in g.successors(node) if n[0] == "s"],
                           "source": g.nodes[node].get("sources", []),
                           "destination": g.nodes[node].get("destination")}
    for key in ("upstream", "downstream"):
        if direction not in ("both", key):
            continue
        view = g.reverse(copy=False) if key == "upstream" else g
        dist = nx.single_source_shortest_path_length(view, node)
        dist.pop(node, None)
        reach = sorted(dist, key=lambda n: (dist[n], _label(n)))
        stages = [n for n in reach if n[0] == "s"]
        pipelines = sorted({n[1] for n in stages})
        out[key] = {
            "datasets": [{"name": n[1], "hops": (dist[n] + 1) // 2} for n in reach if n[0] == "d"],
            "stages": [_stage(n) for n in stages],
            "pipelines": pipelines,
            "owners": sorted({g.nodes[n]["owner"] for n in stages} | {owners[p] for p in pipelines if p in owners}),
            "edges": [[_label(u), _label(v)] for u, v in g.subgraph([*reach, node]).edges],
        }
    return out


def _stage(n) -> str:
    return f"{n[1]}.{n[2]}"


def _label(n) -> str:
    return n[1] if n[0] == "d" else _stage(n)


def impact(specs, dataset: str) -> dict[str, Any]:
    """What a change to `dataset` affects: the downstream half of `lineage`."""
    return lineage(specs, dataset, "downstream")["downstream"]
