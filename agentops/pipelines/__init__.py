"""Pipelines (SPEC §6): specs as graphs — check, plan, lineage, backfill — rendered to documents
and Airflow DAGs by `agentops.render`.

    specs, problems = load_specs(ws)     # every spec that parses; every problem, located
    spec = find_spec(ws, "orders_daily")  # NotFoundError when there is none
"""

from agentops.pipelines.spec import (PipelineSpec, Problem, check_one, find_spec, load_specs, parse_spec,
                                     spec_files)

__all__ = ["PipelineSpec", "Problem", "check_one", "find_spec", "load_specs", "parse_spec", "spec_files"]
