"""YAML for what users and agents write: `yaml.safe_load` semantics, located errors, no alias bombs."""

from __future__ import annotations

from typing import Any

from agentops.errors import ValidationError

MAX_NODES = 200_000
MAX_DOCUMENT_BYTES = 5 * 1024 * 1024


def _expanded_size(node, memo: dict[int, int], active: set[int]) -> int:
    """How many nodes the document has once every alias is expanded (cycles count once)."""
    import yaml  # imported on first use: commands that read no YAML (status from cache) skip ~45 ms

    key = id(node)
    if key in memo:
        return memo[key]
    if key in active:
        return 1
    active.add(key)
    size = 1
    if isinstance(node, yaml.SequenceNode):
        for child in node.value:
            size += _expanded_size(child, memo, active)
            if size > MAX_NODES:
                break
    elif isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            size += _expanded_size(k, memo, active) + _expanded_size(v, memo, active)
            if size > MAX_NODES:
                break
    active.discard(key)
    memo[key] = size
    return size


def load(text: str, source: str, *, line_offset: int = 0) -> Any:
    """Parse YAML text; raise ValidationError naming `source:line` on any problem.

    `line_offset` is added to reported lines (frontmatter starts after the `---` line). A document
    that expands to more than MAX_NODES nodes through aliases (a 'billion laughs' bomb) is refused
    before it is built, so nothing later (validation, JSON, templates) ever walks it.
    """
    import yaml

    if len(text.encode("utf-8", "surrogatepass")) > MAX_DOCUMENT_BYTES:
        raise ValidationError(f"{source}: YAML document is larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as exc:  # a control character is refused while reading the stream
        raise ValidationError(f"{source}: YAML error: {exc}".replace("\n", " "), hint="remove the character") from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}, set()) > MAX_NODES:
            line = node.start_mark.line + 1 + line_offset
            raise ValidationError(f"{source}:{line}: YAML expands to more than {MAX_NODES} nodes through aliases"
                                  " (an alias bomb?)", hint="write the values out instead of nesting aliases")
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1 + line_offset}" if mark else source
        problem = exc.problem or exc.context or "invalid YAML"
        raise ValidationError(f"{where}: YAML error: {problem}", hint="fix the YAML syntax") from None
    except yaml.YAMLError as exc:
        raise ValidationError(f"{source}: YAML error: {exc}".replace("\n", " "), hint="fix the YAML syntax") from None
    except RecursionError:
        raise ValidationError(f"{source}: YAML nesting is too deep") from None
    finally:
        loader.dispose()
