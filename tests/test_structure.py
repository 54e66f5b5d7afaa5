"""What the structure promises a user: one exception tree, an explicit lifecycle, documented aliases,
explicit quota changes, and the program-facing errors defined once."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import pkgutil

import pytest

import ptc
import ptc.hostcalls
import ptc.stubgen
from ptc import Limits, ProgrammaticToolExecutor, Quota, ToolCatalog
from ptc.errors import PROGRAM_ERRORS, ExecutorClosedError, PtcError, program_errors_source
from ptc.tenancy import tenants


def _all_modules() -> list[str]:
    names = ["ptc"]
    for package in (ptc, ptc.hostcalls, ptc.stubgen):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.startswith("ptc.guest.app") or info.name in ("ptc.__main__", "ptc.examples.budget"):
                continue
            names.append(info.name)
    names.append("ptc.guest.build")
    return sorted(set(names))


def test_every_exception_ptc_defines_is_a_ptc_error() -> None:
    defined = []
    for name in _all_modules():
        module = importlib.import_module(name)
        for value in vars(module).values():
            if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == name:
                defined.append(value)
    assert len(defined) >= 20  # the walk found them (public and internal)
    strays = [f"{cls.__module__}.{cls.__qualname__}" for cls in defined if not issubclass(cls, PtcError)]
    assert not strays, f"exceptions outside the PtcError tree: {strays}"


def test_the_tree_is_drawn_in_errors_docstring() -> None:
    doc = ptc.errors.__doc__ or ""
    public = [v for v in vars(ptc.errors).values() if inspect.isclass(v) and issubclass(v, PtcError)]
    missing = [cls.__name__ for cls in public if cls.__name__ not in doc]
    assert not missing, missing
    for name in ("MCPConnectionError", "GuestBuildError", "RetryableError", "OverCapacityError"):
        assert issubclass(getattr(ptc, name, None) or getattr(ptc.errors, name), PtcError), name


def test_library_exceptions_keep_their_builtin_bases() -> None:
    """`except ImportError` / `except ConnectionError` around ptc keep working."""
    assert issubclass(ptc.errors.MissingExtraError, ImportError)
    assert issubclass(ptc.errors.MCPConnectionError, ConnectionError)
    assert issubclass(ptc.errors.GuestBuildError, RuntimeError)


def test_data_about_errors_is_not_named_like_an_exception() -> None:
    from ptc.records import CallErrorInfo
    from ptc.results import ExecutionErrorInfo

    for cls in (ExecutionErrorInfo, CallErrorInfo):
        assert not issubclass(cls, BaseException)
    assert ptc.ExecutionError is ExecutionErrorInfo  # the old name stays, as an alias


def test_program_facing_family_is_rendered_from_the_host_classes() -> None:
    namespace: dict[str, object] = {}
    exec(program_errors_source(), namespace)
    for cls in PROGRAM_ERRORS:
        rendered = namespace[cls.__name__]
        assert isinstance(rendered, type)
        assert rendered.__doc__ == cls.__doc__
        parent = cls.__mro__[1]
        assert rendered.__mro__[1].__name__ == ("Exception" if parent is PtcError else parent.__name__)
    stubs = ptc.stubgen.render_stubs(ToolCatalog())
    for cls in PROGRAM_ERRORS:
        assert f"class {cls.__name__}(" in stubs["tools._outside"]
        assert cls.__name__ in stubs["tools"]


def test_a_program_catches_every_member_of_the_family(executor_factory=None) -> None:
    catalog = ToolCatalog()

    @catalog.tool(domain="d")
    def boom(kind: str) -> None:
        raise getattr(ptc.errors, kind)("on purpose")

    executor = ProgrammaticToolExecutor(catalog)
    names = [cls.__name__ for cls in PROGRAM_ERRORS]
    code = (
        "import tools\nfrom tools.d import boom\nseen = []\n"
        f"for name in {names!r}:\n"
        "    try:\n        await boom(kind=name)\n"
        "    except tools.ToolError as exc:\n"
        "        seen.append((type(exc).__name__, isinstance(exc, getattr(tools, name)), str(exc)))\n"
        "seen"
    )
    result = executor.execute_sync(code)
    assert result.error is None, result.error
    assert result.result == [[name, True, "on purpose"] for name in names]


# -- lifecycle -------------------------------------------------------------------------------------


async def test_lifecycle_is_explicit_and_closed_is_final() -> None:
    executor = ProgrammaticToolExecutor(ToolCatalog())
    assert executor.lifecycle == "unopened" and not executor.closed
    assert (await executor.execute("1 + 1")).result == 2
    assert executor.lifecycle == "open"
    await executor.aclose()
    assert executor.lifecycle == "closed" and executor.closed
    with pytest.raises(ExecutorClosedError):
        await executor.execute("1")
    with pytest.raises(ExecutorClosedError):
        await executor.connect()
    with pytest.raises(ExecutorClosedError):
        await executor.warm_up()
    await executor.aclose()  # twice is fine
    executor.close()


def test_sync_context_manager_closes() -> None:
    with ProgrammaticToolExecutor() as executor:
        assert executor.lifecycle == "open"
        assert executor.execute_sync("6 * 7").result == 42
    assert executor.closed
    with pytest.raises(ExecutorClosedError), ProgrammaticToolExecutor() as again:
        again.close()
        again.execute_sync("1")


async def test_async_context_manager_closes() -> None:
    async with ProgrammaticToolExecutor() as executor:
        assert (await executor.execute("3")).result == 3
    with pytest.raises(ExecutorClosedError):
        await executor.execute("3")
    with pytest.raises(ExecutorClosedError):
        async with executor:
            pass


def test_closed_error_is_a_ptc_error() -> None:
    executor = ProgrammaticToolExecutor()
    executor.close()
    with pytest.raises(PtcError, match="closed"):
        executor.execute_sync("1")


# -- the walkthrough's spellings, as documented aliases --------------------------------------------


def test_timeout_alias_sets_the_limit(tmp_path) -> None:
    executor = ProgrammaticToolExecutor(ToolCatalog(), timeout=7)
    assert executor.limits.timeout == 7.0
    both = ProgrammaticToolExecutor(limits=Limits(fuel=None, memory_bytes=64 << 20), timeout=3)
    assert both.limits.timeout == 3.0 and both.limits.memory_bytes == 64 << 20 and both.limits.fuel is None
    assert ProgrammaticToolExecutor(limits=Limits(timeout=5), timeout=5).limits.timeout == 5.0
    with pytest.raises(ValueError, match="contradicts"):
        ProgrammaticToolExecutor(limits=Limits(timeout=5), timeout=9)


def test_timeout_alias_stops_a_program() -> None:
    result = ProgrammaticToolExecutor(timeout=0.5).execute_sync("while True:\n    pass")
    assert result.error is not None and result.error.kind == "timeout"


def test_enable_stubs_alias(tmp_path) -> None:
    catalog = ToolCatalog()

    @catalog.tool(domain="d")
    def ping() -> str:
        return "pong"

    ProgrammaticToolExecutor(catalog, stub_dir=tmp_path / "on", enable_stubs=True)
    assert (tmp_path / "on" / "tools" / "d" / "ping.py").exists() or any((tmp_path / "on").rglob("ping.py"))
    off = ProgrammaticToolExecutor(catalog, stub_dir=tmp_path / "off", enable_stubs=False)
    assert off.stub_dir is None and not (tmp_path / "off").exists()


# -- tenants: quota changes are explicit -------------------------------------------------------------


async def test_quota_conflict_is_an_error_and_set_quota_changes_it_for_all() -> None:
    tenant = "structure-quota"
    first = ProgrammaticToolExecutor(tenant_id=tenant, quota=Quota(max_concurrent=1, max_queued=0))
    with pytest.raises(ValueError, match="set_quota"):
        ProgrammaticToolExecutor(tenant_id=tenant, quota=Quota(max_concurrent=2, max_queued=0))
    second = ProgrammaticToolExecutor(tenant_id=tenant)  # no quota given: the tenant's
    slow = asyncio.create_task(first.execute("import asyncio\nawait asyncio.sleep(0.5)"))
    await asyncio.sleep(0.2)
    with pytest.raises(ptc.OverCapacityError):
        await second.execute("1")
    old = tenants.set_quota(tenant, Quota(max_concurrent=2, max_queued=0))
    assert old == Quota(max_concurrent=1, max_queued=0)
    assert tenants.quota(tenant).max_concurrent == 2
    assert (await second.execute("1")).result == 1  # the new limit holds for every executor of the tenant
    assert (await slow).error is None
    ProgrammaticToolExecutor(tenant_id=tenant, quota=Quota(max_concurrent=2, max_queued=0))  # the same: fine
