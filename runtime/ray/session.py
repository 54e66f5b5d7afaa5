"""A session on a Ray cluster: pinned to one actor, its journal kept by the driver.

    executor.session() ─ RaySession ─ placed on the least-loaded actor (a ptc Session there)
      execute(cell) ─ one cell at a time, in call order ─ the cell's result carries the journal after it
      the actor is lost ─ this cell: internal_error "the worker was lost"
                        ─ the next cell: the journal replayed on another actor first (no tool runs),
                          then the cell runs there, session_restored=True

The driver keeps the journal of the completed cells (the last result's `journal`): the state a cell
sees after a loss is the one after the last completed cell, as after a limit stops a cell in one
process. With a shared state, the actor's executor has also stored that journal in the store (after
every cell, before the cell's result leaves the actor), so `restore_session(session_id)` finds it from
any driver; the driver does not write it a second time. Cells go one at a time from the driver (an
asyncio.Lock on the private loop, first come first served), so a restore never races a cell.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from ptc.closing import ClosedReason, Closing
from ptc.errors import SessionClosedError
from ptc.journal import Journal
from ptc.limits import Limits
from ptc.private.asyncio import running_loop
from ptc.ray.fleet import Fleet, Member, actor_error
from ptc.results import ExecutionResult

PLACE_ATTEMPTS = 3  # actors tried in a row when the one a session is being placed on dies meanwhile


class RaySession(ClosedReason, Closing):
    """A session of a RayExecutor (see the module docstring): `execute`, `execute_sync`, `aclose`/`close`."""

    def __init__(
        self,
        fleet: Fleet,
        forget: Callable[[RaySession], None],
        session_id: str,
        limits: Limits | None,
        idle_timeout: float,
        max_journal_bytes: int,
        journal: Journal | str | bytes | None = None,
    ) -> None:
        self.id = session_id
        self.limits = limits
        self.idle_timeout = idle_timeout
        self.max_journal_bytes = max_journal_bytes
        self._fleet = fleet
        self._forget = forget
        self._given = journal  # what the session starts from (restore_session), until a cell reports its own
        self._journal: Journal | None = journal if isinstance(journal, Journal) else None
        self._member: Member | None = None
        self._lost = False  # its actor was lost: the next cell starts by restoring on another
        self._closed: str | None = None
        self._cells = 0
        self._turn = asyncio.Lock()  # (made on the private loop, used there only)

    # -- state ------------------------------------------------------------------------
    @property
    def cells(self) -> int:
        """How many cells have run (also those a limit stopped or a lost actor ended)."""
        return self._cells

    @property
    def actor(self) -> Any:
        """The handle of the actor the session is on now (None before its first cell and after a loss)."""
        member = self._member
        return member.handle if member is not None and member.alive else None

    def journal(self) -> Journal | None:
        """The driver's copy of the journal: the completed cells (None before the first, unless restored)."""
        return self._journal

    # -- placing --------------------------------------------------------------------------
    async def _place(self) -> Member:
        """Open the session on the least-loaded actor: new, or rebuilt from the journal."""
        for attempt in range(PLACE_ATTEMPTS):
            member = self._fleet.pick()
            journal: Any = self._journal if self._journal is not None else self._given
            ref = member.handle.open_session.remote(
                self.id, journal, self.limits, self.idle_timeout, self.max_journal_bytes, self._given is not None
            )
            member.running += 1
            try:
                await ref
            except self._fleet.ray.exceptions.RayActorError as exc:
                self._fleet.lost(member, exc)
                if attempt + 1 == PLACE_ATTEMPTS:
                    raise
                continue
            except self._fleet.ray.exceptions.RayTaskError as exc:
                error = actor_error(exc)
                self._close_here(f"it could not be opened on an actor: {error}")
                raise error from None
            finally:
                member.running -= 1
            member.answered = True
            member.sessions += 1
            self._member = member
            return member
        raise AssertionError("unreachable")

    async def _open(self) -> None:
        """The first placement (restore_session awaits it: a bad journal raises there)."""
        async with self._turn:
            if self._member is None and self._closed is None:
                await self._place()

    # -- running ----------------------------------------------------------------------------
    async def execute(self, code: str) -> ExecutionResult:
        """Run one cell on the session's actor. Raises SessionClosedError once closed (and what the
        actor's session raises: OverCapacityError, ExecutorClosedError); never for what the program does."""
        self._check_open()  # (also once its executor closed: the driver's loop is gone then)
        return await self._fleet.submit(self._execute(code))  # type: ignore[no-any-return]

    def execute_sync(self, code: str) -> ExecutionResult:
        """execute() for callers without an event loop."""
        if running_loop() is not None:
            raise RuntimeError("execute_sync() called from a running event loop; use `await session.execute(code)`")
        self._check_open()
        return self._fleet.call(self._execute(code))

    async def _execute(self, code: str) -> ExecutionResult:
        async with self._turn:
            self._check_open()
            member = self._member
            restored = self._lost or (member is not None and not member.alive)  # lost running a cell, or idle
            if member is None or not member.alive:
                member = await self._place()
            self._lost = False
            started, clock = time.time(), time.perf_counter()
            try:
                result = await self._fleet.reply(member, member.handle.cell.remote(self.id, code))
            except SessionClosedError as exc:
                self._close_here(str(exc).partition(": ")[2] or str(exc))
                raise
            self._cells += 1
            if result is None:  # the actor was lost under this cell
                self._lost = True
                member.sessions -= 1
                self._member = None
                result = self._fleet.lost_result(code, self.limits, started, clock)
                result.session_id, result.cell, result.journal = self.id, self._lost_cell(), self._journal
                return result
            if result.journal is not None:
                self._journal = result.journal
            if restored:
                result.session_restored = True
            return result

    def _lost_cell(self) -> int:
        """The lost cell's index, which it keeps, as a cell a limit stopped does: the journal (the
        completed cells) counts it run, so the next cell, on another actor, numbers on past it."""
        journal = self._journal
        if journal is None:  # none completed yet: the session starts over on another actor, at cell 0
            return 0
        self._journal = journal.model_copy(update={"cells_run": journal.cells_run + 1})
        return journal.cells_run

    def _check_open(self) -> None:
        if self._closed is not None:
            raise SessionClosedError(f"session {self.id} is closed: {self._closed}")

    # -- closing -----------------------------------------------------------------------------
    def _close_here(self, reason: str) -> Member | None:
        """Closed on the driver's side: its id is free again; the actor it was on (if any) to tell."""
        if self._closed is not None:
            return None
        self._closed = reason
        member, self._member = self._member, None
        if member is not None:
            member.sessions -= 1
        self._forget(self)
        return member if member is not None and member.alive else None

    async def _aclose(self, reason: str) -> None:
        member = self._close_here(reason)
        if member is not None:
            try:
                await member.handle.close_session.remote(self.id, reason)
            except Exception:  # noqa: BLE001 - the actor is gone or closing: its sessions go with it
                pass

    async def aclose(self, reason: str = "it was closed") -> None:
        """Close the session here and on its actor (a running cell is cancelled there). Final; twice is fine."""
        if self._closed is None:
            await self._fleet.submit(self._aclose(reason))

    def close(self, reason: str = "it was closed") -> None:
        """aclose() for callers without an event loop (waits for the actor's answer up to 10 s)."""
        if self._closed is None:
            self._fleet.call(self._aclose(reason), timeout=10)

    def __repr__(self) -> str:
        state = f"closed: {self._closed}" if self._closed is not None else "open"
        return f"<RaySession {self.id} cells={self._cells} {state}>"
