"""The load test's workloads: the tools, the generated programs with the outcome each must have, and the
attacker's hostile programs (see load.py and README.md for what each is for)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import secrets
import string
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
from harness import MiB

from ptc import ExecutionResult, Limits, Policy, ToolCallRecord, ToolCatalog, ToolError

SEED = 20251124  # programs, their arguments and the flaky tool's failures all follow from it
FLAKY_RATE = 0.3
LOOKUP_SECONDS = 0.002  # the async `lookup` tool's simulated backend latency

BASE_LIMITS = Limits(timeout=30)
TIMEOUT_LIMITS = Limits(timeout=0.5, fuel=None)  # wall clock only: the loop must end in `timeout`
FUEL_LIMITS = Limits(timeout=30, fuel=50_000_000)  # ~7 ms of CPU: the loop must end in `out_of_fuel`
MEMORY_LIMITS = Limits(timeout=30, memory_bytes=128 * MiB)
OUTPUT_LIMITS = Limits(timeout=30, max_output_bytes=4096)
CALL_LIMITS = Limits(timeout=30, max_tool_calls=5)
# The breaker is per tool: after 5 consecutive failures of `broken` (which
# always fails) it would rightly open and turn the expected ToolErrors into
# CircuitOpenErrors. Breakers are tested elsewhere; here every call runs.
POLICY = Policy(circuit_failure_threshold=1_000_000_000)

# -- tools -----------------------------------------------------------------


def flaky_fails(n: int) -> bool:
    """Whether `flaky(n)` fails: random with a fixed seed, but the same answer for n every time."""
    digest = hashlib.sha256(f"{SEED}:{n}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < FLAKY_RATE


def load_catalog() -> ToolCatalog:
    catalog = ToolCatalog(source="load")

    @catalog.tool(domain="load")
    async def add(a: int, b: int) -> int:
        """Return a + b (async)."""
        return a + b

    @catalog.tool(domain="load")
    async def lookup(key: str) -> dict[str, Any]:
        """Look a key up in a slow backend (async, 2 ms)."""
        await asyncio.sleep(LOOKUP_SECONDS)
        return {"key": key, "upper": key.upper()}

    @catalog.tool(domain="load")
    def scale(x: int, factor: int) -> int:
        """Return x * factor (sync; runs in the router's thread pool)."""
        return x * factor

    @catalog.tool(domain="load")
    async def broken(x: int) -> int:
        """Always fails (a ToolError: its text is for the program; any other exception's is not)."""
        raise ToolError(f"backend down for x={x}")

    @catalog.tool(domain="load")
    async def flaky(n: int) -> int:
        """Return 3 * n, or fail for about 30% of n (fixed by the seed)."""
        if flaky_fails(n):
            raise ToolError(f"flaky backend failed for n={n}")
        return 3 * n

    return catalog


# -- programs and what each must return --------------------------------------


@dataclass(frozen=True)
class Expected:
    outcome: str  # "ok" or an error kind
    value: Any = None  # checked when outcome is "ok"
    error_type: str | None = None
    message_has: str | None = None  # a substring of the error message
    output: str | None = None  # the exact output
    truncated: bool = False
    calls: tuple[tuple[str, str], ...] | None = None  # (tool, parameters as sorted JSON) per call, any order


@dataclass(frozen=True)
class Job:
    index: int
    program: str  # the program type
    category: str  # good, failing or limit
    code: str
    limits: Limits
    expected: Expected


def calls(*pairs: tuple[str, dict[str, Any]]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((tool, json.dumps(params, sort_keys=True)) for tool, params in pairs))


def fib(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


Made = tuple[str, Expected]
Make = Callable[[random.Random, int], Made]


@dataclass(frozen=True)
class ProgramType:
    name: str
    category: str
    weight: int  # out of 100
    make: Make
    limits: Limits = BASE_LIMITS


PROGRAMS: list[ProgramType] = []  # in the order they are defined: the seed's choices depend on it


def program(category: str, weight: int, limits: Limits = BASE_LIMITS) -> Callable[[Make], Make]:
    """Add the function below to PROGRAMS: a `category` program (good, failing or limit) of that weight."""

    def register(make: Make) -> Make:
        PROGRAMS.append(ProgramType(make.__name__, category, weight, make, limits))
        return make

    return register


@program("good", 8)
def compute_sum(rng: random.Random, i: int) -> Made:
    n = rng.randint(1_000, 20_000)
    code = f"total = sum(k * k for k in range({n}))\nprint('job {i}')\n[{i}, total]\n"
    return code, Expected("ok", [i, sum(k * k for k in range(n))], output=f"job {i}\n")


@program("good", 7)
def compute_text(rng: random.Random, i: int) -> Made:
    words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 8))) for _ in range(rng.randint(5, 30))]
    code = (
        f"words = {words!r}\n"
        "initials = {}\n"
        "for w in words:\n"
        "    initials[w[0]] = initials.get(w[0], 0) + 1\n"
        f"result = {{'job': {i}, 'sorted': sorted(words), 'initials': initials}}\n"
    )
    return code, Expected("ok", {"job": i, "sorted": sorted(words), "initials": dict(Counter(w[0] for w in words))})


@program("good", 6)
def compute_fib(rng: random.Random, i: int) -> Made:
    n = rng.randint(12, 18)
    code = f"def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n[{i}, fib({n})]\n"
    return code, Expected("ok", [i, fib(n)])


@program("good", 10)
def tools_one(rng: random.Random, i: int) -> Made:
    a, b = rng.randint(-1000, 1000), rng.randint(-1000, 1000)
    code = f"from tools.load import add\n[{i}, await add(a={a}, b={b})]\n"
    return code, Expected("ok", [i, a + b], calls=calls(("add", {"a": a, "b": b})))


@program("good", 10)
def tools_chain(rng: random.Random, i: int) -> Made:
    x, factor = rng.randint(0, 1000), rng.randint(2, 9)
    code = f"from tools.load import add, scale\nx = await scale(x={x}, factor={factor})\n[{i}, await add(a=x, b={i})]\n"
    return code, Expected(
        "ok",
        [i, x * factor + i],
        calls=calls(("scale", {"x": x, "factor": factor}), ("add", {"a": x * factor, "b": i})),
    )


@program("good", 10)
def tools_gather(rng: random.Random, i: int) -> Made:
    key = "".join(rng.choices(string.ascii_lowercase, k=6))
    a, x = rng.randint(0, 100), rng.randint(0, 100)
    code = (
        "import asyncio\n"
        "from tools.load import add, lookup, scale\n"
        f"found, total, scaled = await asyncio.gather(lookup(key={key!r}), add(a={a}, b={i}), scale(x={x}, factor=2))\n"
        f"[{i}, found['upper'], total, scaled]\n"
    )
    expected_calls = calls(("lookup", {"key": key}), ("add", {"a": a, "b": i}), ("scale", {"x": x, "factor": 2}))
    return code, Expected("ok", [i, key.upper(), a + i, 2 * x], calls=expected_calls)


@program("failing", 5)
def raises(rng: random.Random, i: int) -> Made:
    limit = rng.randint(0, 100)
    code = (
        "def check(x):\n"
        f"    if x > {limit}:\n"
        f"        raise ValueError(f'job {i}: {{x}} is too big')\n"
        f"check({limit + 1})\n"
    )
    return code, Expected("runtime_error", error_type="ValueError", message_has=f"job {i}: {limit + 1} is too big")


@program("failing", 3)
def zero_division(rng: random.Random, i: int) -> Made:
    return f"values = [{i}, 0]\nvalues[0] / values[1]\n", Expected("runtime_error", error_type="ZeroDivisionError")


@program("failing", 4)
def syntax(rng: random.Random, i: int) -> Made:
    return f"def job_{i}(:\n    pass\n", Expected("syntax_error", error_type="SyntaxError")


@program("failing", 4)
def tool_raises(rng: random.Random, i: int) -> Made:
    code = f"from tools.load import broken\nawait broken(x={i})\n"
    return code, Expected(
        "runtime_error", error_type="ToolError", message_has=f"x={i}", calls=calls(("broken", {"x": i}))
    )


@program("failing", 3)
def tool_raises_caught(rng: random.Random, i: int) -> Made:
    code = (
        "from tools import ToolError\n"
        "from tools.load import broken\n"
        "try:\n"
        f"    await broken(x={i})\n"
        "except ToolError as e:\n"
        f"    result = ['caught', {i}, str(e)]\n"
    )
    value = ["caught", i, f"backend down for x={i}"]
    return code, Expected("ok", value, calls=calls(("broken", {"x": i})))


@program("failing", 5)
def flaky_one(rng: random.Random, i: int) -> Made:
    n = rng.randrange(10**9)
    code = f"from tools.load import flaky\n[{i}, await flaky(n={n})]\n"
    made = calls(("flaky", {"n": n}))
    if flaky_fails(n):
        return code, Expected("runtime_error", error_type="ToolError", message_has=f"n={n}", calls=made)
    return code, Expected("ok", [i, 3 * n], calls=made)


@program("failing", 5)
def flaky_gather(rng: random.Random, i: int) -> Made:
    ns = [rng.randrange(10**9), rng.randrange(10**9)]
    code = (
        "import asyncio\n"
        "from tools.load import flaky\n"
        f"outcomes = await asyncio.gather(flaky(n={ns[0]}), flaky(n={ns[1]}), return_exceptions=True)\n"
        f"[{i}] + [v if isinstance(v, int) else type(v).__name__ for v in outcomes]\n"
    )
    value = [i] + ["ToolError" if flaky_fails(n) else 3 * n for n in ns]
    return code, Expected("ok", value, calls=calls(*(("flaky", {"n": n}) for n in ns)))


@program("limit", 2, TIMEOUT_LIMITS)
def timeout_loop(rng: random.Random, i: int) -> Made:
    return f"n = {i}\nwhile True:\n    n += 1\n", Expected("timeout", error_type="TimeoutError")


@program("limit", 5, FUEL_LIMITS)
def fuel_loop(rng: random.Random, i: int) -> Made:
    return f"n = {i}\nwhile True:\n    n += 1\n", Expected("out_of_fuel", error_type="OutOfFuel")


@program("limit", 3, MEMORY_LIMITS)
def memory_big(rng: random.Random, i: int) -> Made:
    return f"block = bytearray({rng.randint(256, 1024)} * 2**20)\n{i}\n", Expected("memory_limit")


@program("limit", 3, MEMORY_LIMITS)
def memory_grow(rng: random.Random, i: int) -> Made:
    code = f"blocks = []\nwhile True:\n    blocks.append(bytearray({rng.randint(1, 4)} << 20))\n"
    return code, Expected("memory_limit")


@program("limit", 4, OUTPUT_LIMITS)
def output_flood(rng: random.Random, i: int) -> Made:
    lines = rng.randint(10_000, 20_000)  # 1-2 MB written, 4 KiB kept
    code = f"for k in range({lines}):\n    print('job {i}', 'x' * 100)\n'flooded {i}'\n"
    return code, Expected("ok", f"flooded {i}", truncated=True)


@program("limit", 3, CALL_LIMITS)
def tool_call_limit(rng: random.Random, i: int) -> Made:
    code = f"from tools.load import add\nfor k in range(10):\n    await add(a=k, b={i})\n"
    made = calls(*(("add", {"a": k, "b": i}) for k in range(CALL_LIMITS.max_tool_calls)))
    return code, Expected("tool_call_limit", error_type="ToolCallLimitError", calls=made)


assert sum(program.weight for program in PROGRAMS) == 100


class JobMaker:
    """Deterministic jobs from one seeded generator; indexes are unique over the whole run."""

    def __init__(self, seed: int, programs: Sequence[ProgramType] = PROGRAMS) -> None:
        self.rng = random.Random(seed)
        self.programs = tuple(programs)
        self.next_index = 0

    def jobs(self, count: int) -> list[Job]:
        out: list[Job] = []
        weights = [program.weight for program in self.programs]
        for program in self.rng.choices(self.programs, weights=weights, k=count):
            index = self.next_index
            self.next_index += 1
            code, expected = program.make(self.rng, index)
            out.append(Job(index, program.name, program.category, code, program.limits, expected))
        return out


def mismatch(job: Job, result: ExecutionResult, tenant_id: str) -> str | None:
    """Why the result is not what the job's program must produce (None: it is)."""
    want = job.expected
    outcome = result.error.kind if result.error is not None else "ok"
    if outcome != want.outcome:
        detail = f": {result.error}" if result.error is not None else f", value {result.result!r:.80}"
        return f"outcome {outcome} (expected {want.outcome}){detail}"
    if result.tenant_id != tenant_id:
        return f"tenant {result.tenant_id!r}, expected {tenant_id!r}"
    if result.error is not None:
        if want.error_type is not None and result.error.type != want.error_type:
            return f"error type {result.error.type} (expected {want.error_type}): {result.error.message:.80}"
        if want.message_has is not None and want.message_has not in result.error.message:
            return f"error message {result.error.message!r:.100} lacks {want.message_has!r}"
    elif result.result != want.value:
        return f"value {result.result!r:.100} (expected {want.value!r:.100})"
    if want.output is not None and result.output != want.output:
        return f"output {result.output!r:.80} (expected {want.output!r:.80})"
    if result.output_truncated != want.truncated:
        return f"output_truncated={result.output_truncated} (expected {want.truncated})"
    if len(result.output.encode()) > job.limits.max_output_bytes:
        return f"{len(result.output.encode())} bytes of output, over the {job.limits.max_output_bytes}-byte cap"
    made = calls(*((call.tool, call.parameters) for call in result.tool_calls))
    if made != (want.calls or ()):
        return f"tool calls {made!r:.120} (expected {want.calls!r:.120})"
    for call in result.tool_calls:
        if call.caller.execution_id != result.execution_id or call.caller.tenant_id != tenant_id:
            return f"tool call record of {call.caller.execution_id}/{call.caller.tenant_id} in this result"
    return None


# -- the attacker's programs (the adversarial phase) ---------------------------------

BOMB_ELEMENTS = 2_000_000  # one ~2 MB frame that decodes to 2 million empty lists
BOMBS_PER_PROGRAM = 3
BOMB_LIMITS = Limits(max_frame_bytes=8 * MiB, timeout=2)
BLOB_BYTES = 8 * MiB  # the `blob` tool's reply: one shared string, so a call costs the tool nothing
FLOOD_CALLS = 100
FLOOD_SLEEP_S = 2
FLOOD_LIMITS = Limits(timeout=10)
TRIAL_POLICY = Policy(circuit_failure_threshold=2, circuit_reset_timeout=0.2)
TRIAL_BACKEND_S = 0.1  # the `flappy` backend's latency: long enough to abandon a call in flight
TRIAL_LIMITS = Limits(timeout=5)
WEDGE_PROBES = 6  # after the backend recovers: calls WEDGE_PROBE_GAP_S apart, until one is served
WEDGE_PROBE_GAP_S = 0.25
CACHE_RESULT_BYTES = 2 * MiB  # the `fetch` tool's reply: a fresh string per call, so the cache holds each
CACHE_CALLS = 32
CACHE_LIMITS = Limits(timeout=20)


class Backend:
    """The `flappy` tool's backend: down until `healthy` is set."""

    def __init__(self) -> None:
        self.healthy = False


def attack_catalog(backend: Backend) -> ToolCatalog:
    catalog = ToolCatalog(source="attack")
    blob_text = "b" * BLOB_BYTES

    @catalog.tool(domain="attack")
    def blob(n: int) -> str:
        """8 MiB of text (the same string every time)."""
        return blob_text

    @catalog.tool(domain="attack")
    async def flappy(n: int) -> int:
        """A slow backend that fails until it recovers."""
        await asyncio.sleep(TRIAL_BACKEND_S)
        if not backend.healthy:
            raise RuntimeError(f"backend down (n={n})")
        return n

    @catalog.tool(domain="attack")
    def fetch(key: str) -> str:
        """A few MiB of text, made afresh for each call."""
        return (key[:1] or "c") * CACHE_RESULT_BYTES

    return catalog


def attack_sizes() -> dict[str, Any]:
    """For the JSON."""
    return {
        "frame_bombs": {
            "elements": BOMB_ELEMENTS,
            "per_program": BOMBS_PER_PROGRAM,
            "limits": BOMB_LIMITS.model_dump(),
        },
        "reply_floods": {"reply_bytes": BLOB_BYTES, "calls": FLOOD_CALLS, "limits": FLOOD_LIMITS.model_dump()},
        "abandoned_trials": {"policy": TRIAL_POLICY.model_dump(), "backend_s": TRIAL_BACKEND_S},
        "cache_floods": {"result_bytes": CACHE_RESULT_BYTES, "calls": CACHE_CALLS, "limits": CACHE_LIMITS.model_dump()},
    }


RAW = "from wit_world.imports import host\nimport _ptc_codec\n"  # raw frames, straight to the host


def raw_frame(tool: str, args: str) -> str:
    """Guest code for a call frame as a latin-1 str (args: a dict display in guest code)."""
    return f"_ptc_codec.pack({{'tool': {tool!r}, 'args': {args}, 'key': None}}).decode('latin-1')"


def frame_bomb(i: int) -> str:
    # {'tool': 'no_such_tool', 'args': {'v': <array of 2,000,000 empty arrays>}}: ~2 MB on the wire
    head = msgpack.packb({"tool": "no_such_tool", "args": {"v": []}})[:-1] + b"\xdd"
    return (
        RAW
        + f"n = {BOMB_ELEMENTS}\n"
        + f"frame = ({head!r} + n.to_bytes(4, 'big') + b'\\x90' * n).decode('latin-1')\n"
        + f"replies = [str(host.submit(frame).value)[:100] for _ in range({BOMBS_PER_PROGRAM})]\n"
        + f"[{i}, replies]\n"
    )


def reply_flood(i: int) -> str:
    # submitted, never waited for; the program sleeps, then ends
    frame = raw_frame("blob", "{'n': k}")
    return (
        RAW
        + "import time\n"
        + f"ids = [host.submit({frame}).value for k in range({FLOOD_CALLS})]\n"
        + f"time.sleep({FLOOD_SLEEP_S})\n"
        + f"[{i}, len(ids)]\n"
    )


def abandoned_trial(i: int) -> str:
    # two failures open the breaker; past its reset timeout the next call is the half-open
    # trial, which the program abandons: cancels it (even i) or ends while it runs (odd i)
    if i % 2 == 0:
        abandon = (
            "task = asyncio.create_task(flappy(n=2))\n"
            "await asyncio.sleep(0.01)\n"
            "task.cancel()\n"
            "try:\n"
            "    await task\n"
            "except asyncio.CancelledError:\n"
            "    seen.append('abandoned')\n"
            "except ToolError as e:\n"
            "    seen.append(type(e).__name__)\n"
        )
    else:
        frame = raw_frame("flappy", "{'n': 2}")
        abandon = f"host.submit({frame})\nseen.append('left running')\n"
    return (
        RAW
        + "import asyncio\n"
        + "from tools import ToolError\n"
        + "from tools.attack import flappy\n"
        + "seen = []\n"
        + "for n in range(2):\n"
        + "    try:\n"
        + "        seen.append(await flappy(n=n))\n"
        + "    except ToolError as e:\n"
        + "        seen.append(type(e).__name__)\n"
        + f"await asyncio.sleep({TRIAL_POLICY.circuit_reset_timeout + 0.05})\n"
        + abandon
        + f"[{i}, seen]\n"
    )


def cache_flood(i: int) -> str:
    # every call a new idempotency key: each result is kept for the key's TTL
    key = f"{secrets.token_hex(4)}-{i}-{{k}}"
    return (
        "from tools.attack import fetch\n"
        "total = 0\n"
        f"for k in range({CACHE_CALLS}):\n"
        f"    total += len(await fetch(key=f'{key}', idempotency_key=f'{key}'))\n"
        f"[{i}, total]\n"
    )


WEDGE_PROBE = (
    "import asyncio\n"
    "from tools import CircuitOpenError, ToolError\n"
    "from tools.attack import flappy\n"
    "seen = []\n"
    f"for n in range({WEDGE_PROBES}):\n"
    "    try:\n"
    "        await flappy(n=n)\n"
    "    except ToolError as e:\n"
    "        seen.append(type(e).__name__)\n"
    "    else:\n"
    "        seen.append('ok')\n"
    "        break\n"
    f"    await asyncio.sleep({WEDGE_PROBE_GAP_S})\n"
    "seen\n"
)


@dataclass(frozen=True)
class AttackKind:
    key: str
    title: str
    make: Callable[[int], str]
    limits: Limits
    capped_by: str | None = None  # the AdversarialSettings field with its most programs per phase


ATTACKS: tuple[AttackKind, ...] = (
    AttackKind("frame_bombs", "frame bombs", frame_bomb, BOMB_LIMITS),
    AttackKind("reply_floods", "reply floods", reply_flood, FLOOD_LIMITS, "flood_programs"),
    AttackKind("abandoned_trials", "abandoned trials", abandoned_trial, TRIAL_LIMITS),
    AttackKind("cache_floods", "cache floods", cache_flood, CACHE_LIMITS, "cache_programs"),
)
ADV_PHASES: tuple[tuple[str, tuple[AttackKind, ...]], ...] = (
    ("baseline", ()),
    *((kind.title, (kind,)) for kind in ATTACKS),
    ("all four at once", ATTACKS),
)


def call_label(call: ToolCallRecord) -> str:
    """A call's outcome for the counts: "ok", "unfinished" (still running, or never started, when the
    execution ended), or its error type, with why the host refused it when it did."""
    if call.error is None:
        return "ok" if call.completed_at is not None else "unfinished"
    if "budget" in call.error.message:
        return f"{call.error.type} (over the host budget)"
    if call.error.message.startswith("rejected"):
        return f"{call.error.type} (frame refused)"
    return call.error.type
