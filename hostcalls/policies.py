"""Per-tool policies: timeout, retries with backoff, circuit breaker, idempotency.

State (breakers, the idempotency cache) lives in process memory, per
executor; it is keyed by tenant so a future shared store can hold many.
It is shared by every execution of the executor (every client of `ptc
serve`), so nothing a program controls may change what the others get from
it: the router counts only honest backend failures, and a half-open trial
is a lease.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class RetryableError(Exception):
    """Raise from a tool to mark a failure as transient: the router may retry it."""


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


class IdempotencyConflict(Exception):
    pass


@dataclass
class _Entry:
    parameters: Any
    future: concurrent.futures.Future[Any]
    expires: float


class IdempotencyCache:
    """(tenant, tool, key) -> the call's result, shared by concurrent callers.

    The first call with a key runs the tool; a repeat, also one made while the
    first is still in flight, gets the same result. A failed call is not
    cached, so it can be tried again. Reusing a key with other parameters is
    an error, not a silent replay.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str, str], _Entry] = {}
        self._lock = threading.Lock()

    def claim(
        self, key: tuple[str, str, str], parameters: Any, ttl: float
    ) -> tuple[bool, concurrent.futures.Future[Any]]:
        """(True, future to fill) for the first caller, (False, future to await) for repeats."""
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.expires > now:
                if entry.parameters != parameters:
                    raise IdempotencyConflict(f"idempotency key {key[2]!r} was used with different parameters")
                return False, entry.future
            future: concurrent.futures.Future[Any] = concurrent.futures.Future()
            self._entries[key] = _Entry(parameters, future, now + ttl)
            if len(self._entries) > 4096:
                self._evict(now)
            return True, future

    def forget(self, key: tuple[str, str, str]) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def _evict(self, now: float) -> None:
        for key in [k for k, e in self._entries.items() if e.expires <= now]:
            del self._entries[key]
