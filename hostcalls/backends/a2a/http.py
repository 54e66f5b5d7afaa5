"""HTTP to an A2A agent, bounded: no response makes the host read more than the agent's limit.

The SDK reads a reply whole (`response.json()`) and a stream line by line
for as long as it lasts, so the bound sits below it, in the transport: every
response body (the card, a JSON-RPC reply, a whole SSE stream) is counted
as it arrives and the read stops with A2AReplyTooLarge past
`max_reply_bytes`. Compressed bodies are refused (the request asks for
none): a small gzip can inflate past any limit after it was counted.

httpx is the A2A SDK's dependency (the `a2a` extra): this module is imported
only once A2A agents are connected.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from ptc.hostcalls.backends.a2a.replies import A2AReplyTooLarge
from ptc.telemetry import inject


class _Capped(httpx.AsyncByteStream):
    def __init__(self, stream: httpx.AsyncByteStream, limit: int, url: str) -> None:
        self._stream = stream
        self._limit = limit
        self._url = url

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in self._stream:
            seen += len(chunk)
            if seen > self._limit:
                raise A2AReplyTooLarge(f"{self._url} sent more than {self._limit} bytes in one response")
            yield chunk

    async def aclose(self) -> None:
        await self._stream.aclose()


class CappedTransport(httpx.AsyncBaseTransport):
    """httpx's own transport, with every response body cut off at `limit` bytes."""

    def __init__(self, limit: int) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._limit = limit

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        url = str(request.url.copy_with(query=None))
        declared = response.headers.get("content-length", "")
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if (declared.isdigit() and int(declared) > self._limit) or encoding not in ("", "identity"):
            await response.aclose()
            why = f"a body of {declared} bytes" if encoding in ("", "identity") else f"a {encoding!r} body"
            raise A2AReplyTooLarge(f"{url} announced {why} (the limit is {self._limit} bytes, uncompressed)")
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_Capped(response.stream, self._limit, url),
            extensions=response.extensions,
            request=request,
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


def http_client(headers: dict[str, str], limit: int) -> httpx.AsyncClient:
    """A client for one agent: its headers, bounded bodies, no compression; reads may wait (a task can be slow)."""
    return httpx.AsyncClient(
        transport=CappedTransport(limit),
        headers={**headers, "Accept-Encoding": "identity"},
        timeout=httpx.Timeout(30.0, read=300.0),
        follow_redirects=False,
        event_hooks={"request": [_traceparent]},
    )


async def _traceparent(request: httpx.Request) -> None:
    """The calling attempt's trace context as W3C headers (ptc.telemetry; the call carried it to this loop)."""
    inject(request.headers)


async def fetch_json(client: httpx.AsyncClient, url: str) -> Any:
    """GET `url` as JSON (bounded by the client's transport); httpx's errors, or ValueError for a body that is not."""
    response = await client.get(url)
    response.raise_for_status()
    try:
        return json.loads(response.content)
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None
