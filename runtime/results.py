"""What an execution returns to its caller."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, computed_field

from ptc.approvals import ApprovalRequest
from ptc.journal import Journal
from ptc.records import Subscriptable, ToolCallRecord

ErrorKind = Literal[
    "syntax_error",
    "runtime_error",
    "timeout",
    "out_of_fuel",
    "memory_limit",
    "tool_call_limit",
    "cancelled",
    "internal_error",
    "type_error",  # refused before it ran: Limits(typecheck=True) and the checker found errors (`diagnostics`)
]


class Diagnostic(BaseModel):
    """One finding of the type check of a program (`executor.check`), at the program's own line and column.

    `line` and `column` are 1-based and count in the program as given (the
    checker reads it wrapped in an async function; ptc.typecheck maps them
    back). `code` is the checker's rule (`unknown-argument`,
    `invalid-typed-dict-key`, ...); `message` is its text, capped.
    """

    line: int
    column: int
    code: str
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.severity}[{self.code}] {self.message}"


class Dropped(BaseModel):
    """What a budget kept out of a result, so its reader (a model) knows what it did not get, and why.

    what "result": the final value, `size` bytes encoded, was dropped whole
    (`result` is None) for being over `limit`. what "output": the output was
    cut after its first `size` bytes (UTF-8); everything written after them
    is gone.
    """

    what: Literal["result", "output"]
    size: int
    limit: int
    setting: str = Field(description='the limit that applied, e.g. "Limits.max_result_bytes"')

    def __str__(self) -> str:
        if self.what == "result":
            return f"the result ({self.size} bytes) was dropped: more than {self.setting} = {self.limit}"
        return f"the output was cut after {self.size} bytes ({self.setting} = {self.limit}); the rest was dropped"


class ExecutionErrorInfo(BaseModel):
    """How a program failed (`result.error`): data for the caller, not an exception ptc raises."""

    kind: ErrorKind
    type: str = Field(description="the exception class name, e.g. ZeroDivisionError")
    message: str
    traceback: str = Field("", description="the program's frames only")
    diagnostics: list[Diagnostic] | None = Field(
        None, description='kind "type_error": what the check found (the message lists them too)'
    )

    def __str__(self) -> str:
        return f"{self.kind}: {self.type}: {self.message}"


class ExecutionResult(Subscriptable):
    execution_id: str
    tenant_id: str = "default"
    output: str = Field("", description="stdout and stderr, interleaved as written")
    stdout: str = ""
    stderr: str = ""
    output_truncated: bool = False
    result: Any = Field(None, description="`result` if the program set it, else its last expression's value")
    result_is_repr: bool = Field(
        False, description="the value was not plain data, so `result` holds its repr (a string) instead"
    )
    error: ExecutionErrorInfo | None = None
    dropped: list[Dropped] = Field(
        default_factory=list, description="what the result's budgets dropped (the value, output), with the caps"
    )
    execution_time: float = Field(0.0, description="seconds, end to end")
    fuel_used: int | None = None
    memory_used: int | None = Field(
        None,
        description="bytes of sandbox memory at the end (its peak); None when a trap, timeout or cancel stopped it",
    )
    host_memory_peak: int = Field(
        0,
        description=(
            "the most bytes the host held for this execution at once (its calls and their records, queued "
            "replies, output, the result), as charged against Limits.max_host_bytes"
        ),
    )
    tool_calls: list[ToolCallRecord] = Field(default_factory=list, description="every call, in call order")
    session_id: str | None = Field(None, description="the session this cell ran in (None: a one-shot execution)")
    cell: int | None = Field(None, description="the cell's number in its session (0, 1, ...)")
    session_restored: bool = Field(
        False,
        description=(
            "a limit, trap or cancellation stopped this cell, and the session went on from its journal in a fresh "
            "instance: its state is the one after the last completed cell"
        ),
    )
    journal: Journal | None = Field(
        None,
        exclude=True,
        description=(
            "what the execution (or the session, after this cell) was given, to replay it "
            "(executor.restore_session; a suspended execution's: executor.resume); None past max_journal_bytes. "
            "Not in model_dump(): it holds seeds and replies"
        ),
    )

    suspended: bool = Field(
        False, description="the program waits for approvals (pending_approvals): executor.resume(journal, decisions)"
    )
    pending_approvals: list[ApprovalRequest] = Field(
        default_factory=list, description="the calls a suspended execution waits on, each for a decision"
    )

    @property
    def ok(self) -> bool:
        return self.error is None and not self.suspended

    @computed_field  # type: ignore[prop-decorator]  # in model_dump() and result["status"], as the other fields
    @property
    def status(self) -> Literal["completed", "failed", "suspended"]:
        """ "suspended" (waiting for approvals), "failed" (an error ended it) or "completed"."""
        if self.suspended:
            return "suspended"
        return "failed" if self.error is not None else "completed"


ExecutionError = ExecutionErrorInfo  # the name before 0.2: data about an error, not an exception
