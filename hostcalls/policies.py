"""Per-tool policies: timeout, retries with backoff, circuit breaker, idempotency.

State (breakers, the idempotency cache) lives in process memory, per
executor; it is keyed by tenant so a future shared store can hold many.
It is shared by every execution of the executor (every client of `ptc
serve`), so nothing a program controls may change what the others get from
it: the router counts only honest backend failures, a half-open trial is a
lease, an idempotency key names one exact call and the cache is bounded.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import itertools
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import msgpack
from pydantic import BaseModel, ConfigDict, Field


class RetryableError(Exception):
    """Raise from a tool to mark a failure as transient: the router may retry it.

    Its message is for the operator (events, logs); a program whose call
    finally fails sees "<tool> failed (RetryableError)". Raise ToolError for a
    message the program should read.
    """


class BackendUnavailable(ConnectionError):
    """A tool's backend could not be reached (transient, retried).

    `str()` is the operator's detail (it may name a command line, a URL or a
    server's stderr); `public` is all a program sees: a fixed sentence naming
    the backend.
    """

    def __init__(self, detail: str, *, backend: str, public: str | None = None) -> None:
        super().__init__(detail)
        self.backend = backend
        self.public = public or f"{backend} is unavailable"


class Policy(BaseModel):
    """How calls to a tool are run. A per-tool Policy overrides only the fields it sets."""

    model_config = ConfigDict(frozen=True)

    timeout: float | None = Field(30.0, gt=0, description="seconds per attempt; None: no per-call timeout")
    max_retries: int = Field(0, ge=0, description="extra attempts after a transient failure")
    backoff: float = Field(0.1, ge=0, description="base delay; attempt n waits backoff * 2**n, jittered ±50%")
    circuit_failure_threshold: int = Field(5, ge=1, description="consecutive failures that open the circuit")
    circuit_reset_timeout: float = Field(30.0, ge=0, description="seconds open before a half-open trial")
    idempotency_ttl: float = Field(3600.0, ge=0, description="seconds a result is kept for its idempotency key")
    inline: bool = Field(
        False,
        description=(
            "run the call on the sandbox's own thread, with no thread hop (~4x faster round trip), for "
            "handlers that answer at once: a sync handler there cannot be timed out, an async one runs on "
            "that thread's own event loop, and calls under gather run one after another"
        ),
    )

    def merged(self, override: Policy | None) -> Policy:
        if override is None:
            return self
        return self.model_copy(update={name: getattr(override, name) for name in override.model_fields_set})

    def delay(self, attempt: int) -> float:
        """Backoff before retry number `attempt` (1-based), with jitter."""
        return self.backoff * (2 ** (attempt - 1)) * random.uniform(0.5, 1.5)


CircuitState = Literal["closed", "open", "half_open"]


class CircuitOpen(Exception):
    def __init__(self, backend: str, retry_in: float) -> None:
        super().__init__(f"circuit for {backend!r} is open after repeated failures; retry in {retry_in:.1f} s")


def trial_lease(policy: Policy) -> float:
    """How long a half-open trial may hold the breaker: its call's timeout, else the reset timeout."""
    return policy.timeout if policy.timeout is not None else policy.circuit_reset_timeout


@dataclass
class CircuitBreaker:
    """Closed -> (N consecutive failures) -> open -> (cool-down) -> half-open trial -> closed or open.

    The breaker only counts; the router decides what is a failure (an honest
    backend failure, never one the program chose). The half-open trial is a
    lease, because every execution of the backend waits on it: the call that
    holds it gives it back whatever happens to the call (`release`, from a
    `finally`: cancelled, abandoned, a failure that does not count), and a
    trial that never reports at all lapses after `trial_lease(policy)`, so no
    program can hold the circuit half-open forever by walking away.
    """

    backend: str
    on_change: Callable[[str, CircuitState], None] = lambda backend, state: None
    state: CircuitState = "closed"
    failures: int = 0
    opened_at: float = 0.0
    trial: int = 0  # the id of the half-open trial holding the lease, 0 when none
    trial_expires: float = 0.0
    _trials: itertools.count = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def trial_running(self) -> bool:
        return self.trial != 0 and time.monotonic() < self.trial_expires

    def before_call(self, policy: Policy) -> int:
        """Raise CircuitOpen to fail fast; otherwise the call may go ahead.

        Returns the trial's id when this call is the half-open trial, else 0;
        the caller passes it to `record` and, in a `finally`, to `release`.
        """
        with self._lock:
            if self.state == "closed":
                return 0
            now = time.monotonic()
            waited = now - self.opened_at
            if self.state == "open" and waited >= policy.circuit_reset_timeout:
                self._set("half_open")
            if self.state == "half_open":
                if self.trial == 0 or now >= self.trial_expires:  # none running, or its lease lapsed
                    self.trial = next(self._trials)
                    self.trial_expires = now + trial_lease(policy)
                    return self.trial
                raise CircuitOpen(self.backend, self.trial_expires - now)
            raise CircuitOpen(self.backend, max(0.0, policy.circuit_reset_timeout - waited))

    def record(self, ok: bool, policy: Policy, trial: int = 0) -> None:
        """A call's verdict: `ok` closes the circuit, a failure counts toward opening it."""
        with self._lock:
            if trial and trial == self.trial:
                self.trial = 0
            if ok:
                self.failures = 0
                if self.state != "closed":
                    self._set("closed")
                return
            self.failures += 1
            if self.state == "half_open" or self.failures >= policy.circuit_failure_threshold:
                self.opened_at = time.monotonic()
                self.trial = 0  # open again: the next trial comes after the cool-down
                if self.state != "open":
                    self._set("open")

    def release(self, trial: int) -> None:
        """The trial ended without a verdict (or already gave one): the next call may be the trial."""
        if trial:
            with self._lock:
                if self.trial == trial:
                    self.trial = 0

    def _set(self, state: CircuitState) -> None:
        self.state = state
        self.on_change(self.backend, state)


class CallAbandoned(Exception):
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
    future: concurrent.futures.Future[str]  # the result as an encoded reply payload, once the call succeeded
    expires: float
    size: int = 0  # bytes held (the encoded result), 0 while in flight


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

    Memory is bounded by `max_bytes` of encoded results (the reply payload
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

    def complete(self, key: IdempotencyKey, future: concurrent.futures.Future[str], payload: str) -> None:
        """The call succeeded with `payload` (its encoded result): wake the joiners, keep it if it fits."""
        size = len(payload)
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
        future.set_result(payload)

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
