"""The executor's side of shared state (ptc.state): which store, its warnings as events, quotas over it.

`state="redis://..."` makes a RedisState the executor owns (and closes);
a store object given is the caller's, shared by as many executors as it
likes. A store's warnings (down, falling back; back again) become
`state_unavailable` / `state_restored` events of every executor using it.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable
from functools import partial

from ptc.errors import JournalError, OverCapacityError, StateUnavailableError
from ptc.events import EventBus, EventKind, ToolEvent, logger
from ptc.journal import Journal
from ptc.state import JournalKind, SharedState
from ptc.tenancy import tenants


def shared_state(state: str | SharedState | None) -> tuple[SharedState | None, bool]:
    """(the store, whether the executor owns it): a URL makes a RedisState of its own."""
    if state is None:
        return None, False
    if isinstance(state, str):
        from ptc.redis_state import RedisState

        return RedisState(state), True
    if not isinstance(state, SharedState):
        raise TypeError(f"state must be None, a Redis URL or a ptc.RedisState, not {type(state).__name__}")
    return state, False


def state_warning(events: EventBus, tenant_id: str, message: str) -> None:
    kind: EventKind = "state_restored" if "reachable again" in message else "state_unavailable"
    events.emit(ToolEvent(kind=kind, tool="", tenant_id=tenant_id, text=message))


async def keep_journal(state: SharedState, kind: JournalKind, id_: str, journal: Journal) -> None:
    """Store a session's journal (after a cell) or a suspended execution's: a failure is logged, never raised,
    since the cell or execution it records has already run and its result must reach the caller."""
    try:
        stored = await state.put_journal(kind, id_, journal.model_dump_json(), state.journal_ttl)
    except StateUnavailableError as exc:
        stored = False
        logger.warning("ptc: the %s journal %s was not stored: %s", kind, id_, exc)
    if not stored:
        logger.warning("ptc: the %s journal %s is not in the shared state; it restores only from the result", kind, id_)


def is_journal_id(value: object) -> bool:
    """A plain id (restore or resume from the store), as against a journal's JSON text or bytes."""
    return isinstance(value, str) and not value.lstrip().startswith("{")


async def stored_journal(state: SharedState | None, kind: JournalKind, id_: str) -> str:
    """The JSON of the journal stored under `id_` (JournalError without a store or without that journal)."""
    if state is None:
        raise JournalError(
            f"{id_[:100]!r} is not a journal's JSON, and this executor has no shared state to load a journal by id from"
        )
    text = await state.get_journal(kind, id_)
    if text is None:
        raise JournalError(f"no {kind} journal {id_[:100]!r} in the shared state {state.name} (or it expired)")
    return text


async def by_id(state: SharedState | None, kind: JournalKind, journal: Journal | str | bytes) -> Journal | str | bytes:
    """`journal` itself; or, with a store and a plain id given, the JSON the store holds under that id."""
    if state is not None and is_journal_id(journal):
        assert isinstance(journal, str)
        return await stored_journal(state, kind, journal)
    return journal


async def claim_resume(state: SharedState, resume_id: str) -> bool | None:
    """True: this is the one resume of the journal fleet-wide; False: resumed before; None: fallback, local."""
    return await state.claim_once(f"resume:{resume_id}", state.journal_ttl)


_FIRST_POLL = 0.005
_MAX_POLL = 0.1


class SharedGate:
    """A tenant's quota held across every process sharing the store: slots and queue places are leases.

    `max_concurrent` slots and `max_queued` places in line are counted in
    the store (ptc.redis_state: sorted sets scored by expiry, taken and
    freed by Lua scripts, renewed by the holder's heartbeat; a place in line
    by each poll), so a process that dies gives its slots back after the
    store's lease. Queued executions are admitted in arrival order; each
    polls the store (5 ms, doubling to 100 ms), so a freed slot is taken
    within a poll. The quota read is this process's (`ptc.tenancy`): every
    process of a fleet should give a tenant the same one. Store down: the
    admission fails with StateUnavailableError, or with fallback the
    process's own gate admits (its limits are then per process).
    """

    def __init__(self, state: SharedState, tenant_id: str) -> None:
        self.state = state
        self.tenant_id = tenant_id
        base = f"quota:{len(tenant_id)}:{tenant_id}"
        self._runs = base + ":runs"
        self._sessions = base + ":sessions"
        self._session_slots: dict[str, str] = {}  # session key -> token ("" : the local gate's)
        self._lock = threading.Lock()

    async def acquire(self) -> Callable[[], None]:
        """Wait for one of the tenant's slots fleet-wide; returns what frees it (OverCapacityError past the queue)."""
        gate = tenants.gate(self.tenant_id)
        token = uuid.uuid4().hex
        pause = _FIRST_POLL
        try:
            while True:
                quota = gate.quota
                status = await self.state.take_slot(self._runs, token, quota.max_concurrent, quota.max_queued)
                if status == "ok":
                    return partial(self.state.free_slot, self._runs, token)
                if status == "local":
                    await gate.acquire()
                    return gate.release
                if status == "full":
                    raise OverCapacityError(
                        f"tenant {self.tenant_id!r} is over capacity across every process sharing {self.state.name}: "
                        f"quota {quota.max_concurrent} running + {quota.max_queued} queued"
                    )
                await asyncio.sleep(pause)
                pause = min(pause * 2, _MAX_POLL)
        except BaseException:
            self.state.free_slot(self._runs, token)  # out of the line (a cancelled or refused wait)
            raise

    def open_session(self, key: str) -> None:
        """One more open session fleet-wide, or OverCapacityError at once (blocks this thread for one round trip)."""
        gate = tenants.gate(self.tenant_id)
        token = uuid.uuid4().hex
        taken = self.state.take_slot_now(self._sessions, token, gate.quota.max_sessions)
        if taken is None:
            gate.open_session()
            token = ""
        elif not taken:
            raise OverCapacityError(
                f"tenant {self.tenant_id!r} has {gate.quota.max_sessions} sessions open across every process "
                f"sharing {self.state.name}, its quota (max_sessions); close one first"
            )
        with self._lock:
            self._session_slots[key] = token

    def close_session(self, key: str) -> None:
        with self._lock:
            token = self._session_slots.pop(key, None)
        if token == "":
            tenants.gate(self.tenant_id).close_session()
        elif token is not None:
            self.state.free_slot(self._sessions, token)
