"""The one Jinja2 environment: every template renders for every example spec, overrides by name,
the sandbox keeps agent-written text inert, and the Airflow DAG compiles with the right graph."""

from __future__ import annotations

import ast
import importlib.util
import json
import shlex
import sys
import types
from pathlib import Path

import pytest

from agentops.errors import NotFoundError, ValidationError
from agentops.pipelines import find_spec
from agentops.pipelines.documents import render_pipeline
from agentops.pipelines.graph import plan
from agentops.render import render
from tests.pipeline_helpers import EXAMPLE_NAMES, add_examples

EVIL = "{{ ''.__class__.__mro__[1].__subclasses__() }}{% for x in range(3) %}X{% endfor %}"


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_every_template_for_every_example(ws, cli, name):
    add_examples(ws)
    r = cli("pipeline", "render", name)
    assert r.exit_code == 0, r.output
    out = ws.data_dir / name
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted(["design.md", "etl_workflow.md", "runbook.md", "quality_report.md", f"{name}_dag.py"])
    assert f".agent/data/{name}/design.md" in r.output
    design = (out / "design.md").read_text()
    assert "```mermaid\nflowchart LR" in design
    for stage in find_spec(ws, name).stages:
        assert stage.name in design and f"### `{stage.name}`" in (out / "runbook.md").read_text()
    compile((out / f"{name}_dag.py").read_text(), f"{name}_dag.py", "exec")


def test_render_out_dir_and_single_template(ws, cli, tmp_path):
    add_examples(ws)
    r = cli("pipeline", "render", "orders_daily", "--template", "runbook", "--out", tmp_path / "docs")
    assert r.exit_code == 0 and [p.name for p in (tmp_path / "docs").iterdir()] == ["runbook.md"]
    r = cli("pipeline", "render", "orders_daily", "--template", "nope")
    assert r.exit_code == 2 and "no pipeline template 'nope'" in r.output  # a usage error (issue 12.12)


def test_workspace_template_overrides_packaged(ws):
    add_examples(ws)
    ws.templates_dir.mkdir(exist_ok=True)
    (ws.templates_dir / "runbook.md.j2").write_text("custom runbook for {{ spec.name }} by {{ spec.owner }}\n")
    paths = render_pipeline(ws, find_spec(ws, "orders_daily"), "runbook")
    assert paths[0].read_text() == "custom runbook for orders_daily by data-engineer\n"


def test_strict_undefined_is_a_clear_error(ws):
    ws.templates_dir.mkdir(exist_ok=True)
    (ws.templates_dir / "broken.md.j2").write_text("line one\n{{ not_given.field }}\n")
    with pytest.raises(ValidationError, match="broken.md.j2:2: 'not_given' is undefined"):
        render(ws, "broken.md.j2")
    with pytest.raises(NotFoundError):
        render(ws, "missing.j2")


def test_template_injection_from_spec_text_is_inert(ws):
    add_examples(ws)
    text = (ws.pipelines_dir / "orders_daily.yaml").read_text()
    text = text.replace("description: >\n  Loads yesterday's", f"description: >\n  {EVIL} \"\"\"; import os; os.system('touch PWNED') #\n  Loads")
    text = text.replace("    description: Rebuild the revenue rollup for the touched order dates.",
                        "    description: \"x'''\\\"\\\"\\\"\\n{{ cycler.__init__.__globals__.os.system('touch PWNED') }}\"")
    (ws.pipelines_dir / "orders_daily.yaml").write_text(text)
    spec = find_spec(ws, "orders_daily")
    paths = render_pipeline(ws, spec)
    design = paths[0].read_text()
    assert EVIL in design  # printed as text, never evaluated
    assert "XXX" not in design and "<class" not in design
    dag = next(p for p in paths if p.suffix == ".py")
    tree = ast.parse(dag.read_text())
    # the spec text stays inside string constants: no call to os.system anywhere in the module
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
             and n.func.attr == "system"]
    assert calls == []
    assert not (ws.root / "PWNED").exists() and not Path("PWNED").exists()


def test_agent_written_templates_render_in_the_sandbox(ws):
    # template text an agent writes goes in templates/, rendered by render() in the sandbox
    (ws.templates_dir / "hi.md.j2").write_text("Hi {{ who }}")
    assert render(ws, "hi.md.j2", who=EVIL) == f"Hi {EVIL}"
    for n, attack in enumerate(("{{ ''.__class__.__mro__ }}", "{{ cycler.__init__.__globals__ }}",
                                "{{ self._TemplateReference__context }}", "{{ x.__class__ }}",
                                "{{ ''.__class__.__mro__[1].__subclasses__() }}")):
        (ws.templates_dir / f"attack{n}.md.j2").write_text(attack)
        with pytest.raises(ValidationError, match=f"attack{n}.md.j2"):
            render(ws, f"attack{n}.md.j2", x=1)
    assert not (ws.root / "PWNED").exists()


# --- the Airflow DAG -------------------------------------------------------------------------------
class _FakeTask:
    def __init__(self, task_id, **kwargs):
        self.task_id, self.kwargs, self.downstream = task_id, kwargs, set()
        _FakeDAG.current.tasks[task_id] = self

    def __rshift__(self, other):
        self.downstream.add(other.task_id)
        return other


class _FakeDAG:
    current = None

    def __init__(self, dag_id, **kwargs):
        self.dag_id, self.kwargs, self.tasks = dag_id, kwargs, {}

    def __enter__(self):
        _FakeDAG.current = self
        return self

    def __exit__(self, *exc):
        return False


@pytest.fixture
def fake_airflow(monkeypatch):
    mods = {name: types.ModuleType(name) for name in
            ("airflow", "airflow.sdk", "airflow.providers", "airflow.providers.standard",
             "airflow.providers.standard.operators", "airflow.providers.standard.operators.bash")}
    mods["airflow.sdk"].DAG = _FakeDAG
    mods["airflow.providers.standard.operators.bash"].BashOperator = _FakeTask
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    return mods


def _load_dag(path: Path):
    spec = importlib.util.spec_from_file_location(f"dag_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_airflow_dag_has_the_stage_graph(ws, fake_airflow, name, monkeypatch):
    add_examples(ws)
    spec = find_spec(ws, name)
    path = render_pipeline(ws, spec, "airflow_dag")[0]
    source = path.read_text()
    compile(source, str(path), "exec")
    # the dependency lines, parsed
    edges = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.RShift):
            edges.add((node.left.slice.value, node.right.slice.value))
    expected = {tuple(e) for e in plan(spec)["edges"]}
    assert edges == expected
    # and executed against a tiny fake airflow
    module = _load_dag(path)
    dag = module.dag
    assert dag.dag_id == name and set(dag.tasks) == {s.name for s in spec.stages}
    assert {(u, v) for u, t in dag.tasks.items() for v in t.downstream} == expected
    assert dag.kwargs["schedule"] == spec.schedule and dag.kwargs["catchup"] is False
    for stage in spec.stages:
        kw = dag.tasks[stage.name].kwargs
        assert kw["retries"] == 0  # the runner applies the stage's retries and backoff itself
        assert kw["execution_timeout"].total_seconds() >= stage.timeout * (stage.retries + 1)
        # the task runs the embedded runner for its stage and the run's partition
        argv = shlex.split(kw["bash_command"].removesuffix(" {{ ds }}"))
        assert argv == [sys.executable, "-m", "agentops", "pipeline", "run", name, "--stage", stage.name,
                        "--partition"]
        assert kw["bash_command"].endswith(" {{ ds }}")
    # the Orbit hooks drop a valid run event into the workspace's drop zone
    monkeypatch.setattr(module, "ORBIT_DROP", ws.orbit_dir)
    ti = types.SimpleNamespace(task_id=spec.stages[0].name, try_number=2)
    run = types.SimpleNamespace(run_type="DagRunType.BACKFILL_JOB", run_id="backfill__2026-03-01")
    dag.kwargs["default_args"]["on_failure_callback"](
        {"task_instance": ti, "dag_run": run, "run_id": run.run_id, "logical_date": "2026-03-01",
         "exception": RuntimeError("boom")})
    dropped = list(ws.orbit_dir.glob("airflow-*.jsonl"))
    assert len(dropped) == 1
    event = json.loads(dropped[0].read_text())
    assert event["state"] == "failed" and event["task"] == spec.stages[0].name and event["logical_date"] == "2026-03-01"
    from agentops.orbit.events import parse

    parse(event)  # Orbit accepts it as it is


@pytest.mark.airflow
def test_airflow_dagbag_loads_the_dags(ws, tmp_path):
    pytest.importorskip("airflow")
    from airflow.models import DagBag

    add_examples(ws)
    for name in EXAMPLE_NAMES:
        render_pipeline(ws, find_spec(ws, name), "airflow_dag", tmp_path / "dags")
    import inspect

    options = {"include_examples": False} if "include_examples" in inspect.signature(DagBag).parameters else {}
    bag = DagBag(dag_folder=str(tmp_path / "dags"), **options)  # Airflow 3 dropped include_examples
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == set(EXAMPLE_NAMES)
    dag = bag.dags["orders_daily"]  # get_dag() reads the metadata DB in Airflow 3
    assert dag.get_task("load_fact_orders").upstream_task_ids == {"check_orders", "enrich_orders"}
