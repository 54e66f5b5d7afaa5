"""The journal: everything the host gave a program, so that it can be run again to the same state.

A program in the sandbox is deterministic but for what the host gives it:
its random seed, clock readings, tool replies (and when they arrive), stub
sources. A journal keeps all of it per cell, in order, with the cell's code:

    Journal                      version, catalog fingerprint, guest build, session id, cells run
    └── JournalCell (per cell)   code; seed; clocks, walls; calls; waits; modules; how it ended
        └── JournalCall          tool, digest of the call frame, answered at once?, the reply frame

Replaying it (ptc.replay) runs each cell's code again in a fresh instance and
answers every host call from the journal instead of the world: the random
bytes come from the same seed, each clock reading is the recorded one, each
tool call gets its recorded reply (after its tool and frame are checked
against the record), each `wait` returns the calls it returned then. No tool
runs again. Replies are the frames the program got, so a call that was
pending when a cell ended (say, a future approval) is a call with no reply:
a later resume can replay up to it.

A journal is hostile input when it comes back: `load` checks its format,
version, size, catalog and guest, and the structure replay relies on (every
wait names calls that were pending), before anything runs. A recorded reply
is only ever an answer given to the program (as a tool's reply is, through
the same frame and budget checks); nothing else trusts it.

A journal holds the cells' code, every tool reply they got and the random
seeds (so whoever holds it can predict what the program drew): keep it as
private as the session. It is excluded from `ExecutionResult` dumps.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
)

from ptc.approvals import ApprovalRequest
from ptc.catalog import ToolCatalog
from ptc.errors import JournalError

JOURNAL_VERSION = 1
DEFAULT_MAX_JOURNAL_BYTES = 16 << 20

# Clock readings the guest can be given: u64 on the wire, kept below 2**63 so
# that a restored clock can go on from the last one without wrapping.
_Reading = Annotated[int, Field(ge=0, lt=1 << 63)]
_Hex64 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
_Index = Annotated[int, Field(ge=0, lt=1 << 31)]  # a cell's number crosses the boundary as a u32


def _frame_to_json(frame: str | None) -> str | None:
    return None if frame is None else base64.b64encode(frame.encode("latin-1")).decode("ascii")


# A frame is msgpack carried as a latin-1 str (as it crosses the boundary); in JSON it is base64.
_Frame = Annotated[str, PlainSerializer(_frame_to_json, when_used="json")]

_CONFIG = ConfigDict(frozen=True, extra="forbid", revalidate_instances="always")


class JournalCall(BaseModel):
    """One tool call as the program made it and what it was answered."""

    model_config = _CONFIG

    tool: str = Field(max_length=1024, description="the tool the frame named ('<invalid frame>' if none)")
    frame: _Hex64 = Field(description="SHA-256 of the call frame (tool, parameters, idempotency key)")
    at_once: bool = Field(description="answered at submit (an inline tool, a refused call), not through wait")
    reply: _Frame | None = Field(None, description="the reply frame the program got; None if it never took one")

    @field_validator("reply", mode="before")
    @classmethod
    def _reply_frame(cls, value: Any, info: ValidationInfo) -> Any:
        if info.mode == "json" and isinstance(value, str):
            try:
                return base64.b64decode(value.encode("ascii"), validate=True).decode("latin-1")
            except (binascii.Error, UnicodeEncodeError):
                raise ValueError("a reply frame must be base64") from None
        if isinstance(value, str) and not _is_latin1(value):
            raise ValueError("a reply frame holds bytes (characters up to U+00FF) only")
        return value


def _is_latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


class JournalCell(BaseModel):
    """One cell: its code and everything the host gave it, in order per kind."""

    model_config = _CONFIG

    index: _Index = Field(description="the cell's number in its session (0 for a one-shot execution)")
    code: str
    seed: _Hex64 = Field(description="the seed of every random byte the cell was given")
    error: str | None = Field(None, max_length=256, description="the type of the error it ended with; None: ok")
    clocks: list[_Reading] = Field(default_factory=list, description="monotonic clock readings, ns")
    walls: list[_Reading] = Field(default_factory=list, description="wall-clock readings, ns since the epoch")
    calls: list[JournalCall] = Field(default_factory=list)
    waits: list[list[int]] = Field(
        default_factory=list, description="per `wait`: the calls (indices into calls) whose replies it returned"
    )
    modules: list[Annotated[str, Field(pattern=r"^([0-9a-f]{64})?$")]] = Field(
        default_factory=list, description="per stub module loaded: SHA-256 of its source ('' if there was none)"
    )


class JournalPending(BaseModel):
    """A call a suspended execution waits on: its record id, and which of the cell's calls it is."""

    model_config = _CONFIG

    call_id: str = Field(pattern=r"^tool_call_[1-9][0-9]{0,9}$")
    index: _Index = Field(description="the call in the last cell's calls (it has no reply)")


class Journal(BaseModel):
    """A session's (or one execution's) journal: `model_dump_json()` to keep it, `load` to check it back."""

    model_config = _CONFIG

    version: int = Field(description="the journal format (JOURNAL_VERSION when written)")
    kind: Literal["session", "execution"] = Field(
        "session", description="a session's cells, or one execution's program (which replays only as itself)"
    )
    catalog: str = Field(max_length=128, description="fingerprint of the tool catalog the cells ran against")
    guest: str = Field(max_length=128, description="the guest build the cells ran in (replay needs the same)")
    session_id: str | None = Field(None, max_length=256)
    warm: bool = Field(False, description="the instance ran the spare pool's warm-up before the first cell")
    cells_run: _Index = Field(0, description="cells run, also those a limit stopped (which are not kept)")
    cells: list[JournalCell] = Field(
        default_factory=list,
        description="the completed cells, in order (a suspended session's: then its suspended one)",
    )
    records: _Index = Field(0, description="tool-call records the execution made (its next call is records + 1)")
    pending: list[JournalPending] = Field(
        default_factory=list, description="a suspended execution: the calls awaiting a decision (executor.resume)"
    )
    resume_id: str | None = Field(
        None, max_length=64, description="a suspended execution's: one resume per journal (a second is refused)"
    )
    execution_id: str | None = Field(
        None, pattern=r"^ptc_[0-9a-f]{32}$", description="a suspended execution's id, which its resumed run keeps"
    )
    approvals: list[ApprovalRequest] = Field(
        default_factory=list,
        description="a suspended execution's requests, to show (a restored session's pending_approvals); "
        "never trusted: a resumed call is the replayed program's own, checked against the recorded frame",
    )

    @model_serializer(mode="wrap")
    def _without_empty_approvals(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """A journal with no requests is written as before the field existed (older readers take it)."""
        data: dict[str, Any] = handler(self)
        if not self.approvals:
            data.pop("approvals", None)
        return data


class _Versioned(BaseModel):
    version: int


def _opaque(value: Any) -> str:
    return f"<{type(value).__qualname__}>"  # never a repr: it may hold an address, other in every process


def fingerprint(catalog: ToolCatalog) -> str:
    """A digest of the catalog's definitions: the stubs and validation a replay needs to be the same.

    Definitions hold upstream text (any string, lone surrogates too) and
    defaults of any type: they are dumped as JSON with every non-ASCII
    character escaped and a non-JSON value named by its type.
    """
    digest = hashlib.sha256()
    for definition in sorted(catalog, key=lambda d: d.name):
        try:
            data = definition.model_dump(mode="json", fallback=_opaque)
            text = json.dumps(data, sort_keys=True, ensure_ascii=True, default=_opaque)
        except (ValueError, TypeError, RecursionError):  # say a default too large to write out: its name stands
            text = json.dumps(["unrepresentable", definition.name], ensure_ascii=True)
        digest.update(text.encode("ascii") + b"\0")
    return digest.hexdigest()


class Fingerprints:
    """A catalog's fingerprint, computed once per revision."""

    def __init__(self, catalog: ToolCatalog) -> None:
        self.catalog = catalog
        self._revision = -1
        self._value = ""

    def current(self) -> str:
        if self._revision != self.catalog.revision:
            revision = self.catalog.revision
            self._value, self._revision = fingerprint(self.catalog), revision
        return self._value


def load(
    source: Journal | str | bytes,
    *,
    catalog: str,
    guest: str,
    max_bytes: int,
    kind: Literal["session", "execution"] = "session",
) -> Journal:
    """The journal, checked: JournalError (and nothing run) for one that is malformed, truncated,
    too large, of a newer format, or from another catalog or guest build."""
    if isinstance(source, (str, bytes)):
        if len(source) > max_bytes:
            raise JournalError(f"the journal is {len(source)} bytes, more than max_journal_bytes ({max_bytes})")
        try:
            journal = Journal.model_validate_json(source)
        except ValidationError as exc:
            raise _malformed(exc, _version_of(source)) from None
    elif isinstance(source, Journal):
        try:
            journal = Journal.model_validate(source)  # revalidated: a Journal's fields can be set by hand
        except ValidationError as exc:
            raise _malformed(exc, None) from None
        if size(journal) > max_bytes:
            raise JournalError(f"the journal is larger than max_journal_bytes ({max_bytes})")
    else:
        raise JournalError(f"a journal is a Journal or its JSON, not {type(source).__name__}")
    if journal.version > JOURNAL_VERSION:
        raise JournalError(f"the journal has format {journal.version}; this ptc reads up to {JOURNAL_VERSION}")
    if journal.version < 1:
        raise JournalError(f"the journal's format {journal.version} is not one ptc ever wrote")
    if kind == "execution" and journal.kind != "execution":
        raise JournalError("the journal is a session's, not a suspended execution's (executor.restore_session)")
    if kind == "session" and journal.kind != "session":
        raise JournalError(
            "the journal is one execution's (result.journal), not a session's: a program runs its own event loop "
            "to the end, a cell does not, so it does not replay as a session's cell"
        )
    if journal.catalog != catalog:
        raise JournalError("the journal is from another tool catalog (its fingerprint differs from this executor's)")
    if journal.guest != guest:
        raise JournalError(f"the journal is from another sandbox guest build ({journal.guest}, this one is {guest})")
    _check_structure(journal)
    return journal


def _version_of(source: str | bytes) -> int | None:
    try:
        return _Versioned.model_validate_json(source).version
    except ValidationError:
        return None


def _malformed(exc: ValidationError, version: int | None) -> JournalError:
    if version is not None and version > JOURNAL_VERSION:
        return JournalError(f"the journal has format {version}; this ptc reads up to {JOURNAL_VERSION}")
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": str(exc)}
    where = ".".join(str(part) for part in first.get("loc", ())) or "the journal"
    return JournalError(f"the journal is malformed or truncated ({exc.error_count()} errors; {where}: {first['msg']})")


def _check_structure(journal: Journal) -> None:
    """What replay relies on: cells in order, waits naming pending calls once each, replies where taken."""
    last = -1
    for cell in journal.cells:
        if cell.index <= last:
            raise JournalError(f"journal cell {cell.index} comes after cell {last}: cells must be in order")
        last = cell.index
        delivered: set[int] = set()
        for wait in cell.waits:
            for index in wait:
                if not 0 <= index < len(cell.calls):
                    raise JournalError(f"journal cell {cell.index}: a wait names call {index}, which it does not hold")
                call = cell.calls[index]
                if call.at_once or call.reply is None or index in delivered:
                    raise JournalError(f"journal cell {cell.index}: a wait returns call {index}, which it cannot")
                delivered.add(index)
        for index, call in enumerate(cell.calls):
            if call.at_once and call.reply is None:
                raise JournalError(f"journal cell {cell.index}: call {index} was answered at once with no reply")
    if journal.pending:
        if journal.resume_id is None or not journal.cells or (journal.kind == "execution" and len(journal.cells) != 1):
            raise JournalError("only a suspended execution's or session's journal (with a resume id) has pending calls")
        calls = journal.cells[-1].calls  # a session's: its last cell is the suspended one
        for pending in journal.pending:
            if pending.index >= len(calls) or calls[pending.index].reply is not None or calls[pending.index].at_once:
                raise JournalError(f"the journal's pending call {pending.call_id} is not a call without a reply")
        if len({p.call_id for p in journal.pending}) != len(journal.pending):
            raise JournalError("the journal names a pending call twice")
    if journal.cells and journal.cells_run <= last:
        raise JournalError(f"the journal says {journal.cells_run} cells ran, but holds cell {last}")


# What size() counts per item, about what its JSON takes (on the high side).
READING_BYTES = 21
CALL_BYTES = 240
WAIT_BYTES = 4
WAITED_BYTES = 8
MODULE_BYTES = 70
CELL_BYTES = 400


def frame_bytes(frame: str) -> int:
    """What a frame takes in the journal's JSON (base64, quoted)."""
    return 4 * ((len(frame) + 2) // 3) + 2


def code_bytes(code: str) -> int:
    """What code takes in the journal's JSON (quoted and escaped; on the high side of pydantic's)."""
    return len(json.dumps(code))


def cell_size(cell: JournalCell) -> int:
    """The cell's size as ptc.hostcalls.wasm.tape counts it while recording."""
    return (
        CELL_BYTES
        + code_bytes(cell.code)
        + READING_BYTES * (len(cell.clocks) + len(cell.walls))
        + sum(CALL_BYTES + (frame_bytes(c.reply) if c.reply is not None else 0) for c in cell.calls)
        + sum(WAIT_BYTES + WAITED_BYTES * len(w) for w in cell.waits)
        + MODULE_BYTES * len(cell.modules)
    )


def size(journal: Journal) -> int:
    """The journal's size as counted against max_journal_bytes: about its JSON's, on the high side."""
    return CELL_BYTES + sum(cell_size(cell) for cell in journal.cells)
