"""The one Jinja2 environment (STYLE.md): the workspace's `templates/` ahead of the packaged ones,
`StrictUndefined` on purpose, our filters registered here, and a sandbox.

Everything renders in `jinja2.sandbox.SandboxedEnvironment`: templates may come from a user's or an
agent's `templates/` folder (template text an agent wrote lives there, and the sandbox refuses
`__class__`, `__mro__` and friends in it), and agent-written text (spec descriptions, mail bodies,
handoff prompts) goes into them as context: data, never parsed as a template.

    render(ws, "design.md.j2", spec=spec) -> str
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from agentops.errors import NotFoundError, ValidationError


def _pyrepr(value: Any) -> str:
    """A Python literal for generated code: strings, numbers, lists, dicts, None — never code."""
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        raise ValueError("a non-finite number has no Python literal")
    if isinstance(value, (str, int, float, bool, type(None))):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_pyrepr(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_pyrepr(str(k))}: {_pyrepr(v)}" for k, v in value.items()) + "}"
    return repr(str(value))


_MERMAID_ID = re.compile(r"[^A-Za-z0-9_]")


def _mermaid_id(value: Any) -> str:
    """A safe mermaid node id (letters, digits, _), unique enough for stage/dataset names."""
    text = str(value)
    return "n_" + _MERMAID_ID.sub(lambda m: f"_{ord(m.group()):x}_", text)


def _mermaid_label(value: Any) -> str:
    """Text inside a mermaid ["..."] label: quotes and brackets as entities, one line."""
    text = " ".join(str(value).split())
    return (text.replace("&", "&amp;").replace('"', "#quot;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("[", "&#91;").replace("]", "&#93;").replace("{", "&#123;").replace("}", "&#125;"))


def _md_cell(value: Any) -> str:
    """Text inside a Markdown table cell: one line, pipes escaped."""
    if value is None:
        return ""
    return " ".join(str(value).split()).replace("|", "\\|")


def _duration(value: Any) -> str:
    from agentops.pipelines.spec import format_duration

    return format_duration(value)


def _tojson(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, indent=indent, default=str, ensure_ascii=False, sort_keys=False)


def _code_comment(value: Any) -> str:
    """Text safe inside a `#` comment of generated code: one line."""
    return " ".join(str(value).split())


FILTERS = {
    "pyrepr": _pyrepr,
    "mermaid_id": _mermaid_id,
    "mermaid_label": _mermaid_label,
    "md_cell": _md_cell,
    "duration": _duration,
    "tojson_pretty": _tojson,
    "comment": _code_comment,
}


@lru_cache(maxsize=32)
def _environment(templates_dir: str, packaged_dir: str):
    from jinja2 import ChoiceLoader, FileSystemLoader, StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(
        loader=ChoiceLoader([FileSystemLoader(templates_dir), FileSystemLoader(packaged_dir)]),
        undefined=StrictUndefined,
        autoescape=False,  # Markdown, Python and mail are not HTML; filters above escape per target
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(FILTERS)
    return env


def environment(ws):
    """The environment for `ws` (cached per workspace templates folder)."""
    from agentops.resources import packaged

    return _environment(str(ws.templates_dir), str(packaged("templates")))


def template_names(ws) -> list[str]:
    """Every template a workspace can render (its own and the packaged ones)."""
    return sorted(n for n in environment(ws).list_templates() if n.endswith(".j2"))


def render(ws, template_name: str, **context: Any) -> str:
    """Render a template by file name. Raise NotFoundError for an unknown template and
    ValidationError (naming the template and line) for a template error or a missing variable."""
    from jinja2 import TemplateNotFound, TemplateSyntaxError, UndefinedError
    from jinja2.exceptions import SecurityError, TemplateError

    env = environment(ws)
    try:
        template = env.get_template(template_name)
    except TemplateNotFound:
        known = ", ".join(template_names(ws)) or "none"
        raise NotFoundError(f"no template '{template_name}' (known: {known})",
                            hint=f"add it to {ws.templates_dir}") from None
    except TemplateSyntaxError as exc:
        raise ValidationError(f"{exc.filename or template_name}:{exc.lineno}: template syntax error: {exc.message}",
                              hint="fix the template") from None
    try:
        return template.render(**context)
    except SecurityError as exc:
        raise ValidationError(f"{template_name}: refused by the template sandbox: {exc}") from None
    except UndefinedError as exc:
        raise ValidationError(f"{template_name}:{_line(exc, template)}: {exc.message}",
                              hint="the template uses a variable the renderer does not provide") from None
    except TemplateError as exc:
        raise ValidationError(f"{template_name}: template error: {exc}") from None


def _line(exc: Exception, template) -> int | str:
    import traceback

    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename == template.filename or frame.filename.endswith(".j2"):
            return frame.lineno or "?"
    return "?"
