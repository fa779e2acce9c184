"""OpenLineage as it happens (SPEC §12): the runner sends each run event it records through
openlineage-python's client and transports, configured by `[orbit.openlineage]` in agentops.toml:

    [orbit.openlineage]
    transport = "http"                 # http | file | console
    url = "http://localhost:5000"      # http: Marquez or any OpenLineage server
    api_key_env = "OPENLINEAGE_API_KEY"  # http: the key is read from this environment variable
    # path = ".agent/data/openlineage.jsonl"   # file
    # namespace = "agentops"

The event is the Orbit export's RunEvent (`agentops.orbit.openlineage.to_openlineage`: state as
eventType, `parent` (with its `root`), `nominalTime` (the partition's interval: its logical date and
the next partition's), `errorMessage` and `agentops` run facets; `jobType`, `ownership`, `sql` and
`documentation` job facets from the spec) with a `processing_engine` run facet (agentops and the
client's version) and the stage's input and output datasets, each with a `schema` facet when its
columns are known:

- an output: the columns agentops measured writing it (and, on COMPLETE, an `outputStatistics`
  facet with the rows and bytes it measured, when the stage has that one output);
- an input (`known_schema`): the columns measured when an earlier stage of this run wrote it, else
  its schema as Orbit last recorded it (`schemas`: what `quality run`/`dataset profile` and the
  checks after each stage read from the data), else the schema the spec declares (a `schema`
  check's `types`, or its `columns` without types).

A transport that fails never fails the run: the error comes back for the runner to report.
"""

from __future__ import annotations

import os
from typing import Any

from agentops.errors import ValidationError

SCHEMA_FACET = "https://openlineage.io/spec/facets/1-1-1/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet"


class Emitter:
    def __init__(self, client, namespace: str):
        self.client, self.namespace = client, namespace

    @classmethod
    def from_settings(cls, ws) -> "Emitter | None":
        """The workspace's emitter, or None when `[orbit.openlineage]` names no transport."""
        cfg = getattr(getattr(ws.config, "orbit", None), "openlineage", None)
        if cfg is None or not getattr(cfg, "transport", None):
            return None
        from openlineage.client import OpenLineageClient

        if cfg.transport == "http":
            from openlineage.client.transport.http import ApiKeyTokenProvider, HttpConfig, HttpTransport

            auth = None
            if cfg.api_key_env:
                key = os.environ.get(cfg.api_key_env)
                if not key:
                    raise ValidationError(f"[orbit.openlineage] api_key_env: ${cfg.api_key_env} is not set",
                                          hint=f"export {cfg.api_key_env}=... (the key never goes in the file)")
                auth = ApiKeyTokenProvider({"apiKey": key})
            config = HttpConfig(url=cfg.url, endpoint=cfg.endpoint, timeout=cfg.timeout,
                                retry={"total": 2, "backoff_factor": 0.3, "status_forcelist": [500, 502, 503, 504],
                                       "allowed_methods": ["HEAD", "POST"]},
                                **({"auth": auth} if auth else {}))
            transport = HttpTransport(config)
        elif cfg.transport == "file":
            from openlineage.client.transport.file import FileConfig, FileTransport

            path = cfg.path if os.path.isabs(cfg.path) else str(ws.root / cfg.path)
            transport = FileTransport(FileConfig(log_file_path=path, append=True))
        else:
            from openlineage.client.transport.console import ConsoleConfig, ConsoleTransport

            transport = ConsoleTransport(ConsoleConfig())
        return cls(OpenLineageClient(transport=transport), cfg.namespace)

    def emit(self, event: dict, inputs: list[dict] | None = None, outputs: list[dict] | None = None, *,
             spec=None, job: dict | None = None) -> str | None:
        """Send one Orbit `run` event (as logged) with its datasets; `spec` gives the job facets and
        the nominal end, `job` (the task's `job` event) the output statistics. Returns None, or the
        error text."""
        try:
            self.client.emit(build(event, self.namespace, inputs or [], outputs or [], spec=spec, job=job))
        except Exception as exc:  # noqa: BLE001 - lineage never fails a run
            return f"OpenLineage: {type(exc).__name__}: {exc}"
        return None


def dataset(ws, spec, name: str, partition: str, schema: list[tuple[str, str]] | None = None) -> dict:
    """A dataset as OpenLineage names it: files by their path (namespace `file`), tables by their
    connection (`duckdb:warehouse`) and table."""
    from agentops.pipelines.outputs import location_of

    loc = location_of(spec, name)
    if loc is None:
        out = {"namespace": "duckdb:warehouse", "name": name}
    elif loc.kind == "table":  # the connection's kind when agentops.toml names it: sqlite:app, postgres:shop
        from agentops.pipelines.sqltable import connection_kind

        out = {"namespace": f"{connection_kind(ws, loc.connection) or 'db'}:{loc.connection}", "name": loc.table}
    else:
        path = loc.path.replace("{partition}", partition)
        out = {"namespace": "file", "name": path if os.path.isabs(path) else str(ws.root / path)}
    if schema:
        out["schema"] = schema
    return out


def known_schema(orbit, spec, name: str, measured: dict | None = None) -> list[tuple[str, str]] | None:
    """An input's columns, as known before reading it (see the module docstring), or None."""
    import json

    if measured and measured.get(name):
        return [tuple(c) for c in measured[name]]
    row = orbit.db.conn.execute("SELECT columns FROM schemas WHERE dataset = ?", (name,)).fetchone()
    if row:
        return list(json.loads(row[0]).items())
    for q in spec.checks_for(name):
        if q.check == "schema":
            return [*q.types.items(), *((c, None) for c in q.columns if c not in q.types)]
    return None


def build(ev: dict, namespace: str, inputs: list[dict], outputs: list[dict], *, spec=None, job: dict | None = None):
    """The Orbit export's RunEvent dict as the client's RunEvent, with the datasets."""
    from openlineage.client import __version__ as client_version
    from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
    from openlineage.client.facet_v2 import output_statistics_output_dataset as stats, processing_engine_run
    from openlineage.client.facet_v2 import schema_dataset

    from agentops import __version__
    from agentops.orbit.openlineage import to_openlineage

    d = to_openlineage({**ev, "ts": ev.get("ts")}, namespace, spec)

    def facets(ds: dict[str, Any]) -> dict:
        if not ds.get("schema"):
            return {}
        return {"schema": schema_dataset.SchemaDatasetFacet(
            fields=[schema_dataset.SchemaDatasetFacetFields(name=c, type=t) for c, t in ds["schema"]])}

    def output_facets(ds: dict[str, Any]) -> dict:
        if not job or len(outputs) != 1 or d["eventType"] != "COMPLETE" or (job.get("rows_out") is None
                                                                          and job.get("bytes") is None):
            return {}
        return {"outputStatistics": stats.OutputStatisticsOutputDatasetFacet(rowCount=job.get("rows_out"),
                                                                             size=job.get("bytes"))}

    run_facets = dict(d["run"].get("facets") or {})
    run_facets["processing_engine"] = processing_engine_run.ProcessingEngineRunFacet(
        version=__version__, name="agentops", openlineageAdapterVersion=client_version)
    return RunEvent(
        eventType=RunState(d["eventType"]), eventTime=d["eventTime"], producer=d["producer"],
        run=Run(runId=d["run"]["runId"], facets=run_facets),
        job=Job(namespace=d["job"]["namespace"], name=d["job"]["name"], facets=d["job"].get("facets") or {}),
        inputs=[InputDataset(namespace=i["namespace"], name=i["name"], facets=facets(i)) for i in inputs],
        outputs=[OutputDataset(namespace=o["namespace"], name=o["name"], facets=facets(o),
                               outputFacets=output_facets(o)) for o in outputs])
