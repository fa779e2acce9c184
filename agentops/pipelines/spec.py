"""The pipeline spec (SPEC §6): a pydantic model of a `.agent/data/pipelines/*.yaml` file, loading
with located errors, and the checks a model alone cannot make (graph, datasets, owners).

Every problem is a `Problem(file, path, line, message)`: `orders_daily.yaml:14: stages[2].depends_on[0]:
unknown stage 'clean'`. Nothing here prints; callers decide.

PyYAML is imported, and the models' validators built (`defer_build`), only when a spec is parsed
(`agentops pipeline list` reads its rows from a cache while no spec changed: agentops.pipelines.listing).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (BaseModel, ConfigDict, Field, ValidationError as PydanticValidationError,
                      PrivateAttr, field_validator, model_validator)

from agentops import yamlio
from agentops.errors import NotFoundError, ValidationError

SPEC_SUFFIXES = (".yaml", ".yml")
MAX_ARG = 128 * 1024  # one command argument
NAME_RE = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"
ENV_RE = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w|y)?\s*$", re.I)
_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
# auth keys that would hold a secret itself; the spec must name an environment variable instead
SECRET_KEYS = {"token", "password", "secret", "api_key", "apikey", "key", "client_secret", "access_key",
               "secret_key", "private_key", "credentials", "bearer", "pass", "passwd"}


def parse_duration(value: Any) -> float:
    """`30m`, `2h`, `1d`, `45s`, `90` (seconds) -> seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or text like 30s, 10m, 2h, 7d")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    m = _DURATION_RE.match(str(value))
    if not m:
        raise ValueError(f"'{value}' is not a duration (use 30s, 10m, 2h, 7d, 1y or seconds)")
    return float(m.group(1)) * _UNITS[(m.group(2) or "s").lower()]


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = float(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size and s % size == 0:
            return f"{int(s // size)}{unit}"
    return f"{s:g}s" if s < 60 else f"{s / 60:.1f}m"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)


Duration = float  # stored as seconds; validators below accept text


def _durations(*names):
    return field_validator(*names, mode="before")(lambda cls, v: None if v is None else parse_duration(v))


class Auth(_Model):
    """Credentials by reference only: the names of environment variables, never their values."""

    type: Literal["none", "bearer", "basic", "api_key", "oauth2", "iam", "password", "kerberos"] = "none"
    token_env: str | None = None
    username_env: str | None = None
    password_env: str | None = None
    key_env: str | None = None
    client_id_env: str | None = None
    client_secret_env: str | None = None
    dsn_env: str | None = None
    header: str | None = None  # e.g. the header an api_key goes in

    @model_validator(mode="before")
    @classmethod
    def _no_secrets(cls, data):
        if isinstance(data, dict):
            for key in data:
                if str(key).lower() in SECRET_KEYS:
                    raise ValueError(f"'{key}' holds a secret value; name an environment variable instead "
                                     f"({key}_env: MY_{str(key).upper()})")
        return data

    @field_validator("token_env", "username_env", "password_env", "key_env", "client_id_env",
                     "client_secret_env", "dsn_env")
    @classmethod
    def _env_name(cls, v):
        if v is not None and not ENV_RE.match(v):
            raise ValueError(f"'{_clip(v)}' is not an environment variable name (A-Z, 0-9, _); "
                             "a secret value never belongs in a spec")
        return v

    @model_validator(mode="after")
    def _needs(self):
        need = {"bearer": ["token_env"], "api_key": ["key_env"], "basic": ["username_env", "password_env"],
                "password": ["password_env"], "oauth2": ["client_id_env", "client_secret_env"]}.get(self.type, [])
        missing = [n for n in need if getattr(self, n) is None]
        if missing:
            raise ValueError(f"auth type '{self.type}' needs {', '.join(missing)}")
        return self


def _clip(v: str) -> str:
    return v if len(v) <= 6 else v[:3] + "…"


class RateLimit(_Model):
    requests: int = Field(gt=0)
    per: Literal["second", "minute", "hour", "day"] = "second"
    burst: int | None = Field(None, gt=0)


class Incremental(_Model):
    strategy: Literal["full", "delta", "cdc", "watermark"] = "full"
    column: str | None = None  # the watermark / delta column (updated_at, id)
    lookback: Duration | None = None  # re-read this much before the watermark for late rows
    slot: str | None = None  # CDC: replication slot / publication / binlog position store

    _d = _durations("lookback")

    @model_validator(mode="after")
    def _column(self):
        if self.strategy in ("delta", "watermark") and not self.column:
            raise ValueError(f"incremental strategy '{self.strategy}' needs a column (e.g. column: updated_at)")
        return self



FILE_FORMATS = ("csv", "json", "ndjson", "parquet")
_SUFFIX_FORMAT = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "csv", ".json": "json",
                  ".ndjson": "ndjson", ".jsonl": "ndjson"}
_TABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*){0,2}$")


class Location(_Model):
    """Where a dataset's data is (SPEC §11): files (`path` + `format`) or a table (`connection` +
    `table`). A path may hold globs, `{partition}` and hive folders (`date={partition}/*.parquet`);
    relative paths are relative to the workspace. `connection` names `[connections.NAME]` in
    agentops.toml; `warehouse` (the embedded DuckDB) needs no entry."""

    path: str | None = None
    format: Literal["csv", "json", "ndjson", "parquet"] | None = None
    hive_partitioning: bool | None = None  # default: on when the path has a `key=value/` folder
    connection: str | None = Field(None, pattern=NAME_RE)
    table: str | None = None

    @field_validator("path")
    @classmethod
    def _path(cls, v):
        if v is not None and (not v.strip() or re.match(r"^[a-z][a-z0-9+.-]*://", v, re.I)):
            raise ValueError("a location path is a file path or glob (relative to the workspace or absolute), "
                             "not a URL")
        return v

    @field_validator("table")
    @classmethod
    def _table(cls, v):
        if v is not None and not _TABLE_RE.match(v):
            raise ValueError(f"'{v[:40]}' is not a table name (table, schema.table or catalog.schema.table)")
        return v

    @model_validator(mode="after")
    def _shape(self):
        if (self.path is None) == (self.table is None):
            raise ValueError("a location has either path (files) or table (with connection), not "
                             + ("both" if self.path else "neither"))
        if self.path is not None:
            if self.connection is not None:
                raise ValueError("connection goes with table, not path")
            if self.format is None:
                suffix = "." + self.path.rsplit(".", 1)[-1].lower() if "." in self.path.rsplit("/", 1)[-1] else ""
                self.format = _SUFFIX_FORMAT.get(suffix)
                if self.format is None:
                    raise ValueError(f"location path needs format ({', '.join(FILE_FORMATS)})")
        else:
            if self.format is not None or self.hive_partitioning is not None:
                raise ValueError("format and hive_partitioning go with path, not table")
            if self.connection is None:
                self.connection = "warehouse"
        return self

    @property
    def kind(self) -> str:
        return "file" if self.path is not None else "table"

    def describe(self, partition: str | None = None) -> str:
        """One short text naming the location (for messages): `data/x/*.parquet` or `warehouse:mart.t`."""
        if self.path is not None:
            return self.path.replace("{partition}", partition) if partition else self.path
        return f"{self.connection}:{self.table}"


class DatasetInfo(_Model):
    """What a spec says about one dataset it names (in `datasets:`): where it is, who owns it,
    how its schema may change."""

    location: Location | None = None
    owner: str | None = None
    description: str = ""
    schema_evolution: Literal["fail", "add_columns", "ignore"] | None = None


class Source(_Model):
    """A system data comes from. Its `name` is the dataset stages read as input."""

    name: str = Field(pattern=NAME_RE)
    kind: Literal["api", "database", "file", "stream"]
    format: Literal["json", "jsonl", "csv", "parquet", "avro", "orc", "xml", "protobuf", "delta", "iceberg", "table"]
    description: str = ""
    url: str | None = None
    connection: str | None = None  # e.g. postgres, mysql, kafka — the kind of system
    table: str | None = None
    path: str | None = None
    topic: str | None = None
    incremental: Incremental = Field(default_factory=Incremental)
    auth: Auth = Field(default_factory=Auth)
    rate_limit: RateLimit | None = None
    pool_size: int | None = Field(None, gt=0)
    schema_evolution: Literal["fail", "add_columns", "ignore"] = "fail"
    location: Location | None = None

    @field_validator("url", "connection", "path")
    @classmethod
    def _no_userinfo(cls, v):
        if v and re.match(r"^[a-z][a-z0-9+.-]*://[^/@\s]*:[^/@\s]*@", v, re.I):
            raise ValueError("holds a password (user:password@host); use auth: with password_env")
        return v


class Backoff(_Model):
    initial: Duration = 60.0
    max: Duration = 3600.0
    exponential: bool = True

    _d = _durations("initial", "max")


class Stage(_Model):
    name: str = Field(pattern=NAME_RE)
    kind: Literal["extract", "transform", "load", "quality", "custom"]
    description: str = ""
    inputs: list[str] = []
    outputs: list[str] = []
    depends_on: list[str] = []
    retries: int = Field(2, ge=0, le=100)
    backoff: Backoff = Field(default_factory=Backoff)
    timeout: Duration = 3600.0
    # what the stage runs (SPEC §12): a SELECT agentops materialises into the outputs, or an argv
    # list run in the workspace (never a shell string); neither: a manual stage run by its owner
    sql: str | None = None
    command: list[Annotated[str, Field(max_length=MAX_ARG)]] | None = None
    owner: str | None = None  # defaults to the pipeline's owner

    _d = _durations("timeout")

    @field_validator("command", mode="before")
    @classmethod
    def _argv(cls, v):
        if v is None:
            return v
        if isinstance(v, str):
            raise ValueError(f"command is an argv list such as ['python', 'extract.py', '--day', "
                             f"'$partition'], never a shell string; got {_short(v)}")
        if not isinstance(v, list) or not v:
            raise ValueError("command is a non-empty argv list of strings")
        for arg in v:
            if not isinstance(arg, (str, int, float)) or isinstance(arg, bool):
                raise ValueError(f"command arguments are strings, got {_short(arg)}")
            if "\0" in str(arg):
                raise ValueError("a command argument cannot hold a NUL byte")
        return [str(a) for a in v]

    @field_validator("sql")
    @classmethod
    def _select(cls, v):
        if v is not None and not v.strip():
            raise ValueError("sql is empty; write a SELECT, or drop sql: for a manual stage")
        return v

    @model_validator(mode="after")
    def _one_action(self):
        if self.sql is not None and self.command is not None:
            raise ValueError("a stage runs sql: or command:, not both")
        if self.sql is not None and len(self.outputs) != 1:
            raise ValueError(f"a sql: stage materialises one output dataset; this one has {len(self.outputs)}")
        return self

    @property
    def action(self) -> str:
        """What runs it: 'sql', 'command', 'quality' (a quality stage with neither: the runner runs
        its inputs' checks) or 'manual' (its owner does it by hand)."""
        if self.sql is not None:
            return "sql"
        if self.command is not None:
            return "command"
        return "quality" if self.kind == "quality" else "manual"

    @field_validator("timeout")
    @classmethod
    def _positive(cls, v):
        if v <= 0:
            raise ValueError("timeout must be more than 0")
        return v


class Partitioning(_Model):
    by: Literal["time", "hash", "range"]
    column: str
    granularity: Literal["hour", "day", "month", "year"] | None = None  # time
    buckets: int | None = Field(None, gt=0)  # hash
    boundaries: list[Any] | None = None  # range

    @model_validator(mode="after")
    def _shape(self):
        if self.by == "hash" and not self.buckets:
            raise ValueError("hash partitioning needs buckets")
        if self.by == "time" and not self.granularity:
            self.granularity = "day"
        return self


class Destination(_Model):
    """Where a dataset lands. `name` is the dataset a stage writes."""

    name: str = Field(pattern=NAME_RE)
    kind: Literal["warehouse", "lake", "database", "file", "stream", "api"] = "warehouse"
    format: Literal["json", "jsonl", "csv", "parquet", "avro", "orc", "delta", "iceberg", "table"]
    description: str = ""
    table: str | None = None
    path: str | None = None
    write_mode: Literal["append", "overwrite", "upsert", "merge"] = "append"
    keys: list[str] = []
    partitioning: Partitioning | None = None
    retention: Duration | None = None
    compression: Literal["none", "snappy", "gzip", "zstd", "lz4"] | None = None
    location: Location | None = None
    schema_evolution: Literal["fail", "add_columns", "ignore"] | None = None

    _d = _durations("retention")

    @model_validator(mode="after")
    def _keys(self):
        if self.write_mode in ("upsert", "merge") and not self.keys:
            raise ValueError(f"write_mode '{self.write_mode}' needs keys")
        return self


CHECK_NEEDS = {
    "not_null": ("column",), "unique": ("column",), "accepted_values": ("column", "values"),
    "range": ("column",), "row_count": (), "freshness": ("column", "max_age"), "anomaly": ("metric",),
    "schema": (), "sql": ("name", "query"),
}
CHECK_KINDS = tuple(CHECK_NEEDS)


class QualityCheck(_Model):
    """One declared check on one dataset (SPEC §11; `agentops quality run` measures it)."""

    dataset: str
    check: Literal["not_null", "unique", "row_count", "freshness", "accepted_values", "range", "anomaly",
                   "schema", "sql"]
    name: str | None = Field(None, pattern=NAME_RE)  # sql: the check's name (its label is sql:NAME)
    column: str | None = None
    columns: list[str] = []  # unique over several columns; schema: the columns that must be there
    types: dict[str, str] = {}  # schema: column -> expected type (as the engine names it, e.g. BIGINT)
    values: list[Any] | None = None
    min: float | None = None
    max: float | None = None
    max_age: Duration | None = None
    metric: str | None = None  # anomaly: a profile metric: row_count, null_fraction, distinct, min, max, mean
    threshold: float | None = None  # anomaly: z-score
    query: str | None = None  # sql: a SELECT whose rows are the failures; {dataset} is the dataset's relation
    severity: Literal["warn", "error"] = "error"
    description: str = ""

    _d = _durations("max_age")

    @model_validator(mode="after")
    def _needs(self):
        if self.check == "unique" and self.columns and not self.column:
            return self
        missing = [n for n in CHECK_NEEDS[self.check] if getattr(self, n) in (None, [])]
        if missing:
            raise ValueError(f"check '{self.check}' needs {', '.join(missing)}")
        if self.check in ("range", "row_count") and self.min is None and self.max is None:
            raise ValueError(f"check '{self.check}' needs min and/or max")
        if self.check == "schema" and not self.columns and not self.types:
            raise ValueError("check 'schema' needs columns (names) and/or types (column: type)")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is more than max {self.max:g}")
        return self

    @property
    def metric_name(self) -> str | None:
        """anomaly: the profile series it watches (`row_count`, `null_fraction:customer_id`)."""
        if self.metric is None:
            return None
        return f"{self.metric}:{self.column}" if self.column and ":" not in self.metric else self.metric

    @property
    def label(self) -> str:
        """The name Orbit check events use: `not_null:order_id`."""
        if self.check == "sql":
            return f"sql:{self.name}"
        if self.check == "anomaly":
            return f"anomaly:{self.metric_name}"
        if self.check == "schema":
            return "schema"
        target = self.column or ",".join(self.columns) or self.metric
        return f"{self.check}:{target}" if target else self.check


class SLA(_Model):
    complete_by: str | None = Field(None, pattern=r"^([01]\d|2[0-3]):[0-5]\d$")  # HH:MM UTC
    max_duration: Duration | None = None
    freshness: Duration | None = None  # streaming: end-to-end latency
    notify: list[str] = []  # extra addresses alerted on a breach

    _d = _durations("max_duration", "freshness")


class Window(_Model):
    type: Literal["tumbling", "sliding", "session"]
    size: Duration | None = None
    slide: Duration | None = None
    gap: Duration | None = None  # session windows

    _d = _durations("size", "slide", "gap")

    @model_validator(mode="after")
    def _shape(self):
        if self.type == "session" and not self.gap:
            raise ValueError("a session window needs gap")
        if self.type in ("tumbling", "sliding") and not self.size:
            raise ValueError(f"a {self.type} window needs size")
        if self.type == "sliding" and not self.slide:
            raise ValueError("a sliding window needs slide")
        return self


class Streaming(_Model):
    window: Window
    allowed_lateness: Duration = 0.0
    delivery: Literal["at-least-once", "exactly-once"] = "at-least-once"
    watermark_column: str | None = None
    checkpoint_interval: Duration | None = None
    trigger: Duration | None = None  # micro-batch trigger interval
    dead_letter: str | None = None  # dataset late/bad records go to

    _d = _durations("allowed_lateness", "checkpoint_interval", "trigger")


class PipelineSpec(_Model):
    name: str = Field(pattern=NAME_RE)
    owner: str = Field(min_length=1)
    description: str = ""
    schedule: str | None = None
    start_date: date | None = None
    processing: Literal["batch", "streaming", "micro-batch"] = "batch"
    tags: list[str] = []
    sources: list[Source] = []
    external: list[str] = []  # datasets made outside this pipeline (often by another pipeline)
    stages: list[Stage] = Field(min_length=1)
    destinations: list[Destination] = []
    datasets: dict[str, DatasetInfo] = {}  # location, owner, schema_evolution of any dataset named here
    quality: list[QualityCheck] = []
    sla: SLA | None = None
    streaming: Streaming | None = None
    _path: Path | None = PrivateAttr(None)
    _source_file: str = PrivateAttr("")

    @property
    def path(self) -> Path | None:
        """The spec file (None when parsed from text)."""
        return self._path

    @property
    def source_file(self) -> str:
        """The spec file as shown in problems (relative to the workspace)."""
        return self._source_file or self.name

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v):
        if v is None:
            return v
        from agentops.pipelines.schedule import Cron, CronError

        try:
            Cron.parse(v)
        except CronError as exc:
            raise ValueError(f"invalid cron schedule: {exc}") from None
        return v

    @model_validator(mode="after")
    def _processing(self):
        if self.processing in ("streaming", "micro-batch") and self.streaming is None:
            raise ValueError(f"processing '{self.processing}' needs a streaming: block (window, "
                             "allowed_lateness, delivery)")
        if self.processing == "batch" and not self.schedule:
            raise ValueError("a batch pipeline needs a schedule (cron, e.g. '0 2 * * *' or '@daily')")
        return self

    # convenience ------------------------------------------------------------------------------
    @property
    def cron(self):
        from agentops.pipelines.schedule import Cron

        return Cron.parse(self.schedule) if self.schedule else None

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise NotFoundError(f"pipeline '{self.name}' has no stage '{name}'")

    def produced(self) -> dict[str, str]:
        """dataset -> what makes it here (`source:NAME` or a stage name)."""
        out = {s.name: f"source:{s.name}" for s in self.sources}
        for st in self.stages:
            for d in st.outputs:
                out.setdefault(d, st.name)
        return out

    def checks_for(self, dataset: str) -> list[QualityCheck]:
        """The quality checks on `dataset` (the ETL workflow and runbook templates list them per stage)."""
        return [q for q in self.quality if q.dataset == dataset]

    def destination(self, dataset: str) -> Destination | None:
        return next((d for d in self.destinations if d.name == dataset), None)

    def source(self, dataset: str) -> Source | None:
        return next((s for s in self.sources if s.name == dataset), None)

    def dataset_names(self) -> list[str]:
        """Every dataset this spec names: sources, stage inputs and outputs, external, destinations."""
        names = dict.fromkeys([*(s.name for s in self.sources), *self.external])
        for st in self.stages:
            names.update(dict.fromkeys([*st.inputs, *st.outputs]))
        names.update(dict.fromkeys([*(d.name for d in self.destinations), *self.datasets]))
        return list(names)

    def location(self, dataset: str) -> Location | None:
        """Where `dataset` is, as this spec says (`datasets:`, then its source or destination entry);
        None: no location here (in a run it is the warehouse table of that name, SPEC §12)."""
        info = self.datasets.get(dataset)
        if info is not None and info.location is not None:
            return info.location
        for item in (self.source(dataset), self.destination(dataset)):
            if item is not None and item.location is not None:
                return item.location
        return None

    def schema_evolution(self, dataset: str) -> str:
        """The policy for `dataset`'s schema changes: `datasets:`, its source or destination, else `fail`."""
        info = self.datasets.get(dataset)
        if info is not None and info.schema_evolution:
            return info.schema_evolution
        for item in (self.source(dataset), self.destination(dataset)):
            if item is not None and item.schema_evolution:
                return item.schema_evolution
        return "fail"

    def dataset_owner(self, dataset: str) -> str:
        """Who owns `dataset`: `datasets:` owner, else the owner of the stage writing it, else the pipeline's."""
        info = self.datasets.get(dataset)
        if info is not None and info.owner:
            return info.owner
        for st in self.stages:
            if dataset in st.outputs and st.owner:
                return st.owner
        return self.owner


# -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    file: str
    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"

    def as_dict(self) -> dict:
        return {"file": self.file, "line": self.line, "path": self.path, "message": self.message}


@dataclass
class LoadResult:
    spec: PipelineSpec | None
    problems: list[Problem] = field(default_factory=list)
    text: str = ""
    _lines: Any = None  # the composed YAML node tree, built only when a problem needs a line

    def line_of(self, loc: tuple) -> int | None:
        if self._lines is None:
            self._lines = _compose(self.text)
        return _node_line(self._lines, loc)


def _fast_yaml(text: str, source: str) -> Any:
    """Parse like yamlio.load. With libyaml and no anchors (so no aliases, so no alias bomb) use the
    C parser: a 5,000-stage spec loads in a third of a second instead of two."""
    import yaml

    if "&" not in text and getattr(yaml, "__with_libyaml__", False):
        try:
            return yaml.load(text, Loader=yaml.CSafeLoader)  # noqa: S506 - a SafeLoader
        except Exception:  # noqa: BLE001 - the bounded loader reports it with its line
            pass
    try:
        return yamlio.load(text, source)
    except yaml.YAMLError as exc:  # e.g. a control character: the reader fails before parsing
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or "invalid YAML"
        raise ValidationError(f"{where}: YAML error: {problem}", hint="fix the YAML syntax") from None


def _compose(text: str):
    import yaml

    try:
        if "&" not in text and getattr(yaml, "__with_libyaml__", False):
            return yaml.compose(text, Loader=yaml.CSafeLoader)
        return yaml.compose(text, Loader=yaml.SafeLoader)  # composing shares alias nodes: no bomb expands
    except Exception:  # noqa: BLE001 - no lines then
        return None


def _node_line(node, loc: tuple) -> int | None:
    """The 1-based line of the YAML node at pydantic location `loc` (nearest existing ancestor)."""
    import yaml

    if node is None:
        return None
    line = node.start_mark.line + 1
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == str(key):
                    node, line = v, k.start_mark.line + 1
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and 0 <= key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _loc_text(loc: tuple) -> str:
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def parse_spec(text: str, source: str, path: Path | None = None) -> LoadResult:
    """Parse and validate one spec's text. Never raises for bad input: problems are returned."""
    result = LoadResult(None, text=text)
    try:
        data = _fast_yaml(text, source)
    except ValidationError as exc:
        m = re.match(rf"^{re.escape(source)}:(\d+): (.*)$", exc.message)
        if m:
            result.problems.append(Problem(source, "", m.group(2), int(m.group(1))))
        else:
            msg = exc.message[len(source) + 2:] if exc.message.startswith(source + ": ") else exc.message
            result.problems.append(Problem(source, "", msg))
        return result
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        result.problems.append(Problem(source, "", f"a spec is a YAML mapping (name:, owner:, stages: ...), "
                                                    f"this is {kind}", 1))
        return result
    try:
        spec = PipelineSpec.model_validate(data)
    except PydanticValidationError as exc:
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = f"unknown field '{loc[-1]}'" if loc else msg
            elif err["type"] == "literal_error":
                msg = f"{msg}, got {_short(err.get('input'))}"
            result.problems.append(Problem(source, _loc_text(loc) or "<root>", msg, result.line_of(loc)))
        return result
    spec._path, spec._source_file = path, source
    result.spec = spec
    return result


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# -------------------------------------------------------------------------------------------------
def check_spec(spec: PipelineSpec, result: LoadResult | None = None, addresses=None) -> list[Problem]:
    """Checks across the document: names, datasets, owners, dependencies and cycles."""
    from agentops.pipelines.graph import find_cycles

    src = spec.source_file or spec.name
    problems: list[Problem] = []

    def add(loc: tuple, message: str) -> None:
        problems.append(Problem(src, _loc_text(loc), message, result.line_of(loc) if result else None))

    if addresses is not None:
        for loc, who in [(("owner",), spec.owner), *((("stages", i, "owner"), s.owner)
                                                     for i, s in enumerate(spec.stages) if s.owner),
                         *((("sla", "notify", i), a) for i, a in enumerate(spec.sla.notify if spec.sla else [])),
                         *((("datasets", n, "owner"), d.owner) for n, d in spec.datasets.items() if d.owner)]:
            if not addresses.is_known(who):
                known = ", ".join(sorted(addresses.known()))
                add(loc, f"unknown owner '{who}' (known: {known})")

    seen: dict[str, int] = {}
    for i, st in enumerate(spec.stages):
        if st.name in seen:
            add(("stages", i, "name"), f"duplicate stage name '{st.name}' (also stages[{seen[st.name]}])")
        seen.setdefault(st.name, i)
    for kind, items in (("source", spec.sources), ("destination", spec.destinations)):
        names: set[str] = set()
        for i, it in enumerate(items):
            if it.name in names:
                add((kind + "s", i, "name"), f"duplicate {kind} name '{it.name}'")
            names.add(it.name)

    produced = spec.produced()
    external = set(spec.external)
    writers: dict[str, str] = {}
    for i, st in enumerate(spec.stages):
        for j, dep in enumerate(st.depends_on):
            if dep not in seen:
                add(("stages", i, "depends_on", j), f"unknown stage '{dep}'{_suggest(dep, seen)}")
        for j, d in enumerate(st.inputs):
            if d not in produced and d not in external:
                add(("stages", i, "inputs", j),
                    f"unknown dataset '{d}': no source or stage produces it{_suggest(d, produced)} "
                    f"(declare it under external: when another pipeline makes it)")
        for j, d in enumerate(st.outputs):
            if d in writers and writers[d] != st.name:
                add(("stages", i, "outputs", j), f"dataset '{d}' is also written by stage '{writers[d]}'")
            elif d in external:
                add(("stages", i, "outputs", j), f"dataset '{d}' is declared external but this stage writes it")
            elif d in produced and produced[d].startswith("source:"):
                add(("stages", i, "outputs", j), f"dataset '{d}' is a source; a stage cannot write it")
            writers.setdefault(d, st.name)
    for i, dst in enumerate(spec.destinations):
        if dst.name not in writers:
            add(("destinations", i, "name"), f"unknown dataset '{dst.name}': no stage writes this destination")
    known_datasets = set(produced) | external
    for i, q in enumerate(spec.quality):
        if q.dataset not in known_datasets:
            add(("quality", i, "dataset"), f"unknown dataset '{q.dataset}'{_suggest(q.dataset, known_datasets)}")
    for name in spec.datasets:
        if name not in known_datasets:
            add(("datasets", name), f"unknown dataset '{name}': no source or stage produces it"
                f"{_suggest(name, known_datasets)} (declare it under external: when another pipeline makes it)")
    if spec.streaming and spec.streaming.dead_letter and spec.streaming.dead_letter not in known_datasets:
        add(("streaming", "dead_letter"), f"unknown dataset '{spec.streaming.dead_letter}'")

    index = {s.name: i for i, s in enumerate(spec.stages)}
    for cycle in find_cycles(spec):
        first = index.get(cycle[0], 0)
        add(("stages", first), f"cycle: {' -> '.join([*cycle, cycle[0]])}")
    return problems


def _suggest(name: str, known) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75) if len(known) < 2000 else []
    return f" (did you mean '{close[0]}'?)" if close else ""


# -------------------------------------------------------------------------------------------------
def spec_files(ws) -> list[Path]:
    d = ws.pipelines_dir
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if p.suffix in SPEC_SUFFIXES and p.is_file() and not p.name.startswith("."))


def _source(ws, path: Path) -> str:
    try:
        return str(path.relative_to(ws.root))
    except ValueError:
        return str(path)


def _addresses(ws):
    try:
        return ws.addresses
    except Exception:  # noqa: BLE001 - a broken roster is `roles check`'s to report, not ours
        return None


def load_file(ws, path: Path, *, addresses=None, check: bool = True) -> LoadResult:
    source = _source(ws, path)
    try:
        if path.is_symlink() or not ws.inside(path):
            return LoadResult(None, [Problem(source, "", "not a regular file inside the workspace; not read")])
        raw = path.read_bytes()
    except OSError as exc:
        return LoadResult(None, [Problem(source, "", f"cannot read: {exc.strerror}")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return LoadResult(None, [Problem(source, "", f"not UTF-8 (byte {exc.start}); save it as UTF-8")])
    result = parse_spec(text, source, path)
    if result.spec is not None and check:
        result.problems.extend(check_spec(result.spec, result, addresses))
        from agentops.pipelines.sqltable import check_spec as check_table_outputs

        result.problems.extend(check_table_outputs(ws, result.spec, result))
    return result


def load_specs(ws, *, check: bool = True) -> tuple[list[PipelineSpec], list[Problem]]:
    """Every spec that parses (even with graph problems), and every problem in every spec file.
    Two files with the same pipeline name: the second is a problem and is left out."""
    addresses = _addresses(ws) if check else None
    specs: list[PipelineSpec] = []
    problems: list[Problem] = []
    names: dict[str, str] = {}
    for path in spec_files(ws):
        result = load_file(ws, path, addresses=addresses, check=check)
        problems.extend(result.problems)
        if result.spec is None:
            continue
        if result.spec.name in names:
            problems.append(Problem(result.spec.source_file, "name",
                                    f"pipeline '{result.spec.name}' is also defined in {names[result.spec.name]}",
                                    result.line_of(("name",))))
            continue
        names[result.spec.name] = result.spec.source_file
        specs.append(result.spec)
    return specs, problems


def find_spec(ws, name: str) -> PipelineSpec:
    """The spec named `name` (its `name:` or its file stem). Raise NotFoundError, or ValidationError
    when that file does not parse."""
    for path in spec_files(ws):
        if path.stem == name:
            result = load_file(ws, path, check=False)
            if result.spec is None:
                raise ValidationError(str(result.problems[0]), hint="run `agentops pipeline check`",
                                      problems=[str(p) for p in result.problems])
            return result.spec
    specs, _ = load_specs(ws, check=False)
    for spec in specs:
        if spec.name == name:
            return spec
    known = ", ".join(s.name for s in specs) or "none"
    raise NotFoundError(f"no pipeline '{name}' in {_source(ws, ws.pipelines_dir)} (known: {known})",
                        hint="see `agentops pipeline list`")


def check_one(ws, name: str) -> tuple[PipelineSpec | None, list[Problem]]:
    """Full check of one pipeline (by name or file stem)."""
    addresses = _addresses(ws)
    for path in spec_files(ws):
        if path.stem == name:
            r = load_file(ws, path, addresses=addresses)
            return r.spec, r.problems
    for path in spec_files(ws):
        r = load_file(ws, path, addresses=addresses)
        if r.spec is not None and r.spec.name == name:
            return r.spec, r.problems
    find_spec(ws, name)  # raises NotFoundError with the known names
    return None, []


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
