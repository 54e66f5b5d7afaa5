"""Per-tool policies: timeout, retries with backoff, circuit breaker, idempotency.

State (breakers, the idempotency cache) lives in process memory, per
executor; it is keyed by tenant so a future shared store can hold many.
"""

from __future__ import annotations

import concurrent.futures
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

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


@dataclass
class CircuitBreaker:
    """Closed -> (N consecutive failures) -> open -> (cool-down) -> half-open trial -> closed or open."""

    backend: str
    on_change: Callable[[str, CircuitState], None] = lambda backend, state: None
    state: CircuitState = "closed"
    failures: int = 0
    opened_at: float = 0.0
    trial_running: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def before_call(self, policy: Policy) -> None:
        """Raise CircuitOpen to fail fast; otherwise the call may go ahead."""
        with self._lock:
            if self.state == "closed":
                return
            waited = time.monotonic() - self.opened_at
            if self.state == "open" and waited >= policy.circuit_reset_timeout:
                self._set("half_open")
            if self.state == "half_open" and not self.trial_running:
                self.trial_running = True
                return
            raise CircuitOpen(self.backend, max(0.0, policy.circuit_reset_timeout - waited))

    def record(self, ok: bool, policy: Policy) -> None:
        with self._lock:
            self.trial_running = False
            if ok:
                self.failures = 0
                if self.state != "closed":
                    self._set("closed")
                return
            self.failures += 1
            if self.state == "half_open" or self.failures >= policy.circuit_failure_threshold:
                self.opened_at = time.monotonic()
                if self.state != "open":
                    self._set("open")

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
