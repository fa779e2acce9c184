"""`agentops quality run` and `agentops dataset profile`: measure datasets and record what was found.

For each dataset: open it where it lives, read its columns, run the profile and the column checks
in one aggregate pass (`checks.measure`), compare the columns with the last record (`drift`), then
record in Orbit, through the event registry: the schema (`schema`, every run), a `schema_change`
when it differs, the profile as `metric` events (so every column's series is watched for
anomalies), the `anomaly` checks judged from what that detection found, and each check result as a
`check` event (status passed|failed|error, observed, threshold, up to 5 failing rows, the reason).
A dataset that cannot be read makes each of its checks an `error` naming dataset, check and
location; the other datasets still run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from agentops.data import drift
from agentops.data.checks import Profile, Result, measure
from agentops.data.connections import DuckEngine, duckdb_connect, engine_errors, first_line
from agentops.data.datasets import catalog, describe, open_dataset
from agentops.errors import DataError, NotFoundError


@dataclass
class DatasetReport:
    dataset: str
    where: str
    results: list[Result] = field(default_factory=list)
    profile: Profile | None = None
    schema: dict[str, str] | None = None
    change: dict | None = None  # {added, removed, changed, policy, breaking}
    error: str | None = None  # the dataset could not be read
    anomalies: list[dict] = field(default_factory=list)
    checks: list = field(default_factory=list)  # the declared checks this run measures

    def as_dict(self) -> dict:
        return {"dataset": self.dataset, "where": self.where, "error": self.error,
                "checks": [r.as_dict() for r in self.results],
                "profile": self.profile.as_dict() if self.profile else None,
                "schema": self.schema, "schema_change": self.change, "anomalies": self.anomalies}


@dataclass
class QualityReport:
    pipeline: str
    run_id: str
    partition: str | None
    datasets: list[DatasetReport] = field(default_factory=list)

    @property
    def results(self) -> list[Result]:
        return [r for d in self.datasets for r in d.results]

    def counts(self) -> dict[str, int]:
        out = {"passed": 0, "failed": 0, "error": 0}
        for r in self.results:
            out[r.status] += 1
        return out

    @property
    def ok(self) -> bool:
        """No error and no error-severity failure (warn failures do not fail the run)."""
        return not any(r.status == "error" or (r.status == "failed" and r.severity == "error") for r in self.results)

    def as_dict(self) -> dict:
        return {"pipeline": self.pipeline, "run_id": self.run_id, "partition": self.partition,
                "ok": self.ok, "counts": self.counts(), "datasets": [d.as_dict() for d in self.datasets]}


def line(r: Result) -> str:
    """The one line a result prints: `staging.orders not_null:order_id (data/x.parquet): failed: ...`."""
    head = f"{r.dataset} {r.check} ({r.where})"
    if r.status == "error":
        return f"{head}: error: {r.reason}"
    text = f"{head}: {r.status} (observed {_fmt(r.observed)}, threshold {_fmt(r.threshold)})"
    return text + (f": {r.reason}" if r.reason else "")


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return "-" if v is None else str(v)


def datasets_to_check(spec) -> list[str]:
    """A pipeline's datasets a quality run measures: those with checks, then any other with a location
    (profiled and its schema recorded; one that cannot be read is reported, but has no check to fail)."""
    names = list(dict.fromkeys(q.dataset for q in spec.quality))
    names += [n for n in spec.dataset_names() if n not in names and spec.location(n) is not None]
    return names


def run(ws, pipeline: str, *, dataset: str | None = None, partition: str | None = None, run_id: str | None = None,
        checks: bool = True, now: datetime | None = None, duck=None, spec=None, specs=None) -> QualityReport:
    """Measure the pipeline's datasets (or one) and record everything in Orbit. `checks=False`:
    only the profile and schema (`agentops dataset profile`). `duck`: a DuckDB connection to read
    through (the runner's session, where the warehouse may already be attached); by default one
    of its own, in memory, closed at the end. `spec`/`specs`: the pipeline's spec and every spec,
    as the caller read them already (the runner, once per run); by default read here."""
    from agentops.orbit.log import Orbit
    from agentops.pipelines.spec import find_spec, load_specs

    spec = spec if spec is not None else find_spec(ws, pipeline)
    if specs is None:
        specs, _ = load_specs(ws, check=False)
    cat = catalog([s for s in specs if s.name != spec.name] + [spec])
    if dataset is not None:
        if dataset not in spec.dataset_names():
            raise NotFoundError(f"pipeline '{spec.name}' names no dataset '{dataset}'",
                                hint=f"its datasets: {', '.join(spec.dataset_names())}")
        names = [dataset]
    else:
        names = datasets_to_check(spec)
    now = now or datetime.now(timezone.utc)
    run_id = run_id or f"quality-{partition or now.strftime('%Y-%m-%dT%H:%M:%S')}"
    report = QualityReport(spec.name, run_id, partition)
    own = duck is None
    duck = duckdb_connect() if own else duck
    try:
        with Orbit.open(ws) as orbit:
            for name in names:
                ref = cat.get(name)
                location = spec.location(name) or (ref.location if ref else None)
                dr = measure_dataset(ws, spec, name, location, partition, duck,
                                     spec.checks_for(name) if checks else [], now)
                record(orbit, ws, specs, spec, ref, dr, run_id, partition, ts=now.isoformat())
                report.datasets.append(dr)
    finally:
        if own:
            duck.close()
    return report


def measure_dataset(ws, spec, name: str, location, partition, duck, checks: list, now) -> DatasetReport:
    where = describe(name, location, partition)
    dr = DatasetReport(name, where, checks=list(checks))
    try:
        ds = open_dataset(ws, name, location, partition, duck=duck)
    except DataError as exc:
        return _unreadable(dr, checks, exc.message)
    try:
        try:
            columns = ds.engine.columns(ds.relation)
        except engine_errors() as exc:
            return _unreadable(dr, checks, first_line(exc))
        if isinstance(ds.engine, DuckEngine):
            _alias(ds, name)
        results, profile = measure(ds, columns, checks, now=now)
    finally:
        ds.close()
    dr.results, dr.schema = results, dict(columns)
    dr.profile = profile if profile.rows is not None else None
    return dr


def _alias(ds, name: str) -> None:
    """In DuckDB the dataset is also a view under its own name, so a `sql` check reads like stage SQL."""
    q = DuckEngine.quote
    schema, rel = name.split(".", 1) if "." in name else (None, name)
    try:
        if schema:
            ds.engine.conn.execute(f"CREATE SCHEMA IF NOT EXISTS {q(schema)}")
        ds.engine.conn.execute(f"CREATE OR REPLACE TEMP VIEW {q(rel)} AS SELECT * FROM {ds.relation}"
                               if not schema else
                               f"CREATE OR REPLACE VIEW {q(schema)}.{q(rel)} AS SELECT * FROM {ds.relation}")
    except engine_errors():
        pass  # a name DuckDB cannot take: {dataset} still works


def _unreadable(dr: DatasetReport, checks: list, reason: str) -> DatasetReport:
    dr.error = reason
    for chk in checks:
        dr.results.append(Result(dr.dataset, chk.label, chk.check, chk.severity, where=dr.where).error(reason))
    return dr


# recording --------------------------------------------------------------------------------------------
def last_schema(orbit, dataset: str) -> dict[str, str] | None:
    """The dataset's columns as last recorded (table `schemas`), or None before its first record."""
    import json

    row = orbit.db.conn.execute("SELECT columns FROM schemas WHERE dataset = ?", (dataset,)).fetchone()
    return json.loads(row[0]) if row else None


def notify_list(specs, ref, dataset: str) -> list[str]:
    """The dataset's owner and the owners of every pipeline downstream of it (lineage)."""
    from agentops.pipelines.lineage import impact

    out = [ref.owner] if ref is not None and ref.owner else []
    try:
        out += impact(specs, dataset)["owners"]
    except Exception:  # noqa: BLE001 - a dataset no stage touches has no downstream
        pass
    return list(dict.fromkeys(out))


def record(orbit, ws, specs, spec, ref, dr: DatasetReport, run_id: str, partition: str | None,
           ts: str | None = None) -> None:
    """Write what was measured of one dataset to Orbit (see the module docstring), at time `ts`."""
    from agentops.orbit.events import CheckEvent, MetricEvent, SchemaChangeEvent, SchemaEvent

    pipeline = spec.name
    policy = ref.schema_evolution if ref is not None else spec.schema_evolution(dr.dataset)
    events: list = []
    declared = [q for q in dr.checks if q.check == "schema"]
    if dr.schema is not None:
        before = last_schema(orbit, dr.dataset)
        events.append(SchemaEvent(kind="schema", pipeline=pipeline, run_id=run_id, dataset=dr.dataset,
                                  columns=dr.schema, agent="agentops", ts=ts))
        if before is not None:
            d = drift.diff(before, dr.schema)
            if drift.is_change(d):
                brk = drift.breaking(d, policy)
                dr.change = {**d, "policy": policy, "breaking": brk}
                events.append(SchemaChangeEvent(kind="schema_change", pipeline=pipeline, run_id=run_id,
                                                dataset=dr.dataset, added=d["added"], removed=d["removed"],
                                                changed=d["changed"], policy=policy, breaking=brk,
                                                notify=notify_list(specs, ref, dr.dataset) if brk else [],
                                                agent="agentops", ts=ts))
        _schema_check(dr, declared)
    if dr.profile is not None:
        unwatched = trend_metrics(orbit, pipeline, dr.dataset, dr.profile, dr.checks)
        metric_events = [MetricEvent(kind="metric", pipeline=pipeline, dataset=dr.dataset, name=k, value=v,
                                     run_id=run_id, watch=False if k in unwatched else None, agent="agentops",
                                     ts=ts) for k, v in dr.profile.metrics.items()]
        start = orbit.db.conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
        orbit.log_many(events + metric_events, send_alerts=False)
        events = []
        dr.anomalies = [dict(zip(("metric", "value", "expected", "zscore", "direction"), r))
                        for r in orbit.db.conn.execute(
            "SELECT metric, value, expected, zscore, direction FROM anomalies WHERE seq > ? AND pipeline = ? "
            "AND dataset = ?", (start, pipeline, dr.dataset)).fetchall()]
    _anomaly_checks(orbit, spec, dr)
    for r in dr.results:
        events.append(CheckEvent(kind="check", pipeline=pipeline, run_id=run_id, dataset=dr.dataset, check=r.check,
                                 passed=r.passed, status=r.status, severity=r.severity, observed=_figure(r.observed),
                                 threshold=_figure(r.threshold), samples=r.samples or None, reason=r.reason,
                                 location=dr.where, partition=partition, agent="agentops", ts=ts))
    if events:
        orbit.log_many(events, send_alerts=False)
    orbit.send_alerts()


def trend_metrics(orbit, pipeline: str, dataset: str, profile, checks: list) -> set[str]:
    """The profile metrics recorded but not scored: min, mean and max of a growing key, a key column
    (`Profile.keys`: distinct integers) whose values all lie above or all below the last recorded
    range of that column (order ids of one day's partition against the day before, or of an older
    day a backfill measures), unless an `anomaly` check names one. Its level moves every run by
    design; its null fraction and distinct count are still scored."""
    declared = {chk.metric_name for chk in checks if chk.check == "anomaly"}
    out = set()
    for col in profile.keys():
        low, high = profile.metrics.get(f"min:{col}"), profile.metrics.get(f"max:{col}")
        last = [orbit.db.conn.execute("SELECT value FROM metrics WHERE series = ? ORDER BY seq DESC LIMIT 1",
                                      (f"{pipeline}\x1f{dataset}\x1f{stat}:{col}",)).fetchone() for stat in ("min", "max")]
        if low is None or high is None or None in last:
            continue
        if low > last[1][0] or high < last[0][0]:  # no overlap with the last range: the ids moved on (or back)
            out |= {f"{stat}:{col}" for stat in ("min", "mean", "max")}
    return out - declared


def _figure(v):
    if isinstance(v, float):
        return round(v, 6)
    return v


def _schema_check(dr: DatasetReport, declared: list) -> None:
    """The `schema` check: declared expectations, and a breaking change under the dataset's policy."""
    change = dr.change
    if not declared and not (change and change["breaking"]):
        return
    chk = declared[0] if declared else None
    problems = drift.expectation_problems(dr.schema, chk.columns if chk else [], chk.types if chk else {})
    if change and change["breaking"]:
        problems.append(f"breaking change under schema_evolution {change['policy']}: {drift.describe(change)}")
    r = Result(dr.dataset, "schema", "schema", chk.severity if chk else "error", where=dr.where)
    r.observed = "; ".join(problems) if problems else "as expected"
    r.threshold = change["policy"] if change else "declared"
    r.status = "failed" if problems else "passed"
    dr.results = [x for x in dr.results if x.check != "schema"] + [r]


def _anomaly_checks(orbit, spec, dr: DatasetReport) -> None:
    if dr.error:
        return  # each declared check is already an error for that reason
    for chk in dr.checks:
        if chk.check != "anomaly":
            continue
        r = Result(dr.dataset, chk.label, "anomaly", chk.severity, where=dr.where)
        dr.results.append(r)
        metric = chk.metric_name
        known = dr.profile.metrics if dr.profile else {}
        if metric not in known:
            r.error(f"no profile metric {metric!r} (known: row_count, null_fraction:COL, distinct:COL, "
                    f"min:COL, max:COL, mean:COL)")
            continue
        settings = orbit.series_settings(spec.name, dr.dataset, metric)
        r.observed = known[metric]
        r.threshold = chk.threshold if chk.threshold is not None else settings.threshold
        found = [a for a in dr.anomalies if a["metric"] == metric and abs(a["zscore"]) >= r.threshold]
        r.status = "failed" if found else "passed"
        if found:
            a = found[0]
            r.reason = f"{a['direction']}: expected {a['expected']:.6g}, z-score {a['zscore']:.2f}"


def profile(ws, dataset: str, *, pipeline: str | None = None, partition: str | None = None) -> QualityReport:
    """`agentops dataset profile`: the profile and schema of one dataset, recorded under the pipeline
    that writes it (or `pipeline`), without running its checks."""
    from agentops.pipelines.spec import load_specs

    if pipeline is None:
        specs, _ = load_specs(ws, check=False)
        ref = catalog(specs).get(dataset)
        if ref is None:
            raise NotFoundError(f"no spec names dataset '{dataset}'", hint="see `agentops dataset list`")
        writer = next((w for w in ref.writers), None)
        pipeline = (writer.split(":", 1)[1] if writer.startswith("source:") else writer.split(".", 1)[0]) \
            if writer else ref.pipelines[0]
    return run(ws, pipeline, dataset=dataset, partition=partition, checks=False)
