"""Replay: a journal's cells run again in a fresh instance, every host call answered from the journal.

The instance is made as the original was (a spare's warm-up first, or not:
`Journal.warm`), then each cell runs with a Player tape (ptc.hostcalls.wasm.tape):
its seed, clock readings, tool replies, waits and stub sources are the
recorded ones, and nothing is dispatched, so no tool runs. A cell that asks
for anything else, ends otherwise than recorded, or traps raises
ReplayDivergedError and the instance is dropped. What comes back is the
instance in the state the original had after its last journaled cell, and
the last monotonic clock reading it was given (the session's clock goes on
from there, never backwards).

The journal must have passed `ptc.journal.load` (structure, catalog,
guest build) first.
"""

from __future__ import annotations

from dataclasses import dataclass

from ptc.engine import get_runtime
from ptc.errors import ReplayDivergedError
from ptc.hostcalls.wasm import codec
from ptc.hostcalls.wasm.state import Cancel, ExecutionState, ModuleSource, Reply, Request
from ptc.hostcalls.wasm.tape import Player
from ptc.journal import Journal
from ptc.limits import Limits
from ptc.results import ExecutionErrorInfo
from ptc.sandbox import Outcome, instantiate, run_cell
from ptc.spares import Instance, warm_instance


def outcome_of(error: ExecutionErrorInfo | None) -> str | None:
    """How a cell ended, as its journal says and its replay must end: the error's type, or None.

    A result too large to return is not the program's doing (the host's room
    for it differs from run to run): the cell ran to its end all the same.
    """
    if error is None or error.type == "ResultTooLargeError":
        return None
    return error.type


@dataclass
class Restored:
    instance: Instance
    last_clock: int  # the last monotonic reading the guest was given (0: none)


def _never(request: Request, reply: Reply) -> Cancel | str:  # pragma: no cover - a replay dispatches nothing
    return codec.error_frame("ToolError", "no tool runs in a replay")


def fresh(journal: Journal, limits: Limits) -> Instance | Outcome:
    """An instance like the original's: a spare (warmed, so taken from the pool if one is ready), or not."""
    return fresh_instance(journal.warm, limits)


def fresh_instance(warm: bool, limits: Limits) -> Instance | Outcome:
    """An instance warmed as a spare is (taken from the pool if one is ready), or one never warmed."""
    runtime = get_runtime(fuel=limits.fuel is not None)
    if not warm:
        return instantiate(runtime, limits, spare=False)
    instance = runtime.spares.take() or warm_instance(runtime)
    instance.store.set_limits(memory_size=limits.memory_bytes)
    return instance


def replay(journal: Journal, limits: Limits, module_source: ModuleSource, execution_id: str) -> Restored:
    """The journal's state in a new instance (on an execution thread); ReplayDivergedError if it departs."""
    made = fresh(journal, limits)
    if isinstance(made, Outcome):
        raise ReplayDivergedError(f"the replay could not start an instance: {made.error}", cell=0)
    instance = made
    last_clock = 0
    try:
        for cell in journal.cells:
            player = Player(cell)
            state = ExecutionState.under(
                execution_id, limits, dispatch=_never, module_source=module_source, tape=player
            )
            outcome = run_cell(instance, cell.code, cell.index, state, limits, clock_offset=0)
            state.close()
            error = outcome_of(outcome.error)
            if outcome.trapped and player.diverged is None:
                raise ReplayDivergedError(
                    f"replay diverged from the journal at cell {cell.index}: it was stopped ({outcome.error}), "
                    f"recorded {cell.error or 'no error'}",
                    cell=cell.index,
                )
            player.finish(error)
            if cell.clocks:
                last_clock = max(last_clock, max(cell.clocks))
    except BaseException:
        get_runtime(fuel=limits.fuel is not None).spares.retire(instance)
        raise
    return Restored(instance, last_clock)
