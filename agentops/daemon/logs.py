"""The daemon's log: one line per event on stderr, plain text or JSON (`--log-format json`).

A JSON line is one flat object: `ts` (ISO 8601 UTC), `level`, `event` (a short name such as
`routed` or `task-error`), then the event's own fields; an error carries `error` and `traceback`.
A text line is `ts LEVEL event key=value ...`, with the traceback indented below it.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from datetime import datetime, timezone
from typing import Any, TextIO

LOGGER_NAME = "agentops.daemon"
RESERVED = frozenset({"ts", "level", "event"})


def _ts(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = dict(getattr(record, "fields", None) or {})
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        fields.setdefault("error", f"{type(exc).__name__}: {exc}")
        fields["traceback"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
    return fields


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {"ts": _ts(record), "level": record.levelname.lower(), "event": record.getMessage()}
        for key, value in _fields(record).items():
            line[f"field_{key}" if key in RESERVED else key] = value
        return json.dumps(line, default=str, ensure_ascii=False, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record)
        tb = fields.pop("traceback", None)
        parts = [_ts(record), record.levelname, record.getMessage()]
        for key, value in fields.items():
            text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
            parts.append(f"{key}={json.dumps(text, ensure_ascii=False) if (' ' in text or not text) else text}")
        line = " ".join(parts)
        if tb:
            line += "\n" + "\n".join("    " + t for t in tb.splitlines())
        return line


def make_logger(log_format: str = "text", stream: TextIO | None = None) -> logging.Logger:
    """The daemon's logger, writing to `stream` (stderr) in `log_format` ("text" or "json")."""
    if log_format not in ("text", "json"):
        raise ValueError(f"unknown log format {log_format!r} (text or json)")
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        if getattr(handler, "_agentops_daemon", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._agentops_daemon = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def drop_handlers(logger: logging.Logger) -> None:
    for handler in list(logger.handlers):
        if getattr(handler, "_agentops_daemon", False):
            logger.removeHandler(handler)


def log(logger: logging.Logger, level: int, event: str, exc_info: bool = False, **fields: Any) -> None:
    logger.log(level, event, exc_info=exc_info, extra={"fields": fields})
