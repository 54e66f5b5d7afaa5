"""Result budgets a model can see: what was dropped from a result says so, with the cap that dropped it.

Why: a model reading a result cannot tell a short answer from a cut one
unless the result says it was cut, by how much and under which limit; and
a cut that breaks the structure (half a JSON document) is worse than
none. So:

* the program's final value past `Limits.max_result_bytes` (its size as
  encoded for the host) is dropped whole, and `result.dropped` says what
  size it had and which cap it met (`apply_budgets`, on every execution and
  cell);
* output past `max_output_bytes` was already cut by the host; the result
  says where (`dropped`, what = "output");
* `ptc serve` shortens the value structurally to its JSON budget
  (`shorten_json`: lists keep their first items and end with a marker
  string, long strings keep a prefix and say how many characters went,
  objects keep their first keys and a marker key), so what a model gets
  is valid JSON that states what it lost; and bounds the call log
  (`bounded_calls`: the first and last calls, counts by tool, errors kept).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

import pydantic_core

from ptc.errors import PtcError
from ptc.hostcalls.wasm import codec
from ptc.limits import Limits
from ptc.results import Dropped, ExecutionResult

MIN_JSON_BUDGET = 256  # bytes: below this a shortened value cannot even say what it lost


OFF_LOOP_BYTES = 256 * 1024  # a value at least this long is measured off the event loop (an encoding is a copy)


async def apply_budgets(result: ExecutionResult, limits: Limits) -> None:
    """Drop a value past Limits.max_result_bytes and note every budget the result met (in place)."""
    if result.output_truncated:
        kept = len(result.output.encode("utf-8", "surrogatepass"))
        by_output_limit = kept >= limits.max_output_bytes or limits.max_output_bytes == 0
        result.dropped.append(
            Dropped(
                what="output",
                size=kept,
                limit=limits.max_output_bytes if by_output_limit else limits.host_bytes,
                setting="Limits.max_output_bytes" if by_output_limit else "Limits.max_host_bytes",
            )
        )
    cap = limits.max_result_bytes
    if cap is None or result.result is None:
        return
    value = result.result
    least = len(value) if isinstance(value, str | bytes | list | dict) else 0
    try:
        size = await asyncio.to_thread(_encoded_size, value) if least >= OFF_LOOP_BYTES else _encoded_size(value)
    except (TypeError, ValueError, OverflowError):  # not plain data (cannot happen for a decoded report)
        return
    if size > cap:
        result.result = None
        result.result_is_repr = False
        result.dropped.append(Dropped(what="result", size=size, limit=cap, setting="Limits.max_result_bytes"))


def _encoded_size(value: Any) -> int:
    return len(codec.encode(value))


def json_size(value: Any) -> int:
    """Bytes of `value` as compact JSON (UTF-8), as ptc serve writes it (non-finite floats as null)."""
    return len(pydantic_core.to_json(value, fallback=repr, inf_nan_mode="null"))


class _Over(PtcError):
    """The shortened value's JSON passed the budget: try keeping less (internal; never leaves shorten_json)."""


def shorten_json(value: Any, max_bytes: int) -> tuple[Any, bool]:
    """`value` (JSON-able) shortened until its compact JSON fits `max_bytes`, and whether it was shortened.

    Structure stays: a list keeps a prefix of its items and ends with the
    string "... N more items"; an object keeps its first keys and gets the
    key "..." with "N more keys"; a string keeps a prefix and ends with
    "... [N more characters]". Each try keeps half as many items per
    container as the one before, and stops as soon as its JSON passes the
    budget, so a try visits at most about `max_bytes` elements whatever the
    value's size: this runs on the loop `ptc serve` shares with every client.
    """
    max_bytes = max(max_bytes, MIN_JSON_BUDGET)
    try:
        _walk(value, None, max_bytes)
        return value, False
    except _Over:
        pass
    keep = max_bytes // 2
    while keep >= 1:
        try:
            return _walk(value, keep, max_bytes), True
        except _Over:
            keep //= 2
    return f"... [a value of {json_size(value)} bytes as JSON, more than {max_bytes}: dropped]", True


def _walk(value: Any, keep: int | None, max_bytes: int) -> Any:
    """`value` with every list, object and string cut to `keep` items (`keep * 8` characters); None keeps
    all. Raises _Over once the JSON of what it built passes `max_bytes`."""
    used = 0

    def add(size: int) -> None:
        nonlocal used
        used += size
        if used > max_bytes:
            raise _Over

    def text(item: str) -> str:
        if keep is not None and len(item) > keep * 8:
            item = item[: keep * 8] + f"... [{len(item) - keep * 8} more characters]"
        if len(item) > max_bytes:  # its JSON is at least this long: no need to encode it
            raise _Over
        add(_string_size(item))
        return item

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            return text(item)
        if isinstance(item, list):
            add(2)
            items = []
            for index, element in enumerate(item):
                if keep is not None and index == keep:
                    items.append(text(f"... {len(item) - keep} more items"))
                    add(1)
                    break
                add(1 if index else 0)
                items.append(walk(element))
            return items
        if isinstance(item, dict):
            add(2)
            out: dict[Any, Any] = {}
            for index, (key, element) in enumerate(item.items()):
                if keep is not None and index == keep:
                    out["..."] = text(f"{len(item) - keep} more keys")
                    add(7)  # ,"...":
                    break
                add((1 if index else 0) + _string_size(str(key)) + 1)
                out[key] = walk(element)
            return out
        add(_scalar_size(item))
        return item

    return walk(value)


def _string_size(item: str) -> int:
    """A string's JSON size; plain printable ASCII (the common case) without encoding it."""
    if item.isascii() and item.isprintable() and '"' not in item and "\\" not in item:
        return len(item) + 2
    return len(pydantic_core.to_json(item))


def _scalar_size(item: Any) -> int:
    if item is None or item is True:
        return 4
    if item is False:
        return 5
    if type(item) is int:
        return len(str(item))
    return len(pydantic_core.to_json(item, fallback=repr, inf_nan_mode="null"))


FIRST_CALLS = 10  # calls shown from the start of a long call log
LAST_CALLS = 10  # and from its end
MAX_ERRORS = 20  # failed calls kept from the middle, with their place


def bounded_calls(
    calls: list[Any], describe: Callable[[Any], dict[str, Any]], tool_of: Callable[[Any], str]
) -> dict[str, Any]:
    """A call log bounded for a model: {"tool_calls": shown, ...} with, past FIRST+LAST calls, a summary.

    The first and last calls are shown as they are; the middle is counted by
    tool, and its failed calls (up to MAX_ERRORS) are kept with their index,
    since a failure is what a model most needs to see.
    """
    if len(calls) <= FIRST_CALLS + LAST_CALLS:
        return {"tool_calls": [describe(c) for c in calls]}
    middle = calls[FIRST_CALLS : len(calls) - LAST_CALLS]
    errors: list[dict[str, Any]] = []
    failed = 0
    for index, call in enumerate(middle, FIRST_CALLS):
        shown = describe(call)
        if shown.get("error"):
            failed += 1
            if len(errors) < MAX_ERRORS:
                errors.append({"index": index, **shown})
    summary: dict[str, Any] = {
        "total": len(calls),
        "shown": f"the first {FIRST_CALLS} and the last {LAST_CALLS}; {len(middle)} between them are counted here",
        "by_tool": dict(Counter(tool_of(c) for c in calls).most_common()),
        "omitted_errors": failed,
    }
    if failed > len(errors):
        summary["omitted_errors_not_shown"] = failed - len(errors)
    return {
        "tool_calls": [describe(c) for c in calls[:FIRST_CALLS]]
        + [f"... {len(middle)} calls omitted (see tool_call_summary)"]
        + [describe(c) for c in calls[-LAST_CALLS:]],
        "tool_call_summary": summary,
        **({"tool_call_errors": errors} if errors else {}),
    }
