"""The stage DAG of one pipeline: cycles, topological order, parallel levels and the critical path,
weighted by durations Orbit recorded or else by each stage's timeout.

An edge a -> b means b runs after a: b lists a in `depends_on`, or b reads a dataset a writes.
The graph is a small class of its own (the runner plans every run with it; importing networkx
would add ~0.15 s to each `pipeline run`); networkx is imported only to describe a cycle.
"""

from __future__ import annotations

import json
import sqlite3
import statistics
from typing import Any, Iterator


class StageGraph:
    """A directed graph keeping insertion order: nodes, and per node its successors and
    predecessors with each edge's data (`via`: `depends_on` or the dataset)."""

    def __init__(self) -> None:
        self._succ: dict[str, dict[str, dict]] = {}
        self._pred: dict[str, dict[str, dict]] = {}

    def add_node(self, n: str) -> None:
        self._succ.setdefault(n, {})
        self._pred.setdefault(n, {})

    def add_edge(self, u: str, v: str, **data) -> None:
        self.add_node(u)
        self.add_node(v)
        self._succ[u].setdefault(v, {}).update(data)
        self._pred[v][u] = self._succ[u][v]

    def __contains__(self, n) -> bool:
        return n in self._succ

    def __iter__(self) -> Iterator[str]:
        return iter(self._succ)

    def __len__(self) -> int:
        return len(self._succ)

    @property
    def nodes(self) -> list[str]:
        return list(self._succ)

    def has_edge(self, u: str, v: str) -> bool:
        return v in self._succ.get(u, {})

    def predecessors(self, n: str) -> Iterator[str]:
        return iter(self._pred[n])

    def successors(self, n: str) -> Iterator[str]:
        return iter(self._succ[n])

    def edges(self, data: bool = False) -> list:
        """(u, v) per edge, or (u, v, data): by node, then in the order each node's edges were added."""
        return [(u, v, d) if data else (u, v) for u, out in self._succ.items() for v, d in out.items()]


def stage_graph(spec) -> StageGraph:
    g = StageGraph()
    writer: dict[str, str] = {}
    for st in spec.stages:
        g.add_node(st.name)
        for d in st.outputs:
            writer.setdefault(d, st.name)
    for st in spec.stages:
        for dep in st.depends_on:
            if dep in g:
                g.add_edge(dep, st.name, via="depends_on")
        for d in st.inputs:
            w = writer.get(d)
            if w is not None and not g.has_edge(w, st.name):
                g.add_edge(w, st.name, via=d)
    return g


def descendants(g: StageGraph, n: str) -> set[str]:
    """Every stage reachable from `n`, not `n` itself (as networkx's `descendants`)."""
    seen: set[str] = set()
    todo = [n]
    while todo:
        for s in g.successors(todo.pop()):
            if s not in seen:
                seen.add(s)
                todo.append(s)
    seen.discard(n)
    return seen


def generations(g: StageGraph) -> list[list[str]] | None:
    """The stages level by level (each level's stages depend only on earlier levels), or None when
    the graph has a cycle."""
    indegree = {n: sum(1 for _ in g.predecessors(n)) for n in g}
    level = [n for n, d in indegree.items() if d == 0]
    out = []
    while level:
        out.append(level)
        nxt = []
        for n in level:
            for s in g.successors(n):
                indegree[s] -= 1
                if indegree[s] == 0:
                    nxt.append(s)
        level = nxt
    return out if sum(len(lvl) for lvl in out) == len(g) else None


def find_cycles(spec, graph=None) -> list[list[str]]:
    """One cycle per strongly connected knot, each as its stages in order (stable: starts at the
    stage listed first in the spec)."""
    g = graph if graph is not None else stage_graph(spec)
    if generations(g) is not None:
        return []
    import networkx as nx

    ng = nx.DiGraph()
    ng.add_nodes_from(g)
    ng.add_edges_from(g.edges())
    order = {s.name: i for i, s in enumerate(spec.stages)}
    cycles = []
    for comp in nx.strongly_connected_components(ng):
        if len(comp) == 1:
            (n,) = comp
            if ng.has_edge(n, n):
                cycles.append([n])
            continue
        sub = ng.subgraph(comp)
        start = min(comp, key=order.__getitem__)
        cycle = [u for u, _ in nx.find_cycle(sub, source=start)]
        i = cycle.index(min(cycle, key=order.__getitem__))
        cycles.append(cycle[i:] + cycle[:i])
    return sorted(cycles, key=lambda c: order[c[0]])


def recorded_durations(ws, pipeline: str, last: int = 10) -> dict[str, float]:
    """Median `duration_s` of the last `last` Orbit job events per task (empty when none/no store).

    Reads the `events` table (the Orbit log's truth) read-only, so a plan never creates a store."""
    if ws is None or not ws.db_path.exists():
        return {}
    try:
        conn = sqlite3.connect(f"file:{ws.db_path}?mode=ro", uri=True, timeout=5)
        try:
            rows = conn.execute("SELECT data FROM events WHERE kind = 'job' AND pipeline = ? ORDER BY seq DESC",
                                (pipeline,)).fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return {}
    per: dict[str, list[float]] = {}
    for (data,) in rows:
        try:
            ev = json.loads(data)
            task, dur = ev.get("task"), ev.get("duration_s")
            if task and isinstance(dur, (int, float)) and dur >= 0 and len(per.setdefault(task, [])) < last:
                per[task].append(float(dur))
        except (ValueError, AttributeError):
            continue
    return {t: statistics.median(v) for t, v in per.items() if v}


def plan(spec, durations: dict[str, float] | None = None) -> dict[str, Any]:
    """Order, levels and critical path. Raise ValidationError naming the cycle when there is one."""
    from agentops.errors import ValidationError

    g = stage_graph(spec)
    cycles = find_cycles(spec, g)
    if cycles:
        raise ValidationError(
            f"pipeline '{spec.name}' has a cycle: {' -> '.join([*cycles[0], cycles[0][0]])}",
            hint="remove one dependency; `agentops pipeline check` lists every cycle",
            problems=[f"cycle: {' -> '.join([*c, c[0]])}" for c in cycles])
    durations = durations or {}
    index = {s.name: i for i, s in enumerate(spec.stages)}
    weight = {s.name: float(durations.get(s.name, s.timeout)) for s in spec.stages}
    levels = [sorted(gen, key=index.__getitem__) for gen in generations(g) or []]
    order = [n for lvl in levels for n in lvl]
    level_of = {n: i for i, lvl in enumerate(levels) for n in lvl}
    # forward pass: earliest finish; backward pass: latest finish -> slack
    start: dict[str, float] = {}
    finish: dict[str, float] = {}
    best_pred: dict[str, str | None] = {}
    for n in order:
        preds = list(g.predecessors(n))
        p = max(preds, key=lambda x: (finish[x], -index[x]), default=None)
        start[n] = finish[p] if p is not None else 0.0
        finish[n] = start[n] + weight[n]
        best_pred[n] = p
    total = max(finish.values(), default=0.0)
    latest: dict[str, float] = {}
    for n in reversed(order):
        succ = list(g.successors(n))
        latest[n] = min((latest[s] - weight[s] for s in succ), default=total)
    end = max(order, key=lambda n: (finish[n], -index[n])) if order else None
    path = []
    while end is not None:
        path.append(end)
        end = best_pred[end]
    path.reverse()
    measured = sum(1 for s in spec.stages if s.name in durations)
    basis = "timeouts" if not measured else ("orbit" if measured == len(spec.stages) else "orbit+timeouts")
    return {
        "pipeline": spec.name,
        "order": order,
        "levels": levels,
        "max_parallel": max((len(lvl) for lvl in levels), default=0),
        "critical_path": path,
        "critical_path_s": total,
        "weights": basis,
        "stages": [{"name": n, "level": level_of[n], "weight_s": weight[n],
                    "measured": n in durations, "start_s": start[n], "finish_s": finish[n],
                    "slack_s": round(latest[n] - finish[n], 6),
                    "after": sorted(g.predecessors(n), key=index.__getitem__)} for n in order],
        "edges": [[u, v] for u, v in g.edges()],
    }
