"""MCP tools as catalog tools: schemas in, plain values out.

A server's tools go into the domain the user names. JSON Schema is kept as
the parameter type: the input schema is normalized once (`ptc.schemas`:
references hoisted into `$defs`, never inlined) and split into its
properties, so the stub generator and the validator read it like any other
tool's. Results reach the program as
plain values: `structuredContent` when present, else the text (parts joined),
other content as plain dicts; `isError` results raise ToolError, and so does a
JSON-RPC error reply refusing the call (both are the server answering, so
neither counts against its circuit breaker).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from ptc.catalog import Binding, ToolCatalog, ToolDefinition, ToolParameter, parse_docstring, python_name
from ptc.errors import ToolError
from ptc.hostcalls.backends.mcp.client import MCPServers
from ptc.schemas import normalize, schema_type, split_object


def _wrapped_result(output: dict[str, Any] | None) -> bool:
    """The SDK's convention for a non-object result: `{"result": value}` with that one property."""
    properties = output.get("properties") if output else None
    return bool(
        output
        and output.get("type") == "object"
        and isinstance(properties, dict)
        and set(properties) == {"result"}
        and output.get("required") == ["result"]
    )


def definitions_from_mcp(domain: str, tools: list[Any]) -> list[tuple[ToolDefinition, str, bool]]:
    """(definition, the server's own tool name, result is wrapped) for each tool.

    Python names are unique within the domain.

    A name that is not a Python identifier gets one (`get-weather` -> `get_weather`); a clash
    between two such names appends `_` until unique (`get_weather`, `get_weather_`), in the
    server's sorted tool order, so the mapping is stable.
    """
    definitions = []
    taken: set[str] = set()
    seen: set[str] = set()
    for tool in sorted(tools, key=lambda t: t.name):
        if tool.name in seen:  # a server listing one name twice: the first definition is the tool
            continue
        seen.add(tool.name)
        split = split_object(tool.input_schema if isinstance(tool.input_schema, dict) else {})
        notes = list(split.notes)
        description, documented = parse_docstring(tool.description or "")
        parameters = [
            ToolParameter(
                name=name,
                type=schema_type(schema),
                description=str(schema.get("description", "")) or documented.get(name, ""),
                required=name in split.required,
                default=schema.get("default"),
                schema=schema,
            )
            for name, schema in split.properties.items()
        ]
        output = getattr(tool, "output_schema", None)
        if isinstance(output, dict):
            normalized = normalize(output)
            output = normalized.schema
            notes.extend(n for n in normalized.notes if n not in notes)
        else:
            output = None
        wrapped = _wrapped_result(output)
        if wrapped and output is not None:
            output = split_object(output).properties["result"]
        function = python_name(tool.name)
        while function in taken:
            function += "_"
        taken.add(function)
        definition = ToolDefinition(
            name=tool.name,
            type="mcp",
            domain=domain,
            description=description,
            parameters=parameters,
            output_schema=output,
            backend=f"mcp:{domain}",
            function=function,
            notes=([f"The server calls this tool {tool.name!r}."] if function != tool.name else []) + notes,
        )
        definitions.append((definition, tool.name, wrapped))
    return definitions


def plain_result(result: Any, wrapped: bool = False) -> Any:
    """A CallToolResult as the program sees it."""
    if result.is_error:
        text = "\n".join(part.text for part in result.content if getattr(part, "type", None) == "text")
        raise ToolError(text or "the MCP tool reported an error")
    structured = result.structured_content
    if structured is not None:
        if wrapped and isinstance(structured, dict) and set(structured) == {"result"}:
            return structured["result"]
        return structured
    parts = list(result.content)
    if parts and all(getattr(p, "type", None) == "text" for p in parts):
        return "\n".join(p.text for p in parts)
    return [p.model_dump(mode="json", by_alias=True, exclude_none=True) for p in parts]


def _refused(exc: Exception) -> bool:
    """A JSON-RPC error reply that refuses the request itself (bad params, unknown tool or request).

    The server is up and answered, as with an `isError` result: the router
    must not count it against the server's breaker, so it becomes a
    ToolError (with the text the program saw before). Other protocol errors
    (internal error, request timeout, connection closed) stay what they are.
    """
    from mcp.shared.exceptions import MCPError
    from mcp_types import INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND

    return isinstance(exc, MCPError) and exc.error.code in (INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND)


def _worker(
    servers: MCPServers, server: str, tool: str, wrapped: bool
) -> Callable[[dict[str, Any]], Coroutine[Any, Any, Any]]:
    async def call(payload: dict[str, Any]) -> Any:
        arguments = {k: v for k, v in payload.items() if v is not None}
        try:
            result = await servers.call_tool(server, tool, arguments)
        except Exception as exc:
            if _refused(exc):
                raise ToolError(f"{type(exc).__name__}: {exc}") from None
            raise
        return plain_result(result, wrapped)

    call.__name__ = f"mcp_{python_name(server)}_{python_name(tool)}"
    return call


async def add_mcp_tools(catalog: ToolCatalog, servers: MCPServers) -> dict[str, Binding]:
    """Discover every server's tools into the catalog; returns their handlers by catalog name.

    A tool whose name another domain already uses is cataloged as `<server>.<name>`
    (its stub keeps its own Python name in `tools.<server>`).
    """
    bindings: dict[str, Binding] = {}
    for server in servers.configs:
        for definition, original, wrapped in definitions_from_mcp(server, await servers.list_tools(server)):
            existing = catalog.get(definition.name)
            if existing is not None and existing.domain != server:
                definition = definition.model_copy(update={"name": f"{server}.{definition.name}"})
            catalog.add_tool(definition)
            bindings[definition.name] = Binding(_worker(servers, server, original, wrapped), kwargs=False)
    return bindings
