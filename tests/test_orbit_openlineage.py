"""Issue 12 point 16: exported run events carry the spec's stage datasets as inputs/outputs, a
`nominalTime` facet, and an `agentops` facet whose `_schemaURL` resolves to the JSON schema shipped
in this repository; every event is rebuilt with openlineage-python's own classes and serializes the same."""

from __future__ import annotations

import json
from pathlib import Path

import attr
import jsonschema
from pipeline_helpers import write_spec

from agentops.orbit import Orbit
from agentops.orbit.openlineage import AGENTOPS_SCHEMA, SCHEMA_FILE, to_openlineage

REPO = Path(__file__).resolve().parent.parent
SPEC = """name: orders
owner: data-engineer
schedule: '@daily'
sources:
  - {name: raw.orders, kind: file, format: csv}
stages:
  - {name: extract, kind: extract, inputs: [raw.orders], outputs: [staging.orders]}
  - {name: clean, kind: transform, inputs: [staging.orders], outputs: [clean.orders]}
  - {name: load, kind: load, inputs: [clean.orders], outputs: [mart.orders, mart.daily]}
"""


def client_event(d: dict):
    """The RunEvent dict rebuilt with openlineage-python's classes (they validate as they build)."""
    from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
    from openlineage.client.facet_v2 import (RunFacet, data_quality_assertions_dataset as dq, documentation_job,
                                             error_message_run, job_type_job, nominal_time_run, ownership_job,
                                             parent_run, sql_job)

    @attr.define
    class AgentopsRunFacet(RunFacet):
        kind: str
        pipeline: str
        run_id: str
        task: str | None = None
        state: str | None = None
        attempt: int | None = None
        run_type: str | None = None
        logical_date: str | None = None
        error: str | None = None

        @staticmethod
        def _get_schema() -> str:
            return AGENTOPS_SCHEMA

    facets = {}
    for name, f in d["run"]["facets"].items():
        fields = {k: v for k, v in f.items() if not k.startswith("_")}
        if name == "errorMessage":
            facets[name] = error_message_run.ErrorMessageRunFacet(**fields, producer=f["_producer"])
        elif name == "parent":
            root = parent_run.Root(run=parent_run.RootRun(**f["root"]["run"]), job=parent_run.RootJob(**f["root"]["job"]))
            facets[name] = parent_run.ParentRunFacet(run=parent_run.Run(**f["run"]), job=parent_run.Job(**f["job"]),
                                                     root=root, producer=f["_producer"])
        elif name == "nominalTime":
            facets[name] = nominal_time_run.NominalTimeRunFacet(**fields, producer=f["_producer"])
        elif name == "agentops":
            facets[name] = AgentopsRunFacet(**fields, producer=f["_producer"])
        else:
            raise AssertionError(f"unexpected facet {name}")
    inputs = []
    for i in d["inputs"]:
        input_facets = {}
        if i.get("inputFacets"):
            a = i["inputFacets"]["dataQualityAssertions"]
            input_facets = {"dataQualityAssertions": dq.DataQualityAssertionsDatasetFacet(
                assertions=[dq.Assertion(**x) for x in a["assertions"]], producer=a["_producer"])}
        inputs.append(InputDataset(namespace=i["namespace"], name=i["name"], facets={}, inputFacets=input_facets))
    outputs = [OutputDataset(namespace=o["namespace"], name=o["name"], facets={}) for o in d["outputs"]]
    job_classes = {"jobType": job_type_job.JobTypeJobFacet, "ownership": ownership_job.OwnershipJobFacet,
                   "sql": sql_job.SQLJobFacet, "documentation": documentation_job.DocumentationJobFacet}
    job_facets = {}
    for name, f in d["job"].get("facets", {}).items():
        fields = {k: v for k, v in f.items() if not k.startswith("_")}
        if name == "ownership":
            fields["owners"] = [ownership_job.Owner(**o) for o in fields["owners"]]
        job_facets[name] = job_classes[name](**fields, producer=f["_producer"])
    return RunEvent(eventType=RunState(d["eventType"]), eventTime=d["eventTime"], producer=d["producer"],
                    run=Run(runId=d["run"]["runId"], facets=facets),
                    job=Job(namespace=d["job"]["namespace"], name=d["job"]["name"], facets=job_facets),
                    inputs=inputs, outputs=outputs)


def pruned(value):
    """Without empty objects (the client writes `facets: {}` where the export leaves them out)."""
    if isinstance(value, dict):
        return {k: pruned(v) for k, v in value.items() if v != {}}
    if isinstance(value, list):
        return [pruned(v) for v in value]
    return value


def test_export_carries_datasets_nominal_time_and_a_resolvable_facet_schema(ws, cli, tmp_path):
    from openlineage.client.serde import Serde

    write_spec(ws, "orders", SPEC)
    with Orbit.open(ws) as orbit:
        for ev in [
            {"kind": "run", "pipeline": "orders", "run_id": "r1", "state": "running", "logical_date": "2026-11-25"},
            {"kind": "run", "pipeline": "orders", "run_id": "r1", "task": "load", "state": "running",
             "logical_date": "2026-11-25T06:00:00+00:00"},
            {"kind": "run", "pipeline": "orders", "run_id": "r1", "task": "load", "state": "failed", "error": "boom"},
            {"kind": "check", "pipeline": "orders", "run_id": "r1", "dataset": "mart.orders", "check": "unique:id",
             "passed": True, "observed": 0, "threshold": 0},
            {"kind": "run", "pipeline": "unknown", "run_id": "x", "state": "succeeded"},
        ]:
            orbit.log(ev)
    out = tmp_path / "ol.jsonl"
    assert cli("orbit", "export", "--openlineage", "--out", out).exit_code == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    pipeline_run, task_run, task_failed, check, unknown = lines
    assert [i["name"] for i in pipeline_run["inputs"]] == ["raw.orders"]
    assert [o["name"] for o in pipeline_run["outputs"]] == ["staging.orders", "clean.orders", "mart.orders", "mart.daily"]
    assert [i["name"] for i in task_run["inputs"]] == ["clean.orders"]
    assert [o["name"] for o in task_failed["outputs"]] == ["mart.orders", "mart.daily"]
    assert unknown["inputs"] == [] and unknown["outputs"] == []
    assert pipeline_run["run"]["facets"]["nominalTime"]["nominalStartTime"] == "2026-11-25T00:00:00Z"
    assert task_run["run"]["facets"]["nominalTime"]["nominalStartTime"] == "2026-11-25T06:00:00Z"
    assert "nominalTime" in task_failed["run"]["facets"]  # the run's logical date carries over
    # the partition's interval ends where the next partition starts (the daily schedule's next day)
    assert pipeline_run["run"]["facets"]["nominalTime"]["nominalEndTime"] == "2026-11-26T00:00:00Z"
    assert task_run["run"]["facets"]["nominalTime"]["nominalEndTime"] == "2026-11-26T00:00:00Z"
    parent = task_run["run"]["facets"]["parent"]
    assert parent["root"] == {"run": parent["run"], "job": {"namespace": "agentops", "name": "orders"}}
    assert pipeline_run["job"]["facets"]["jobType"]["jobType"] == "DAG"
    assert {k: task_run["job"]["facets"]["jobType"][k] for k in ("processingType", "integration", "jobType")} == {
        "processingType": "BATCH", "integration": "AGENTOPS", "jobType": "TASK"}
    assert task_run["job"]["facets"]["ownership"]["owners"] == [{"name": "data-engineer", "type": "MAINTAINER"}]
    assert unknown["job"]["facets"] == {}  # no spec: nothing said about the job

    for d in lines:  # openlineage-python's classes build and serialize what was exported (empty {} aside)
        assert pruned(Serde.to_dict(client_event(d))) == pruned(d)

    # the custom facet's _schemaURL is this repository's schema file, and each facet validates against it
    url, _, pointer = AGENTOPS_SCHEMA.partition("#")
    assert url.endswith("/" + SCHEMA_FILE)
    schema = json.loads((REPO / SCHEMA_FILE).read_text())
    target = schema
    for part in pointer.strip("/").split("/"):
        target = target[part]
    assert target["type"] == "object" and "kind" in target["properties"]
    for d in lines:
        facet = d["run"]["facets"]["agentops"]
        assert facet["_schemaURL"] == AGENTOPS_SCHEMA
        jsonschema.validate(facet, {**schema, "$ref": "#" + pointer})


def test_the_event_builder_is_reusable_without_a_workspace():
    from agentops.pipelines.spec import parse_spec

    spec = parse_spec(SPEC, "orders.yaml").spec
    ev = {"kind": "run", "pipeline": "orders", "run_id": "r9", "task": "clean", "state": "succeeded",
          "ts": "2026-11-25T07:00:00.000000+00:00", "logical_date": "2026-11-25"}
    d = to_openlineage(ev, "prod", spec)
    assert d["eventType"] == "COMPLETE" and d["job"]["name"] == "orders.clean" and d["job"]["namespace"] == "prod"
    assert set(d["job"]["facets"]) == {"jobType", "ownership"}  # no sql: and no description in this spec
    assert [i["name"] for i in d["inputs"]] == ["staging.orders"] and d["outputs"][0]["namespace"] == "prod"
