"""Where the packaged roles and templates are: inside the wheel, or at the top of a source checkout."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def packaged(name: str) -> Path:
    """The packaged `roles` or `templates` folder.

    A wheel carries them as `agentops/_data/<name>`; a source checkout (and an editable install)
    has the one copy at the top of the repository.
    """
    inside = _HERE / "_data" / name
    if inside.is_dir():
        return inside
    return _HERE.parent / name


def example_pipelines() -> Path:
    """The example pipeline specs: in the wheel, or the repo's own `.agent/data/pipelines/`."""
    inside = _HERE / "_data" / "pipelines"
    if inside.is_dir():
        return inside
    return _HERE.parent / ".agent" / "data" / "pipelines"
