"""A circuit breaker whose counts and state live in a shared store (ptc.state): one per backend and tenant, fleet-wide.

The same rules as the in-process CircuitBreaker (ptc.hostcalls.calls.breaker),
evaluated atomically in the store on the store's clock: N consecutive honest
failures anywhere open it for every process, after the cool-down exactly one
call fleet-wide is the half-open trial (a lease of `trial_lease(policy)`,
given back whatever happens to the call), and its verdict closes or reopens
it for all. A process that sees a change fires the event (`circuit_open`,
...) itself, so each change is announced once, by the process that made it.

With the store down and no fallback, a call needing the breaker fails with a
fixed-message ToolError (nothing runs without it); with fallback, the
process's own breaker judges until the store is back. A verdict the store
missed while down is lost (the call itself already ended), logged.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from ptc.errors import CircuitOpenError, StateUnavailableError
from ptc.events import logger
from ptc.hostcalls.calls.breaker import CircuitBreaker, CircuitState, trial_lease
from ptc.hostcalls.calls.failures import CallFailed
from ptc.hostcalls.calls.shared_once import state_failure
from ptc.policy import Policy
from ptc.state import SharedState

# What `before` hands back and `record`/`release` take: a trial token ("" when not the trial),
# or the local breaker's trial id while the store is down with fallback.
Trial = str | int


class SharedBreaker:
    def __init__(
        self, backend: str, key: str, state: SharedState, on_change: Callable[[str, CircuitState], None]
    ) -> None:
        self.backend = backend
        self.key = key
        self.state = state
        self.on_change = on_change
        self.local = CircuitBreaker(backend, on_change=on_change)  # the fallback's, while the store is down

    async def before(self, policy: Policy) -> Trial:
        """The trial token (or "") if the call may go ahead; CallFailed (circuit open, store down) if not."""
        token = uuid.uuid4().hex
        try:
            answer = await self.state.breaker_before(self.key, policy.circuit_reset_timeout, trial_lease(policy), token)
        except StateUnavailableError as exc:
            raise state_failure(exc) from None
        if answer is None:
            try:
                return self.local.before_call(policy)
            except CircuitOpenError as exc:
                raise CallFailed("CircuitOpenError", str(exc)) from None
        before, after, verdict, wait = answer
        self._changed(before, after)
        if verdict == "refuse":
            raise CallFailed("CircuitOpenError", str(CircuitOpenError.after(self.backend, wait)))
        return token if verdict == "trial" else ""

    async def record(self, ok: bool, policy: Policy, trial: Trial) -> None:
        if isinstance(trial, int):
            self.local.record(ok, policy, trial)
            return
        try:
            answer = await self.state.breaker_record(self.key, ok, policy.circuit_failure_threshold, trial)
        except StateUnavailableError:
            logger.warning("ptc: a verdict for breaker %r was lost: the shared state is unavailable", self.backend)
            return
        if answer is None:
            self.local.record(ok, policy, 0)
            return
        self._changed(*answer)

    async def release(self, trial: Trial) -> None:
        if isinstance(trial, int):
            self.local.release(trial)
        elif trial:
            try:
                await self.state.breaker_release(self.key, trial)
            except StateUnavailableError:
                pass  # the trial's lease lapses on its own

    def _changed(self, before: str, after: str) -> None:
        state = _STATES.get(after)
        if before != after and state is not None:
            self.on_change(self.backend, state)


_STATES: dict[str, CircuitState] = {"closed": "closed", "open": "open", "half_open": "half_open"}
