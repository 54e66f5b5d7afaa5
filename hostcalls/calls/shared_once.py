"""Idempotency across processes: one run per key fleet-wide, through a shared state store (ptc.state).

In front stays the process's own cache (ptc.hostcalls.calls.idempotency):
callers in this process join one in-flight call and get its result from
memory, within the cache's bounds. The caller that runs the call here first
claims the key in the store, atomically: the claim is a lease its process
renews while the call runs. Another process holding it means waiting for
its stored result (polling with backoff, bounded by the call's timeout); a
claimant that dies stops renewing, its claim lapses after the store's lease,
and the next waiter claims the key and runs the call. A success is stored
for `Policy.idempotency_ttl`; a failure is not stored (the claim is given
back, and the next caller anywhere runs the call again), as in one process.

The store being down fails the call with a fixed-message ToolError (the
record and the event say why) unless the store falls back, in which case
the call runs under this process's single-flight only.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from ptc.errors import StateUnavailableError
from ptc.events import logger
from ptc.hostcalls.calls.failures import CallFailed
from ptc.hostcalls.calls.idempotency import IdempotencyCache, IdempotencyKey, claim_or_join, settled_on_failure
from ptc.state import SharedState

STATE_UNAVAILABLE_MESSAGE = "the shared state this call needs is unavailable; the call was not run"
_FIRST_POLL = 0.005
_MAX_POLL = 0.25


def state_failure(exc: StateUnavailableError) -> CallFailed:
    """What the program sees of a store that is down: a fixed sentence; the event gets the store's name."""
    return CallFailed("ToolError", STATE_UNAVAILABLE_MESSAGE, f"StateUnavailableError: {exc}")


async def shared_once(
    cache: IdempotencyCache,
    state: SharedState,
    key: IdempotencyKey,
    ttl: float,
    wait_limit: float | None,
    *,
    attempt: Callable[[], Awaitable[Any]],
    encode: Callable[[Any], Awaitable[str]],
    join: Callable[[str], str],
    joined: Callable[[bool], None],
) -> str:
    """The reply frame of the call `key` names, run once fleet-wide (see the module docstring).

    `wait_limit` bounds how long this caller waits for another process's run
    (the call's timeout; None: until the execution's deadline cancels it).
    """
    shared, reply = await claim_or_join(cache, key, ttl, join, joined)  # this process's callers first
    if reply is not None:
        return reply
    tenant, tool, digest = key
    store_key = f"idem:{len(tenant)}:{tenant}:{tool}:{digest}"  # the length: no tenant's name can end in another's
    token = uuid.uuid4().hex
    with settled_on_failure(cache, key, shared):
        stored = await _claim(state, store_key, token, wait_limit, joined)
    if stored is not None:  # another process ran it: its frame, charged to this execution like a joiner's
        cache.complete(key, shared, stored)
        return join(stored)
    try:
        value = await attempt()
        reply = await encode(value)
    except CallFailed as failure:
        await _give_back(state, store_key, token, None, ttl)
        cache.fail(key, shared, failure)
        raise
    except BaseException:
        await asyncio.shield(_give_back(state, store_key, token, None, ttl))
        cache.abandon(key, shared)
        raise
    await _give_back(state, store_key, token, reply, ttl)
    cache.complete(key, shared, reply)
    return reply


async def _claim(
    state: SharedState, store_key: str, token: str, wait_limit: float | None, joined: Callable[[bool], None]
) -> str | None:
    """None: this caller runs the call (it holds the claim, or the store fell back); else the stored frame."""
    deadline = None if wait_limit is None else time.monotonic() + wait_limit
    pause = _FIRST_POLL
    waiting = False
    while True:
        try:
            status, reply = await state.claim_call(store_key, token)
        except StateUnavailableError as exc:
            raise state_failure(exc) from None
        if status == "done":
            joined(True)
            assert reply is not None
            return reply
        if status in ("claimed", "local"):
            if waiting:
                joined(False)  # the claimant went away (its lease lapsed): this caller runs it
            return None
        if not waiting:
            waiting = True
            joined(True)
        if deadline is not None and time.monotonic() + pause > deadline:
            raise CallFailed(
                "ToolTimeoutError",
                f"another process running this idempotent call did not finish within {wait_limit:g} s",
            )
        await asyncio.sleep(pause)
        pause = min(pause * 2, _MAX_POLL)


async def _give_back(state: SharedState, store_key: str, token: str, reply: str | None, ttl: float) -> None:
    """Store the result (None: a failure, nothing stored) and end the claim; a store that is down loses only
    the sharing of this result (the claim lapses with its lease), never the call's own reply."""
    try:
        await state.finish_call(store_key, token, reply, ttl)
    except StateUnavailableError:
        logger.warning("ptc: an idempotent call's result could not be stored in the shared state (it was down)")
