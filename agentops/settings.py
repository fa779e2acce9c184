"""The settings as the rest of agentops reads them: `ws.config`.

`agentops.config` validates agentops.toml with pydantic, which takes several times longer to import
than a short command such as `agentops mail send` takes to run. So the validated result is kept as
JSON under `.agent/run/` (see `agentops.cache`) and read back as plain `Section`s, with the same
attribute names as the pydantic models: `ws.config.mail.max_bytes`, `ws.config.agents[0].on_mail`.
A changed agentops.toml is validated again, so a mistake in it is an error on the next command.
"""

from __future__ import annotations

from types import SimpleNamespace

CACHE_FILE = "config.json"
CACHE_VERSION = 1
# fields holding a table whose keys the user names (kept as dicts: {key: {field: value, ...}}) and
# whose values hold only the fields the user set (an override changes just those)
MAPPINGS = frozenset({"anomaly_overrides", "connections"})


class Section(SimpleNamespace):
    """One validated table of agentops.toml (or one roster entry): its fields as attributes."""


def to_data(config) -> dict:
    """A validated `agentops.config.Config` as JSON-ready data (what the cache keeps)."""
    data = config.model_dump(mode="json")
    data["orbit"]["anomaly_overrides"] = {k: v.model_dump(mode="json", exclude_unset=True)
                                          for k, v in config.orbit.anomaly_overrides.items()}
    return data


def from_data(value, key: str = ""):
    """`to_data`'s output as Sections (the mapping fields stay dicts)."""
    if isinstance(value, dict):
        if key in MAPPINGS:
            return {k: dict(v) for k, v in value.items()}
        return Section(**{k: from_data(v, k) for k, v in value.items()})
    if isinstance(value, list):
        return [from_data(v) for v in value]
    return value


def load(ws) -> Section:
    """The workspace's validated settings (the defaults without an agentops.toml)."""
    from pathlib import Path

    from agentops.cache import cached, stat_key

    schema = Path(__file__).with_name("config.py")  # a changed schema (an upgrade) validates again

    def build() -> dict:
        from agentops.config import load_config

        return to_data(load_config(ws.config_path))

    return from_data(cached(ws, CACHE_FILE, CACHE_VERSION, lambda: [stat_key(ws.config_path), stat_key(schema)], build,
                            lambda data: data, lambda data: data))
