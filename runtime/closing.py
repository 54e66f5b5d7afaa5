"""What executors and sessions share about ending: their context managers, and a session's reason for closing.

Each has `close()` and `aclose()` and says for itself what entering means
(an executor opens or connects, a session has nothing to do), so `with` and
`async with` are written once, here.
"""

from __future__ import annotations

from typing import Self


class Closing:
    """`with x:` / `async with x:` close `x` at the end; `_enter` / `_aenter` say what entering does."""

    def _enter(self) -> None:
        """Entering `with`: nothing, unless overridden."""

    async def _aenter(self) -> None:
        """Entering `async with`: nothing, unless overridden."""

    def close(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._enter()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        await self._aenter()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class ClosedReason:
    """A session that is open until it closes for a reason (`_closed`: None while open)."""

    _closed: str | None = None

    @property
    def closed(self) -> bool:
        return self._closed is not None

    @property
    def closed_reason(self) -> str | None:
        """Why it was closed (None while open)."""
        return self._closed
