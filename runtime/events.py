"""Tool-call events: to callbacks registered on the executor and to logging."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

logger = logging.getLogger("ptc")
logger.addHandler(logging.NullHandler())  # a library logs; the application decides where to

EventKind = Literal[
    "start", "retry", "complete", "failure", "cache_hit", "circuit_open", "circuit_half_open", "circuit_closed"
]


@dataclass(frozen=True)
class ToolEvent:
    kind: EventKind
    tool: str
    execution_id: str | None = None
    tenant_id: str | None = None
    attempt: int = 0
    duration: float | None = None
    # "<type the program saw>: <what failed, in full>": for the operator only; it may hold the host's
    # secrets (a command line, a server's stderr), so the program and the call record get a fixed text.
    error: str | None = None
    backend: str | None = None


EventCallback = Callable[[ToolEvent], None]


def _level(kind: str) -> int:
    return logging.WARNING if kind in ("failure", "retry", "circuit_open") else logging.DEBUG


class EventBus:
    def __init__(self) -> None:
        self._callbacks: list[EventCallback] = []

    def subscribe(self, callback: EventCallback) -> None:
        self._callbacks.append(callback)

    def listening(self, kind: str) -> bool:
        """Whether an event of this kind would reach anyone (skip building it otherwise)."""
        return bool(self._callbacks) or logger.isEnabledFor(_level(kind))

    def emit(self, event: ToolEvent) -> None:
        level = _level(event.kind)
        if logger.isEnabledFor(level):
            logger.log(
                level,
                "tool %s %s (execution=%s attempt=%d%s)",
                event.tool,
                event.kind,
                event.execution_id,
                event.attempt,
                f" error={event.error}" if event.error else "",
            )
        for callback in list(self._callbacks):
            try:
                callback(event)
            except Exception:  # a broken listener must not break a tool call
                logger.exception("ptc event callback %r failed", callback)
