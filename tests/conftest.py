import pytest

from ptc import Limits, ProgrammaticToolExecutor


@pytest.fixture(scope="session")
def executor() -> ProgrammaticToolExecutor:
    """A tool-less executor with a short timeout, shared: executions never share state."""
    return ProgrammaticToolExecutor(limits=Limits(timeout=5))


@pytest.fixture
def run(executor):
    """Run a program and return its result (async)."""

    async def _run(code: str, **limits):
        return await executor.execute(code, limits=executor.limits.model_copy(update=limits) if limits else None)

    return _run
