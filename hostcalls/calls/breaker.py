"""The circuit breaker: one per backend and tenant, shared by every execution of an executor.

It is shared by every execution (every client of `ptc serve`), so nothing a
program controls may change what the others get from it: the router counts
only honest backend failures (ptc.hostcalls.calls.attempts), and a half-open
trial is a lease.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from ptc.errors import CircuitOpenError
from ptc.policy import Policy

CircuitState = Literal["closed", "open", "half_open"]


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
    _trials: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def trial_running(self) -> bool:
        return self.trial != 0 and time.monotonic() < self.trial_expires

    def before_call(self, policy: Policy) -> int:
        """Raise CircuitOpenError to fail fast; otherwise the call may go ahead.

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
                raise CircuitOpenError.after(self.backend, self.trial_expires - now)
            raise CircuitOpenError.after(self.backend, max(0.0, policy.circuit_reset_timeout - waited))

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
