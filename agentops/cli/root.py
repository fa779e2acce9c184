"""The root `agentops` group: global options, one place that turns library errors into exit codes
(`AgentOpsGroup.invoke`), and commands built lazily from `agentops.cli.COMMANDS`.

Typer builds a command's whole tree (every sub-app, every signature) when the group is made; here
only the command being run is imported and built, so `agentops mail send` does not pay for the
pipeline, orbit or MCP commands.
"""

from __future__ import annotations

import functools
import importlib

import typer
from typer import _click as click  # typer's own (vendored) click: its commands, options and errors
from typer.core import TyperGroup

from agentops.cli import COMMANDS, HELP
from agentops.cli.options import ROOT, signature
from agentops.errors import AgentOpsError, UsageError, error_lines, storage_error

MAX_INT = 2**63 - 1  # what SQLite stores: a larger --limit would be an OverflowError deep inside


def _set_workspace(ctx: typer.Context, value: str | None):
    if value is not None:
        ctx.find_root().ensure_object(dict)["workspace"] = value
    return value


@functools.cache
def _workspace_option():
    """`-w/--workspace` after the subcommand (`agentops status -w PATH`) means what it means before."""
    holder = typer.Typer()

    row = next(o for o in ROOT if o.name == "workspace")  # the root option's own names and metavar

    @holder.command()
    def one(workspace: str = typer.Option(None, *row.flags, metavar=row.metavar, expose_value=False,
                                          callback=_set_workspace,
                                          help="Workspace folder (as `agentops -w PATH`, given here instead).")):
        pass

    return typer.main.get_command(holder).params[0]


def _usage_errors(callback):
    """Run a command's callback so that its bad option values are usage errors (exit 2, one line and
    the --help hint): a library `UsageError`, or an integer too large for any count or limit."""

    @functools.wraps(callback)
    def run(*args, **kwargs):
        for name, value in kwargs.items():
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
                raise click.exceptions.UsageError(f"--{name.replace('_', '-')}: {value} is too large "
                                                  f"(at most {MAX_INT})")
        try:
            return callback(*args, **kwargs)
        except UsageError as exc:
            raise click.exceptions.UsageError(str(exc)) from None

    return run


def _each(command):
    yield command
    for sub in getattr(command, "commands", {}).values():
        yield from _each(sub)


def build_command(name: str):
    """The click command (or group) `name`, built from its module in agentops/cli/: its help is its
    summary in COMMANDS then the details its module gives, and each command in it takes
    `-w/--workspace` too and turns bad option values into usage errors."""
    module = importlib.import_module(f"agentops.cli.{COMMANDS[name][0]}")
    holder = typer.Typer(rich_markup_mode=None)
    module.register(holder)
    built = typer.main.get_group(holder).commands[name]
    summary = COMMANDS[name][1]
    built.help = summary + (f"\n\n{built.help}" if built.help else "")
    for command in _each(built):
        if not any(p.name == "workspace" for p in command.params):
            command.params.append(_workspace_option())
        if command.callback is not None:
            command.callback = _usage_errors(command.callback)
    return built


def usage_error(exc) -> typer.Exit:
    """Print a usage error as one line plus the --help hint; the Exit to raise (code 2)."""
    typer.echo(f"Error: {' '.join(exc.format_message().split())}", err=True)
    if exc.ctx is not None:
        typer.echo(f"Try '{exc.ctx.command_path} --help' for help.", err=True)
    return typer.Exit(2)


class AgentOpsGroup(TyperGroup):
    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        built = self.__dict__.setdefault("_built", {})
        if name not in built:
            built[name] = build_command(name)
        return built[name]

    def format_commands(self, ctx, formatter):
        with formatter.section("Commands"):  # from the table: listing commands builds none of them
            formatter.write_dl([(name, short) for name, (_, short) in COMMANDS.items()])

    def make_context(self, *args, **kwargs):
        try:
            return super().make_context(*args, **kwargs)
        except click.exceptions.UsageError as exc:
            raise usage_error(exc) from None

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.exceptions.UsageError as exc:
            raise usage_error(exc) from None
        except AgentOpsError as exc:
            for line in error_lines(exc):
                typer.echo(line, err=True)
            raise typer.Exit(exc.exit_code) from None
        except Exception as exc:  # a full disk reaches us as OSError or sqlite3.OperationalError
            full = storage_error(exc)
            if full is None:
                raise
            typer.echo(error_lines(full)[0], err=True)
            raise typer.Exit(full.exit_code) from None


app = typer.Typer(
    cls=AgentOpsGroup,
    name="agentops",
    help=HELP,
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool):
    if value:
        from agentops import __version__

        typer.echo(f"agentops {__version__}")
        raise typer.Exit()


def _root(ctx: typer.Context, **values):
    ctx.obj = {"workspace": values["workspace"]}


_root.__doc__ = HELP
app.callback()(signature(_root, ROOT, callbacks={"version": (_version, True)}))  # options: agentops.cli.options.ROOT
