"""One cell's inputs from the host: recorded as they are given (Recorder), or given back from a journal (Player).

ExecutionState hands the guest nothing nondeterministic but through its
tape: random bytes, monotonic and wall-clock readings, tool replies (at
submit, from `wait`, from a sync `call`), stub sources. A Recorder notes
each as it goes and makes the cell's `JournalCell` at the end; a Player
answers each from a recorded cell, checking on the way that the program
asks what it asked then (the same tool and call frame, no more readings or
waits than recorded, the same stub sources), and raises ReplayDivergedError
where it does not, before anything real happens: in replay the state never
dispatches a call. See ptc.journal for the format.

Random bytes are not recorded one by one: a cell has a 32-byte seed (from
`secrets`, or the journal's), and its n-th request for bytes is answered by
SHAKE-256(seed, n), so replaying the seed replays every byte (`random`'s
seed, `os.urandom`, `secrets`, `uuid.uuid4`). The seed never reaches the guest.

A Recorder counts what its cell adds to the journal (as ptc.journal.size
does) and stops at its `room`: it drops what it holds and records nothing
more (`overflowed`), so a program cannot make the host keep an unbounded
journal. A call's frame is recorded as its SHA-256 (of the bytes the guest
sent: the same guest build encodes the same call the same way, and the
journal names its build), which costs ~1 µs a call where a canonical
digest of the decoded parameters cost 14-26.
"""

from __future__ import annotations

import hashlib
import secrets
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ptc.errors import ReplayDivergedError
from ptc.hostcalls.wasm.budget import HostBudget
from ptc.journal import (
    CALL_BYTES,
    CELL_BYTES,
    MODULE_BYTES,
    READING_BYTES,
    WAIT_BYTES,
    WAITED_BYTES,
    JournalCall,
    JournalCell,
    cell_size,
    code_bytes,
    frame_bytes,
)

INVALID_FRAME = "<invalid frame>"
SEED_BYTES = 32


def frame_digest(frame: object) -> str:
    """SHA-256 of a call frame as the guest sent it (an Oversize one: of its size)."""
    if isinstance(frame, str):
        return hashlib.sha256(frame.encode("utf-8", "surrogatepass")).hexdigest()
    return hashlib.sha256(f"oversize {getattr(frame, 'size', 0)}".encode()).hexdigest()


def tool_of(request: object) -> str:
    """The tool a decoded request names (a refused frame names none)."""
    tool = request.get("tool") if isinstance(request, dict) else None
    return tool if isinstance(tool, str) else INVALID_FRAME


def source_digest(source: str | None) -> str:
    return "" if source is None else hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()


class Tape:
    """What both kinds share: the seed and the random bytes drawn from it."""

    replaying = False

    def __init__(self, seed: bytes) -> None:
        self.seed = seed
        self._draws = 0

    def random(self, count: int) -> bytes:
        self._draws += 1
        return hashlib.shake_256(self.seed + self._draws.to_bytes(8, "little")).digest(count)

    # Recording (a Player ignores these) ---------------------------------------
    def clock(self, value: int) -> int:
        return value

    def wall(self, value: int) -> int:
        return value

    def submitted(self, frame: object, request: object, reply: str | None) -> None:
        """A call was submitted; `reply` if it was answered at once."""

    def waited(self, items: list[tuple[int, str]]) -> None:
        """A wait returned these (call id, reply) pairs."""

    def took(self, call_id: int, reply: str) -> None:
        """A sync call returned this reply."""

    def module(self, source: str | None) -> None:
        """A stub module was served (or None: there is none)."""

    def cancelled(self, call_id: int) -> None:
        """The program stopped waiting for this call (a replay need not answer it, nor a resume dispatch it)."""

    def replays(self, kind: str, call_id: int = 0) -> bool:
        """This `kind` of host call ("calls", "waits", "take", "sleep") is answered from a journal."""
        return self.replaying

    # Replaying (only a tape whose `replays` says so is asked) -------------------
    def call(self, frame: object, request: object) -> JournalCall:
        raise NotImplementedError

    def wait(self) -> list[tuple[int, str]]:
        raise NotImplementedError

    def take(self, call_id: int) -> str:
        raise NotImplementedError


@dataclass(eq=False)
class _Call:
    tool: str
    frame: str
    at_once: bool
    reply: str | None


class Recorder(Tape):
    """Notes one cell's inputs, within `room` bytes of journal (a negative room: records nothing)."""

    def __init__(self, room: int, seed: bytes | None = None, budget: HostBudget | None = None) -> None:
        super().__init__(seed if seed is not None else secrets.token_bytes(SEED_BYTES))
        self.room = room
        self.recording = room >= 0
        self.overflowed = False
        self.size = CELL_BYTES
        # A one-shot execution's journal keeps every reply it got: the host holds that for the program, so
        # it is charged to the execution's budget (what does not fit ends the journal, not the execution).
        self.budget = budget
        self.charged = 0
        if budget is not None and self.recording:
            budget.give_way = self._give_way
        self.clocks = array("q")  # 8 bytes a reading (a list of ints took 36): a program may read the clock a lot
        self.walls = array("q")
        self.calls: list[_Call] = []
        self.waits: list[list[int]] = []
        self.modules: list[str] = []

    @classmethod
    def off(cls) -> Recorder:
        """A tape that records nothing (the spare pool's warm-up)."""
        return cls(-1)

    def _give_way(self) -> None:
        """The program's own traffic needs the room the journal holds: the journal ends (its replies go).
        Called from whichever thread charges (the event loop for a reply): it only drops, never appends."""
        self._overflow()

    def _overflow(self) -> None:
        if self.budget is not None:
            self.budget.release_yielding(self.charged)
            self.charged = 0
            self.budget.give_way = None
        self.recording, self.overflowed = False, True
        self.clocks, self.walls, self.calls, self.waits, self.modules = array("q"), array("q"), [], [], []

    def _grow(self, size: int) -> None:
        self.size += size
        if self.budget is not None and self.size <= self.room:
            if self.budget.charge_yielding(size):
                self.charged += size
            else:
                self.size = self.room + 1
        if self.size > self.room:
            self._overflow()

    def clock(self, value: int) -> int:
        if self.recording:
            self.clocks.append(value)
            self._grow(READING_BYTES)
        return value

    def wall(self, value: int) -> int:
        if self.recording:
            self.walls.append(value)
            self._grow(READING_BYTES)
        return value

    def submitted(self, frame: object, request: object, reply: str | None) -> None:
        if self.recording:
            self.calls.append(_Call(tool_of(request), frame_digest(frame), reply is not None, reply))
            self._grow(CALL_BYTES + (frame_bytes(reply) if reply is not None else 0))

    def waited(self, items: list[tuple[int, str]]) -> None:
        if self.recording:
            indices = []
            grown = WAIT_BYTES
            for call_id, reply in items:
                self.calls[call_id - 1].reply = reply
                indices.append(call_id - 1)
                grown += WAITED_BYTES + frame_bytes(reply)
            self.waits.append(indices)
            self._grow(grown)

    def took(self, call_id: int, reply: str) -> None:
        if self.recording:
            self.calls[call_id - 1].reply = reply
            self._grow(frame_bytes(reply))

    def module(self, source: str | None) -> None:
        if self.recording:
            self.modules.append(source_digest(source))
            self._grow(MODULE_BYTES)

    def cell(self, index: int, code: str, error: str | None) -> JournalCell | None:
        """The cell's journal, or None if it outgrew its room. Built without validation: it is ours."""
        if self.recording:
            self._grow(code_bytes(code))
        if not self.recording:
            return None
        calls = [
            JournalCall.model_construct(tool=c.tool, frame=c.frame, at_once=c.at_once, reply=c.reply)
            for c in self.calls
        ]
        return JournalCell.model_construct(
            index=index,
            code=code,
            seed=self.seed.hex(),
            error=error,
            clocks=self.clocks.tolist(),
            walls=self.walls.tolist(),
            calls=calls,
            waits=self.waits,
            modules=self.modules,
        )


def _shown(value: Any, limit: int = 200) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - data from the guest
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + "..."


class Player(Tape):
    """Answers one cell's host calls from its journal; ReplayDivergedError where the program departs from it."""

    replaying = True

    def __init__(self, cell: JournalCell) -> None:
        super().__init__(bytes.fromhex(cell.seed))
        self.cell = cell
        self.diverged: ReplayDivergedError | None = None
        self._clocks = self._walls = self._calls = self._waits = self._modules = 0
        self._pending: set[int] = set()

    def _diverge(self, message: str, *, call: int | None = None, recorded: str = "", asked: str = "") -> None:
        index = self.cell.index
        where = f"cell {index}" + (f", call {call}" if call is not None else "")
        error = ReplayDivergedError(
            f"replay diverged from the journal at {where}: {message}",
            cell=index,
            call=call,
            recorded=recorded,
            asked=asked,
        )
        if self.diverged is None:
            self.diverged = error
        raise error

    def clock(self, value: int) -> int:
        self._clocks += 1
        return self._reading(self.cell.clocks, self._clocks, "the monotonic clock")

    def wall(self, value: int) -> int:
        self._walls += 1
        return self._reading(self.cell.walls, self._walls, "the wall clock")

    def _reading(self, readings: list[int], count: int, clock: str) -> int:
        """The count-th recorded reading."""
        if count > len(readings):
            self._diverge(f"it read {clock} more than the {len(readings)} times recorded")
        return readings[count - 1]

    def call(self, frame: object, request: object) -> JournalCall:
        """The recorded call the program's next call must be (checked before anything runs)."""
        i, calls = self._calls, self.cell.calls
        tool = tool_of(request)
        args = request.get("args") if isinstance(request, dict) else request
        asked = f"{tool}({_shown(args)})"
        if i >= len(calls):
            message = f"the journal records {len(calls)} calls, the replay made another: {asked}"
            self._diverge(message, call=i, asked=asked)
        call = calls[i]
        digest = frame_digest(frame)
        if call.tool != tool or call.frame != digest:
            recorded = f"{call.tool} (call frame {call.frame[:16]})"
            self._diverge(
                f"recorded {recorded}, asked {asked} (call frame {digest[:16]})", call=i, recorded=recorded, asked=asked
            )
        self._calls = i + 1
        if not call.at_once:
            self._pending.add(i)
        return call

    def wait(self) -> list[tuple[int, str]]:
        """The (call id, reply) pairs this wait returned."""
        i, waits = self._waits, self.cell.waits
        if i >= len(waits):
            self._diverge(f"it waited for tool replies more than the {len(waits)} times recorded")
        self._waits = i + 1
        return [(index + 1, self._take(index)) for index in waits[i]]

    def take(self, call_id: int) -> str:
        """The reply a sync call returned."""
        return self._take(call_id - 1)

    def _take(self, index: int) -> str:
        reply = self.cell.calls[index].reply if index < len(self.cell.calls) else None
        if index not in self._pending or reply is None:
            self._diverge("the journal gives a reply to a call the replay is not waiting for", call=index)
        assert reply is not None
        self._pending.discard(index)
        return reply

    def module(self, source: str | None) -> None:
        i, modules = self._modules, self.cell.modules
        digest = source_digest(source)
        if i >= len(modules) or modules[i] != digest:
            self._diverge("a stub module's source is not the one recorded (the catalog or ptc changed)")
        self._modules = i + 1

    def finish(self, error: str | None) -> None:
        """After the cell: it ended as recorded and asked for everything recorded (else ReplayDivergedError)."""
        if self.diverged is not None:
            raise self.diverged
        cell = self.cell
        if error != cell.error:
            self._diverge(f"it ended with {error or 'no error'}, recorded {cell.error or 'no error'}")
        self.used_up("it made")

    def used_up(self, made: str) -> None:
        """Every recorded input was asked for (else ReplayDivergedError: `made` starts its message)."""
        cell = self.cell
        for what, used, recorded in (
            ("tool calls", self._calls, len(cell.calls)),
            ("monotonic clock readings", self._clocks, len(cell.clocks)),
            ("wall-clock readings", self._walls, len(cell.walls)),
            ("waits", self._waits, len(cell.waits)),
            ("stub modules", self._modules, len(cell.modules)),
        ):
            if used != recorded:
                self._diverge(f"{made} {used} {what}, the journal records {recorded}")


# What a resumed execution does with the calls it was waiting on: (call id, the decoded request, record id or
# None for a call that was in flight for another reason).
GoLive = Callable[[list[tuple[int, object, str | None]]], None]


class Resumer(Recorder):
    """A suspended execution's cell: replayed up to where it stopped, then live, recording on.

    Replay is deterministic, so the replayed program asks exactly what the
    original asked until the point where it was suspended: the first host
    call past the recording (of any kind) is that point, and every kind must
    be used up there, else ReplayDivergedError. There the tape goes live
    (`on_live`: the state dispatches the calls the program was waiting on,
    with the decisions) and from then on records like a Recorder, the
    recorded prefix included, so a second suspension's journal replays from
    the start. Random bytes go on from the same seed.
    """

    def __init__(self, cell: JournalCell, room: int, pending: dict[int, str], budget: HostBudget | None = None) -> None:
        super().__init__(room, bytes.fromhex(cell.seed), budget)
        self.player = Player(cell)
        self.pending = pending  # cell call index -> record id, of the calls waiting for a decision
        self.live = False
        self.on_live: GoLive | None = None
        self._requests: dict[int, object] = {}
        self.clocks, self.walls = array("q", cell.clocks), array("q", cell.walls)
        self.calls = [_Call(c.tool, c.frame, c.at_once, c.reply) for c in cell.calls]
        self.waits, self.modules = [list(w) for w in cell.waits], list(cell.modules)
        self._grow(cell_size(cell) - CELL_BYTES - code_bytes(cell.code))

    def _recorded(self, kind: str) -> bool:
        player, cell = self.player, self.player.cell
        if kind == "calls":
            return player._calls < len(cell.calls)
        return kind == "waits" and player._waits < len(cell.waits)

    def _go_live(self) -> None:
        player = self.player
        player.used_up("it went past the journal having made")
        self.live = True
        waiting = [(index + 1, self._requests.get(index), self.pending.get(index)) for index in sorted(player._pending)]
        player._pending.clear()
        if self.on_live is not None:
            self.on_live(waiting)

    def replays(self, kind: str, call_id: int = 0) -> bool:
        if self.live or kind == "sleep":
            return not self.live
        if kind == "take":
            index = call_id - 1
            if index < len(self.player.cell.calls) and self.player.cell.calls[index].reply is not None:
                return True
        elif self._recorded(kind):
            return True
        self._go_live()
        return False

    def _in_prefix(self, used: int, recorded: int) -> bool:
        """This input is the journal's (True), or the tape is live (from now on, if it was not)."""
        if self.live:
            return False
        if used < recorded:
            return True
        self._go_live()
        return False

    def clock(self, value: int) -> int:
        if self._in_prefix(self.player._clocks, len(self.player.cell.clocks)):
            return self.player.clock(value)
        return super().clock(value)

    def wall(self, value: int) -> int:
        if self._in_prefix(self.player._walls, len(self.player.cell.walls)):
            return self.player.wall(value)
        return super().wall(value)

    def module(self, source: str | None) -> None:
        if self._in_prefix(self.player._modules, len(self.player.cell.modules)):
            self.player.module(source)
        else:
            super().module(source)

    def cancelled(self, call_id: int) -> None:
        if not self.live:
            self.player._pending.discard(call_id - 1)

    def call(self, frame: object, request: object) -> JournalCall:
        recorded = self.player.call(frame, request)
        if recorded.reply is None:
            self._requests[self.player._calls - 1] = request
        return recorded

    def wait(self) -> list[tuple[int, str]]:
        return self.player.wait()

    def take(self, call_id: int) -> str:
        return self.player.take(call_id)
