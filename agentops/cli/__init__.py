"""The `agentops` command: a thin shell over the library.

Each concept has its module here (roles, mail, orbit, pipeline, ...), each exposing `register(app)`.
Library errors (`AgentOpsError`) are turned into `Error: ...` and an exit code in one place:
`AgentOpsGroup.invoke`.
"""

from __future__ import annotations

import sys

import typer
from typer.core import TyperGroup

from agentops.errors import AgentOpsError


class AgentOpsGroup(TyperGroup):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except AgentOpsError as exc:
            typer.echo(f"Error: {exc}", err=True)
            for line in getattr(exc, "problems", [])[1:]:
                typer.echo(f"  {line}", err=True)
            raise typer.Exit(exc.exit_code) from None


app = typer.Typer(
    cls=AgentOpsGroup,
    name="agentops",
    help="Coordination runtime for teams of AI agents doing data engineering.",
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


from agentops.cli import daemon as _daemon  # noqa: E402
from agentops.cli import demo as _demo  # noqa: E402
from agentops.cli import handoff as _handoff  # noqa: E402
from agentops.cli import mail as _mail  # noqa: E402
from agentops.cli import orbit as _orbit  # noqa: E402
from agentops.cli import pipeline as _pipeline  # noqa: E402
from agentops.cli import roles as _roles  # noqa: E402
from agentops.cli import status as _status  # noqa: E402
from agentops.cli import workspace as _workspace  # noqa: E402

for _module in (_workspace, _roles, _mail, _daemon, _orbit, _pipeline, _handoff, _status, _demo):
    _module.register(app)
from agentops.cli import dispatch as _dispatch; _dispatch.register(app)  # noqa: E402, E702

from agentops.cli import mcp as _mcp  # noqa: E402  (the SDK itself is imported only when `mcp` runs)
_mcp.register(app)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
