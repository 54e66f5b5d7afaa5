"""A2A figures: what ptc adds to an A2A agent call.

Both sides call the same real agent (benchmarks/a2a_echo_agent.py, a
subprocess on a loopback port, so its work is on the other core): directly
with the SDK's client (`ClientFactory`, JSON-RPC, the card's streaming), and
from a program in the sandbox through ptc's A2A backend. Two calls: `echo`
(the agent answers at once with a Message) and `task` (a task streamed to
completion: three events). Each call is timed on its own: with
`time.perf_counter()` around the `await` inside the program, and around the
SDK call directly, in rounds that alternate the two sides; the figures are
medians of all the calls of each side.
"""

from __future__ import annotations

import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from harness import Row, atimed, check

from ptc import Limits, ProgrammaticToolExecutor

AGENT = Path(__file__).with_name("a2a_echo_agent.py")
WARM = 20


def _start() -> tuple[subprocess.Popen[str], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, str(AGENT), str(port)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the agent exited: {proc.stderr.read() if proc.stderr else ''}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"http://127.0.0.1:{port}"
        time.sleep(0.05)
    proc.terminate()
    raise TimeoutError("the agent did not listen")


class _Direct:
    """The SDK's own client of the agent, as an application would use it."""

    async def __aenter__(self) -> _Direct:
        import httpx
        from a2a.client import A2ACardResolver, ClientConfig, ClientFactory

        self.http = httpx.AsyncClient()
        card = await A2ACardResolver(self.http, self.url).get_agent_card()
        self.client = ClientFactory(ClientConfig(httpx_client=self.http)).create(card)
        return self

    def __init__(self, url: str) -> None:
        self.url = url

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def send(self, skill: str) -> None:
        from a2a.types import Message, Part, Role, SendMessageRequest

        message = Message(role=Role.ROLE_USER, message_id=uuid.uuid4().hex, parts=[Part(text="x")])
        message.metadata.update({"skillId": skill})
        async for _ in self.client.send_message(SendMessageRequest(message=message)):
            pass

    async def walls(self, skill: str, calls: int) -> list[float]:
        return await atimed(lambda: self.send(skill), calls)


def _program(calls: int) -> str:
    """Times each call inside the sandbox, around the `await` (the stub, the host, the agent and back)."""
    return (
        "import time\nfrom tools.bench import echo, task\nout = {}\n"
        "for f in (echo, task):\n"
        "    walls = []\n"
        f"    for _ in range({calls}):\n"
        "        t = time.perf_counter()\n        await f('x')\n        walls.append(time.perf_counter() - t)\n"
        "    out[f.__name__] = walls\n"
        "result = out"
    )


async def measure(quick: bool) -> dict[str, Any]:
    """Rounds that alternate the two sides (the machine may be shared: both see the same load)."""
    calls, rounds = (20, 3) if quick else (20, 15)
    proc, url = _start()
    samples: dict[str, dict[str, list[float]]] = {"direct": {"echo": [], "task": []}, "ptc": {"echo": [], "task": []}}
    limits = Limits(timeout=120, max_tool_calls=2 * calls + 10)
    try:
        async with _Direct(url) as direct, ProgrammaticToolExecutor(a2a_agents={"bench": url}, limits=limits) as ex:
            for skill in ("echo", "task"):  # warm-up, both sides
                await direct.walls(skill, WARM)
            check(await ex.execute(_program(WARM)), "A2A warm-up")
            for _ in range(rounds):
                for skill in ("echo", "task"):
                    samples["direct"][skill] += await direct.walls(skill, calls)
                timed = check(await ex.execute(_program(calls)), "A2A calls").result
                for skill in ("echo", "task"):
                    samples["ptc"][skill] += timed[skill]
    finally:
        proc.terminate()
        proc.wait(10)
    medians = {
        side: {skill: statistics.median(walls) * 1e3 for skill, walls in by_skill.items()}
        for side, by_skill in samples.items()
    }
    added = {skill: medians["ptc"][skill] - medians["direct"][skill] for skill in ("echo", "task")}
    return {
        "calls": calls * rounds,
        "rounds": rounds,
        "direct_ms": medians["direct"],
        "ptc_ms": medians["ptc"],
        "added_ms": added,
    }


def rows(figures: dict[str, Any]) -> list[Row]:
    direct, ptc, added = figures["direct_ms"], figures["ptc_ms"], figures["added_ms"]
    described = {"echo": "a Message at once", "task": "a task, streamed (3 events)"}
    return [
        Row(
            f"A2A `{skill}` ({described[skill]}), median of {figures['calls']}: direct SDK client / "
            "from the sandbox / what ptc adds",
            f"{direct[skill]:.2f} ms / {ptc[skill]:.2f} ms / {added[skill]:+.2f} ms",
        )
        for skill in ("echo", "task")
    ]
