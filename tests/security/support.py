"""The vocabulary of the adversarial tables: what a case expects, and how a known bug is marked.

A case's outcome check raises `OutcomeMismatch`; the checks every case gets
(nothing of the host reached, the next execution healthy) raise plain
AssertionErrors. A known bug is marked `xfail(strict=True, raises=OutcomeMismatch)`,
so only the documented wrong outcome is tolerated: a case marked as a bug
that also hurts the host, or that starts passing, fails the suite.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest

from ptc import ExecutionResult

# Every error kind an execution may legitimately end with; `internal_error` is ptc's own fault.
NAMED_KINDS = frozenset(
    {"syntax_error", "runtime_error", "timeout", "out_of_fuel", "memory_limit", "tool_call_limit", "cancelled"}
)
STOPPED = frozenset({"timeout", "out_of_fuel"})  # a CPU-bound program ends with one or the other
FS_ERRORS = frozenset({"FileNotFoundError", "PermissionError", "IsADirectoryError", "NotADirectoryError", "OSError"})

_ANY = object()


class OutcomeMismatch(AssertionError):
    """The execution ended, but not the way the case expects."""


class TooSlow(OutcomeMismatch):
    """The outcome was right but it came later than the case allows.

    A wall-clock bound on a shared 2-core machine also measures the machine:
    a stall of the whole process (seen here: 1.3 s, three executions in a row,
    once in some ten full runs) makes a correct stop late. The runner then
    runs the case once more; a stop that is really missing fails both times.
    """


@dataclass(frozen=True)
class Expect:
    """An expected outcome.

    kind: None for success, else the error kind(s) allowed.
    type: the exception type name(s) allowed (any when None).
    result: the exact value expected (unchecked when left out).
    check: a predicate on the whole ExecutionResult (must return True).
    max_seconds: an upper bound on the execution's own run time.
    limits: overrides of the executor's limits for this case.
    """

    kind: str | frozenset[str] | None = None
    type: str | frozenset[str] | None = None
    result: Any = _ANY
    check: Callable[[ExecutionResult], bool] | None = None
    max_seconds: float | None = None
    limits: dict[str, Any] | None = None

    def under(self, **limits: Any) -> Expect:
        """The same expectation, for a run with these limit overrides."""
        return replace(self, limits={**(self.limits or {}), **limits})


def ok(result: Any = _ANY, check: Callable[[ExecutionResult], bool] | None = None) -> Expect:
    return Expect(kind=None, result=result, check=check)


def fails(
    kind: str | frozenset[str],
    type: str | frozenset[str] | None = None,  # noqa: A002 - mirrors ExecutionErrorInfo.type
    check: Callable[[ExecutionResult], bool] | None = None,
    max_seconds: float | None = None,
) -> Expect:
    return Expect(kind=kind, type=type, check=check, max_seconds=max_seconds)


def caught(error_type: str, fragment: str = "") -> Expect:
    """The program caught a ToolError-family exception and set `result = [type name, message]`."""
    return Expect(
        kind=None,
        check=lambda r: isinstance(r.result, list) and r.result[0] == error_type and fragment in str(r.result[1]),
    )


def bug(reason: str) -> pytest.MarkDecorator:
    """A case that reveals a ptc bug: it keeps asserting the correct outcome, and is expected to fail only there."""
    return pytest.mark.xfail(strict=True, raises=OutcomeMismatch, reason=f"BUG: {reason}")


def _allowed(value: str, spec: str | frozenset[str]) -> bool:
    return value == spec if isinstance(spec, str) else value in spec


def describe(r: ExecutionResult) -> str:
    error = f"{r.error.kind}/{r.error.type}: {r.error.message[:300]!r}" if r.error else "no error"
    return f"{error}; result={r.result!r:.300}; output={r.output[:200]!r}"


def check_outcome(r: ExecutionResult, expect: Expect) -> None:
    """Raise OutcomeMismatch unless `r` is what `expect` describes."""
    if expect.kind is None:
        if r.error is not None:
            raise OutcomeMismatch(f"expected success, got {describe(r)}")
    else:
        if r.error is None or not _allowed(r.error.kind, expect.kind):
            raise OutcomeMismatch(f"expected error kind {expect.kind}, got {describe(r)}")
        if expect.type is not None and not _allowed(r.error.type, expect.type):
            raise OutcomeMismatch(f"expected error type {expect.type}, got {describe(r)}")
    if expect.result is not _ANY and r.result != expect.result:
        raise OutcomeMismatch(f"expected result {expect.result!r:.300}, got {describe(r)}")
    if expect.check is not None and not expect.check(r):
        raise OutcomeMismatch(f"the case's check failed on {describe(r)}")
    if expect.max_seconds is not None and r.execution_time > expect.max_seconds:
        raise TooSlow(f"took {r.execution_time:.2f} s, more than {expect.max_seconds} s: {describe(r)}")


def texts(r: ExecutionResult) -> list[str]:
    """Everything of an execution that its caller or the program may see, as text."""
    out = [r.output, r.stdout, r.stderr, repr(r.result)]
    if r.error is not None:
        out += [r.error.type, r.error.message, r.error.traceback]
    return out


async def on_time(attempt: Callable[[], Awaitable[str | None]]) -> None:
    """Run a timed check; when it comes back late (a message, not None), once more: see TooSlow.

    `attempt` asserts what it must every time and returns a message only for
    a wall-clock bound it missed; the second miss fails.
    """
    late = await attempt()
    if late is not None:
        late = await attempt()
    assert late is None, late
