"""Fixtures of the adversarial suite: two tenants' executors, host secrets, a real listener.

Limits are modest (2 s, 2e9 fuel, 128 MiB) so hostile programs end fast.
Every case goes through `run_case`: run the program, check that nothing of
the host reached the caller or the program, check that the same executor
still runs programs (and tool calls) normally, then check the case's own
expected outcome (see support.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import site
import socket
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import ptc
from ptc import ExecutionResult, Limits, Policy, ProgrammaticToolExecutor, ToolCatalog

from .support import Expect, TooSlow, check_outcome, describe, texts

MiB = 1024 * 1024
REPO_DIR = Path(ptc.__file__).resolve().parents[1]
LIMITS = Limits(
    timeout=2,
    fuel=2_000_000_000,
    memory_bytes=128 * MiB,
    max_output_bytes=64 * 1024,
    max_tool_calls=50,
    max_frame_bytes=1 * MiB,
)
# The breaker must not open after the suite's many deliberate failures; a tool call may take 5 s.
POLICY = Policy(timeout=5, circuit_failure_threshold=1_000_000)

SECRET_A = "tenant-a-secret-" + uuid.uuid4().hex


# -- tenant A: a catalog with one secret tool ------------------------------------
class TenantA:
    def __init__(self) -> None:
        self.calls = 0
        self.catalog = ToolCatalog(source="tenant_a")

        @self.catalog.tool(domain="vault")
        def secret_a() -> str:
            """Tenant A's secret; no other tenant may ever run this."""
            self.calls += 1
            return SECRET_A


# -- tenant B: the catalog hostile programs run against ---------------------------
class TenantB:
    def __init__(self) -> None:
        self.running: dict[str, asyncio.Task[Any]] = {}
        self.catalog = catalog = ToolCatalog(source="tenant_b")

        @catalog.tool(domain="shop")
        def echo(value: str) -> str:
            """Return the value."""
            return value

        @catalog.tool(domain="shop")
        def boom() -> None:
            """Fail with an exception that has no message at all."""
            raise RuntimeError()

        @catalog.tool(domain="shop")
        def boom_generic() -> None:
            """Fail with a generic message."""
            raise ValueError("bad input")

        @catalog.tool(domain="shop")
        def boom_host_path() -> str:
            """Fail the way a tool with a missing data file does (an OSError naming a host path)."""
            return (REPO_DIR / "tests" / "security" / "no-such-data-file.csv").read_text()

        @catalog.tool(domain="shop")
        def not_plain() -> dict:
            """Return something that is not plain data."""
            return {"s": {1, 2}}

        @catalog.tool(domain="shop")
        def huge() -> str:
            """Return 50 MB."""
            return "x" * (50 * MiB)

        @catalog.tool(domain="shop")
        def deep_result() -> list:
            """Return plain data nested 100 deep (msgpack packs it; the guest's decoder caps nesting)."""
            value: list = []
            for _ in range(100):
                value = [value]
            return value

        @catalog.tool(domain="shop")
        def tuple_key_result() -> dict:
            """Return a map whose key packs as a msgpack array."""
            return {(1, 2): "x"}

        @catalog.tool(domain="shop")
        async def hang(tag: str) -> str:
            """Never answer (until cancelled)."""
            task = asyncio.current_task()
            assert task is not None
            self.running[tag] = task
            try:
                await asyncio.sleep(3600)
            finally:
                self.running.pop(tag, None)
            return "never"

        @catalog.tool(domain="shop")
        def cli(argv: list[str]) -> str:
            """Run a command-line style tool: argparse exits (SystemExit) on arguments it rejects."""
            parser = argparse.ArgumentParser(prog="cli")
            parser.add_argument("--name", required=True)
            return parser.parse_args(argv).name

    def cancel_running(self) -> None:
        for task in list(self.running.values()):
            task.get_loop().call_soon_threadsafe(task.cancel)


@pytest.fixture(scope="session")
def tenant_a() -> TenantA:
    return TenantA()


@pytest.fixture(scope="session")
def tenant_b() -> TenantB:
    return TenantB()


@pytest.fixture(scope="session")
def executor_a(tenant_a: TenantA) -> Iterator[ProgrammaticToolExecutor]:
    executor = ProgrammaticToolExecutor(tenant_a.catalog, limits=LIMITS, policy=POLICY, tenant_id="security-tenant-a")
    yield executor
    executor.close()


@pytest.fixture(scope="session")
def executor(tenant_b: TenantB) -> Iterator[ProgrammaticToolExecutor]:
    """Tenant B's executor: every hostile program runs here unless a case says otherwise."""
    executor = ProgrammaticToolExecutor(tenant_b.catalog, limits=LIMITS, policy=POLICY, tenant_id="security-tenant-b")
    yield executor
    executor.close()


# -- what must never reach a program ---------------------------------------------
@pytest.fixture(scope="session")
def canary_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("host") / "canary.txt"
    path.write_text("host-file-canary-" + uuid.uuid4().hex + "\n")
    return path


@pytest.fixture(scope="session")
def host_secrets(canary_file: Path) -> Iterator[dict[str, str]]:
    """Strings only the host knows: if one shows up in a result, the program reached the host."""
    env_token = "host-env-canary-" + uuid.uuid4().hex
    previous = os.environ.get("PTC_SECURITY_CANARY")
    os.environ["PTC_SECURITY_CANARY"] = env_token
    secrets = {
        "environment variable": env_token,
        "canary file": canary_file.read_text().strip(),
        "repo README": (REPO_DIR / "README.md").read_text().splitlines()[0],
        "tenant A's secret": SECRET_A,
    }
    try:
        first_line = Path("/etc/passwd").read_text().splitlines()[0]
    except (OSError, IndexError):
        pass
    else:
        secrets["/etc/passwd"] = first_line
    yield secrets
    if previous is None:
        os.environ.pop("PTC_SECURITY_CANARY", None)
    else:
        os.environ["PTC_SECURITY_CANARY"] = previous


@pytest.fixture(scope="session")
def host_details() -> list[str]:
    """Host paths and implementation names no error, output or exception text may show."""
    home = os.path.expanduser("~")
    cache = os.environ.get("PTC_CACHE_DIR") or os.path.join(home, ".cache", "ptc")
    details = {
        str(REPO_DIR) + "/",
        os.path.dirname(sys.executable) + "/",
        sys.prefix + "/",
        cache,
        "site-packages",
        "hostcalls",
        "router.py",
        "wasmtime",
        "pytest-of-",
        *site.getsitepackages(),
    }
    if len(home) > 1:
        details.add(home.rstrip("/") + "/")
    return sorted(details)


def assert_no_host_data(r: ExecutionResult, host_secrets: dict[str, str]) -> None:
    for text in texts(r):
        for name, secret in host_secrets.items():
            assert secret not in text, f"the {name} reached the program: {describe(r)}"


async def assert_healthy(executor: ProgrammaticToolExecutor) -> None:
    r = await executor.execute("result = 'ok'")
    assert r.error is None and r.result == "ok" and r.output == "", f"the next execution is unhealthy: {describe(r)}"
    if executor.catalog.get("echo") is not None:
        r = await executor.execute("from tools.shop import echo\nprint('hi')\nresult = await echo(value='ok')")
        assert r.error is None and r.result == "ok" and r.output == "hi\n", f"tool calls are unhealthy: {describe(r)}"


RunCase = Callable[..., Awaitable[ExecutionResult]]


@pytest.fixture
def run_case(host_secrets: dict[str, str]) -> RunCase:
    """run_case(executor, code, expect, **limit overrides) -> the case's ExecutionResult."""

    async def run(executor: ProgrammaticToolExecutor, code: str, expect: Expect, **limits: Any) -> ExecutionResult:
        limits = {**(expect.limits or {}), **limits}
        for attempt in (1, 2):
            r = await executor.execute(code, limits=executor.limits.model_copy(update=limits) if limits else None)
            assert_no_host_data(r, host_secrets)
            await assert_healthy(executor)
            try:
                check_outcome(r, expect)
            except TooSlow:  # the outcome was right, only late: once more, to tell a stall from a missing stop
                if attempt == 2:
                    raise
                continue
            return r
        raise AssertionError("unreachable")

    return run


# -- a real listener on the host's loopback ---------------------------------------
class Listener:
    """A TCP listener and a UDP socket on 127.0.0.1 that count every contact, never blocking.

    A TCP connect completes in the kernel's backlog without accept(), so a
    non-blocking accept after the execution sees any connection it made.
    """

    def __init__(self) -> None:
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen(16)
        self.tcp.setblocking(False)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.udp.setblocking(False)
        self.port: int = self.tcp.getsockname()[1]
        self.udp_port: int = self.udp.getsockname()[1]

    def contacts(self) -> int:
        count = 0
        while True:
            try:
                conn, _ = self.tcp.accept()
            except BlockingIOError:
                break
            conn.close()
            count += 1
        while True:
            try:
                self.udp.recvfrom(65536)
            except BlockingIOError:
                break
            count += 1
        return count

    def close(self) -> None:
        self.tcp.close()
        self.udp.close()


@pytest.fixture(scope="session")
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()
