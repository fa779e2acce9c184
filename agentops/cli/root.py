"""The root `agentops` group: global options, one place that turns library errors into exit codes
(`AgentOpsGroup.invoke`), and commands built lazily from `agentops.cli.COMMANDS`.

Typer builds a command's whole tree (every sub-app, every signature) when the group is made; here
only the command being run is imported and built, so `agentops mail send` does not pay for the
pipeline, orbit or MCP commands.
"""

from __future__ import annotations

import importlib

import typer
from typer.core import TyperGroup

from agentops.cli import COMMANDS, HELP
from agentops.errors import AgentOpsError, error_lines


def build_command(name: str):
    """The click command (or group) `name`, built from its module in agentops/cli/."""
    module = importlib.import_module(f"agentops.cli.{COMMANDS[name][0]}")
    holder = typer.Typer(rich_markup_mode=None)
    module.register(holder)
    return typer.main.get_group(holder).commands[name]


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

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except AgentOpsError as exc:
            for line in error_lines(exc):
                typer.echo(line, err=True)
            raise typer.Exit(exc.exit_code) from None


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


@app.callback()
def _root(
    ctx: typer.Context,
    workspace: str = typer.Option(None, "--workspace", "-w", metavar="PATH",
                                  help="Workspace folder (default: $AGENTOPS_WORKSPACE, else walk up from here)."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Show the version and exit."),
):
    """Coordination runtime for teams of AI agents doing data engineering."""
    ctx.obj = {"workspace": workspace}
