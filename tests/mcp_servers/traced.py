"""A real MCP server (the official SDK) that tells what trace context it received: `python traced.py` (stdio)
or `python traced.py --http PORT`.

`seen(text)` answers with the W3C `traceparent` header of the HTTP request
that carried the call (None on stdio) and the `traceparent` in the request's
`_meta` (both transports), so a test can check that ptc propagates its span.
"""

from __future__ import annotations

import sys
from typing import Any

from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("traced", log_level="WARNING")


@server.tool()
def seen(text: str, ctx: Context) -> dict[str, Any]:
    """The trace context this call arrived with."""
    headers = ctx.headers or {}
    meta = ctx.request_context.meta
    meta_dict = meta.model_dump(by_alias=True) if meta is not None and hasattr(meta, "model_dump") else dict(meta or {})
    return {
        "text": text,
        "header": headers.get("traceparent"),
        "meta": meta_dict.get("traceparent"),
    }


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
