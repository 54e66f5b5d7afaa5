"""The driver's side of N Ray actors: starting them, choosing one, noticing one is gone, replacing it.

All of it runs on the driver's private event loop (`Fleet.loop`, one thread): the members, their
loads and the event streams are touched from there only, so they need no locks. Callers on any loop
or thread hand coroutines to it (`submit`, `call`).

A member is lost when a call to it raises RayActorError (ActorDiedError: killed, its node or process
gone; ActorUnavailableError: unreachable). Then: every execution it was running returns an
`internal_error` result, "the worker was lost" (never sent again: its tools may have run), the actor
is killed for good (an unreachable one could still be running a program), and a new actor takes its
place at once, with the same catalog, handlers and options.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import re
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import Future
from typing import Any, TypeVar

from ptc.audit import AuditCallback, AuditEvent, Auditor
from ptc.errors import WorkerStartError, require_ray
from ptc.events import EventCallback, ToolEvent, logger
from ptc.limits import Limits
from ptc.loop_thread import LoopThread
from ptc.ray.actor import RayWorker, Reply
from ptc.ray.stream import Stream
from ptc.results import ExecutionErrorInfo, ExecutionResult

T = TypeVar("T")
LOST = "the worker was lost"
FAILED_STARTS = 3  # actors in a row that die before answering anything: the fleet stops replacing them
POLL_WAIT = 5.0  # seconds one long poll for events waits on an idle actor before it asks again


def import_ray(feature: str) -> Any:
    """The ray module (typed Any: ray's own annotations are not checked here), or MissingExtraError."""
    require_ray(feature)
    return importlib.import_module("ray")


class Member:
    """One actor as the driver sees it."""

    def __init__(self, index: int, handle: Any, stream: Stream) -> None:
        self.index = index
        self.handle = handle
        self.stream = stream
        self.alive = True
        self.running = 0  # calls in flight (executions, cells, resumes)
        self.sessions = 0  # sessions pinned to it
        self.pump: asyncio.Task[None] | None = None
        self.answered = False  # it has answered a call: it started (a death before that may be its start failing)


class Fleet:
    def __init__(
        self,
        ray: Any,
        init: Any,
        size: int,
        actor_options: Mapping[str, Any],
        tenant_id: str,
        limits: Limits,
        on_event: EventCallback | None = None,
        on_audit: AuditCallback | None = None,
    ) -> None:
        self.ray = ray
        self._init = init  # an ObjectRef of (catalog, handlers, options): serialized once, for every actor
        self._worker = ray.remote(RayWorker).options(max_restarts=0, max_task_retries=0, **actor_options)
        self.tenant_id = tenant_id
        self.limits = limits
        self.event_callbacks: list[EventCallback] = [on_event] if on_event is not None else []
        self.auditor = Auditor(tenant_id, [on_audit] if on_audit is not None else [])  # (forwarding on from the start)
        self.members: list[Member] = []
        self.replaced = 0  # actors started to replace lost ones
        self._failed_starts = 0
        self.broken: str | None = None  # why no more actors are started (WorkerStartError)
        self._thread = LoopThread("ptc-ray")
        self.loop = self._thread.loop
        self.call(self._start(size))

    # -- the private loop ------------------------------------------------------------
    def submit(self, coro: Coroutine[Any, Any, T]) -> Any:
        """Run `coro` on the private loop; await what this returns on the caller's loop."""
        return self._thread.submit(coro)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run `coro` on the private loop and wait for it here (a caller without a loop, or a short step)."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    async def _start(self, size: int) -> None:
        self.members = [self._spawn(index) for index in range(size)]

    def _spawn(self, index: int) -> Member:
        handle = self._worker.remote(self._init, self.event_callbacks != [], self.auditor.callbacks != [])
        member = Member(index, handle, Stream(self._deliver))
        member.pump = self.loop.create_task(self._pump(member))
        return member

    # -- events and audit ----------------------------------------------------------------
    def listen(self, callback: EventCallback | None = None, audit: AuditCallback | None = None) -> None:
        """A driver callback; the first of its kind turns forwarding on in every actor (from then on)."""
        first_event = callback is not None and not self.event_callbacks
        first_audit = audit is not None and not self.auditor.callbacks
        if callback is not None:
            self.event_callbacks.append(callback)
        if audit is not None:
            self.auditor.add(audit)
        if first_event or first_audit:
            for member in list(self.members):
                member.handle.listen.remote(first_event, first_audit)

    def _deliver(self, kind: str, item: Any) -> None:
        if kind == "event" and isinstance(item, ToolEvent):
            callbacks: list[Callable[[Any], None]] = list(self.event_callbacks)
        elif kind == "audit" and isinstance(item, AuditEvent):
            callbacks = list(self.auditor.callbacks)
        else:
            return
        for callback in callbacks:
            try:
                callback(item)
            except Exception:  # as in one process: a broken listener is logged and skipped
                logger.exception("ptc %s callback %r failed", kind, callback)

    async def _pump(self, member: Member) -> None:
        """The long poll of one actor's events, while it lives."""
        while member.alive:
            try:
                items = await member.handle.events.remote(POLL_WAIT)
            except asyncio.CancelledError:
                raise
            except self.ray.exceptions.RayActorError as exc:
                self.lost(member, exc)
                return
            except Exception:  # noqa: BLE001 - an event the driver cannot unpickle: logged, the poll goes on
                logger.exception("ptc.ray: taking the events of actor %d failed", member.index)
                await asyncio.sleep(0.1)
                continue
            member.answered = True
            member.stream.add(items)

    # -- choosing and losing ---------------------------------------------------------------
    def pick(self) -> Member:
        """The least-loaded live actor: fewest calls in flight, then fewest pinned sessions.

        A lost member is replaced at once, so there is always a live one, unless actors kept dying as
        they started: then WorkerStartError, with Ray's account of the last death.
        """
        live = [m for m in self.members if m.alive]
        if not live or self.broken is not None:
            raise WorkerStartError(
                f"the Ray actors die as they start ({FAILED_STARTS} in a row): {self.broken or 'no actor is live'}"
            )
        return min(live, key=lambda m: (m.running, m.sessions, m.index))

    def lost(self, member: Member, error: BaseException) -> None:
        if not member.alive:
            return
        member.alive = False
        member.stream.end()
        if member.pump is not None and member.pump is not asyncio.current_task():
            member.pump.cancel()
        logger.warning("ptc.ray: actor %d was lost (%s); starting another", member.index, type(error).__name__)
        with contextlib.suppress(Exception):
            self.ray.kill(member.handle, no_restart=True)
        self._failed_starts = 0 if member.answered else self._failed_starts + 1
        if self._failed_starts >= FAILED_STARTS:
            self.broken = re.sub(r"\x1b\[[0-9;]*m", "", str(error))[:2000]  # (Ray colours its text)
            logger.error("ptc.ray: %d actors in a row died as they started; not starting more", FAILED_STARTS)
            return
        if self.members and self.members[member.index] is member:
            self.members[member.index] = self._spawn(member.index)
            self.replaced += 1

    async def reply(self, member: Member, ref: Any) -> ExecutionResult | None:
        """The result of one call to `member` (its events delivered first), or None if the actor was lost.

        Cancelling the caller cancels the actor's task (the program stops there); an error the actor's
        executor raised (OverCapacityError, JournalError, SessionClosedError, ...) is raised here as itself.
        """
        member.running += 1
        try:
            try:
                reply: Reply = await ref
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    self.ray.cancel(ref)
                raise
            except self.ray.exceptions.RayActorError as exc:
                self.lost(member, exc)
                return None
            except self.ray.exceptions.RayTaskError as exc:
                raise actor_error(exc) from None
        finally:
            member.running -= 1
        member.answered = True
        result, items, seq = reply
        member.stream.add(items)
        await member.stream.through(seq)
        return result

    def lost_result(self, code: str, limits: Limits | None, started: float, clock: float) -> ExecutionResult:
        """The one result of an execution whose actor died under it (and its audit event, made here)."""
        result = ExecutionResult(
            execution_id=f"ptc_{uuid.uuid4().hex}",
            tenant_id=self.tenant_id,
            error=ExecutionErrorInfo(kind="internal_error", type="WorkerLostError", message=LOST),
            execution_time=time.perf_counter() - clock,
        )
        self.auditor.record(code, started, limits or self.limits, result)
        return result

    # -- closing -------------------------------------------------------------------------
    async def aclose(self, timeout: float) -> None:
        """Close every actor's executor (MCP sessions, worker processes), then kill the actors."""
        members, self.members = self.members, []
        for member in members:
            member.alive = False
            if member.pump is not None:
                member.pump.cancel()
            member.stream.end()
        closing = [member.handle.close.remote() for member in members]
        if closing:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.gather(*closing, return_exceptions=True), timeout)
        for member in members:
            with contextlib.suppress(Exception):
                self.ray.kill(member.handle, no_restart=True)

    def stop(self) -> None:
        """The private loop ends (after aclose)."""
        self._thread.close()


def actor_error(exc: BaseException) -> BaseException:
    """What an actor's method raised, as itself (an executor's OverCapacityError, JournalError, ...), not
    wrapped in Ray's RayTaskError; Ray's own error when the cause is not an Exception."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, Exception) else exc
