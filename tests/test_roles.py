"""Role files: parsing, checking, graphing."""

from __future__ import annotations

import json
import re

import pytest

from agentops.errors import ValidationError
from agentops.resources import packaged
from agentops.roles import check_roles, graph_report, load_role, load_roles, parse_role
from tests.conftest import age

ROLE_FILES = sorted(packaged("roles").glob("*.agent.md"))


@pytest.mark.parametrize("path", ROLE_FILES, ids=lambda p: p.name)
def test_every_shipped_role_parses(path):
    role = load_role(path)
    assert role.name and role.description and role.body.strip()
    assert "orbit/*" in role.tools
    assert role.handoffs, "every role hands off to someone"


def test_shipped_roles_check_clean_and_hand_back():
    roles, problems = load_roles(packaged("roles"))
    assert not problems and not check_roles(roles)
    report = graph_report(roles)
    de = next(r for r in roles if r.name == "Data Engineer")
    assert {h.agent for h in de.handoffs} == {"Database Engineer", "DevOps", "Developer"}
    for other in ("Database Engineer", "DevOps", "Developer"):
        assert ["Data Engineer", other] in report["handoff_cycles"] or any(
            c[:1] == ["Data Engineer"] and other in c for c in report["handoff_cycles"])
    assert report["unreachable"] == []


def test_seed_fields_are_kept():
    seed = (packaged("roles") / "Data Engineer.agent.md").read_text()
    role = parse_role(seed, "de.agent.md")
    assert role.argument_hint.startswith("Build or optimize")
    assert role.model == ["GPT-5.2"]
    assert role.frontmatter()["argument-hint"] == role.argument_hint


def test_unknown_fields_kept_and_string_or_list_accepted():
    role = parse_role("---\nname: X\nmodel: [a, b]\ntools: read\nuser-invokable: false\ntarget: vscode\n---\nbody\n",
                      "x.agent.md")
    assert role.model == ["a", "b"] and role.tools == ["read"]
    assert role.frontmatter()["user-invokable"] is False
    assert role.model_extra["target"] == "vscode"


@pytest.mark.parametrize("text, expected", [
    ("---\nname: [unclosed\n---\n", r"^x\.agent\.md:\d+: YAML error"),
    ("---\ndescription: no name\n---\n", r"^x\.agent\.md:name: Field required"),
    ("---\nname: X\ntools: {a: 1}\n---\n", r"^x\.agent\.md:tools: .*string or a list"),
    ("no frontmatter\n", r"^x\.agent\.md:1: no YAML frontmatter"),
    ("---\nname: X\n", r"frontmatter is not closed"),
    ("---\n- a\n- b\n---\n", r"frontmatter must be a mapping"),
    ("---\na: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
     "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
     "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: [*f,*f,*f,*f,*f,*f,*f,*f,*f]\nname: X\n---\n", r"alias bomb"),
])
def test_malformed_frontmatter_gives_one_clear_error(text, expected):
    with pytest.raises(ValidationError) as info:
        parse_role(text, "x.agent.md")
    assert re.search(expected, str(info.value)), str(info.value)
    assert "\n" not in str(info.value)


def test_yaml_error_line_is_the_file_line():
    with pytest.raises(ValidationError, match=r"x\.agent\.md:4: YAML error"):
        parse_role("---\nname: X\ndescription: ok\ntools: a: b\n---\n", "x.agent.md")


def test_check_reports_file_field_reason(ws, cli):
    path = ws.roles_dir / "DevOps.agent.md"
    path.write_text(path.read_text().replace("agent: Data Engineer", "agent: Data Engineeer", 1))
    r = cli("roles", "check")
    assert r.exit_code == 1
    assert "roles/DevOps.agent.md: handoffs[0].agent: unknown role 'Data Engineeer'" in r.output


def test_check_finds_duplicates_agents_and_parse_errors(ws, cli):
    (ws.roles_dir / "Copy.agent.md").write_text("---\nname: devops\nagents: [Nobody]\n---\n")
    (ws.roles_dir / "Broken.agent.md").write_text("---\nname: [x\n---\n")
    r = cli("roles", "check", "--json")
    assert r.exit_code == 1
    problems = {(p["file"], p["field"]) for p in json.loads(r.output)["problems"]}
    assert ("roles/Copy.agent.md", "name") in problems or ("roles/DevOps.agent.md", "name") in problems
    assert ("roles/Copy.agent.md", "agents[0]") in problems
    assert any(f == "roles/Broken.agent.md" for f, _ in problems)


def test_list_show_graph_commands(ws, cli):
    r = cli("roles", "list", "--json")
    assert [x["slug"] for x in json.loads(r.output)] == ["data-engineer", "database-engineer", "devops", "developer"]
    r = cli("roles", "show", "database_engineer", "--json")
    assert json.loads(r.output)["name"] == "Database Engineer"
    r = cli("roles", "show", "nobody")
    assert r.exit_code == 5 and "no role named 'nobody'" in r.output
    r = cli("roles", "graph")
    assert r.output.startswith("flowchart LR") and '-->|"Consult Database Engineer"|' in r.output
    r = cli("roles", "graph", "--format", "dot")
    assert r.output.startswith("digraph roles")
    data = json.loads(cli("roles", "graph", "--format", "json").output)
    assert {"roles", "edges", "unreachable", "handoff_cycles"} <= set(data)


def test_unreachable_role_reported(ws, cli):
    (ws.roles_dir / "Analyst.agent.md").write_text("---\nname: Analyst\nhandoffs:\n"
                                                   "  - {label: Ask, agent: Data Engineer}\n---\nbody\n")
    r = cli("roles", "graph")
    assert "nobody hands off to: Analyst" in r.output


def test_control_characters_are_a_clear_error():
    with pytest.raises(ValidationError, match=r"x\.agent\.md: YAML error: .*special characters"):
        parse_role("---\nname: X\x1f\n---\n", "x.agent.md")


def test_roles_are_read_from_the_cache_until_a_role_file_changes(ws, cli):
    from agentops.roles import CACHE_FILE

    (ws.roles_dir / "Broken.agent.md").write_text("---\nname: [x\n---\n")
    devops = ws.roles_dir / "DevOps.agent.md"
    devops.write_text(devops.read_text().replace("name: DevOps", "name: DevOps\nreviewed: yes", 1))
    age(*ws.roles_dir.iterdir(), ws.roles_dir)
    cache = ws.run_dir / CACHE_FILE
    listed, checked = cli("roles", "list").output, cli("roles", "check", "--json").output
    as_json = cli("roles", "list", "--json").output
    assert cache.is_file() and any(p["file"] == "roles/Broken.agent.md" for p in json.loads(checked)["problems"])
    assert json.loads(as_json)[2]["reviewed"] is True  # frontmatter beyond the known fields is kept

    assert cli("roles", "list").output == listed and cli("roles", "list", "--json").output == as_json
    assert cli("roles", "check", "--json").output == checked  # the parse problems are cached too
    data = json.loads(cache.read_text())
    data["value"]["roles"][0]["tools"] = ["said-only-by-the-cache"]
    cache.write_text(json.dumps(data))
    assert "said-only-by-the-cache" in cli("roles", "list").output  # read, not parsed again

    devops.write_text(devops.read_text().replace("reviewed: yes", "reviewed: no", 1))  # edited...
    (ws.roles_dir / "Analyst.agent.md").write_text("---\nname: Analyst\n---\nbody\n")  # ...added...
    (ws.roles_dir / "Broken.agent.md").unlink()  # ...removed: each seen on the next command
    age(devops, ws.roles_dir / "Analyst.agent.md", ws.roles_dir, seconds=5)  # old enough to be cached again
    rows = json.loads(cli("roles", "list", "--json").output)
    assert [r["name"] for r in rows] == ["Analyst", "Data Engineer", "Database Engineer", "DevOps", "Developer"]
    assert rows[3]["reviewed"] is False and "said-only-by-the-cache" not in cli("roles", "list").output
    assert [r["name"] for r in json.loads(cache.read_text())["value"]["roles"]] == [r["name"] for r in rows]
    assert json.loads(cli("roles", "check", "--json").output)["problems"] == []


@pytest.mark.parametrize("field, value", [("since", "2024-01-01"), ("_fields_set", "[name]")])
def test_a_role_the_cache_cannot_keep_is_parsed_each_time(ws, field, value):
    """A date would come back from JSON as text, and `model_construct` would take `_fields_set` for its
    own argument: such a role set is parsed every time, never cached."""
    from datetime import date

    from agentops.roles import CACHE_FILE
    from agentops.workspace import Workspace

    (ws.roles_dir / "X.agent.md").write_text(f"---\nname: X\n{field}: {value}\n---\nbody\n")
    age(*ws.roles_dir.iterdir(), ws.roles_dir)
    for _ in range(2):
        extra = Workspace(ws.root).roles()[-1].model_extra
        assert extra == {field: date(2024, 1, 1) if field == "since" else ["name"]}
    assert not (ws.run_dir / CACHE_FILE).exists()
