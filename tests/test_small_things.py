"""Issue 12, "smaller things seen": each was wrong in front of a new user."""

from __future__ import annotations

import json
import re
import shutil
from datetime import datetime, timedelta, timezone

import yaml

from agentops.orbit import Orbit
from tests.conftest import REPO


def test_init_force_does_not_tell_you_to_use_force(tmp_path, cli):
    target = tmp_path / "w"
    assert cli("init", target).exit_code == 0
    (target / "roles" / "DevOps.agent.md").write_text((target / "roles" / "DevOps.agent.md").read_text() + "\nmine\n")
    again = cli("init", target).output
    assert "(use --force to overwrite)" in again
    forced = cli("init", target, "--force").output
    assert "overwritten  roles/DevOps.agent.md" in forced
    assert "--force" not in forced and "already as packaged, or not regular files" in forced


def test_orbit_anomalies_prints_figures_not_exponents(ws, cli):
    start = datetime.now(timezone.utc) - timedelta(days=15)
    series = [10120, 9980, 10340, 10050, 9890, 10210, 10400, 9950, 10080, 10300, 10150, 9870, 10230, 10010]
    with Orbit.open(ws) as orbit:
        for i, v in enumerate(series + [1240]):
            orbit.log({"kind": "metric", "pipeline": "orders_daily", "dataset": "fact_orders", "name": "row_count",
                       "value": v, "ts": (start + timedelta(days=i)).isoformat()})
    out = cli("orbit", "anomalies").output
    assert "e+0" not in out, out
    assert re.search(r"row_count\s+1240\s+(\d{4,5}(\.\d{1,2})?)\s", out), out  # EXPECTED as a figure
    status = cli("status").output
    assert re.search(r"1240 vs ~\d{4,5}(\.\d{1,2})? ", status) and "e+0" not in status, status


def test_lineage_groups_by_distance_instead_of_indenting_like_a_tree(ws, cli):
    for spec in (REPO / ".agent" / "data" / "pipelines").glob("*.yaml"):
        shutil.copy(spec, ws.pipelines_dir / spec.name)
    out = cli("pipeline", "lineage", "mart.order_attribution", "--upstream").output
    lines = out.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("upstream ("))
    assert lines[start + 1] == "  1 hop :  lake.sessions, warehouse.fact_orders"
    assert lines[start + 2].startswith("  2 hops:  ")
    assert not any(ln.startswith("    ") for ln in lines), out  # nothing looks like a child of the line above


def test_render_takes_pipeline_templates_and_short_names_only(ws, cli, tmp_path):
    for spec in (REPO / ".agent" / "data" / "pipelines").glob("*.yaml"):
        shutil.copy(spec, ws.pipelines_dir / spec.name)
    r = cli("pipeline", "render", "orders_daily", "--template", "airflow", "--out", tmp_path / "a")
    assert r.exit_code == 0 and r.output.strip().endswith("orders_daily_dag.py"), r.output
    r = cli("pipeline", "render", "orders_daily", "--template", "handoff.email.j2", "--out", tmp_path / "b")
    assert r.exit_code == 2 and "'handoff.email.j2' is not rendered for a pipeline" in r.output, r.output
    r = cli("pipeline", "render", "orders_daily", "--template", "nope", "--out", tmp_path / "c")
    assert r.exit_code == 2
    for other in ("handoff", "prompt", "protocol", "status.md"):
        assert other not in r.output.split("(use ", 1)[1], r.output
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()
    (ws.templates_dir / "lineage_note.md.j2").write_text("{{ spec.name }}\n")
    r = cli("pipeline", "render", "orders_daily", "--template", "lineage_note.md", "--out", tmp_path / "d")
    assert r.exit_code == 0 and (tmp_path / "d" / "lineage_note.md").read_text() == "orders_daily\n"


def test_vscode_export_keeps_the_frontmatter_as_written(ws, cli):
    assert cli("roles", "export", "--target", "vscode").exit_code == 0
    text = (ws.root / ".github" / "agents" / "Data Engineer.agent.md").read_text()
    source = (ws.roles_dir / "Data Engineer.agent.md").read_text()
    assert text.split("---\n", 2)[1] == source.split("---\n", 2)[1]
    assert yaml.safe_load(text.split("---\n", 2)[1])["model"] == "GPT-5.2"
    assert json.dumps(yaml.safe_load(text.split("---\n", 2)[1])["tools"])  # still a list where it was one
