"""`agentops mcp`: the `orbit` MCP server over stdio (the MCP SDK is imported only here, when it runs)."""

from __future__ import annotations

import typer

from agentops.cli.common import workspace


def register(app: typer.Typer) -> None:
    app.command("mcp")(mcp)


def mcp(ctx: typer.Context):
    """Serve the workspace to agents as the `orbit` MCP server over stdio (mail, Orbit, pipelines, status)."""
    from agentops.mcpserver import build_server

    build_server(workspace(ctx)).run("stdio")
