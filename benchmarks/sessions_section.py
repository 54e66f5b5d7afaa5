"""Sessions section: an agent's ten blocks in one session, one small cell, restoring a session from its journal.

The agent run is pydantic-monty's `scripts/startup_performance.py` AGENT_BLOCKS:
ten blocks against one environment, each building on the last, ending with
`print(report)` (checked against its expected output). Every figure is the
wall around the public API in one running loop (`await session.execute`,
`await executor.restore_session`), after warm-up runs, and every cell is
checked for its outcome.
"""

from __future__ import annotations

import asyncio
from typing import Any

from harness import Clock, Row, atimed, check, choose, log, summarize_ms, target_row

from ptc import Limits, Policy, ProgrammaticToolExecutor, ToolCatalog
from ptc.engine import get_runtime

AGENT_BLOCKS = [
    "orders = [{'sku': 'A1', 'qty': 2, 'price': 3.5}, {'sku': 'B2', 'qty': 1, 'price': 12.0}, "
    "{'sku': 'C3', 'qty': 5, 'price': 1.0}]",
    "def line_total(o):\n    return o['qty'] * o['price']",
    "totals = [line_total(o) for o in orders]",
    "grand = sum(totals)",
    "biggest = max(orders, key=line_total)['sku']",
    "import json\nsummary = json.dumps({'grand': grand, 'biggest': biggest})",
    "discount = 0.1 if grand > 10 else 0",
    "net = round(grand * (1 - discount), 2)",
    "report = f'{len(orders)} orders, total {net}, biggest {biggest}'",
    "print(report)",
]
AGENT_EXPECTED = "3 orders, total 21.6, biggest B2"
LIMITS = Limits(timeout=60)

# targets
AGENT_RUN_MS = 2.0  # the ten blocks in one session
SMALL_CELL_MS = 0.2  # `x = 1` in an open session
RESTORE_MS = 15.0  # a 10-cell session with 10 tool calls, from its journal's JSON


def _catalog() -> ToolCatalog:
    catalog = ToolCatalog(source="benchmarks-sessions")

    @catalog.tool(domain="bench")
    async def noop(x: int) -> int:
        """Return x."""
        return x

    @catalog.tool(domain="bench", policy=Policy(inline=True))
    def noop_inline(x: int) -> int:
        """Return x (inline)."""
        return x

    return catalog


TOOL_CELLS = ["from tools.bench import noop, noop_inline\ntotal = 0"] + [
    f"total += await {'noop' if i % 2 else 'noop_inline'}(x={i})" for i in range(10)
]  # 11 cells: 10 of them one tool call each (async and inline in turn)


async def _agent_run(executor: ProgrammaticToolExecutor) -> tuple[float, float]:
    """(wall of open + ten blocks + close, wall of the ten blocks alone)."""
    with Clock() as whole:
        session = executor.session()
        with Clock() as blocks:
            results = [await session.execute(block) for block in AGENT_BLOCKS]
        await session.aclose()
    for i, result in enumerate(results):
        check(result, f"agent block {i}")
    if results[-1].output.strip() != AGENT_EXPECTED:
        raise RuntimeError(f"agent run: output {results[-1].output!r}")
    return whole.wall, blocks.wall


async def _measure(quick: bool) -> dict[str, Any]:
    settings = choose(quick, agent_runs=(50, 10), small_cells=(500, 100), restores=(30, 8), warm_up=(10, 3))
    executor = ProgrammaticToolExecutor(_catalog(), limits=LIMITS, tenant_id="bench-sessions")
    await executor.warm_up()

    log("sessions: ten agent blocks in one session")
    for _ in range(settings.warm_up):
        await _agent_run(executor)
    whole, blocks = [], []
    for _ in range(settings.agent_runs):
        await asyncio.sleep(0.01)  # spaced, as an agent's turns are: the spare pool refills between runs
        w, b = await _agent_run(executor)
        whole.append(w)
        blocks.append(b)

    log("sessions: `x = 1` in an open session")
    session = executor.session()
    check(await session.execute("x = 0"), "first cell")
    await atimed(lambda: session.execute("x = 1"), settings.warm_up * 10)  # warm-up
    small = await atimed(lambda: session.execute("x = 1"), settings.small_cells)
    await session.aclose()

    log("sessions: restore a 10-cell session with 10 tool calls from its journal")
    # Recorded on a spare (the common case): a journal says which kind of instance its session began in,
    # and its replay must begin in the same kind, so one recorded on a cold instance restores ~2 ms slower.
    await asyncio.to_thread(get_runtime(LIMITS.fuel is not None).spares.settle)
    session = executor.session()
    for i, code in enumerate(TOOL_CELLS):
        check(await session.execute(code), f"tool cell {i}")
    value = check(await session.execute("total"), "tool total", sum(range(10))).result
    journal = session.journal()
    text = journal.model_dump_json()
    await session.aclose()

    async def restore() -> None:
        restored = await executor.restore_session(text)
        check(await restored.execute("total"), "restored total", value)
        await restored.aclose()

    async def restore_only() -> None:
        restored = await executor.restore_session(text)
        restored.close()

    for _ in range(settings.warm_up):
        await restore()
    restores = []
    for _ in range(settings.restores):
        await asyncio.sleep(0.01)
        restores += await atimed(restore_only, 1)
    await executor.aclose()
    return {
        "settings": settings,
        "agent_run_whole": summarize_ms(whole),
        "agent_run_blocks": summarize_ms(blocks),
        "small_cell": summarize_ms(small),
        "restore": summarize_ms(restores),
        "journal_bytes": len(text),
        "journal_warm": journal.warm,
    }


def measure(quick: bool) -> dict[str, Any]:
    return asyncio.run(_measure(quick))


def rows(figures: dict[str, Any]) -> list[Row]:
    whole, blocks = figures["agent_run_whole"], figures["agent_run_blocks"]
    small, restore = figures["small_cell"], figures["restore"]
    return [
        target_row(
            "sessions: ten agent blocks in one session (median; open + close)",
            f"{blocks['median_ms']:.2f} ms ({whole['median_ms']:.2f} ms)",
            blocks["median_ms"],
            AGENT_RUN_MS,
            " ms",
        ),
        target_row(
            "sessions: `x = 1` in an open session (median, p90)",
            f"{small['median_ms']:.3f} ms, {small['p90_ms']:.3f} ms",
            small["median_ms"],
            SMALL_CELL_MS,
            " ms",
        ),
        target_row(
            f"sessions: restore 10 cells + 10 tool calls from JSON ({figures['journal_bytes']:,} bytes, "
            f"{'a spare' if figures.get('journal_warm') else 'a cold instance'}; median)",
            f"{restore['median_ms']:.2f} ms",
            restore["median_ms"],
            RESTORE_MS,
            " ms",
        ),
    ]


if __name__ == "__main__":
    import json
    import sys

    quick = "--quick" in sys.argv
    figures = measure(quick)
    print(json.dumps(figures, indent=2, default=str))
    from harness import targets_table

    print(targets_table(rows(figures)))
