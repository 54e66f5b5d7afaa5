"""The MCP SDK's private surface (pinned by pyproject: mcp>=2.3,<3).

- `http_client` (`mcp.shared._httpx_utils.create_mcp_http_client`): the
  httpx2 client for a streamable-HTTP server with our headers. The SDK makes
  its default client with this function, so ours gets exactly the SDK's
  timeouts (30 s, and 300 s to read: a server may hold a response stream
  open) and whatever else a later SDK sets there. Public alternative:
  `httpx2.AsyncClient(headers=..., timeout=httpx2.Timeout(30, read=300))`,
  which copies the SDK's numbers (and misses its changes) and makes httpx2,
  only the SDK's dependency, one of ours.

The SDK is the optional `mcp` extra: it is imported when a client is made.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx2

__all__ = ["http_client"]


def http_client(headers: dict[str, str]) -> httpx2.AsyncClient:
    """A new client with the SDK's defaults and `headers`; enter it (`async with`) to use it."""
    from mcp.shared._httpx_utils import create_mcp_http_client

    return create_mcp_http_client(headers=headers)
