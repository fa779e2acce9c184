"""Pipelines (SPEC §6): specs as graphs — check, plan, lineage, backfill — rendered to documents
and Airflow DAGs by `agentops.render`.

    specs, problems = load_specs(ws)     # every spec that parses; every problem, located
    spec = find_spec(ws, "orders_daily")  # NotFoundError when there is none

The names below load `agentops.pipelines.spec` (pydantic models) on first use, so that a module of
this package that needs no spec (`listing`, `pipeline list` from its cache) does not pay for it.
"""

__all__ = ["PipelineSpec", "Problem", "check_one", "find_spec", "load_specs", "parse_spec", "spec_files"]


def __getattr__(name: str):
    if name not in __all__:
        raise AttributeError(f"module 'agentops.pipelines' has no attribute {name!r}")
    from agentops.pipelines import spec

    return getattr(spec, name)
