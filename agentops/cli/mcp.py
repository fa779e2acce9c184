"""`agentops mcp`: the `orbit` MCP server over stdio (the MCP SDK is imported only here, when it runs)."""

from __future__ import annotations

import typer

from agentops.cli.common import workspace


def register(app: typer.Typer) -> None:
    app.command("mcp")(mcp)


def mcp(ctx: typer.Context):
    """Over stdio: mail, Orbit, pipelines, status."""
    from agentops.mcpserver import build_server

    # Looked up at each call, not before the handshake: without a workspace (or with a broken
    # agentops.toml) a client still connects and sees one clear tool error per call, instead of
    # "Connection closed"; once the workspace exists, the next call works.
    build_server(find=lambda: workspace(ctx)).run("stdio")
