"""A real MCP server (the official SDK) whose tool schema carries constraints: `python constrained.py` (stdio).

`reserve` has a pattern, bounds, a maxLength and a format in its input
schema, which ptc checks before calling it (the server would refuse most
such calls itself, as a ToolError; the format it would accept).
"""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import MCPServer
from pydantic import Field

server = MCPServer("constrained", log_level="WARNING")


@server.tool()
def reserve(
    sku: Annotated[str, Field(pattern=r"^[A-Z]{3}-[0-9]{3}$")],
    quantity: Annotated[int, Field(ge=1, le=10)] = 1,
    contact: Annotated[str, Field(max_length=40, json_schema_extra={"format": "email"})] = "ops@example.com",
) -> str:
    """Reserve stock."""
    return f"{quantity} x {sku} for {contact}"


if __name__ == "__main__":
    server.run()
