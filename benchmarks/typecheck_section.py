"""Typecheck section: `executor.check(code)` of a 20-line program against a 100-tool catalog, warm.

The catalog has 100 function tools in 10 domains, each with three
parameters and a TypedDict result. The program imports four of them,
gathers calls, reads result keys and prints: what a model writes. "Warm" is
after the first check (which writes the catalog's stubs once into the
checker's directory); each measured check writes the program and runs ty
once. Each check must find no diagnostics, and a program with one slip must
be refused, so the figure is of a working check.
"""

from __future__ import annotations

from typing import Any

from harness import Row, log, summarize_ms, target_row, timed
from typing_extensions import TypedDict

from ptc import ProgrammaticToolExecutor, ToolCatalog

CHECK_MS = 200.0  # target (issue 16): a warm check of a 20-line program against a 100-tool catalog
DOMAINS, PER_DOMAIN = 10, 10


class Record(TypedDict):
    id: str
    amount: float
    tags: list[str]


def _catalog() -> ToolCatalog:
    catalog = ToolCatalog(source="typecheck_bench", version="1")
    for d in range(DOMAINS):
        for t in range(PER_DOMAIN):

            def tool(key: str, limit: int = 10, verbose: bool = False) -> Record:
                return {"id": key, "amount": float(limit), "tags": []}

            tool.__name__ = f"get_record_{d}_{t}"
            tool.__doc__ = f"Record {t} of domain {d}.\n\nArgs:\n    key: the record's key\n    limit: at most this"
            catalog.tool(domain=f"domain{d}")(tool)
    return catalog


PROGRAM = """\
import asyncio
from tools.domain0 import get_record_0_0, get_record_0_1
from tools.domain5 import get_record_5_7
from tools.domain9 import get_record_9_9

keys = ["a", "b", "c"]
records = await asyncio.gather(*(get_record_0_0(key=k, limit=5) for k in keys))
total = 0.0
for record in records:
    total += record["amount"]
    if record["tags"]:
        print(record["id"], ", ".join(record["tags"]))
other = await get_record_0_1("x", verbose=True)
seventh = await get_record_5_7(key=other["id"])
ninth = await get_record_9_9(key="z", limit=int(total))
summary = {"total": total, "seventh": seventh["amount"], "ninth": ninth["id"]}
print(summary)
if summary["total"] > 100:
    print("over budget")
result = summary
"""


def measure(quick: bool) -> dict[str, Any]:
    assert len(PROGRAM.splitlines()) == 20
    executor = ProgrammaticToolExecutor(_catalog())
    assert len(executor.catalog.tools) == DOMAINS * PER_DOMAIN
    first = timed(lambda: _clean(executor.check(PROGRAM)), 1)
    slip = executor.check(PROGRAM.replace('seventh["amount"]', 'seventh["amount_"]'))
    assert [d.code for d in slip] == ["invalid-typed-dict-key"], slip
    runs = 10 if quick else 40
    log(f"typecheck: {runs} warm checks")
    warm = timed(lambda: _clean(executor.check(PROGRAM)), runs)
    executor.close()
    return {"first_check_ms": first[0] * 1000, "warm_check": summarize_ms(warm), "tools": DOMAINS * PER_DOMAIN}


def _clean(diagnostics: list[Any]) -> None:
    if diagnostics:
        raise RuntimeError(f"the benchmark program should type-check: {diagnostics}")


def rows(figures: dict[str, Any]) -> list[Row]:
    warm = figures["warm_check"]
    return [
        target_row(
            "type check, 20 lines vs 100 tools, warm (median)",
            f"{warm['median_ms']:.1f} ms (p90 {warm['p90_ms']:.1f})",
            warm["median_ms"],
            CHECK_MS,
            " ms",
        ),
        target_row("type check, first (writes the stubs)", f"{figures['first_check_ms']:.1f} ms", 0.0, None, ""),
    ]
