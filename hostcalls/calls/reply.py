"""A call's result as its reply frame, held against the execution's budget until the guest takes it.

What cannot fit is refused before it is encoded (an encoding is two more
copies): the result's length is a lower bound of its encoded size, and is
held from the start, so concurrent replies cannot all pass the check before
any is charged. A large result is encoded on a worker thread: on the
caller's loop, a burst of 8 MiB replies held it for ~10 ms each.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from pydantic import BaseModel

from ptc.hostcalls.calls.failures import CallFailed
from ptc.hostcalls.calls.invoke import CallContext
from ptc.hostcalls.wasm import codec
from ptc.hostcalls.wasm.budget import ITEM_COST, OVER_BUDGET_MESSAGE
from ptc.private.asyncio import running_loop

OFF_LOOP_BYTES = 256 * 1024  # results at least this long are encoded off the event loop


def _encode_result(value: Any) -> str:
    codec.check_plain(value, tuples=True)
    return codec.encode({"ok": value})


def _too_large(tool: str, size: int, limit: int, *, least: bool = False) -> CallFailed:
    return CallFailed(
        "ToolError", f"{tool} returned {'at least ' if least else ''}{size} bytes, more than the {limit}-byte limit"
    )


def _over_cap(tool: str, size: int, cap: int, *, least: bool = False) -> CallFailed:
    """The tool's own result budget (Policy.max_result_bytes): a failure the program reads and acts on."""
    return CallFailed(
        "ToolResultTooLarge",
        f"{tool} returned {'at least ' if least else ''}{size} bytes, more than its {cap}-byte result limit "
        f"(max_result_bytes): ask for less (a filter, a page, fewer fields)",
    )


async def encode_reply(tool: str, value: Any, context: CallContext, cap: int | None = None) -> str:
    """The reply frame of a result, charged to the execution's budget, or CallFailed.

    `cap` is the tool's Policy.max_result_bytes: a larger encoding is a ToolResultTooLarge naming its exact
    size (one past the frame limit is refused before it is encoded, naming the lower bound).
    """
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    least = len(value) if isinstance(value, (str, bytes, list, dict, tuple)) else 0  # >= 1 byte each
    if least > context.max_frame_bytes:
        if cap is not None and cap < context.max_frame_bytes:
            raise _over_cap(tool, least, cap, least=True)
        raise _too_large(tool, least, context.max_frame_bytes, least=True)
    if not context.budget.charge(least):
        raise CallFailed("ToolError", OVER_BUDGET_MESSAGE)
    try:
        try:
            if least >= OFF_LOOP_BYTES and running_loop() is context.loop:
                reply = await asyncio.to_thread(_encode_result, value)
            else:
                reply = _encode_result(value)
        except (TypeError, ValueError, OverflowError) as exc:
            raise CallFailed("ToolError", f"{tool} returned a value that is not plain data ({exc})") from None
        if cap is not None and len(reply) > cap:
            raise _over_cap(tool, len(reply), cap)
        if len(reply) > context.max_frame_bytes:
            raise _too_large(tool, len(reply), context.max_frame_bytes)
        if not context.budget.charge(len(reply) - least):  # held from here until the guest has it
            raise CallFailed("ToolError", OVER_BUDGET_MESSAGE)
    except BaseException:
        context.budget.release(least)
        raise
    return reply


def shared_reply(tool: str, reply: str, context: CallContext, cap: int | None = None) -> str:
    """Another call's reply frame (an idempotent call's), charged to this execution's budget, or CallFailed."""
    if cap is not None and len(reply) > cap:
        raise _over_cap(tool, len(reply), cap)
    if len(reply) > context.max_frame_bytes:
        raise _too_large(tool, len(reply), context.max_frame_bytes)
    if not context.budget.charge(len(reply)):
        raise CallFailed("ToolError", OVER_BUDGET_MESSAGE)
    return reply


def json_data(text: str, context: CallContext) -> Any:
    """A result that is JSON text (an object or an array) as that data; any other text as it is.

    Parsing builds an object per element, which the text's length does not
    bound, so an upper bound of the elements (one per separator or bracket)
    is held against the execution's budget while it parses: text that would
    not fit, does not parse, or is not plain data ptc can send stays text.
    """
    if text.lstrip()[:1] not in ("{", "[") or len(text) > context.max_frame_bytes:
        return text
    cost = (text.count(",") + text.count(":") + text.count("[") + text.count("{") + 1) * ITEM_COST
    if not context.budget.charge(cost):
        return text
    try:
        value = json.loads(text)
        codec.check_plain(value, tuples=True)
    except (ValueError, RecursionError):  # codec.FrameError is a ValueError
        return text
    finally:
        context.budget.release(cost)
    return value
