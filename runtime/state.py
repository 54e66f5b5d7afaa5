"""What idempotency, breakers, quotas and journals need from a shared state store.

An executor's policy state lives in its process by default (`state=None`):
the idempotency cache, the breakers and the tenant gates are plain objects
(ptc.hostcalls.calls.idempotency, .breaker, ptc.tenancy), and that path is
untouched, in behaviour and in cost. With a store (`state=RedisState(url)`,
ptc.redis_state) the same policies hold fleet-wide: every operation below is
atomic in the store, and everything held in it is a lease with an expiry,
so a process that dies gives back what it held.

Every method may raise StateUnavailableError (the store cannot be reached).
A store made with `fallback=True` does not: it answers `None` (or "local"),
which tells the caller to use its in-process state for this operation, and
says so once per outage through its warning callbacks (an event and the
`ptc` logger). This module is vocabulary: it imports nothing of ptc but the
errors, so the call pipeline and the executor can both depend on it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol, runtime_checkable

ClaimStatus = Literal["claimed", "busy", "done", "local"]
SlotStatus = Literal["ok", "queued", "full", "local"]
JournalKind = Literal["session", "execution"]
# (state before, state after, verdict): verdict "go" (closed), "trial" (this call is the half-open trial),
# "refuse" with the seconds until a call may try again.
BreakerAnswer = tuple[str, str, str, float]


@runtime_checkable
class SharedState(Protocol):
    """A store of policy state shared by every process that names it (see the module docstring)."""

    fallback: bool
    lease: float  # seconds a claim or slot lives without a renewal; the holder renews it every lease/3
    journal_ttl: float  # seconds a stored journal (and a resume's claim) is kept

    @property
    def name(self) -> str:
        """The store, for messages and logs: never its password."""

    def on_warning(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """Call `callback(message)` when the store goes down or comes back; returns what unsubscribes it."""

    # -- idempotency: one run per key fleet-wide ------------------------------------------------
    async def claim_call(self, key: str, token: str) -> tuple[ClaimStatus, str | None]:
        """("done", reply) if the key's result is stored; ("claimed", None) if `token` now holds its lease;
        ("busy", None) while another holds it; ("local", None): the store is down, run it here."""

    async def finish_call(self, key: str, token: str, reply: str | None, ttl: float) -> None:
        """Store `reply` for `ttl` s (None: failed or abandoned, nothing stored) and give the claim back."""

    # -- breakers: one state per backend and tenant, one half-open trial fleet-wide -------------
    async def breaker_before(self, key: str, reset: float, trial_lease: float, token: str) -> BreakerAnswer | None:
        """May a call go ahead? None: use the local breaker."""

    async def breaker_record(self, key: str, ok: bool, threshold: int, token: str) -> tuple[str, str] | None:
        """A verdict: (state before, state after); None: use the local breaker."""

    async def breaker_release(self, key: str, token: str) -> None:
        """The trial `token` ended: the next call may be the trial."""

    # -- quotas: slots are leases --------------------------------------------------------------
    async def take_slot(self, pool: str, token: str, limit: int, max_queued: int) -> SlotStatus:
        """ "ok": `token` holds one of `limit` slots of `pool` (renewed until `free_slot`); "queued": it waits
        in the pool's queue (call again); "full": the queue holds `max_queued` already; "local": down."""

    def take_slot_now(self, pool: str, token: str, limit: int) -> bool | None:
        """A slot at once or False (sessions: no queue), blocking this thread briefly; None: down, local."""

    def free_slot(self, pool: str, token: str) -> None:
        """Give the slot (or the place in the queue) back; returns at once (its lease covers a lost message)."""

    # -- journals --------------------------------------------------------------------------------
    async def put_journal(self, kind: JournalKind, id_: str, text: str, ttl: float) -> bool:
        """Store a journal's JSON under its id for `ttl` s; False: the store is down (fallback), not stored."""

    async def get_journal(self, kind: JournalKind, id_: str) -> str | None:
        """The journal's JSON, None when the store holds none of that id."""

    async def claim_once(self, key: str, ttl: float) -> bool | None:
        """True for the first caller fleet-wide (kept `ttl` s), False for every later one; None: down, local."""

    def close(self) -> None:
        """Let go of the connections and stop renewing (what it held lapses with its leases)."""
