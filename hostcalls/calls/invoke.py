"""The last step of a call: run the handler, one way of four.

* an async handler: awaited on the executor's event loop, under the
  policy's timeout;
* a sync handler: on the shared sync threads (ptc.hostcalls.calls.sync_threads),
  the timeout starting once it runs;
* an inline sync handler (`Policy(inline=True)`): on the sandbox's own
  thread, to the end (no timeout can stop it; it saves two thread hops,
  ~60 µs on a 2-vCPU VM, most of a trivial call's cost);
* an inline handler that returns an awaitable while no loop runs: finished
  on the sandbox thread's own loop, bounded by the execution's deadline,
  which nothing else enforces while the sandbox thread is in it.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from ptc.approvals import ApprovalDecision, ApprovalRequest
from ptc.catalog import Binding
from ptc.errors import ToolTimeoutError
from ptc.hostcalls.calls.failures import DEADLINE_MESSAGE, DeadlinePassed
from ptc.hostcalls.calls.sync_threads import SyncLane, SyncThreads
from ptc.hostcalls.wasm.budget import HostBudget
from ptc.policy import Policy
from ptc.private.asyncio import running_loop
from ptc.telemetry import ExecutionTrace

_thread = threading.local()


def no_deadline() -> float:
    return math.inf


@dataclass(eq=False)
class CallContext:
    """One execution, as every step of its calls sees it (the session's records are not theirs)."""

    execution_id: str
    loop: asyncio.AbstractEventLoop
    max_frame_bytes: int
    budget: HostBudget
    deadline: Callable[[], float] = no_deadline  # a time.monotonic() value: bounds its inline calls
    sync_lane: SyncLane = field(default_factory=SyncLane)
    idempotency_keys: dict[tuple[str, str], str] = field(default_factory=dict)  # (tool, key) -> parameters' digest
    session_id: str | None = None  # a session's cell
    suspendable: bool = False  # a deferred approval may suspend the execution (a one-shot one)
    decisions: dict[str, ApprovalDecision] = field(default_factory=dict)  # given to resume, by call id
    deferred: dict[str, ApprovalRequest] = field(default_factory=dict)  # calls waiting for resume, by call id
    suspended: bool = False  # the execution suspended: its deferred calls are cancelled, not failed
    trace: ExecutionTrace | None = None  # its span and metrics (ptc.telemetry); None: not tracing


def inline_loop() -> asyncio.AbstractEventLoop:
    """The sandbox thread's own event loop, for inline calls (one per worker thread, kept)."""
    loop: asyncio.AbstractEventLoop | None = getattr(_thread, "loop", None)
    if loop is None:
        loop = _thread.loop = asyncio.new_event_loop()
    return loop


async def by_deadline(awaitable: Coroutine[Any, Any, Any], deadline: float) -> Any:
    """Await on this thread's loop, but not past `deadline` (a time.monotonic() value): then DeadlinePassed."""
    if deadline == math.inf:
        return await awaitable
    bound = asyncio.timeout(deadline - time.monotonic())
    try:
        async with bound:
            return await awaitable
    except TimeoutError:
        if bound.expired():
            raise DeadlinePassed(DEADLINE_MESSAGE) from None
        raise


async def invoke(
    binding: Binding, params: dict[str, Any], policy: Policy, context: CallContext, sync_threads: SyncThreads
) -> Any:
    handler = binding.handler
    is_async = inspect.iscoroutinefunction(handler)
    if is_async or policy.inline:
        pending: Any = handler(**params) if binding.kwargs else handler(params)
        if not is_async:  # inline: a sync handler ran here, to the end; no timeout can stop it
            if not inspect.isawaitable(pending):
                return pending
            if running_loop() is None:  # run by hand: finish it on this thread's loop
                bounded = by_deadline(asyncio.wait_for(pending, policy.timeout), context.deadline())
                try:
                    return inline_loop().run_until_complete(bounded)
                except DeadlinePassed as exc:
                    raise ToolTimeoutError(str(exc)) from None
    else:
        call = functools.partial(handler, **params) if binding.kwargs else functools.partial(handler, params)
        # waits for this execution's share of the sync threads; the timeout below starts once it runs
        pending = await sync_threads.run(context.sync_lane, call)
    async with asyncio.timeout(policy.timeout):
        value = await pending
        if inspect.isawaitable(value):
            value = await value
    return value
