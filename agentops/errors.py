"""The error hierarchy. Library code raises these; the CLI turns them into one line and an exit code.

Exit codes (documented in the README):
  0  success
  1  a check found problems (roles check, pipeline check, status --check) or a command failed
  2  usage error (bad option or argument)
  3  workspace not found or not valid (agentops.toml, roles)
  4  input rejected (a bad event, message, spec or address)
  5  not found (message, agent, pipeline, dead letter)
  6  conflict (a lock held by another process, a message claimed by someone else, a reservation
     another agent holds: reserve, pipeline backfill/run, guard check)
"""

from __future__ import annotations


class AgentOpsError(Exception):
    """Base class: `str(err)` is a one-line message that says what, where and what to do."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class WorkspaceError(AgentOpsError):
    """No workspace, or its agentops.toml / roles are not valid."""

    exit_code = 3


class UnsafePathError(WorkspaceError):
    """A state file or folder under the workspace is a link leading out of it, a hard-linked file,
    or not the kind of file agentops expects (a folder, a FIFO): nothing was read or written."""


class StorageError(AgentOpsError):
    """The file system refused a write (no space or no inodes left): nothing was lost."""

    exit_code = 1


class ValidationError(AgentOpsError):
    """User input (an event, a message, a spec, an address) was rejected; nothing was written."""

    exit_code = 4

    def __init__(self, message: str, *, hint: str | None = None, problems: list[str] | None = None):
        super().__init__(message, hint=hint)
        self.problems = problems or []


class UsageError(ValidationError):
    """A bad value for an option or a tool argument (`--since yesterday`). `option` is the parameter's
    name: the CLI shows it as the flag (`--since: ...`, exit 2 with the `--help` hint), the MCP server
    as the argument (`orbit_runs: since: ...`). An empty `option` is a usage error naming no option
    (a missing argument, options that do not go together)."""

    exit_code = 2

    def __init__(self, option: str, message: str, *, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.option = option

    def for_tool(self) -> str:
        """The text for an MCP tool error: the argument's own name, not a CLI flag."""
        text = f"{self.option}: {self.message}" if self.option else self.message
        return f"{text} ({self.hint})" if self.hint else text

    def __str__(self) -> str:
        text = f"--{self.option.replace('_', '-')}: {self.message}" if self.option else self.message
        return f"{text} ({self.hint})" if self.hint else text


class DeliveryError(AgentOpsError):
    """A message was accepted but could not be delivered: it is a dead letter (`dead_id`, `cause`)."""

    exit_code = 1

    def __init__(self, message: str, *, dead_id: str, cause: str, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.dead_id = dead_id
        self.cause = cause


class DataError(AgentOpsError):
    """Data could not be read: a missing file or table, an unreadable file, an unset dsn_env, bad SQL."""

    exit_code = 1


class NotFoundError(AgentOpsError):
    exit_code = 5


class ConflictError(AgentOpsError):
    exit_code = 6


_SPACE_ERRNOS = (28, 122, 27)  # ENOSPC, EDQUOT, EFBIG (errno numbers on Linux)


def storage_error(exc: BaseException) -> StorageError | None:
    """A `StorageError` for an OSError or SQLite error that means the file system is full (no
    space or no inodes left), or None: the CLI turns these into one line instead of a traceback."""
    if isinstance(exc, StorageError):
        return exc
    errno = getattr(exc, "errno", None)
    name = getattr(exc, "sqlite_errorname", "") or ""
    if errno in _SPACE_ERRNOS or name == "SQLITE_FULL" or "database or disk is full" in str(exc):
        where = getattr(exc, "filename", None)
        return StorageError(f"the disk is full (no space or no inodes left){f' writing {where}' if where else ''}",
                            hint="free space on that file system and run the command again; nothing was lost")
    return None


def error_lines(exc: AgentOpsError, command: str | None = None) -> list[str]:
    """What the CLI prints for `exc` (on stderr, before exiting with `exc.exit_code`); a usage error
    in `command` (`agentops mail send`) ends with the --help hint."""
    hint = [f"Try '{command} --help' for help."] if command and isinstance(exc, UsageError) else []
    return [f"Error: {exc}"] + [f"  {line}" for line in getattr(exc, "problems", [])[1:]] + hint


def format_pydantic_errors(exc, source: str = "") -> list[str]:
    """Turn a pydantic ValidationError into `source:loc: message` lines (llm's render_errors)."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in err["loc"]).replace(".[", "[")
        prefix = f"{source}:" if source else ""
        lines.append(f"{prefix}{loc or '<root>'}: {err['msg']}")
    return lines
