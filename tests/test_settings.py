"""`ws.config`: agentops.toml validated by pydantic once, then read from .agent/run/config.json
(agentops.settings) until the file changes."""

from __future__ import annotations

import json
import os
import time

import pytest

from agentops.errors import WorkspaceError
from agentops.settings import CACHE_FILE, Section, from_data, to_data
from agentops.workspace import Workspace

TOML = """
[[agents]]
name = "dana"
role = "Data Engineer"
on_mail = ["my-agent", "{prompt_file}"]

[mail]
max_bytes = 2048

[orbit.anomaly]
threshold = 2.5

[orbit.anomaly_overrides."orders.row_count"]
window = 7
"""


def _age(path, seconds=5):
    t = time.time() - seconds
    os.utime(path, (t, t))


def _fields(model_cls, section):
    """Every field of a pydantic model is an attribute of its Section (the view cannot drift)."""
    from pydantic import BaseModel

    assert set(vars(section)) == set(model_cls.model_fields), model_cls
    for name, info in model_cls.model_fields.items():
        t = info.annotation
        if isinstance(t, type) and issubclass(t, BaseModel):
            _fields(t, getattr(section, name))


def test_cached_settings_are_the_validated_ones(ws):
    from agentops.config import Config, load_config

    ws.config_path.write_text(TOML)
    _age(ws.config_path)
    fresh = Workspace(ws.root).config
    assert (ws.run_dir / CACHE_FILE).is_file()
    cached = Workspace(ws.root).config
    assert cached == fresh == from_data(to_data(load_config(ws.config_path)))
    assert isinstance(cached, Section) and cached.mail.max_bytes == 2048
    assert cached.agents[0].on_mail == ["my-agent", "{prompt_file}"]
    assert cached.orbit.anomaly.threshold == 2.5 and cached.orbit.anomaly.window == 14
    assert cached.orbit.anomaly_overrides == {"orders.row_count": {"window": 7}}  # only what it sets
    _fields(Config, cached)


def test_the_cache_is_read_not_revalidated(ws, monkeypatch):
    _age(ws.config_path)
    Workspace(ws.root).config
    data = json.loads((ws.run_dir / CACHE_FILE).read_text())
    data["value"]["mail"]["max_bytes"] = 12345  # what only the cache says
    (ws.run_dir / CACHE_FILE).write_text(json.dumps(data))
    assert Workspace(ws.root).config.mail.max_bytes == 12345


def test_a_changed_file_is_validated_again(ws):
    _age(ws.config_path)
    assert Workspace(ws.root).config.mail.max_bytes == 10 * 1024 * 1024
    ws.config_path.write_text("[mail]\nmax_bytes = 100\n")
    _age(ws.config_path, 3)
    assert Workspace(ws.root).config.mail.max_bytes == 100
    ws.config_path.write_text("[mail]\nmax_bytes = -1\n")
    _age(ws.config_path, 2)
    with pytest.raises(WorkspaceError, match=r"agentops.toml:mail.max_bytes: Input should be greater than 0"):
        Workspace(ws.root).config
    ws.config_path.unlink()
    assert Workspace(ws.root).config.mail.max_bytes == 10 * 1024 * 1024  # the defaults


def test_a_fresh_file_is_not_trusted_to_the_cache(ws):
    ws.config_path.write_text("[mail]\nmax_bytes = 100\n")  # changed this second: timestamps are coarse
    (ws.run_dir / CACHE_FILE).unlink(missing_ok=True)
    assert Workspace(ws.root).config.mail.max_bytes == 100
    assert not (ws.run_dir / CACHE_FILE).exists()


def test_an_unsafe_run_folder_is_neither_read_nor_written(ws, tmp_path):
    import shutil

    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.rmtree(ws.run_dir)
    ws.run_dir.symlink_to(outside)
    _age(ws.config_path)
    assert Workspace(ws.root).config.mail.max_bytes == 10 * 1024 * 1024
    assert list(outside.iterdir()) == []
