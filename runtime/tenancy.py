"""Per-tenant admission: at most N executions at once, a bounded queue behind them.

Gates are process-wide and keyed by tenant id, so every executor of a tenant
shares its quota. Past the queue, `execute` fails at once with
OverCapacityError instead of piling up work.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque

from ptc.errors import PtcError
from pydantic import BaseModel, ConfigDict, Field


class OverCapacityError(PtcError):
    """The tenant's concurrent executions and queue are full; try again later."""


class Quota(BaseModel):
    model_config = ConfigDict(frozen=True)

    max_concurrent: int = Field(8, ge=1, description="executions running at once")
    max_queued: int = Field(32, ge=0, description="executions waiting for a slot; more fail at once")


class _Gate:
    def __init__(self, tenant_id: str, quota: Quota) -> None:
        self.tenant_id = tenant_id
        self.quota = quota
        self.active = 0
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()
        self._lock = threading.Lock()

    @property
    def queued(self) -> int:
        return len(self._waiters)

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self.active < self.quota.max_concurrent:
                self.active += 1
                return
            if len(self._waiters) >= self.quota.max_queued:
                raise OverCapacityError(
                    f"tenant {self.tenant_id!r} is over capacity: {self.active} executions running "
                    f"and {len(self._waiters)} queued (quota {self.quota.max_concurrent} + {self.quota.max_queued})"
                )
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append((loop, waiter))
        try:
            await waiter  # resolved by release(): the slot is handed over, `active` unchanged
        except asyncio.CancelledError:
            with self._lock:
                if (loop, waiter) in self._waiters:
                    self._waiters.remove((loop, waiter))
                    raise
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot arrived just as we were cancelled
            raise

    def release(self) -> None:
        with self._lock:
            while self._waiters:
                loop, waiter = self._waiters.popleft()
                if not waiter.done():
                    loop.call_soon_threadsafe(self._hand_over, waiter)
                    return
            self.active -= 1

    def _hand_over(self, waiter: asyncio.Future[None]) -> None:
        if waiter.done():  # cancelled meanwhile: pass the slot on
            self.release()
        else:
            waiter.set_result(None)


_gates: dict[str, _Gate] = {}
_gates_lock = threading.Lock()


def gate_for(tenant_id: str, quota: Quota | None) -> _Gate | None:
    """The tenant's gate; a quota given here (re)sets it for every executor of the tenant."""
    with _gates_lock:
        gate = _gates.get(tenant_id)
        if quota is not None:
            if gate is None:
                gate = _gates[tenant_id] = _Gate(tenant_id, quota)
            else:
                gate.quota = quota
        return gate
