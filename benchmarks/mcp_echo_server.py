"""A trivial MCP server (official SDK, stdio) for the MCP benchmarks."""

import asyncio

from mcp.server.mcpserver import MCPServer

server = MCPServer("echo", log_level="WARNING")


@server.tool()
def echo(text: str) -> str:
    """Returns its input."""
    return text


@server.tool()
async def nap(text: str, seconds: float = 0.05) -> str:
    """Returns its input after a delay."""
    await asyncio.sleep(seconds)
    return text


if __name__ == "__main__":
    server.run()
