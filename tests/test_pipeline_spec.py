"""Pipeline specs: the examples check clean; malformed specs give located one-line errors, never a
traceback (library and CLI)."""

from __future__ import annotations


import pytest

from agentops.errors import NotFoundError
from agentops.pipelines import check_one, find_spec, load_specs, parse_spec
from tests.conftest import age
from tests.pipeline_helpers import add_examples, chain_spec, write_spec

GOOD = """\
name: tiny
owner: data-engineer
schedule: "0 3 * * *"
sources:
  - {name: api, kind: api, format: json, auth: {type: bearer, token_env: TINY_TOKEN}}
stages:
  - {name: extract, kind: extract, inputs: [api], outputs: [raw]}
  - {name: load, kind: load, inputs: [raw], outputs: [table]}
"""


def problems_of(ws, text, name="bad"):
    write_spec(ws, name, text)
    _, problems = check_one(ws, name)
    return [str(p) for p in problems]


def test_examples_check_clean(ws, cli):
    add_examples(ws)
    specs, problems = load_specs(ws)
    assert problems == []
    assert {s.name for s in specs} == {"orders_daily", "customers_dim", "clickstream"}
    orders = find_spec(ws, "orders_daily")
    assert orders.owner == "data-engineer"
    assert [s.name for s in orders.stages][:3] == ["extract_orders", "wait_for_cdc", "extract_order_items"]
    assert orders.stage("load_fact_orders").depends_on == ["check_orders"]
    click = find_spec(ws, "clickstream")
    assert click.streaming.delivery == "exactly-once" and click.streaming.allowed_lateness == 600
    r = cli("pipeline", "check")
    assert r.exit_code == 0 and "3 spec(s), 0 problem(s)" in r.output


def test_find_spec_unknown(ws):
    add_examples(ws)
    with pytest.raises(NotFoundError, match="no pipeline 'nope'.*orders_daily"):
        find_spec(ws, "nope")


def test_yaml_syntax_error_has_line(ws, cli):
    lines = problems_of(ws, "name: x\nowner: data-engineer\nstages: [\n  - {name: a\n")
    assert len(lines) == 1 and lines[0].startswith(".agent/data/pipelines/bad.yaml:") and "YAML error" in lines[0]
    r = cli("pipeline", "check", "bad")
    assert r.exit_code == 1 and "Traceback" not in r.output


def test_alias_bomb_refused(ws):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join('*' + p for p in [prev] * 10)}]\n"
        for prev, c in zip("abcdefgh", "bcdefghi"))
    lines = problems_of(ws, bomb)  # refused, not expanded (10^9 items would never finish)
    assert len(lines) == 1 and "alias" in lines[0]


def test_wrong_types_unknown_fields_and_lines(ws):
    text = GOOD.replace("  - {name: load, kind: load, inputs: [raw], outputs: [table]}",
                        "  - name: load\n    kind: loader\n    retries: many\n    colour: blue\n    inputs: [raw]")
    lines = problems_of(ws, text)
    joined = "\n".join(lines)
    assert "bad.yaml:9: stages[1].kind: Input should be" in joined and "got 'loader'" in joined
    assert "bad.yaml:10: stages[1].retries:" in joined
    assert "bad.yaml:11: stages[1].colour: unknown field 'colour'" in joined
    # a spec with an anchor (parsed by the pure-Python loader) locates its problems the same way
    lines = problems_of(ws, text.replace("    inputs: [raw]", "    inputs: &in [raw]"))
    assert "bad.yaml:11: stages[1].colour: unknown field 'colour'" in "\n".join(lines), lines


def test_not_a_mapping_and_empty(ws):
    assert "a YAML mapping" in problems_of(ws, "- just\n- a list\n")[0]
    assert "empty" in problems_of(ws, "", "empty")[0]


def test_cycle_named_by_stages(ws, cli):
    text = GOOD + "  - {name: a, kind: transform, inputs: [table], outputs: [x], depends_on: [b]}\n" \
                  "  - {name: b, kind: transform, inputs: [x], outputs: [y]}\n"
    lines = problems_of(ws, text)
    assert any("cycle: a -> b -> a" in line for line in lines), lines
    r = cli("pipeline", "plan", "bad")
    assert r.exit_code == 4 and "cycle" in r.output and "Traceback" not in r.output


def test_unknown_datasets_stages_owner(ws):
    text = GOOD.replace("owner: data-engineer", "owner: data-enginer").replace(
        "inputs: [raw], outputs: [table]", "inputs: [raww], outputs: [table], depends_on: [extrat]")
    joined = "\n".join(problems_of(ws, text))
    assert "bad.yaml:2: owner: unknown owner 'data-enginer'" in joined
    assert "stages[1].inputs[0]: unknown dataset 'raww'" in joined and "did you mean 'raw'" in joined
    assert "stages[1].depends_on[0]: unknown stage 'extrat'" in joined


def test_external_datasets_are_known(ws):
    text = GOOD.replace("inputs: [raw], outputs", "inputs: [raw, warehouse.dim], outputs") + "external: [warehouse.dim]\n"
    assert problems_of(ws, text) == []


@pytest.mark.parametrize("auth, expect", [
    ("{type: bearer, token: sk-live-1234567890}", "'token' holds a secret value"),
    ("{type: bearer, token_env: sk-live-1234567890}", "is not an environment variable name"),
    ("{type: basic, username_env: U, password: hunter2}", "'password' holds a secret value"),
    ("{type: bearer}", "needs token_env"),
])
def test_secret_literals_in_auth(ws, auth, expect):
    text = GOOD.replace("{type: bearer, token_env: TINY_TOKEN}", auth)
    lines = problems_of(ws, text)
    assert any(expect in line and "sources[0].auth" in line for line in lines), lines
    assert not any("1234567890" in line or "hunter2" in line for line in lines), "the secret is echoed back"


def test_password_in_url(ws):
    text = GOOD.replace("format: json,", "format: json, url: 'postgres://app:s3cret@db/shop',")
    assert any("user:password@host" in line for line in problems_of(ws, text))


@pytest.mark.parametrize("cron, ok", [("0 2 * * *", True), ("@hourly", True), ("*/15 9-17 * * mon-fri", True),
                                      ("61 * * * *", False), ("0 2 * *", False), ("@sometimes", False),
                                      ("5-1 * * * *", False)])
def test_cron_validated(ws, cron, ok):
    lines = problems_of(ws, GOOD.replace('"0 3 * * *"', f'"{cron}"'))
    assert (lines == []) is ok, lines
    if not ok:
        assert "schedule: invalid cron schedule" in lines[0]


def test_streaming_needs_its_block_and_checks_need_fields(ws):
    text = GOOD.replace('schedule: "0 3 * * *"', "processing: streaming")
    joined = "\n".join(problems_of(ws, text))
    assert "needs a streaming: block" in joined
    text = GOOD + "quality:\n  - {dataset: raw, check: accepted_values, column: status}\n" \
                  "  - {dataset: nowhere, check: row_count, min: 1}\n"
    joined = "\n".join(problems_of(ws, text))
    assert "quality[0]: check 'accepted_values' needs values" in joined
    joined = "\n".join(problems_of(ws, GOOD + "quality:\n  - {dataset: nowhere, check: row_count, min: 1}\n"))
    assert "quality[0].dataset: unknown dataset 'nowhere'" in joined


def test_duplicate_names(ws):
    text = GOOD + "  - {name: load, kind: load, inputs: [raw]}\n"
    assert any("duplicate stage name 'load'" in line for line in problems_of(ws, text))
    write_spec(ws, "tiny2", GOOD)
    write_spec(ws, "tiny", GOOD)
    _, problems = load_specs(ws)
    assert any("also defined in" in str(p) for p in problems)


def test_5000_stage_spec_checks_and_plans(ws, cli):
    """Scale, not speed (benchmarks/run.py measures that)."""
    from agentops.pipelines.graph import plan

    write_spec(ws, "big", chain_spec(5000))
    spec, problems = check_one(ws, "big")
    p = plan(spec)
    assert problems == [] and len(p["order"]) == 5000
    r = cli("pipeline", "plan", "big")
    assert r.exit_code == 0 and "5000 stage(s)" in r.output


def test_5000_stage_spec_with_errors_is_clear(ws, cli):
    text = chain_spec(5000).replace("kind: transform\n    inputs: [d9, d0]", "kind: transfrom\n    inputs: [d9, d0]")
    write_spec(ws, "big", text)
    r = cli("pipeline", "check", "big")
    assert r.exit_code == 1
    lines = [line for line in r.output.splitlines() if line.startswith(".agent")]
    assert len(lines) == 1 and "stages[10].kind" in lines[0] and ":58:" in lines[0], lines
    # once the schema is right, the graph checks run: one unknown dataset among 5,000 stages
    write_spec(ws, "big", chain_spec(5000).replace("inputs: [d4998]", "inputs: [d4998x]"))
    r = cli("pipeline", "check", "big")
    lines = [line for line in r.output.splitlines() if line.startswith(".agent")]
    assert r.exit_code == 1 and len(lines) == 1 and "stages[4999].inputs[0]: unknown dataset 'd4998x'" in lines[0]


def test_parse_spec_never_raises_on_junk():
    from hypothesis import given, settings, strategies as st

    @settings(max_examples=150, deadline=None)
    @given(st.text(max_size=300))
    def run(text):
        result = parse_spec(text, "x.yaml")
        assert result.spec is not None or result.problems

    run()


def test_check_json(ws, cli):
    import json

    write_spec(ws, "bad", GOOD.replace("kind: load", "kind: lode"))
    r = cli("pipeline", "check", "--json")
    assert r.exit_code == 1
    data = json.loads(r.output)
    assert data["problems"][0]["line"] == 8 and data["problems"][0]["path"] == "stages[1].kind"


def test_pipeline_list_reads_its_rows_from_the_cache_until_a_spec_file_changes(ws, cli):
    import json
    import subprocess
    import sys

    from agentops.pipelines import spec as spec_mod
    from agentops.pipelines.listing import CACHE_FILE, SPEC_SUFFIXES

    assert SPEC_SUFFIXES == spec_mod.SPEC_SUFFIXES
    add_examples(ws)
    write_spec(ws, "broken", "name: broken\nowner: [data-engineer\n")
    age(*ws.pipelines_dir.iterdir(), ws.pipelines_dir)
    cache = ws.run_dir / CACHE_FILE
    first, as_json = cli("pipeline", "list"), cli("pipeline", "list", "--json")
    assert first.exit_code == 0 and cache.is_file()
    assert first.stdout.splitlines()[1].split() == ["clickstream", "data-engineer", "streaming", "continuous", "4",
                                                    ".agent/data/pipelines/clickstream.yaml"]
    assert first.stderr == "1 spec file(s) do not parse: run `agentops pipeline check`\n"  # a broken spec, as ever
    unparsed = json.loads(as_json.stdout)["unparsed"]
    assert [(p["file"], p["line"], p["path"]) for p in unparsed] == [(".agent/data/pipelines/broken.yaml", 3, "")]
    assert unparsed[0]["message"].startswith("YAML error")

    again = cli("pipeline", "list")  # from the cache: the same output, without YAML or the spec models
    assert (again.stdout, again.stderr) == (first.stdout, first.stderr)
    assert cli("pipeline", "list", "--json").stdout == as_json.stdout
    code = ("import sys\nfrom agentops.cli import main\nsys.argv = ['agentops', 'pipeline', 'list']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('yaml', 'agentops.pipelines.spec') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ws.root)
    assert out.returncode == 0 and out.stdout.splitlines()[-1] == "[]", out.stderr
    data = json.loads(cache.read_text())
    data["value"]["rows"][0]["owner"] = "said-only-by-the-cache"
    cache.write_text(json.dumps(data))
    assert "said-only-by-the-cache" in cli("pipeline", "list").stdout

    orders = ws.pipelines_dir / "orders_daily.yaml"
    orders.write_text(orders.read_text().replace("owner: data-engineer", "owner: devops", 1))  # edited...
    write_spec(ws, "broken", GOOD)  # ...fixed...
    (ws.pipelines_dir / "customers_dim.yaml").unlink()  # ...removed: each seen on the next command
    age(orders, ws.pipelines_dir / "broken.yaml", ws.pipelines_dir, seconds=5)
    r = cli("pipeline", "list", "--json")
    rows = {row["name"]: row["owner"] for row in json.loads(r.stdout)["pipelines"]}
    assert rows == {"clickstream": "data-engineer", "orders_daily": "devops", "tiny": "data-engineer"}
    assert json.loads(r.stdout)["unparsed"] == [] and r.stderr == ""
    assert json.loads(cache.read_text())["value"]["rows"] == json.loads(r.stdout)["pipelines"]
