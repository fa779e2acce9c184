"""`agentops.toml`: the roster and the settings, validated by pydantic.

Every section is optional; defaults work without the file.
"""

from __future__ import annotations

import string
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import (BaseModel, ConfigDict, Field, ValidationError as PydanticValidationError, field_validator,
                      model_validator)

from agentops.errors import WorkspaceError, format_pydantic_errors

PLACEHOLDERS = frozenset({"agent", "prompt_file", "message_file"})


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MailSettings(_Section):
    max_bytes: int = Field(10 * 1024 * 1024, gt=0, description="larger drop files are dead-lettered")
    settle_seconds: float = Field(0.01, ge=0, description="wait after the writer closes a file")


class DaemonSettings(_Section):
    rescan_seconds: float = Field(30.0, gt=0, description="periodic rescan for missed watcher events")


class AnomalySettings(_Section):
    window: int = Field(14, ge=2, description="points of history the z-score looks at")
    min_points: int = Field(4, ge=2, description="no alarm before this many points")
    threshold: float = Field(3.0, gt=0, description="|z| at or above this is an anomaly")
    direction: Literal["both", "spike", "drop"] = "both"
    min_relative_change: float = Field(0.1, ge=0, description="ignore moves smaller than this share of the mean")
    min_duration_change_s: float = Field(1.0, ge=0, description="a duration_s series ignores moves shorter than this")
    min_null_fraction_change: float = Field(0.01, ge=0, description="a null_fraction series ignores moves smaller "
                                            "than this")


class OpenLineageSettings(_Section):
    """`[orbit.openlineage]`: where the runner sends OpenLineage run events as they happen."""

    transport: Literal["http", "file", "console"] | None = Field(None, description="none: nothing is sent")
    url: str | None = Field(None, description="http: the server's base URL")
    endpoint: str = Field("api/v1/lineage", description="http: the path events are POSTed to")
    api_key_env: str | None = Field(None, pattern=r"^[A-Z_][A-Z0-9_]*$",
                                    description="http: the environment variable holding the API key")
    path: str | None = Field(None, description="file: the JSONL file events are appended to")
    namespace: str = Field("agentops", min_length=1, description="the OpenLineage job namespace")
    timeout: float = Field(5.0, gt=0, description="http: seconds per request")

    @field_validator("path")
    @classmethod
    def _path(cls, v):
        if v is not None and not v.strip():
            raise ValueError("path is empty")
        return v

    def model_post_init(self, _context) -> None:
        if self.transport == "http" and not self.url:
            raise ValueError("transport 'http' needs url")
        if self.transport == "file" and not self.path:
            raise ValueError("transport 'file' needs path")


class OrbitSettings(_Section):
    anomaly: AnomalySettings = AnomalySettings()
    openlineage: OpenLineageSettings = OpenLineageSettings()
    # per pipeline, per "pipeline.metric" or per "pipeline.dataset.metric" overrides
    anomaly_overrides: dict[str, AnomalySettings] = {}


class DispatchSettings(_Section):
    max_concurrent: int = Field(2, ge=1, description="agent runs at once, across all agents")
    timeout_seconds: float = Field(900.0, gt=0, description="a run is killed (with its children) after this")
    retries: int = Field(3, ge=0, description="retries after a failed run before giving up")
    backoff_seconds: float = Field(10.0, ge=0, description="first retry delay; doubles each time, with jitter")
    coalesce_seconds: float = Field(2.0, ge=0, description="mail arriving within this window wakes the agent once")
    keep_runs: int = Field(50, ge=1, description="prompt files and logs kept per agent; older ones are deleted")


ENV_NAME = r"^[A-Z_][A-Z0-9_]*$"
# keys that would hold a secret (a DSN names a password too): a connection names an environment variable
SECRET_KEYS = frozenset({"dsn", "url", "uri", "conninfo", "password", "passwd", "pass", "secret", "token",
                         "connection_string"})


class Connection(_Section):
    """`[connections.NAME]`: where table datasets live (SPEC §11). DuckDB and SQLite are files
    (`path`, relative to the workspace or absolute); Postgres is reached through the DSN held in the
    environment variable `dsn_env`, never a DSN or password written here."""

    kind: Literal["duckdb", "sqlite", "postgres"]
    path: str | None = None
    dsn_env: str | None = Field(None, pattern=ENV_NAME)
    read_only: bool = False

    @model_validator(mode="before")
    @classmethod
    def _no_secrets(cls, data):
        if isinstance(data, dict):
            for key in data:
                if str(key).lower() in SECRET_KEYS:
                    raise ValueError(f"'{key}' would hold a secret in a file; put it in an environment variable "
                                     f"and name it: dsn_env = \"MY_DSN\"")
        return data

    @model_validator(mode="after")
    def _shape(self):
        if self.kind == "postgres":
            if self.path is not None:
                raise ValueError("a postgres connection has dsn_env (the environment variable holding the DSN), "
                                 "not path")
            if not self.dsn_env:
                raise ValueError('a postgres connection needs dsn_env = "NAME_OF_THE_VARIABLE_HOLDING_THE_DSN"')
        else:
            if self.dsn_env is not None:
                raise ValueError(f"a {self.kind} connection has path, not dsn_env")
            if not self.path:
                raise ValueError(f"a {self.kind} connection needs path (the database file)")
        return self


class AgentEntry(_Section):
    name: str = Field(min_length=1)
    role: str = Field(min_length=1)
    on_mail: list[str] | None = None

    @field_validator("on_mail", mode="before")
    @classmethod
    def _argv(cls, value):
        if value is None:
            return value
        if not isinstance(value, list):
            raise ValueError('on_mail must be an argv list such as ["claude", "-p", "{prompt_file}"], not a shell string')
        if not value:
            raise ValueError("on_mail must not be empty")
        for arg in value:
            if not isinstance(arg, str):
                raise ValueError(f"on_mail entries must be strings, got {arg!r}")
            try:
                fields = [f for _, f, _, _ in string.Formatter().parse(arg) if f is not None]
            except ValueError as exc:
                raise ValueError(f"on_mail argument {arg!r}: {exc}") from None
            for name in fields:
                if name not in PLACEHOLDERS:
                    known = ", ".join("{" + p + "}" for p in sorted(PLACEHOLDERS))
                    raise ValueError(f"unknown placeholder {{{name}}} in {arg!r} (known: {known})")
        return value


class Config(_Section):
    agents: list[AgentEntry] = []

    @field_validator("agents")
    @classmethod
    def _roster(cls, agents: list[AgentEntry]) -> list[AgentEntry]:
        """Every agent needs an address of its own: not empty, not a built-in, not another's."""
        from agentops.addresses import BUILTINS, slug

        seen: dict[str, int] = {}
        for i, entry in enumerate(agents):
            address = slug(entry.name)
            if not address:
                raise ValueError(f"[{i}] name {entry.name!r} has no letters or digits to make an address from")
            if address in BUILTINS:
                raise ValueError(f"[{i}] name {entry.name!r} is the built-in address '{address}'; pick another name")
            if address in seen:
                raise ValueError(f"[{i}] name {entry.name!r} has the same address '{address}' as [{seen[address]}]"
                                 f" {agents[seen[address]].name!r}; names must differ after slugging")
            seen[address] = i
        return agents
    mail: MailSettings = MailSettings()
    daemon: DaemonSettings = DaemonSettings()
    orbit: OrbitSettings = OrbitSettings()
    dispatch: DispatchSettings = DispatchSettings()
    connections: dict[str, Connection] = {}

    @field_validator("connections")
    @classmethod
    def _connection_names(cls, value: dict) -> dict:
        import re

        for name in value:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
                raise ValueError(f"connection name {name!r}: use letters, digits and _ (it names a database in SQL)")
        return value


def load_config(path: Path) -> Config:
    """Load and validate agentops.toml; a missing file is the defaults."""
    if not path.is_file():
        return Config()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise WorkspaceError(f"{path.name}: TOML error: {exc}", hint="fix the syntax") from None
    except UnicodeDecodeError:
        raise WorkspaceError(f"{path.name}: not valid UTF-8") from None
    except RecursionError:  # tomllib recurses once per level of nested arrays and tables
        raise WorkspaceError(f"{path.name}: values nested too deeply to read",
                             hint="agentops.toml needs a few levels at most; see the Configuration section") from None
    try:
        return Config.model_validate(data)
    except PydanticValidationError as exc:
        lines = format_pydantic_errors(exc, path.name)
        raise WorkspaceError(lines[0] + (f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""),
                             hint="see the Configuration section of the README") from None
