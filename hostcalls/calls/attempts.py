"""The middle step of a call: attempts, retried with backoff, each judged by its backend's breaker.

The breakers are shared by every execution of the executor, so what a
program controls cannot change what the others get from them: only honest
backend failures count (`counts`), and the half-open trial is released
whatever happens to its call, so no program can keep every execution off a
backend by walking away from its trial.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from ptc.errors import CircuitOpenError, RetryableError, ToolError
from ptc.events import EventBus, EventKind, ToolEvent
from ptc.hostcalls.calls.breaker import CircuitBreaker, CircuitState
from ptc.hostcalls.calls.failures import CallFailed, tool_failure
from ptc.hostcalls.calls.shared_breaker import SharedBreaker
from ptc.policy import Policy
from ptc.state import SharedState

_CIRCUIT_EVENTS: dict[CircuitState, EventKind] = {
    "open": "circuit_open",
    "half_open": "circuit_half_open",
    "closed": "circuit_closed",
}


def counts(exc: BaseException) -> bool:
    """Whether a failed attempt counts against its backend's breaker: only an honest backend failure does.

    Counted: a timeout, a ConnectionError (an MCP server that died or cannot
    be reached), a RetryableError, and any other Exception the handler did
    not mean (a crash of the tool or its client library). Not counted: the
    ToolError family, which a tool raises on purpose ("no such customer"; an
    MCP `isError` reply arrives as one), and what is no failure of the
    backend at all (cancellation, an abandoned call, SystemExit from a
    command-line parser). Calls rejected before the backend is reached
    (validation, authorization, idempotency) never get here.
    """
    if isinstance(exc, (TimeoutError, ConnectionError, RetryableError)):
        return True
    return isinstance(exc, Exception) and not isinstance(exc, ToolError)


class Breakers:
    """One breaker per backend, labelled by tenant: a breaker never trips for another tenant's failures."""

    def __init__(self, tenant_id: str, events: EventBus) -> None:
        self.tenant_id = tenant_id
        self.events = events
        self.state: SharedState | None = None  # a shared store: every breaker is a SharedBreaker (fleet-wide)
        self._breakers: dict[str, CircuitBreaker | SharedBreaker] = {}

    def __getitem__(self, backend: str) -> CircuitBreaker | SharedBreaker:
        breaker = self._breakers.get(backend)
        if breaker is None:
            label = f"{self.tenant_id}:{backend}"
            if self.state is None:
                made: CircuitBreaker | SharedBreaker = CircuitBreaker(label, on_change=self._changed)
            else:
                key = f"cb:{len(self.tenant_id)}:{self.tenant_id}:{backend}"
                made = SharedBreaker(label, key, self.state, self._changed)
            breaker = self._breakers.setdefault(backend, made)
        return breaker

    def _changed(self, backend: str, state: CircuitState) -> None:
        event = ToolEvent(kind=_CIRCUIT_EVENTS[state], tool=backend, backend=backend, tenant_id=self.tenant_id)
        self.events.emit(event)


async def attempts(
    tool: str,
    breaker: CircuitBreaker | SharedBreaker,
    policy: Policy,
    attempt_once: Callable[[], Awaitable[Any]],
    on_attempt: Callable[[int], None],
    on_retry: Callable[[CallFailed], None],
) -> Any:
    """Run `attempt_once` until it succeeds, fails for good, or the breaker refuses; raise CallFailed."""
    attempt = 0
    while True:
        attempt += 1
        record: Callable[[bool], Awaitable[None] | None]  # the verdict on this attempt
        release: Callable[[], Awaitable[None] | None]  # its half-open trial given back
        if isinstance(breaker, CircuitBreaker):
            try:
                trial = breaker.before_call(policy)
            except CircuitOpenError as exc:
                raise CallFailed("CircuitOpenError", str(exc)) from None
            record, release = partial(breaker.record, policy=policy, trial=trial), partial(breaker.release, trial)
        else:
            shared_trial = await breaker.before(policy)  # CallFailed: open, or the store is down
            record = partial(breaker.record, policy=policy, trial=shared_trial)
            release = partial(breaker.release, shared_trial)
        on_attempt(attempt)
        transient = False
        try:
            value = await _judged(record, release, attempt_once)
        except TimeoutError:
            failure = CallFailed("ToolTimeoutError", f"{tool} did not answer within {policy.timeout:g} s")
            transient = True
        except (ConnectionError, RetryableError) as exc:
            failure = tool_failure(tool, exc)
            transient = True
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - the tool's own failure, even SystemExit
            failure = tool_failure(tool, exc)
        else:
            return value
        if not transient or attempt > policy.max_retries:
            raise failure
        on_retry(failure)
        await asyncio.sleep(policy.delay(attempt))


async def _judged(
    record: Callable[[bool], Awaitable[None] | None],
    release: Callable[[], Awaitable[None] | None],
    attempt_once: Callable[[], Awaitable[Any]],
) -> Any:
    """One attempt, and the breaker's verdict on it (the trial released in `finally`, whatever happens).

    A local breaker's steps are done when they return; a shared one's are
    awaited, and a cancel does not cut them short (`_done`)."""
    try:
        value = await attempt_once()
    except BaseException as exc:
        if counts(exc):
            await _done(record(False))
        raise
    else:
        await _done(record(True))
        return value
    finally:
        await _done(release())


async def _done(step: Awaitable[None] | None) -> None:
    if step is not None:
        await asyncio.shield(step)
