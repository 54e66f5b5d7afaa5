"""`ptc serve`: code mode for any MCP client.

An MCP server fronting the upstream tools (`--mcp`, `--tools`): one tool runs
a Python program in the sandbox against them, two more let a client discover
a large catalog progressively.
"""

from __future__ import annotations

import re
from typing import Any

from ptc.catalog import ToolDefinition
from ptc.executor import ProgrammaticToolExecutor
from ptc.results import ExecutionResult
from ptc.stubgen import build_stub, render_api_reference, render_stubs
from ptc.stubgen.text import md_inline

EXECUTE_DESCRIPTION = """Run a Python 3.14 program in a sandbox where the tools below are importable.

Use it to call many tools in one step: loop, filter, join and sum in the program and print (or set `result` to)
only what you need. Top-level `await` works; run independent calls concurrently with `asyncio.gather`.
Returns the program's output, its value, its error (kind, type, message, traceback) and a trace of the tool calls.
No network, files or processes inside the sandbox: only the tools.

"""

_LARGE_CATALOG = 40  # past this many tools the description lists domains only; use search_tools


def compact(result: ExecutionResult) -> dict[str, Any]:
    """The result as an MCP client's model should see it."""
    return {
        "output": result.output,
        "output_truncated": result.output_truncated,
        "result": result.result,
        "error": result.error.model_dump() if result.error else None,
        "execution_time": round(result.execution_time, 4),
        "tool_calls": [
            {
                "tool": call.tool,
                "parameters": call.parameters,
                "duration": round(call.duration or 0.0, 4),
                "error": f"{call.error.type}: {call.error.message}" if call.error else None,
                **({"cache_hit": True} if call.cache_hit else {}),
                **({"attempts": call.attempts} if call.attempts > 1 else {}),
            }
            for call in result.tool_calls
        ],
    }


def _find(executor: ProgrammaticToolExecutor, name: str) -> ToolDefinition | None:
    for tool in executor.catalog:
        if name in (
            tool.name,
            tool.python_name,
            f"{tool.domain}.{tool.python_name}",
            f"tools.{tool.domain}.{tool.python_name}",
        ):
            return tool
    return None


def search(executor: ProgrammaticToolExecutor, query: str, limit: int = 10) -> list[dict[str, Any]]:
    words = [w for w in re.split(r"\W+", query.lower()) if w]
    scored = []
    for tool in executor.catalog:
        haystack = f"{tool.name} {tool.python_name} {tool.domain} {tool.description}".lower()
        name = f"{tool.domain} {tool.name} {tool.python_name}".lower()
        score = sum(2 if w in name else 1 for w in words if w in haystack)
        if score or not words:
            scored.append((score, tool))
    scored.sort(key=lambda pair: (-pair[0], pair[1].domain, pair[1].python_name))
    results = []
    for _, tool in scored[: max(1, limit)]:
        stub = build_stub(tool)
        results.append(
            {
                "name": f"{tool.domain}.{tool.python_name}",
                "import": f"from tools.{tool.domain} import {tool.python_name}",
                "signature": f"async def {stub.function}({stub.signature}) -> {stub.returns}",
                "summary": md_inline(stub.summary),
            }
        )
    return results


def build_server(executor: ProgrammaticToolExecutor, name: str = "ptc") -> Any:
    """An MCPServer (official SDK) whose tools run programs against the executor's catalog."""
    from mcp.server.mcpserver import MCPServer

    if len(executor.catalog) <= _LARGE_CATALOG:
        reference = render_api_reference(executor.catalog)
    else:
        domains = ", ".join(f"tools.{d} ({len(t)} tools)" for d, t in executor.catalog.domains().items())
        reference = (
            f"{len(executor.catalog)} tools in: {domains}. Find them with search_tools, read one with describe_tool."
        )
    server = MCPServer(
        name, instructions="Programmatic tool calling: write one program that calls many tools.", log_level="WARNING"
    )

    @server.tool(name="execute_python", description=EXECUTE_DESCRIPTION + reference)
    async def execute_python(code: str) -> dict[str, Any]:
        return compact(await executor.execute(code))

    @server.tool(name="search_tools")
    def search_tools(query: str, limit: int = 10) -> list[dict[str, Any]]:
        """Find tools by keywords in their names, domains and descriptions; returns how to import and call each.

        Args:
            query: words to look for, e.g. "order status"
            limit: at most this many tools
        """
        return search(executor, query, limit)

    @server.tool(name="describe_tool")
    def describe_tool(name: str) -> str:
        """The full stub of one tool: its signature, types, docstring and an example.

        Args:
            name: the tool, as `domain.tool` (from search_tools) or its plain name
        """
        tool = _find(executor, name)
        if tool is None:
            raise ValueError(f"no tool named {name!r}; use search_tools to find one")
        return render_stubs(executor.catalog)[f"tools.{tool.domain}.{tool.python_name}"]

    return server
