"""One Ray actor: a ProgrammaticToolExecutor of its own, its sessions, and the events it owes the driver.

This class is made into a Ray actor by `ptc.ray.executor` (`ray.remote(...)(RayWorker)`), so this module
never imports ray: a process without the extra can still import `ptc.ray`. The actor is an *async*
actor (its methods are coroutines): Ray runs them on one event loop of the actor's, concurrently, which
is what `ProgrammaticToolExecutor.execute` wants (many executions at once, each on a thread of its own).

Everything the executor would tell its callbacks (tool events, audit events) goes into one buffer with a
sequence number per item. The driver takes them two ways: a long poll (`events`) that returns as soon as
there is something, and the tail handed back with each result, with the sequence number reached then,
so that the driver can deliver everything emitted up to a result before it returns that result.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

from ptc.approvals import ApprovalDecision
from ptc.audit import AuditEvent
from ptc.catalog import ToolCatalog
from ptc.errors import SessionClosedError
from ptc.events import ToolEvent
from ptc.executor import ProgrammaticToolExecutor
from ptc.journal import Journal
from ptc.limits import Limits
from ptc.results import Diagnostic, ExecutionResult
from ptc.sessions import Session
from ptc.state import SharedState

Item = tuple[int, str, Any]  # (sequence number from 1, "event" or "audit", the ToolEvent or AuditEvent)
Init = tuple[ToolCatalog | None, Mapping[str, Callable[..., Any]] | None, Mapping[str, Any]]
Reply = tuple[ExecutionResult, list[Item], int]  # a result, the items not taken yet, the last sequence number


class RayWorker:
    """The actor's side (see the module docstring); only ptc.ray.executor calls it."""

    def __init__(self, init: Init, events: bool, audit: bool) -> None:
        catalog, handlers, options = init  # (one object in Ray's store for every actor: pickled once)
        options = dict(options)
        factory = options.get("state")
        self._state: SharedState | None = None
        if factory is not None and not isinstance(factory, str):  # a store factory: this actor's own store
            options["state"] = self._state = factory()
        self._lock = threading.Lock()
        self._items: list[Item] = []
        self._seq = 0
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listen_events = events
        self._listen_audit = audit
        self.executor = ProgrammaticToolExecutor(
            catalog, handlers, on_event=self._on_event, on_audit=self._on_audit, **options
        )
        self.sessions: dict[str, Session] = {}

    # -- what the driver is owed ----------------------------------------------------
    def _on_event(self, event: ToolEvent) -> None:
        if self._listen_events:
            self._put("event", event)

    def _on_audit(self, event: AuditEvent) -> None:
        if self._listen_audit:
            self._put("audit", event)

    def _put(self, kind: str, item: object) -> None:
        """From any thread (the sandbox's for an inline tool, the loop's for the rest)."""
        with self._lock:
            self._seq += 1
            self._items.append((self._seq, kind, item))
            first = len(self._items) == 1
        loop = self._loop
        if first and loop is not None:
            loop.call_soon_threadsafe(self._wake.set)

    def _take(self) -> tuple[list[Item], int]:
        with self._lock:
            items, self._items = self._items, []
            return items, self._seq

    def listen(self, events: bool, audit: bool) -> None:
        """The driver registered its first callback of a kind: forward those from now on."""
        self._listen_events = self._listen_events or events
        self._listen_audit = self._listen_audit or audit

    async def events(self, wait: float) -> list[Item]:
        """The long poll: the items buffered, as soon as there is one (or [] after `wait` seconds)."""
        self._loop = asyncio.get_running_loop()
        with self._lock:
            empty = not self._items
            if empty:
                self._wake.clear()
        if empty:
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except TimeoutError:
                pass
        return self._take()[0]

    def _reply(self, result: ExecutionResult) -> Reply:
        items, seq = self._take()
        return result, items, seq

    # -- running ---------------------------------------------------------------------
    async def ready(self) -> int:
        """The runtime loaded (and the worker processes started, if any): the actor's process id."""
        self._loop = asyncio.get_running_loop()
        await self.executor.warm_up()
        return os.getpid()

    async def execute(self, code: str, limits: Limits | None, typecheck: bool | None) -> Reply:
        return self._reply(await self.executor.execute(code, limits=limits, typecheck=typecheck))

    async def resume(
        self,
        journal: Journal | str | bytes,
        decisions: Mapping[str, bool | str | ApprovalDecision] | None,
        limits: Limits | None,
    ) -> Reply:
        return self._reply(await self.executor.resume(journal, decisions, limits=limits))

    async def open_session(
        self,
        session_id: str,
        journal: Journal | str | bytes | None,
        limits: Limits | None,
        idle_timeout: float,
        max_journal_bytes: int,
        restore: bool,
    ) -> None:
        """A session of this id here: new, or rebuilt from `journal` (its completed cells replay, no tool runs).

        `restore`: the journal was given by the caller (restore_session), so it is checked even with no cells.
        """
        if journal is not None and (restore or not isinstance(journal, Journal) or journal.cells):
            session = await self.executor.restore_session(
                journal,
                session_id=session_id,
                limits=limits,
                idle_timeout=idle_timeout,
                max_journal_bytes=max_journal_bytes,
            )
        else:
            session = self.executor.session(session_id, limits, idle_timeout, max_journal_bytes)
        self.sessions[session_id] = session

    async def cell(self, session_id: str, code: str) -> Reply:
        session = self.sessions.get(session_id)
        if session is None:
            raise SessionClosedError(f"session {session_id} is closed: it is not open on its actor")
        try:
            return self._reply(await session.execute(code))
        finally:
            if session.closed:
                self.sessions.pop(session_id, None)

    async def close_session(self, session_id: str, reason: str) -> None:
        session = self.sessions.pop(session_id, None)
        if session is not None:
            await session.aclose(reason)

    # -- discovery and closing ---------------------------------------------------------
    async def search_tools(self, query: str, limit: int) -> list[dict[str, Any]]:
        await self.executor.connect()  # MCP and A2A tools are in the catalog once connected
        return self.executor.search_tools(query, limit)

    async def describe_tool(self, name: str) -> dict[str, Any] | None:
        await self.executor.connect()
        return self.executor.describe_tool(name)

    async def api_reference(self) -> str:
        await self.executor.connect()
        return self.executor.api_reference()

    async def check(self, code: str) -> list[Diagnostic]:
        await self.executor.connect()
        return await asyncio.to_thread(self.executor.check, code)  # ty runs as a subprocess: not on the loop

    async def close(self) -> None:
        """Close the executor (its sessions, MCP sessions, worker processes); the driver kills the actor after."""
        await self.executor.aclose()
        if self._state is not None:
            await asyncio.to_thread(self._state.close)
