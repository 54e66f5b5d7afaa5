"""A real MCP server (the official SDK) for the tests: `python shop.py` (stdio) or `python shop.py --http PORT`.

Its tools cover the schema cases ptc must translate (nested objects, arrays,
enums, defaults, optional and nullable values, $ref/$defs, output schemas,
names that are not identifiers, a schema Python typing cannot express) and
the failures it must survive (errors, crashes, hangs, mixed content).
"""

from __future__ import annotations

import asyncio
import enum
import os
import sys
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.utilities.types import Image
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, TextContent
from pydantic import BaseModel, Field

server = MCPServer("shop", log_level="WARNING")
CALLS = {"count": 0}


class Status(enum.StrEnum):
    OPEN = "open"
    SHIPPED = "shipped"


class Address(BaseModel):
    street: str
    city: str
    zip: str | None = None


class Customer(BaseModel):
    name: str
    address: Address
    tags: list[str] = []


class Order(BaseModel):
    id: int
    status: Status
    total: float
    items: list[str]


ORDERS = [
    Order(id=1, status=Status.OPEN, total=25.5, items=["pen", "ink"]),
    Order(id=2, status=Status.SHIPPED, total=100.0, items=["desk"]),
    Order(id=3, status=Status.OPEN, total=7.25, items=["clip"]),
]


@server.tool()
def search_orders(status: Status | None = None, min_total: float = 0.0, limit: int = 10) -> list[Order]:
    """Find orders by status and minimum total.

    Args:
        status: only orders in this status
        min_total: only orders worth at least this much
        limit: at most this many orders
    """
    found = [o for o in ORDERS if (status is None or o.status == status) and o.total >= min_total]
    return found[:limit]


@server.tool()
def create_customer(customer: Customer, priority: Literal["low", "high"] = "low", note: str | None = None) -> dict:
    """Create a customer from a nested record."""
    return {
        "created": customer.name,
        "city": customer.address.city,
        "priority": priority,
        "note": note,
        "tags": customer.tags,
    }


@server.tool(name="get-weather")
def get_weather(city: str) -> str:
    """Weather for a city (a tool name with a dash)."""
    return f"sunny in {city}"


@server.tool(name="list.files")
def list_files(pattern: str = "*") -> str:
    """Two text parts, joined for the program."""
    return f"a.txt matching {pattern}"


@server.tool()
def two_parts() -> list[TextContent]:
    """Two text parts and no structured content: the program gets them joined."""
    return [TextContent(type="text", text="first part"), TextContent(type="text", text="second part")]


@server.tool()
def picture() -> Image:
    """An image: not text, so the program gets a plain dict."""
    return Image(data=b"\x89PNG fake", format="png")


@server.tool()
def fail(message: str) -> str:
    """Always fails: the server reports isError with this text."""
    raise ToolError(message)


@server.tool()
def reject(order_id: int) -> str:
    """Refuses the call at the protocol level: a JSON-RPC error reply (invalid params), not an isError result."""
    raise MCPError(INVALID_PARAMS, f"no order {order_id}")


@server.tool()
async def hang(seconds: float = 3600) -> str:
    """Never answers in time."""
    await asyncio.sleep(seconds)
    return "woke up"


@server.tool()
def crash() -> str:
    """Kills the server process mid-call."""
    sys.stderr.flush()
    os._exit(3)


@server.tool()
def pid() -> int:
    """The server's process id (to see reconnects)."""
    return os.getpid()


@server.tool()
def count() -> int:
    """Counts calls on this server process."""
    CALLS["count"] += 1
    return CALLS["count"]


@server.tool()
def odd(value: Annotated[Any, Field(json_schema_extra={"not": {"type": "string"}})]) -> Any:
    """A parameter whose schema no Python type expresses."""
    return value


@server.tool()
async def slow_echo(text: str, delay: float = 0.05) -> str:
    """Answers after a delay (for concurrency)."""
    await asyncio.sleep(delay)
    return text


@server.tool(structured_output=False)
def report_json(kind: str = "object") -> str:
    """Answers with JSON text and no outputSchema (as many servers do)."""
    import json

    if kind == "object":
        return json.dumps({"open": 3, "tags": ["a", "b"]})
    if kind == "array":
        return json.dumps([1, 2, 3])
    if kind == "deep":
        return "[" * 200 + "]" * 200
    return json.dumps("just a string")


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
