"""`agentops pipeline list`: a row per spec, cached in `.agent/run/pipelines.json` until a spec file
changes (see agentops.cache), so that listing imports neither PyYAML nor the spec models."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_FILE = "pipelines.json"
CACHE_VERSION = 1
# spec.SPEC_SUFFIXES: importing agentops.pipelines.spec would cost what the cache saves
SPEC_SUFFIXES = (".yaml", ".yml")


def listing(ws) -> tuple[list[dict], list[dict]]:
    """A row per spec that parses (name, owner, processing, schedule, stages, file) and the problems
    (`Problem.as_dict()`) of those that do not: `load_specs(ws, check=False)`, from the cache while no
    spec file (nor the spec module) changed since it was written."""
    from agentops.cache import cached, folder_sources, stat_key

    def sources() -> list:
        folder = ws.pipelines_dir  # resolved: a .agent/data swapped for a link reads as a change
        return [os.path.realpath(folder), stat_key(Path(__file__).with_name("spec.py")),
                *folder_sources(folder, SPEC_SUFFIXES)]

    def build() -> dict:
        from agentops.pipelines.spec import load_specs

        specs, problems = load_specs(ws, check=False)
        return {"rows": [{"name": s.name, "owner": s.owner, "processing": s.processing, "schedule": s.schedule,
                          "stages": len(s.stages), "file": s.source_file} for s in specs],
                "problems": [p.as_dict() for p in problems]}

    data = cached(ws, CACHE_FILE, CACHE_VERSION, sources, build, lambda value: value, lambda value: value)
    return data["rows"], data["problems"]
