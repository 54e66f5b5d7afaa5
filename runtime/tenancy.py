"""Admission: per-tenant quotas, and a fair share of the process's execution threads.

Every tenant has a gate (admission is on by default): at most
`max_concurrent` executions run and `max_queued` wait; past the queue,
`execute` fails at once with OverCapacityError instead of piling up work.
At most `max_sessions` sessions are open (each holds an instance between
its cells); past that, opening another fails at once with OverCapacityError.
A session's cells are executions like any other, under the same gate. A
tenant without a Quota of its own gets the default `Quota()`. Gates are
process-wide and keyed by tenant id, so every executor of a tenant shares
its quota: the first quota given for a tenant holds, and a different one
given later is a ValueError (silently replacing it would change the limits
of executors elsewhere in the process).

Behind the gates, `admission` shares the process's execution threads (each
running program holds one) between tenants: no tenant holds more than half
of them, and when they are all taken the next freed one goes to the waiting
tenant holding the fewest (in turn among equals), so a tenant whose quotas
add up to more than the process has cannot keep another tenant waiting.
"""

from __future__ import annotations

import threading

from pydantic import BaseModel, ConfigDict, Field

from ptc.errors import OverCapacityError
from ptc.handoff import WaitQueues


class Quota(BaseModel):
    """A tenant's admission limits (the defaults are every tenant's until it is given one)."""

    model_config = ConfigDict(frozen=True)

    max_concurrent: int = Field(8, ge=1, description="executions running at once")
    max_queued: int = Field(32, ge=0, description="executions waiting for a slot; more fail at once")
    max_sessions: int = Field(64, ge=0, description="sessions open at once (each keeps its sandbox instance)")


class _Gate:
    def __init__(self, tenant_id: str, quota: Quota, *, given: bool) -> None:
        self.tenant_id = tenant_id
        self.quota = quota
        self.given = given  # an executor gave this quota (else it is the default, until one does)
        self.active = 0
        self.sessions = 0  # open sessions
        self._lock = threading.Lock()
        self._waiters: WaitQueues[None, None] = WaitQueues(self._lock, lambda _: self.release())

    @property
    def queued(self) -> int:
        return len(self._waiters)

    async def acquire(self) -> None:
        with self._lock:
            if self.active < self.quota.max_concurrent:
                self.active += 1
                return
            if len(self._waiters) >= self.quota.max_queued:
                raise OverCapacityError(
                    f"tenant {self.tenant_id!r} is over capacity: {self.active} executions running "
                    f"and {len(self._waiters)} queued (quota {self.quota.max_concurrent} + {self.quota.max_queued})"
                )
            waiter = self._waiters.push(None)
        await self._waiters.wait(None, waiter)  # granted by release(): the slot is handed over, `active` unchanged

    def release(self) -> None:
        with self._lock:
            while self._waiters:
                if self._waiters.grant(None, None):
                    return
            self.active -= 1

    def open_session(self) -> None:
        """Count one more open session, or OverCapacityError at once."""
        with self._lock:
            if self.sessions >= self.quota.max_sessions:
                raise OverCapacityError(
                    f"tenant {self.tenant_id!r} has {self.sessions} sessions open, its quota "
                    f"(max_sessions={self.quota.max_sessions}); close one first"
                )
            self.sessions += 1

    def close_session(self) -> None:
        with self._lock:
            self.sessions -= 1

    def widen(self) -> None:
        """One more slot (the quota grew): a waiter gets it, else it stays free."""
        with self._lock:
            self.active += 1
        self.release()


class Tenants:
    """The process's tenants and their quotas: every executor of a tenant shares its gate.

    A quota changes only when said so (`set_quota`): an executor giving a
    quota for a tenant that already has a different one is a ValueError, never
    a silent replacement of the limits of executors elsewhere in the process.
    """

    def __init__(self) -> None:
        self._gates: dict[str, _Gate] = {}
        self._lock = threading.Lock()

    def gate(self, tenant_id: str, quota: Quota | None = None) -> _Gate:
        """The tenant's gate, made on first use with `quota` or the default Quota().

        The first quota given for a tenant holds for every executor of the
        tenant; giving the same one again is fine, a different one raises
        ValueError. `None` means "the tenant's quota, whatever it is".
        """
        with self._lock:
            gate = self._gates.get(tenant_id)
            if gate is None:
                gate = self._gates[tenant_id] = _Gate(tenant_id, quota or Quota(), given=quota is not None)
            elif quota is not None:
                if not gate.given:
                    gate.quota, gate.given = quota, True
                elif gate.quota != quota:
                    raise ValueError(
                        f"tenant {tenant_id!r} already has quota {gate.quota!r}; every executor of a tenant shares "
                        f"one quota, so give {quota!r} to a tenant of its own, the same quota (or none) here, "
                        "or change it for all with ptc.tenancy.tenants.set_quota()"
                    )
            return gate

    def quota(self, tenant_id: str) -> Quota:
        return self.gate(tenant_id).quota

    def set_quota(self, tenant_id: str, quota: Quota) -> Quota:
        """Change the tenant's quota for every executor of it; returns the old one.

        Running executions keep their slots; the new limits apply to what is
        admitted from now on (a lower `max_concurrent` takes effect as slots free up).
        """
        gate = self.gate(tenant_id)
        with self._lock:
            old, gate.quota, gate.given = gate.quota, quota, True
        if quota.max_concurrent > old.max_concurrent:
            for _ in range(quota.max_concurrent - old.max_concurrent):
                gate.widen()
        return old


tenants = Tenants()
gate_for = tenants.gate


EXECUTION_THREADS = 256  # the process's threads for running programs (each running program holds one)


class FairShare:
    """The process's execution threads, shared between tenants.

    `capacity` threads exist. A tenant may hold at most half of them (so a
    tenant alone can never make another wait for a thread), and when none is
    free a waiting execution queues; each freed thread goes to the waiting
    tenant that holds the fewest (in turn among equals), so no tenant gets
    more than its share while another waits.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._held: dict[str, int] = {}
        self._total = 0
        self._lock = threading.Lock()
        self._waiting: WaitQueues[str, str] = WaitQueues(self._lock, self.release)  # tenants in turn order

    def held(self, tenant_id: str) -> int:
        """Threads the tenant's executions hold now."""
        return self._held.get(tenant_id, 0)

    def running(self) -> int:
        """Threads held by all tenants now."""
        return self._total

    @property
    def ceiling(self) -> int:
        """The most threads one tenant may hold."""
        return max(1, self.capacity // 2)

    def queued(self, tenant_id: str | None = None) -> int:
        with self._lock:
            return self._waiting.count(tenant_id) if tenant_id is not None else len(self._waiting)

    async def acquire(self, tenant_id: str) -> None:
        with self._lock:
            if not self._waiting and self._total < self.capacity and self.held(tenant_id) < self.ceiling:
                self._take(tenant_id)
                return
            waiter = self._waiting.push(tenant_id)
            self._dispatch()  # a free thread may be this tenant's turn now
        await self._waiting.wait(tenant_id, waiter)  # granted by _dispatch: the thread is handed over, already counted

    def release(self, tenant_id: str) -> None:
        with self._lock:
            held = self._held[tenant_id] - 1
            if held:
                self._held[tenant_id] = held
            else:
                del self._held[tenant_id]
            self._total -= 1
            self._dispatch()

    def _take(self, tenant_id: str) -> None:
        self._held[tenant_id] = self.held(tenant_id) + 1
        self._total += 1

    def _dispatch(self) -> None:
        while self._total < self.capacity and self._waiting:
            eligible = [t for t in self._waiting if self.held(t) < self.ceiling]
            if not eligible:
                return
            tenant_id = min(eligible, key=self.held)  # the first of the fewest: turn order breaks ties
            self._take(tenant_id)
            if not self._waiting.grant(tenant_id, tenant_id):  # its loop is closed: the thread is not taken
                self._held[tenant_id] -= 1
                self._total -= 1
                if not self._held[tenant_id]:
                    del self._held[tenant_id]


admission = FairShare(EXECUTION_THREADS)
