"""The idempotency cache: one run per key and exact parameters, its result shared by concurrent callers.

State lives in process memory, per executor, keyed by tenant so a future
shared store can hold many. It is bounded, and an idempotency key names one
exact call, so no program can claim a key another execution needs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import msgpack
from pydantic import BaseModel

from ptc.errors import PtcError
from ptc.hostcalls.calls.failures import CallFailed


class CallAbandoned(PtcError):
    """The caller running an idempotent call stopped before it finished: a joiner claims the key again."""


IdempotencyKey = tuple[str, str, str]  # (tenant, tool, digest of the user's key and the canonical parameters)


def _canonical(value: Any) -> Any:
    """Parameters as plain msgpack data in one order: equal calls encode equally, different ones never do."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="python")
    if isinstance(value, dict):
        pairs = [[_canonical(k), _canonical(v)] for k, v in value.items()]
        return {"map": sorted(pairs, key=lambda pair: msgpack.packb(pair[0], default=_opaque))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value


def _opaque(value: Any) -> Any:
    return ["repr", type(value).__qualname__, repr(value)]


def call_digest(key: str, parameters: Any) -> str:
    """SHA-256 of the user's key and the call's canonical (validated, defaults filled) parameters."""
    packed = msgpack.packb([key, _canonical(parameters)], default=_opaque, use_bin_type=True)
    return hashlib.sha256(packed).hexdigest()


@dataclass(eq=False)
class _Entry:
    future: concurrent.futures.Future[str]  # the call's reply frame, once it succeeded
    expires: float
    size: int = 0  # bytes held (the reply frame), 0 while in flight


DEFAULT_CACHE_BYTES = 64 * 1024 * 1024
DEFAULT_CACHE_ENTRIES = 4096


class IdempotencyCache:
    """(tenant, tool, key + parameters) -> the call's result, shared by concurrent callers.

    A key names one exact call: the cache key is a digest of the user's key
    and the call's canonical parameters. Calls repeating a key with the same
    parameters get the first call's result (also when the first is still in
    flight); the same key with other parameters is another call and just
    runs, so no execution can claim a predictable key and make every other
    execution's use of it fail. (The router still rejects reusing a key with
    other parameters inside one execution: that is the program's own bug.)

    A failed call is not cached, so it can be tried again; callers that had
    joined it get its failure. When the caller running the call is cancelled
    or walks away, the joiners get `CallAbandoned` and claim the key again:
    one of them runs the call, the others join it.

    Memory is bounded by `max_bytes` of encoded results (the reply frame
    the program receives) and `max_entries` keys, least recently used out
    first; a result bigger than `max_bytes // 4` is not cached at all (its
    call still succeeds). Nothing of the parameters is kept but the digest.
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES, max_entries: int = DEFAULT_CACHE_ENTRIES) -> None:
        if max_bytes < 0 or max_entries < 1:
            raise ValueError("the idempotency cache needs max_bytes >= 0 and max_entries >= 1")
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.max_entry_bytes = max_bytes // 4
        self.bytes = 0
        self._entries: OrderedDict[IdempotencyKey, _Entry] = OrderedDict()  # least recently used first
        self._lock = threading.Lock()
        self._next_sweep = 0.0

    def __len__(self) -> int:
        return len(self._entries)

    def claim(self, key: IdempotencyKey, ttl: float) -> tuple[bool, concurrent.futures.Future[str]]:
        """(True, future to settle) for the caller that runs the call, (False, future to await) for the others."""
        now = time.monotonic()
        with self._lock:
            if now >= self._next_sweep:
                self._sweep(now)
            entry = self._entries.get(key)
            if entry is not None and entry.expires > now:
                self._entries.move_to_end(key)
                return False, entry.future
            if entry is not None:
                self._drop(key)
            future: concurrent.futures.Future[str] = concurrent.futures.Future()
            future.set_running_or_notify_cancel()  # no caller awaiting it can cancel it for the others
            self._entries[key] = _Entry(future, now + ttl)
            self._evict()
            return True, future

    def complete(self, key: IdempotencyKey, future: concurrent.futures.Future[str], reply: str) -> None:
        """The call succeeded with `reply` (its reply frame): wake the joiners, keep it if it fits."""
        size = len(reply)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.future is future:
                if size > self.max_entry_bytes:
                    del self._entries[key]
                else:
                    entry.size = size
                    self.bytes += size
                    self._entries.move_to_end(key)
                    self._evict()
        future.set_result(reply)

    def fail(self, key: IdempotencyKey, future: concurrent.futures.Future[str], exc: BaseException) -> None:
        """The call failed (not cached): the joiners get `exc`, the next caller runs the call again."""
        self._forget(key, future)
        future.set_exception(exc)

    def abandon(self, key: IdempotencyKey, future: concurrent.futures.Future[str]) -> None:
        """The running caller stopped (cancelled, gone): the joiners claim the key again."""
        self._forget(key, future)
        future.set_exception(CallAbandoned())

    def _forget(self, key: IdempotencyKey, future: concurrent.futures.Future[str]) -> None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.future is future:
                self._drop(key)

    def _drop(self, key: IdempotencyKey) -> None:
        self.bytes -= self._entries.pop(key).size

    def _evict(self) -> None:
        """Least recently used results out until within bounds (calls in flight hold no bytes and stay)."""
        if self.bytes <= self.max_bytes and len(self._entries) <= self.max_entries:
            return
        for key, entry in list(self._entries.items()):
            if self.bytes <= self.max_bytes and len(self._entries) <= self.max_entries:
                break
            if entry.future.done():
                self._drop(key)

    def _sweep(self, now: float) -> None:
        """Expired results out (at most once a minute: the bounds hold without it, this frees memory sooner)."""
        self._next_sweep = now + 60.0
        for key in [k for k, e in self._entries.items() if e.expires <= now and e.future.done()]:
            self._drop(key)


@contextlib.contextmanager
def settled_on_failure(
    cache: IdempotencyCache, key: IdempotencyKey, shared: concurrent.futures.Future[str]
) -> Iterator[None]:
    """A claim's failure is its joiners' too (they get the ToolError); anything else abandons it (they claim again)."""
    try:
        yield
    except CallFailed as failure:
        cache.fail(key, shared, failure)
        raise
    except BaseException:
        cache.abandon(key, shared)
        raise


async def claim_or_join(
    cache: IdempotencyCache,
    key: IdempotencyKey,
    ttl: float,
    join: Callable[[str], str],
    joined: Callable[[bool], None],
) -> tuple[concurrent.futures.Future[str], str | None]:
    """This process's part of `once`: (the claim, None) when this caller runs the call, else (it, the reply
    another caller's run gave, through `join`). A runner that goes away makes its joiners claim again."""
    while True:
        first, shared = cache.claim(key, ttl)
        if first:
            return shared, None
        joined(True)
        try:
            reply = await asyncio.wrap_future(shared)
        except CallAbandoned:  # its runner was cancelled or went away: claim the key again
            joined(False)
            continue
        except CallFailed as failure:
            raise CallFailed(failure.type, failure.message, failure.detail) from None
        return shared, join(reply)


async def once(
    cache: IdempotencyCache,
    key: IdempotencyKey,
    ttl: float,
    *,
    attempt: Callable[[], Awaitable[Any]],
    encode: Callable[[Any], Awaitable[str]],
    join: Callable[[str], str],
    joined: Callable[[bool], None],
) -> str:
    """The reply frame of the call `key` names: run here by the first caller, joined by the others.

    The runner `attempt`s the call and `encode`s its result (charged to its
    own execution) into the frame the cache keeps; a joiner gets that frame
    through `join` (charged to its execution), never a second encoding. A
    failure of the tool is shared with the joiners; a failure to encode or
    hold the result is the runner's alone (its budget, its frame limit), so
    the joiners claim the key again, as when the runner goes away.
    `joined(True)` says this caller joined another's call, `joined(False)`
    that it claims the key again.
    """
    shared, reply = await claim_or_join(cache, key, ttl, join, joined)
    if reply is not None:
        return reply
    with settled_on_failure(cache, key, shared):
        value = await attempt()
    try:
        reply = await encode(value)
    except BaseException:
        cache.abandon(key, shared)
        raise
    cache.complete(key, shared, reply)
    return reply
