"""Tool-call events: to callbacks registered on the executor and to logging.

Most are the router's (start, retry, complete, ...). A backend may say more
about the call it is running (an A2A task's status updates: `a2a_status`)
through `call_emitter()`, which the router sets for the duration of each
call, so the event carries the call's tool, execution, tenant and attempt.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal

logger = logging.getLogger("ptc")
logger.addHandler(logging.NullHandler())  # a library logs; the application decides where to

EventKind = Literal[
    "start",
    "retry",
    "complete",
    "failure",
    "cache_hit",
    "circuit_open",
    "circuit_half_open",
    "circuit_closed",
    "a2a_status",
    "approval",
    "state_unavailable",  # the shared state store went down (text: what happens now); tool is "" (no call)
    "state_restored",  # ... and is reachable again
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
    # a2a_status: the remote task's state ("working", "input-required", ...), its id, and the
    # agent's status text (upstream text, cut to A2A_STATUS_TEXT characters).
    # approval: the decision in `state` ("approved", "denied", "timed_out"), who made it in `text`.
    state: str | None = None
    task_id: str | None = None
    text: str | None = None


A2A_STATUS_TEXT = 500
EventCallback = Callable[[ToolEvent], None]
# `emit(kind, **ToolEvent fields)` for the call running in this context (None outside a call).
CallEmitter = Callable[..., None]
_call_emitter: ContextVar[CallEmitter | None] = ContextVar("ptc_call_emitter", default=None)


def call_emitter() -> CallEmitter | None:
    """The running call's event emitter: a backend's own events carry the call's tool, execution and attempt."""
    return _call_emitter.get()


@contextlib.contextmanager
def emitting(emitter: CallEmitter) -> Iterator[None]:
    """`emitter` is the current call's inside the block (the router, around one call)."""
    token = _call_emitter.set(emitter)
    try:
        yield
    finally:
        _call_emitter.reset(token)


def _level(kind: str) -> int:
    return (
        logging.WARNING if kind in ("failure", "retry", "circuit_open") else logging.DEBUG
    )  # state_*: RedisState logs


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
