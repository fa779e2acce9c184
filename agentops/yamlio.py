"""YAML for what users and agents write: `yaml.safe_load` semantics, located errors, no alias bombs."""

from __future__ import annotations

from typing import Any

import yaml

from agentops.errors import ValidationError

MAX_ALIASES = 100
MAX_DOCUMENT_BYTES = 5 * 1024 * 1024


class _BoundedLoader(yaml.SafeLoader):
    """A SafeLoader that refuses documents with more than MAX_ALIASES alias references.

    A 'billion laughs' document is tiny as text but explodes when anything walks it; refusing
    many aliases up front keeps every later step (validation, JSON, templates) cheap.
    """

    def __init__(self, stream):
        super().__init__(stream)
        self._aliases = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise yaml.constructor.ConstructorError(
                    None, None, f"more than {MAX_ALIASES} YAML aliases (an alias bomb?)", mark
                )
        return super().compose_node(parent, index)


def load(text: str, source: str, *, line_offset: int = 0) -> Any:
    """Parse YAML text; raise ValidationError naming `source:line` on any problem.

    `line_offset` is added to reported lines (frontmatter starts after the `---` line).
    """
    if len(text.encode("utf-8", "surrogatepass")) > MAX_DOCUMENT_BYTES:
        raise ValidationError(f"{source}: YAML document is larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        return yaml.load(text, Loader=_BoundedLoader)  # noqa: S506 - _BoundedLoader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1 + line_offset}" if mark else source
        problem = exc.problem or exc.context or "invalid YAML"
        raise ValidationError(f"{where}: YAML error: {problem}", hint="fix the YAML syntax") from None
    except yaml.YAMLError as exc:
        raise ValidationError(f"{source}: YAML error: {exc}", hint="fix the YAML syntax") from None
    except RecursionError:
        raise ValidationError(f"{source}: YAML nesting is too deep") from None
