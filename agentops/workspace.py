"""The workspace: where it is (found like git finds a repo), its layout, its config, and `init`."""

from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path

from agentops.errors import WorkspaceError

ENV_VAR = "AGENTOPS_WORKSPACE"
CONFIG_FILE = "agentops.toml"

GITIGNORE_LINES = [
    "# agentops runtime state",
    ".agent/orbit.db",
    ".agent/orbit.db-*",
    ".agent/email/inbox/",
    ".agent/email/queues/",
    ".agent/email/dead/",
    ".agent/email/drafts/",
    ".agent/email/.queue/",
    ".agent/email/*.email",
    ".agent/orbit/*.jsonl",
    ".agent/orbit/processed/",
    ".agent/orbit/rejected/",
    ".agent/run/",
    ".agent/logs/",
]

DEFAULT_CONFIG = """\
# agentops configuration. Every section is optional; these are the defaults.
# The roster: without [[agents]], every role in roles/ is one agent addressed by its slug
# (Data Engineer -> data-engineer). With a roster, list each agent and its role:
#
# [[agents]]
# name = "dana"
# role = "Data Engineer"
# on_mail = ["claude", "-p", "Read {prompt_file} and do what it says. Your address is {agent}."]  # argv
#
# [mail]
# max_bytes = 10485760        # larger drop files are dead-lettered
# settle_seconds = 0.01       # wait after the writer closes a file
#
# [daemon]
# rescan_seconds = 30         # periodic rescan for missed watcher events
#
# [orbit.anomaly]
# window = 14
# min_points = 4
# threshold = 3.0
# direction = "both"          # both | spike | drop
# min_relative_change = 0.1
# min_duration_change_s = 1.0
# min_null_fraction_change = 0.01
#
# [dispatch]
# max_concurrent = 2
# timeout_seconds = 900
# retries = 3
# backoff_seconds = 10
# coalesce_seconds = 2
# keep_runs = 50              # prompt files and logs kept per agent
"""


class Workspace:
    """A workspace folder and everything under it. Paths are properties; nothing is created here.

    (Here and in the other modules `agentops mail send` imports, plain classes rather than
    dataclasses: importing `dataclasses` (and `inspect` with it) adds about 15 ms to that ~35 ms
    command on the 2-core benchmark machine.)"""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()
        self._roles: list | None = None

    def __repr__(self) -> str:
        return f"Workspace(root={self.root!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Workspace) and other.root == self.root

    def __hash__(self) -> int:
        return hash(self.root)

    # layout -------------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def roles_dir(self) -> Path:
        return self.root / "roles"

    @property
    def templates_dir(self) -> Path:
        return self.root / "templates"

    @property
    def agent_dir(self) -> Path:
        return self.root / ".agent"

    @property
    def email_dir(self) -> Path:
        """The drop zone for `.email` files."""
        return self.agent_dir / "email"

    @property
    def inbox_root(self) -> Path:
        return self.email_dir / "inbox"

    def inbox(self, agent: str) -> Path:
        return self.inbox_root / agent

    @property
    def queues_root(self) -> Path:
        """Role queues: one Maildir per role with several members."""
        return self.email_dir / "queues"

    @property
    def dead_dir(self) -> Path:
        return self.email_dir / "dead"

    @property
    def drafts_dir(self) -> Path:
        return self.email_dir / "drafts"

    @property
    def spool_dir(self) -> Path:
        """Private queue: drop files claimed out of the drop zone, not yet delivered."""
        return self.email_dir / ".queue"

    @property
    def data_dir(self) -> Path:
        return self.agent_dir / "data"

    @property
    def pipelines_dir(self) -> Path:
        return self.data_dir / "pipelines"

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"

    @property
    def orbit_dir(self) -> Path:
        """The drop zone for Orbit `*.jsonl` files."""
        return self.agent_dir / "orbit"

    @property
    def db_path(self) -> Path:
        return self.agent_dir / "orbit.db"

    @property
    def run_dir(self) -> Path:
        """Locks and pid files."""
        return self.agent_dir / "run"

    @property
    def logs_dir(self) -> Path:
        return self.agent_dir / "logs"

    # contents -----------------------------------------------------------------------------
    @cached_property
    def config(self):
        """The validated agentops.toml as `agentops.settings.Section`s (cached; see that module)."""
        from agentops import settings

        return settings.load(self)

    def refresh(self) -> None:
        """Forget the cached config, roles and addresses (agentops.toml or a role file changed)."""
        for name in ("config", "addresses"):
            self.__dict__.pop(name, None)
        self._roles = None

    def roles(self) -> list:
        """Every role that parses (use `roles_with_problems` to see the ones that do not)."""
        if self._roles is None:
            self._roles = self.roles_with_problems()[0]
        return self._roles

    def roles_with_problems(self):
        """(roles, problems): every role that parses and a `roles.Problem` for each file that does
        not (cached under .agent/run/ until a role file changes)."""
        from agentops.roles import workspace_roles

        return workspace_roles(self)

    def roles_folder(self) -> Path:
        """Where the roles are read from: `roles/`, else (a workspace without one) the packaged roles."""
        from agentops.resources import packaged

        return self.roles_dir if self.roles_dir.is_dir() else packaged("roles")

    @cached_property
    def addresses(self):
        """Who each address means (cached under .agent/run/ until a role file or agentops.toml changes)."""
        from agentops.addresses import AddressBook, roster_problems, workspace_book

        roles_dir = self.roles_folder()

        def build():
            problems = roster_problems(self.roles(), self.config.agents)
            if problems:
                field, message = problems[0]
                raise WorkspaceError(f"{CONFIG_FILE}:{field}: {message}", hint="fix the roster in agentops.toml")
            return AddressBook.build(self.roles(), self.config.agents)

        self.check_layout()  # the book is cached under .agent/run/
        return workspace_book(self, roles_dir, build)

    def db(self):
        """Open the Orbit store (creating it and applying migrations as needed)."""
        from agentops.store import open_db

        from agentops import safefs

        self.check_layout()
        safefs.makedirs(self, self.agent_dir)
        return open_db(self.db_path, self.root)

    def inside(self, path: Path) -> bool:
        """True when `path`, with every symlink resolved, is inside the workspace."""
        try:
            Path(os.path.realpath(path)).relative_to(self.root)
            return True
        except ValueError:
            return False

    def state_paths(self) -> list[Path]:
        """Every runtime-state folder and file agentops reads or writes, parents before children."""
        email, orbit = self.email_dir, self.orbit_dir
        return [self.agent_dir, email, self.inbox_root, self.queues_root, self.dead_dir, self.drafts_dir,
                self.spool_dir, orbit, orbit / "processed", orbit / "rejected", self.run_dir, self.logs_dir,
                self.db_path, Path(f"{self.db_path}-wal"), Path(f"{self.db_path}-shm")]

    def check_layout(self) -> None:
        """Refuse to work when a state folder or file is a symlink leading outside the workspace.

        Cheap (one lstat per state path; a realpath only for the links): called before every
        routing or ingest pass, at daemon start and whenever Orbit is opened. Every state path's
        parent is the root or another state path, so checking each for being a link is enough."""
        for path in self.state_paths():
            if os.path.islink(path) and not self.inside(path):
                what = "file" if path.name.startswith("orbit.db") else "folder"
                raise WorkspaceError(
                    f"{path.relative_to(self.root)} is a symlink leading outside the workspace"
                    f" ({os.path.realpath(path)}); replace it with a real {what}",
                    hint="agentops never reads, writes or follows state outside the workspace")

    def layout_dirs(self) -> list[Path]:
        return [self.email_dir, self.inbox_root, self.dead_dir, self.spool_dir, self.pipelines_dir,
                self.orbit_dir, self.run_dir]

    def ensure_layout(self) -> None:
        from agentops import safefs

        self.check_layout()
        for d in self.layout_dirs():
            safefs.makedirs(self, d)


def is_workspace(path: Path) -> bool:
    return (path / CONFIG_FILE).is_file() or (path / ".agent").is_dir()


def find_workspace(explicit: str | os.PathLike | None = None, start: Path | None = None) -> Workspace:
    """`explicit` (from --workspace), else $AGENTOPS_WORKSPACE, else walk up from `start` (cwd)."""
    chosen = explicit or os.environ.get(ENV_VAR)
    if chosen:
        path = Path(chosen).expanduser()
        if not path.is_dir():
            raise WorkspaceError(f"workspace '{path}' is not a folder",
                                 hint="create it with `agentops init PATH`")
        return Workspace(path)
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if is_workspace(candidate):
            return Workspace(candidate)
    raise WorkspaceError(f"no agentops workspace in {here} or any folder above it",
                         hint="run `agentops init` here, or pass --workspace PATH")


class InitResult:
    """What `init_workspace` did: the files it created, overwrote (with --force) and kept."""

    def __init__(self, root: Path):
        self.root = root
        self.created: list[Path] = []
        self.overwritten: list[Path] = []
        self.kept: list[Path] = []


def _mcp_command() -> tuple[str, list[str]]:
    import shutil

    exe = shutil.which("agentops")
    return (exe or "agentops"), ["mcp"]


def _make_root(target: Path) -> Path:
    """`target` as a folder (made with its parents): a file there, or a file on the way, is one line."""
    try:
        target.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise WorkspaceError(f"{target} is a file, not a folder",
                             hint="choose a folder for the workspace: agentops init PATH creates it") from None
    except NotADirectoryError:
        raise WorkspaceError(f"{target}: part of that path is a file, not a folder",
                             hint="choose a folder for the workspace: agentops init PATH creates it") from None
    except OSError as exc:
        raise WorkspaceError(f"cannot create {target}: {exc.strerror or exc}",
                             hint="choose a folder you can write to") from None
    if not target.is_dir():
        raise WorkspaceError(f"{target} is not a folder", hint="choose a folder for the workspace")
    return target.resolve()


def init_workspace(target: Path, *, force: bool = False, examples: bool = False) -> InitResult:
    """Create a complete workspace at `target`. Never overwrites an existing file unless `force`.
    `examples`: also the example pipeline specs (orders_daily, customers_dim, clickstream).

    Every write goes through `agentops.safefs`: a file that is a link (or not a regular file) is
    kept as it is, and a folder (`roles/`, `templates/`, `.agent/`, ...) linked outside the
    workspace stops init with an `UnsafePathError` before anything is written."""
    import stat

    from agentops import safefs
    from agentops.resources import packaged

    target = _make_root(Path(target).expanduser())
    ws = Workspace(target)
    result = InitResult(ws.root)
    for top in ("roles", "templates", ".vscode", ".agent"):
        try:
            with safefs.opendir(ws, top):
                pass
        except (FileNotFoundError, NotADirectoryError):
            pass

    def write(path: Path, content: bytes) -> None:
        try:
            st = safefs.lstat(ws, path)
        except FileNotFoundError:
            st = None
        if st is not None and not stat.S_ISREG(st.st_mode):
            result.kept.append(path)  # a link, a folder, a FIFO: never written through or replaced
            return
        if st is not None:
            if not force or safefs.read_bytes(ws, path, single_link=False) == content:
                result.kept.append(path)
                return
            result.overwritten.append(path)
        else:
            result.created.append(path)
        safefs.write_atomic(ws, path, content)

    for name in ("roles", "templates"):
        src = packaged(name)
        for f in sorted(src.rglob("*")):
            if f.is_file() and "__pycache__" not in f.parts:
                write(target / name / f.relative_to(src), f.read_bytes())
    if examples:
        from agentops.resources import example_pipelines

        for f in sorted(example_pipelines().glob("*.yaml")):
            write(ws.pipelines_dir / f.name, f.read_bytes())
    write(target / CONFIG_FILE, DEFAULT_CONFIG.encode())
    write(target / ".gitignore", ("\n".join(GITIGNORE_LINES) + "\n").encode())
    command, args = _mcp_command()
    vscode = {"servers": {"orbit": {"type": "stdio", "command": command, "args": args,
                                    "env": {ENV_VAR: "${workspaceFolder}"}}}}
    claude = {"mcpServers": {"orbit": {"type": "stdio", "command": command, "args": args}}}
    write(target / ".vscode" / "mcp.json", (json.dumps(vscode, indent=2) + "\n").encode())
    write(target / ".mcp.json", (json.dumps(claude, indent=2) + "\n").encode())
    dirs = [ws.agent_dir, *ws.layout_dirs(), ws.data_dir, ws.reports_dir, ws.logs_dir]
    missing = [d for d in dirs if not os.path.lexists(d)]
    ws.ensure_layout()
    for d in (ws.reports_dir, ws.logs_dir):
        safefs.makedirs(ws, d)
    result.created.extend(sorted(set(missing)))
    # the Orbit store, migrated: the workspace is complete (its first command does not migrate), and
    # a folder SQLite cannot use fails here rather than at that command
    store = not os.path.lexists(ws.db_path)
    ws.db().conn.close()
    if store:
        result.created.append(ws.db_path)
    return result
