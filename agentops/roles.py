"""Roles: `roles/*.agent.md` files in the VS Code custom-agent format, parsed, checked and graphed.

A workspace's roles, parsed and validated, are cached in `.agent/run/roles.json` until a role file
changes (`workspace_roles`; see agentops.cache): a command that only reads them does not parse YAML
or build the pydantic models' validators (`defer_build`) to do so."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError as PydanticValidationError, field_validator

from agentops import yamlio
from agentops.addresses import slug
from agentops.errors import NotFoundError, ValidationError, format_pydantic_errors

ROLE_SUFFIX = ".agent.md"


def _str_or_list(value):
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise ValueError("must be a string or a list of strings")


class Handoff(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, defer_build=True)

    label: str = Field(min_length=1)
    agent: str = Field(min_length=1)
    prompt: str = ""
    send: bool = False


class Role(BaseModel):
    """One role file. Unknown frontmatter fields are kept (`model_extra`); hyphenated keys map to
    underscores (`argument-hint` -> `argument_hint`)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, defer_build=True)

    name: str = Field(min_length=1)
    description: str = ""
    argument_hint: str | None = Field(None, alias="argument-hint")
    model: list[str] = []
    tools: list[str] = []
    agents: list[str] = []
    handoffs: list[Handoff] = []
    body: str = ""
    path: Path | None = Field(None, exclude=True)

    @field_validator("model", "tools", "agents", mode="before")
    @classmethod
    def _coerce(cls, value):
        return _str_or_list(value)

    @property
    def slug(self) -> str:
        return slug(self.name)

    def frontmatter(self) -> dict[str, Any]:
        """The frontmatter as written (hyphenated keys, unknown fields kept)."""
        return self.model_dump(by_alias=True, exclude={"body", "path"}, exclude_none=True)


def split_frontmatter(text: str, source: str) -> tuple[str, str, int]:
    """Return (yaml_text, body, first_yaml_line_number-1)."""
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        raise ValidationError(f"{source}:1: no YAML frontmatter (the file must start with a '---' line)")
    for i in range(1, len(lines)):
        if lines[i].strip() in ("---", "..."):
            return "".join(lines[1:i]), "".join(lines[i + 1 :]), 1
    raise ValidationError(f"{source}:1: frontmatter is not closed (add a '---' line after it)")


def parse_role(text: str, source: str, path: Path | None = None) -> Role:
    yaml_text, body, offset = split_frontmatter(text, source)
    data = yamlio.load(yaml_text, source, line_offset=offset)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValidationError(f"{source}:2: frontmatter must be a mapping of fields, got {type(data).__name__}")
    try:
        role = Role.model_validate({**data, "body": body.lstrip("\n")})
    except PydanticValidationError as exc:
        lines = format_pydantic_errors(exc, source)
        raise ValidationError(lines[0], problems=lines) from None
    role.path = path
    return role


def load_role(path: Path, root: Path | None = None) -> Role:
    source = str(path.relative_to(root)) if root else path.name
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError(f"{source}: file: not valid UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset "
                              f"{exc.start}); save it as UTF-8") from None
    return parse_role(text, source, path)


def role_files(roles_dir: Path) -> list[Path]:
    if not roles_dir.is_dir():
        return []
    return sorted(p for p in roles_dir.glob(f"*{ROLE_SUFFIX}") if p.is_file() and not p.is_symlink())


@dataclass(frozen=True)
class Problem:
    file: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.message}"


def load_roles(roles_dir: Path, root: Path | None = None) -> tuple[list[Role], list[Problem]]:
    """Every role that parses, and a Problem for every file that does not."""
    roles, problems = [], []
    for path in role_files(roles_dir):
        source = str(path.relative_to(root)) if root else path.name
        try:
            roles.append(load_role(path, root))
        except ValidationError as exc:
            for line in exc.problems or [exc.message]:
                rest = line[len(source) + 1 :] if line.startswith(source + ":") else line
                field, sep, message = rest.partition(": ")
                if not sep:  # a message naming no field
                    field, message = "file", rest.strip()
                problems.append(Problem(source, field.strip() or "frontmatter", message))
    return roles, problems


# The roles of a workspace, cached under .agent/run/ (see agentops.cache) -------------------------
CACHE_FILE = "roles.json"
CACHE_VERSION = 1


def workspace_roles(ws) -> tuple[list[Role], list[Problem]]:
    """`load_roles` of the workspace's role folder (`ws.roles_folder()`), from the cache while no
    role file (nor this module) changed since it was written. Cached roles were validated when
    written, so they are read back with `model_construct`, without validating them again."""
    from agentops.cache import cached, folder_sources, stat_key

    roles_dir = ws.roles_folder()
    root = ws.root if roles_dir == ws.roles_dir else roles_dir

    def sources() -> list:
        return [str(roles_dir), stat_key(Path(__file__)), *folder_sources(roles_dir, ROLE_SUFFIX)]

    def encode(value) -> dict:
        roles, problems = value
        if any("_fields_set" in r.model_extra or any("_fields_set" in h.model_extra for h in r.handoffs)
               for r in roles):
            raise ValueError("model_construct would take a field named _fields_set for its own argument")
        return {"roles": [{**r.model_dump(), "path": str(r.path) if r.path else None} for r in roles],
                "problems": [[p.file, p.field, p.message] for p in problems]}

    def decode(data: dict) -> tuple[list[Role], list[Problem]]:
        roles = []
        for r in data["roles"]:
            handoffs = [Handoff.model_construct(**h) for h in r["handoffs"]]
            path = Path(r["path"]) if r["path"] else None
            roles.append(Role.model_construct(**{**r, "handoffs": handoffs, "path": path}))
        return roles, [Problem(*p) for p in data["problems"]]

    return cached(ws, CACHE_FILE, CACHE_VERSION, sources, lambda: load_roles(roles_dir, root), encode, decode)


def check_roles(roles: list[Role], root: Path | None = None, parse_problems: list[Problem] = ()) -> list[Problem]:
    """Every problem across the role set: parse errors, handoff targets, `agents:`, duplicates."""
    problems = list(parse_problems)
    by_slug: dict[str, Role] = {}
    for role in roles:
        src = _source(role, root)
        if role.slug in by_slug:
            other = _source(by_slug[role.slug], root)
            problems.append(Problem(src, "name", f"'{role.name}' has the same address '{role.slug}' as {other}"))
        else:
            by_slug[role.slug] = role
        if role.slug in ("all", "user", "postmaster"):
            problems.append(Problem(src, "name", f"'{role.name}' is a reserved address; rename the role"))
    known = ", ".join(sorted({r.name for r in roles})) or "none"  # a duplicate role is named once
    for role in roles:
        src = _source(role, root)
        for i, ref in enumerate(role.agents):
            if ref != "*" and slug(ref) not in by_slug:
                problems.append(Problem(src, f"agents[{i}]", f"unknown role '{ref}' (known: {known})"))
        labels = set()
        for i, h in enumerate(role.handoffs):
            if slug(h.agent) not in by_slug:
                problems.append(Problem(src, f"handoffs[{i}].agent", f"unknown role '{h.agent}' (known: {known})"))
            if h.label in labels:
                problems.append(Problem(src, f"handoffs[{i}].label", f"duplicate label '{h.label}'"))
            labels.add(h.label)
    return problems


def shared_role_problems(roles: list[Role], members, root: Path | None = None) -> list[Problem]:
    """A role with several members whose body still tells its reader that the role's address or
    inbox is theirs (`your address is `data-engineer``, `.agent/email/inbox/data-engineer/`), as role
    files written before the roster did: each member has an address of their own, and the role's
    address is their shared queue. `members(role_name)` -> the role's agents."""
    import re

    out = []
    for role in roles:
        names = members(role.name)
        if len(names) < 2:
            continue
        said = re.search(rf"address is `?{re.escape(role.slug)}\b|\.agent/email/inbox/{re.escape(role.slug)}/"
                         rf"|mail inbox {re.escape(role.slug)}\b", role.body, re.IGNORECASE)
        if said:
            out.append(Problem(_source(role, root), "body",
                               f"says '{said.group(0)}', but {len(names)} agents share this role "
                               f"({', '.join(names)}): each has their own address, and '{role.slug}' is their "
                               "shared queue; refer to the workspace protocol instead (see the packaged role files)"))
    return out


def _source(role: Role, root: Path | None) -> str:
    if role.path is None:
        return role.name
    return str(role.path.relative_to(root)) if root else role.path.name


def find_role(roles: list[Role], name: str) -> Role:
    wanted = slug(name)
    for role in roles:
        if role.slug == wanted:
            return role
    known = ", ".join(sorted({r.name for r in roles})) or "none"  # a duplicate role is named once
    raise NotFoundError(f"no role named '{name}' (known: {known})", hint="see `agentops roles list`")


def role_graph(roles: list[Role]):
    """A networkx MultiDiGraph: nodes are role names, edges `kind=handoff|agents`."""
    import networkx as nx

    g = nx.MultiDiGraph()
    names = {r.slug: r.name for r in roles}
    for r in roles:
        g.add_node(r.name, description=r.description)
    for r in roles:
        for h in r.handoffs:
            g.add_edge(r.name, names.get(slug(h.agent), h.agent), kind="handoff", label=h.label, send=h.send)
        for a in r.agents:
            if a != "*":
                g.add_edge(r.name, names.get(slug(a), a), kind="agents", label="")
    return g


def graph_report(roles: list[Role]) -> dict[str, Any]:
    """Edges, roles nobody hands off to, and handoff cycles."""
    import networkx as nx

    g = role_graph(roles)
    handoffs = nx.DiGraph((u, v) for u, v, d in g.edges(data=True) if d["kind"] == "handoff")
    handoffs.add_nodes_from(g.nodes)
    unreachable = sorted(n for n in g.nodes if g.in_degree(n) == 0)
    cycles = sorted(_rotate(c) for c in nx.simple_cycles(handoffs))
    handoff_pairs = {(u, v) for u, v, d in g.edges(data=True) if d["kind"] == "handoff"}
    edges = [{"from": u, "to": v, "kind": d["kind"], "label": d["label"]} for u, v, d in g.edges(data=True)
             if d["kind"] == "handoff" or (u, v) not in handoff_pairs]
    return {"roles": sorted(g.nodes), "edges": edges, "unreachable": unreachable, "handoff_cycles": cycles}


def _rotate(cycle: list[str]) -> list[str]:
    """A cycle written from its smallest node, so the same cycle always reads the same."""
    i = cycle.index(min(cycle))
    return cycle[i:] + cycle[:i]


def graph_mermaid(report: dict[str, Any]) -> str:
    ids = {name: slug(name).replace("-", "_") or "role" for name in report["roles"]}
    out = ["flowchart LR"]
    for name in report["roles"]:
        out.append(f'  {ids[name]}["{name}"]')
    for e in report["edges"]:
        a, b = ids.get(e["from"], e["from"]), ids.get(e["to"], slug(e["to"]).replace("-", "_"))
        if e["kind"] == "handoff":
            label = e["label"].replace('"', "'")
            out.append(f'  {a} -->|"{label}"| {b}')
        else:
            out.append(f"  {a} -.-> {b}")
    return "\n".join(out) + "\n"


def graph_dot(report: dict[str, Any]) -> str:
    out = ["digraph roles {", "  rankdir=LR;"]
    for name in report["roles"]:
        out.append(f'  "{name}";')
    for e in report["edges"]:
        style = f'label="{e["label"]}"' if e["kind"] == "handoff" else "style=dashed"
        out.append(f'  "{e["from"]}" -> "{e["to"]}" [{style}];')
    out.append("}")
    return "\n".join(out) + "\n"
