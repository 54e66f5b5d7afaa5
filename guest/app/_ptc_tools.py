"""The guest half of a tool call: frames out, values or ToolError subclasses back.

Generated stubs (`tools.<domain>.<tool>`) call `call_tool`; their sources come
from the host through `load-module`, so a program loads only what it imports.
"""

from __future__ import annotations

import ast
import asyncio
import functools
import importlib
import inspect
import json
import linecache
import marshal
import sys
import types
from importlib.abc import Loader, MetaPathFinder
from importlib.machinery import ModuleSpec
from typing import Any

import _ptc_codec
from _ptc_generated import APPROVAL_TOOLS as _APPROVAL_TOOLS
from _ptc_generated import ERRORS as _ERRORS
from _ptc_generated import WARM_UP_MODULES as _WARM_UP_MODULES
from _ptc_io import flush_before_blocking
from _ptc_loop import HostEventLoop
from wit_world.imports import host

ToolError = _ERRORS["ToolError"]
ToolValidationError = _ERRORS["ToolValidationError"]


MAX_LINE = 500  # the caller's source line, as text for an approval request (the host bounds it again)


def _is_program(frame: Any) -> bool:
    name = frame.f_code.co_filename
    return name == "<program>" or name.startswith("<cell ")


def _caller_line() -> str | None:
    """The program's source line that made the call (None when a task, not the program, drives it).

    A stub's call reaches here three frames below the program (stub, call, call_tool),
    `call_tool(server=...)`'s two: those depths are tried first, since walking frame by frame
    materializes a frame object per level.
    """
    for depth in (4, 3):
        try:
            frame = sys._getframe(depth)
        except ValueError:
            break
        if _is_program(frame):
            return linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()[:MAX_LINE] or None
    frame = sys._getframe(1)
    for _ in range(32):
        if frame is None:
            return None
        if _is_program(frame):
            return linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()[:MAX_LINE] or None
        frame = frame.f_back
    return None


_asked: frozenset[str] | None = None  # the tools whose calls wait for an approval, asked of the host once


def _needs_line(tool: str) -> bool:
    """Only a call that waits for an approval carries the program's line: finding and sending it cost
    ~45k fuel, a quarter of an ordinary call (the guest's msgpack is pure Python)."""
    global _asked
    if _asked is None:
        text = host.load_module(_APPROVAL_TOOLS)
        try:
            names = json.loads(text) if text else []
        except ValueError:
            names = []
        _asked = frozenset(n for n in names if isinstance(n, str)) if isinstance(names, list) else frozenset()
    return tool in _asked


_HEADS: dict[str, bytes] = {}  # a tool's frame up to its arguments (the codec's bytes for the same map)
_NO_KEY = b"\xa3key\xc0"
_OK = "\x81\xa2ok"  # a reply that is {"ok": value}


def _encode(tool: str, args: dict[str, Any], key: str | None, **more: Any) -> str:
    if not more and type(tool) is str:  # the map {"tool", "args", "key"}, its fixed parts packed once per tool
        head = _HEADS.get(tool)
        if head is None:
            head = _HEADS[tool] = b"\x83\xa4tool" + _ptc_codec.pack(tool) + b"\xa4args"
        tail = _NO_KEY if key is None else b"\xa3key" + _ptc_codec.pack(key)
        return (head + _ptc_codec.pack(args) + tail).decode("latin-1")
    frame = {"tool": tool, "args": args, "key": key}
    frame.update(more)
    return _ptc_codec.pack(frame).decode("latin-1")


def _decode(reply: str) -> Any:
    try:
        if reply.startswith(_OK):  # most replies: the value alone is decoded
            return _ptc_codec.unpack(reply[4:].encode("latin-1"))
        message = _ptc_codec.unpack(reply.encode("latin-1"))
    except (ValueError, TypeError) as exc:
        raise ToolError("the tool's reply could not be decoded: %s" % exc) from None
    if not isinstance(message, dict):
        raise ToolError("the tool's reply is not a map")
    if "error" in message:
        error = message["error"]
        raise _ERRORS.get(error.get("type"), ToolError)(error.get("message", ""))
    return message.get("ok")


async def call_tool(tool: str, args: dict[str, Any], idempotency_key: str | None = None, **more: Any) -> Any:
    if _needs_line(tool):
        line = _caller_line()
        if line is not None:
            more["line"] = line
    try:
        frame = _encode(tool, args, idempotency_key, **more)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ToolValidationError(f"{tool}: parameters are not plain data ({exc})") from None
    return await _send(frame)


async def _send(frame: str) -> Any:
    loop = asyncio.get_running_loop()
    if isinstance(loop, HostEventLoop):
        reply = await loop.submit(frame)
    else:
        flush_before_blocking()  # live output: printed before the call is seen while it runs
        reply = host.call(frame)
    return _decode(reply)


async def search_tools(query: str, limit: int = 10) -> list[dict[str, Any]]:
    """The tools of this program's catalog that best match `query` (words of names, descriptions, parameters).

    Each is a dict: name (`domain.tool`), domain, kind ("function", "mcp" or
    "a2a"), signature, summary and import (the line to import it with).
    """
    return await _op("search_tools", {"query": query, "limit": limit})


async def describe_tool(name: str) -> dict[str, Any] | None:
    """One tool in full (its search entry and `stub`, its module's source), or None if there is none."""
    return await _op("describe_tool", {"name": name})


async def _op(op: str, args: dict[str, Any]) -> Any:
    """A request the host answers from the program's catalog (not a tool call)."""
    return await _send(_ptc_codec.pack({"op": op, "args": args}).decode("latin-1"))


async def router_call(
    server: str,
    tool_name: str,
    parameters: dict[str, Any] | None = None,
    timeout: float | None = None,
    idempotency_key: str | None = None,
) -> Any:
    """Call a tool by name through the host's router: `await call_tool(server=..., tool_name=..., parameters={...})`.

    `server` is the tool's domain (the call fails if the tool is not there);
    `timeout` may only shorten the tool's own timeout. Validation, policies
    and records are those of a stub's call.
    """
    return await call_tool(tool_name, dict(parameters or {}), idempotency_key, domain=server, timeout=timeout)


# -- what the generated stubs use (kept here, in the snapshot: compiling it
# per execution cost ~5 ms; the stubs themselves stay a few lines) ---------


async def call(tool: str, args: dict[str, Any], idempotency_key: str | None = None, omit: tuple[str, ...] = ()) -> Any:
    for name in omit:
        if args.get(name) is None:
            del args[name]
    return await call_tool(tool, args, idempotency_key)


def stub(tool: str, names: dict[str, str]) -> Any:
    """Make a call that does not fit the signature (a missing or unknown parameter) a ToolValidationError.

    Such a call goes to the host as written, where validation names the
    parameter and the call is recorded like any other.
    """

    def decorate(function: Any) -> Any:
        module = function.__globals__
        for name in module.get("__all__", ()):  # its TypedDicts, made above it (compiled: lazily, see lazy_types)
            if name in module:
                own_required_keys(module[name])

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return function(*args, **kwargs)
            except TypeError:
                key = kwargs.pop("idempotency_key", None)
                positional = [*names.values(), *("<positional %d>" % (n + 1) for n in range(len(names), len(args)))]
                params = dict(zip(positional, args, strict=False))
                params.update({names.get(k, k): v for k, v in kwargs.items()})
                return call_tool(tool, params, key)

        inspect.markcoroutinefunction(wrapper)
        return wrapper

    return decorate


def own_required_keys(cls: Any) -> None:
    """Give a stub's class-form TypedDict the required keys its source writes.

    A stub is written under `from __future__ import annotations` (so it reads
    the same to a type checker on any Python), and then TypedDict cannot see
    `Required[...]` in its string annotations: `__required_keys__` came out
    empty. The strings say which keys are required; only the stubs' own
    spelling (`Required[...]` in a `total=False` class) is read.
    """
    if not (isinstance(cls, type) and issubclass(cls, dict) and hasattr(cls, "__required_keys__")):
        return
    keys = cls.__required_keys__ | cls.__optional_keys__
    required = set(cls.__required_keys__)
    for key, value in getattr(cls, "__annotations__", {}).items():
        text = value if isinstance(value, str) else getattr(value, "__forward_arg__", None)
        if isinstance(text, str) and text.startswith("Required["):
            required.add(key)
    cls.__required_keys__ = frozenset(required)
    cls.__optional_keys__ = frozenset(keys - required)


def lazy_domain(module: str, names: list[str]) -> tuple[Any, Any]:
    """`__getattr__` and `__dir__` for a domain package: each tool's module loads on first use."""
    namespace = sys.modules[module].__dict__

    def __getattr__(name: str) -> Any:
        if name in names:
            full = "%s.%s" % (module, name)
            loaded = sys.modules.get(full) or _FINDER.load(full) or importlib.import_module(full)
            function = getattr(loaded, name)
            namespace[name] = function  # (an import binds the submodule under this name)
            return function
        raise AttributeError("module %r has no attribute %r" % (module, name))

    def __dir__() -> list[str]:
        return list(names)

    return __getattr__, __dir__


def lazy_types(make: Any, namespace: dict[str, Any], names: list[str]) -> tuple[Any, Any]:
    """`__getattr__` and `__dir__` for a tool module whose TypedDicts `make()` defines when one is first used.

    Making them cost ~1M fuel each on 3.14 (most of importing a tool); most
    programs only call the tool. They are made all at once, into the module,
    so annotations that name them resolve as before (`typing.get_type_hints`
    once one of them was imported). Only the host's compiler uses this
    (`slim`, ptc.stub_code): a stub compiled here from its source makes its
    types at import, as written.
    """

    def __getattr__(name: str) -> Any:
        if name in names:
            for cls_name, cls in make().items():
                cls.__qualname__ = cls_name  # not `_ptc_types.<locals>.X`: the module's own class
                own_required_keys(cls)
                namespace.setdefault(cls_name, cls)
            return namespace[name]
        raise AttributeError("module %r has no attribute %r" % (namespace.get("__name__"), name))

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(names))

    return __getattr__, __dir__


def _is_typeddict(node: ast.stmt) -> str | None:
    """The name a top-level TypedDict definition of a tool module binds (class or functional form)."""
    if isinstance(node, ast.ClassDef) and [ast.unparse(b) for b in node.bases] == ["TypedDict"]:
        return node.name
    if (
        isinstance(node, ast.Assign)
        and len(node.targets) == 1
        and isinstance(node.targets[0], ast.Name)
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Name)
        and node.value.func.id == "TypedDict"
    ):
        return node.targets[0].id
    return None


def slim(tree: ast.Module) -> ast.Module:
    """A tool module's code with its TypedDicts made on first use (`lazy_types`), for ptc.stub_code.

    The host verified the module's structure before serving it
    (ptc.stubgen.verify): its TypedDicts come together, after `__all__`.
    They move, in order, into a function that returns them, declared global
    there: each is made in the module's namespace, as at module level, so a
    string annotation naming one made before it resolves (`Required[Node]`
    must, or the key is not required). Moved nodes keep their line numbers,
    so a traceback points at the source's own lines.
    """
    found = [(i, name) for i, node in enumerate(tree.body) if (name := _is_typeddict(node)) is not None]
    if not found:
        return tree
    moved = [tree.body[i] for i, _ in found]
    names = [name for _, name in found]
    first = moved[0]
    returned = ast.Dict(keys=[ast.Constant(n) for n in names], values=[ast.Name(n, ast.Load()) for n in names])
    make = ast.FunctionDef(
        name="_ptc_types",
        args=ast.arguments(posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[], defaults=[]),
        body=[ast.Global(names=names), *moved, ast.Return(returned)],
        decorator_list=[],
        returns=None,
        type_params=[],
    )
    hook = ast.parse(
        "from _ptc_tools import lazy_types as _ptc_lazy_types\n"
        "__getattr__, __dir__ = _ptc_lazy_types(_ptc_types, globals(), %r)" % names
    ).body
    body = [node for i, node in enumerate(tree.body) if i not in {j for j, _ in found}]
    at = found[0][0]
    for node in (make, *hook):
        ast.copy_location(node, first)
    tree.body = [*body[:at], make, *hook, *body[at:]]
    return ast.fix_missing_locations(tree)


class ToolsFinder(MetaPathFinder, Loader):
    """Imports `tools`, `tools.<domain>` and `tools.<domain>.<tool>` from the host."""

    def __init__(self) -> None:
        self._sources: dict[str, str] = {}

    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001, ANN201
        if fullname != "tools" and not fullname.startswith("tools."):
            return None
        source = self._source(fullname)
        if source is None:
            return None
        self._sources[fullname] = source
        is_pkg = _is_package(fullname)
        spec = ModuleSpec(fullname, self, is_package=is_pkg, origin=_filename(fullname, is_pkg))
        spec.has_location = True
        if is_pkg:
            spec.submodule_search_locations = []
        return spec

    def _source(self, fullname: str) -> str | None:
        return host.load_module(fullname)

    def create_module(self, spec):  # noqa: ANN001, ANN201
        return None

    def get_source(self, fullname: str) -> str | None:
        return self._sources.get(fullname)

    def load(self, fullname: str) -> Any:
        """Import a `tools` module as importlib would (its parents first, bound in them, in
        sys.modules), without importlib's machinery: ~250k fuel an import, of the ~450k one
        costs. None if the host has no such module (importlib then says so in its words)."""
        module = sys.modules.get(fullname)
        if module is not None:
            return module
        parent_name, _, child = fullname.rpartition(".")
        parent = self.load(parent_name) if parent_name else None
        if parent_name and parent is None:
            return None
        spec = self.find_spec(fullname)
        if spec is None:
            return None
        module = types.ModuleType(fullname)
        module.__spec__, module.__loader__ = spec, self
        module.__package__ = fullname if spec.submodule_search_locations is not None else parent_name
        if spec.submodule_search_locations is not None:
            module.__path__ = []
        sys.modules[fullname] = module
        try:
            self.exec_module(module)
        except BaseException:
            sys.modules.pop(fullname, None)
            raise
        module = sys.modules[fullname]
        if parent is not None:
            setattr(parent, child, module)
        return module

    def exec_module(self, module) -> None:  # noqa: ANN001
        code, source = _code(self._sources[module.__name__], module.__spec__.origin)
        self._sources[module.__name__] = source
        filename = module.__spec__.origin
        module.__file__ = filename
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        exec(code, module.__dict__)


def _code(text: str, filename: str) -> tuple[Any, str]:
    """A module's code and source, from what the host sent: its source, or (after a NUL,
    which no source holds) the length of its marshalled code, a NUL, that code as latin-1
    text, and the source. The host's code was compiled by an instance that ran no program
    (ptc.stub_code): a stub module compiled here costs 0.5-2 ms; loaded, ~20 us."""
    if not text.startswith("\0"):
        return compile(text, filename, "exec", dont_inherit=True), text
    split = text.index("\0", 1)
    end = split + 1 + int(text[1:split])
    return marshal.loads(text[split + 1 : end].encode("latin-1")), text[end:]


def _is_package(fullname: str) -> bool:
    """`tools` and `tools.<domain>`; `tools._x` modules are plain modules."""
    parts = fullname.split(".")
    return len(parts) == 1 or (len(parts) == 2 and not parts[1].startswith("_"))


def _filename(fullname: str, is_pkg: bool) -> str:
    return fullname.replace(".", "/") + ("/__init__.py" if is_pkg else ".py")


def preload(tree: Any) -> None:
    """Load the `tools` modules a program's top-level statements import, before it runs
    (`ToolsFinder.load`, not importlib): what those statements then find in sys.modules
    is what importlib would have made. A module the host does not have is left to the
    import itself to report; only stubs ever run here, and a failure of theirs is left
    to the import too."""
    for node in tree.body:
        modules: list[str] = []  # imported as importlib imports them (each bound in its parent)
        tools: list[str] = []  # named from a domain: bound in it as the function (lazy_domain)
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "tools" or node.module.startswith("tools."):
                modules.append(node.module)
                if node.module.count(".") == 1:  # from tools.<domain> import <tool>, ...
                    tools = [node.module + "." + a.name for a in node.names if a.name != "*"]
        elif isinstance(node, ast.Import):
            modules = [a.name for a in node.names if a.name == "tools" or a.name.startswith("tools.")]
        try:
            for name in modules:
                _FINDER.load(name)
            for name in tools:
                domain, _, tool = name.rpartition(".")
                if name not in sys.modules:
                    getattr(sys.modules.get(domain), tool, None)
        except Exception:  # noqa: BLE001 - the program's own import reports it
            pass


_FINDER = ToolsFinder()


def install() -> None:
    sys.meta_path.insert(0, _FINDER)


class _WarmUpFinder(ToolsFinder):
    def _source(self, fullname: str) -> str | None:
        return _WARM_UP_MODULES.get(fullname)


def warm_up() -> None:
    """Run at build time only: import stub-shaped modules through the finder
    (importlib, TypedDicts, the stub decorator) and decode frames, so their
    first run is in the snapshot: a first stub import in a fresh instance cost
    ~3.5 ms of specializing and fresh page writes."""
    global _FINDER
    finder, installed = _WarmUpFinder(), _FINDER
    _FINDER = finder
    sys.meta_path.insert(0, finder)
    try:
        for n in range(3):
            if n:  # the path programs take: their top-level imports preloaded, then run
                preload(ast.parse("from tools.warm import warm"))
            exec("from tools.warm import warm", {})
            for name in [m for m in sys.modules if m == "tools" or m.startswith("tools.")]:
                del sys.modules[name]
            _decode(_encode("warm", {"x": n, "tags": ["a", "b"], "ratio": 0.5, "none": None}, None))
            _decode(_ptc_codec.pack({"ok": {"value": n, "tags": ["x"]}}).decode("latin-1"))
            try:
                _decode(_ptc_codec.pack({"error": {"type": "ToolValidationError", "message": "m"}}).decode("latin-1"))
            except ToolValidationError:
                pass
    finally:
        _FINDER = installed
        sys.meta_path.remove(finder)
        for name in list(linecache.cache):
            if name.startswith("tools/"):
                del linecache.cache[name]
