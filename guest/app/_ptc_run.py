"""Runs one program, or one cell of a session: compile, execute (top-level await allowed), report.

A session's cells (`run_cell`) share one namespace, made by the first cell
(which also seeds `random`, once: a cell must not reset what the one before
it left). Each cell's source is `<cell N>` in tracebacks and linecache, so a
function defined by an earlier cell still shows its own lines. A cell's value
is `result` if the cell itself binds it (an assignment, import, `global
result`, ... anywhere in its own scope, or a new object under that name),
else its last expression: a `result` left by an earlier cell is not
reported again. An exception a cell raises is kept as `sys.last_exc`, as in
the REPL.

The report is one msgpack map: `value` (plain data, or the value's repr when
`repr` is true), `error` (kind, type,
message, traceback of the program's own frames) and `memory` (bytes of linear
memory at the end, which is the peak: wasm memory never shrinks). It goes to
the host through `host.report`, which refuses one larger than the host takes;
then a smaller report says why (the host enforces the size either way: a
program can replace any of this).
"""

from __future__ import annotations

import ast
import asyncio
import builtins
import inspect
import linecache
import os
import random
import sys
import time
import traceback
from typing import Any

import _ptc_codec
import _ptc_tools
from _ptc_io import flush_before_blocking, make_streams
from _ptc_loop import HostEventLoop
from _ptc_mem import pages as _memory_pages
from wit_world.imports import host

PROGRAM = "<program>"
_LAST = "__ptc_last_value__"
_MAX_DEPTH = 64
# An exception's text in the report: its message's start, its traceback's end (the raising frame).
_MAX_MESSAGE = 64 * 1024
_MAX_TRACEBACK = 256 * 1024
# What the program leaves behind is never freed: its instance is dropped after
# this one run anyway, and freeing a deeply nested structure recurses in C
# (list_dealloc) with no stack guard wasm can give it, which ended a program
# that had finished well ("the program exhausted the sandbox stack").
_LEFT: list[Any] = []
# Frames of these files are the runtime's, not the program's.
_RUNTIME_PREFIXES = ("/0/", "/1/", "/bundled/", "<stdlib>/asyncio/", "/python/asyncio/")


class _NotPlain(TypeError):
    pass


def _plain(value: Any, depth: int = 0) -> Any:
    """Convert to msgpack-able plain data, or raise _NotPlain."""
    if depth > _MAX_DEPTH:
        raise _NotPlain("nested deeper than %d levels" % _MAX_DEPTH)
    if value is None or isinstance(value, (bool, str, bytes, float)):
        return value
    if isinstance(value, int):
        if -(2**63) <= value < 2**64:
            return int(value)
        raise _NotPlain("integer out of the 64-bit range")
    if isinstance(value, bytearray):
        return bytes(value)
    if isinstance(value, (list, tuple)):
        return [_plain(item, depth + 1) for item in value]
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key is not None and not isinstance(key, (str, int, float, bool)):
                raise _NotPlain(f"dict key of type {type(key).__name__}")
            out[_plain(key, depth + 1)] = _plain(item, depth + 1)
        return out
    raise _NotPlain(f"value of type {type(value).__name__}")


def _is_runtime_frame(filename: str) -> bool:
    return filename.startswith(_RUNTIME_PREFIXES)


def _filter(te: traceback.TracebackException) -> None:
    seen: set[int] = set()
    stack = [te]
    while stack:
        cur = stack.pop()
        if cur is None or id(cur) in seen:
            continue
        seen.add(id(cur))
        cur.stack = traceback.StackSummary.from_list([f for f in cur.stack if not _is_runtime_frame(f.filename)])
        stack.extend([cur.__cause__, cur.__context__, *(getattr(cur, "exceptions", None) or [])])


def _message(exc: BaseException) -> str:
    try:
        message = str(exc)
    except Exception:
        return "<exception str() failed>"
    return message if type(message) is str else "<exception str() returned a non-string>"


def _clip(text: str, limit: int, keep_end: bool = False) -> str:
    if len(text) <= limit:
        return text
    cut = len(text) - limit
    if keep_end:
        return "[%d characters cut]\n%s" % (cut, text[cut:])
    return "%s [%d characters cut]" % (text[:limit], cut)


def _error(kind: str, exc: BaseException) -> dict[str, Any]:
    message = _message(exc)
    try:
        te = traceback.TracebackException.from_exception(exc, limit=None, compact=True)
        _filter(te)
        text = "".join(te.format_exception_only() if kind == "syntax_error" else te.format())
    except Exception:  # formatting must never hide the original error
        text = f"{type(exc).__name__}: {message}\n"
    return {
        "kind": kind,
        "type": type(exc).__name__,
        "message": _clip(message, _MAX_MESSAGE),
        "traceback": _clip(text, _MAX_TRACEBACK, keep_end=True),
    }


def _valid_text(value: Any) -> Any:
    """The report with lone surrogates replaced: they are not valid Unicode text to send."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, list):
        return [_valid_text(v) for v in value]
    if isinstance(value, dict):
        return {_valid_text(k): _valid_text(v) for k, v in value.items()}
    return value


def _kind(exc: BaseException) -> str:
    if isinstance(exc, MemoryError) and not _message(exc).startswith("Parser stack"):
        return "memory_limit"
    # wasm32 sizes are 32-bit: bytearray(2**31) fails converting the size,
    # where a 64-bit host would fail allocating it.
    if isinstance(exc, OverflowError) and _message(exc) == "cannot fit 'int' into an index-sized integer":
        return "memory_limit"
    return "runtime_error"


def _parse(code: str, filename: str) -> ast.Module:
    tree = ast.parse(code, filename, "exec")
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = tree.body[-1]
        # the two new nodes get the expression's place (fix_missing_locations would walk the whole tree)
        target = ast.copy_location(ast.Name(_LAST, ast.Store()), last)
        tree.body[-1] = ast.copy_location(ast.Assign(targets=[target], value=last.value), last)
    return tree


def _code(tree: ast.Module, filename: str) -> Any:
    return compile(tree, filename, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)


def _compile(code: str) -> Any:
    return _code(_parse(code, PROGRAM), PROGRAM)


_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


def _binds_result(tree: ast.Module) -> bool:
    """Whether the cell's own (module) scope binds `result`, as the compiler sees it."""
    stack: list[Any] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Global) and "result" in node.names:
            return True
        if isinstance(node, _SCOPES):
            if getattr(node, "name", None) == "result":
                return True
            # a nested scope binds its own names; only its decorators, defaults and bases are the cell's
            stack.extend(getattr(node, "decorator_list", ()))
            stack.extend(getattr(node, "bases", ()))
            args = getattr(node, "args", None)
            if args is not None:
                stack.extend(args.defaults)
                stack.extend(d for d in args.kw_defaults if d is not None)
            body = node.body if isinstance(node.body, list) else []
            stack.extend(n for n in ast.walk(ast.Module(body=body, type_ignores=[])) if isinstance(n, ast.Global))
            continue
        if isinstance(node, ast.Name) and node.id == "result" and not isinstance(node.ctx, ast.Load):
            return True
        if isinstance(node, ast.alias) and (node.asname or node.name.partition(".")[0]) == "result":
            return True
        if isinstance(node, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and node.name == "result":
            return True
        if isinstance(node, ast.MatchMapping) and node.rest == "result":
            return True
        if isinstance(node, ast.comprehension):  # its target is the comprehension's own; a walrus in it is not
            stack.extend([node.iter, *node.ifs])
            continue
        stack.extend(ast.iter_child_nodes(node))
    return False


def _may_bind_result(code: str) -> bool:
    """False when the source cannot name `result` (so the walk of its tree, ~120k fuel for `x = 1`
    and more the larger the cell, is not needed): an identifier spelled otherwise than in ASCII is
    NFKC-normalized by the parser (`ｒｅｓｕｌｔ = 1` binds `result`), so any non-ASCII source may."""
    return "result" in code or not code.isascii()


def _cancel_left(loop: HostEventLoop) -> None:
    """Cancel what the program left running, as asyncio.run does."""
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))


def _finish_loop(loop: HostEventLoop) -> None:
    try:
        _cancel_left(loop)
        if loop._asyncgens:  # (a turn of the loop for none costs ~100k fuel)
            loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        asyncio.set_event_loop(None)
        loop.close()


_made_loop: HostEventLoop | None = None  # made at build time, so it is in the snapshot (see warm_up)


def _new_loop() -> HostEventLoop:
    """The snapshot's loop the first time (each instance has its own copy), then a new one:
    making a loop cost ~175k fuel of an async program's ~850k."""
    global _made_loop
    loop, _made_loop = _made_loop, None
    return loop if loop is not None and not loop.is_closed() else HostEventLoop()


def _execute(code_obj: Any, namespace: dict[str, Any], session: bool = False) -> None:
    if code_obj.co_flags & inspect.CO_COROUTINE:
        loop = _session_loop() if session else _new_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(eval(code_obj, namespace))
        finally:
            if session:
                _end_cell(loop)
            else:
                _finish_loop(loop)
    else:
        exec(code_obj, namespace)


_loop: HostEventLoop | None = None


def _session_loop() -> HostEventLoop:
    """A session's event loop, kept from cell to cell (making and closing one cost as much as the cell)."""
    global _loop
    if _loop is None or _loop.is_closed():  # (a program may close it)
        _loop = _new_loop()
    return _loop


def _end_cell(loop: HostEventLoop) -> None:
    """A cell's end, as asyncio.run's: what it left running is cancelled; the loop stays for the next cell."""
    try:
        _cancel_left(loop)
    finally:
        loop.forget_calls()  # a call still pending was this cell's execution's
        asyncio.set_event_loop(None)


def _value(namespace: dict[str, Any], own_result: bool = True) -> tuple[Any, bool]:
    """The program's value: `result` if it set one, else its last expression; as plain
    data, or as its repr (and True) when it is not plain data. Models write
    `result = something` all the time: that is never the program's failure.
    (A cell that did not bind `result` itself passes own_result=False.)"""
    value = namespace["result"] if own_result and "result" in namespace else namespace.get(_LAST)
    return _shown(value)


def _shown(value: Any) -> tuple[Any, bool]:
    try:
        return _plain(value), False
    except _NotPlain:
        pass
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__, or one too deep for the stack
        text = "<%s object (its repr raised %s)>" % (type(value).__name__, type(exc).__name__)
    return (text if type(text) is str else "<%s object>" % type(value).__name__), True


def _sleep(seconds: float) -> None:
    seconds = float(seconds)
    if seconds != seconds:
        raise ValueError("Invalid value NaN (not a number)")
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    if seconds * 1e9 >= 2.0**63:  # as CPython: beyond its clock's range
        raise OverflowError("timestamp too large to convert to C PyTime_t")
    flush_before_blocking()  # live output: what was printed before the sleep is seen during it
    host.sleep(int(seconds * 1e9))


# Most reports (a cell that assigns) say only how much memory: encoded from this prefix (~10x cheaper).
_PLAIN_REPORT = _ptc_codec.pack({"value": None, "error": None, "repr": False, "memory": None})[:-1]


def _send(report: dict[str, Any], limit: int) -> bool:
    if len(report) == 4 and report["value"] is None and report["error"] is None and report["repr"] is False:
        frame = _PLAIN_REPORT + _ptc_codec.pack(report["memory"])
    else:
        try:
            frame = _ptc_codec.pack(report)
        except UnicodeEncodeError:
            frame = _ptc_codec.pack(_valid_text(report))
    report["size"] = len(frame)
    # Past the limit the host would refuse it: do not spend memory handing it over.
    return len(frame) <= limit and host.report(frame.decode("latin-1"))


def _smaller(report: dict[str, Any]) -> dict[str, Any]:
    """The report the host refused, cut down to what must get through."""
    error = report["error"]
    if error is None:
        message = (
            "the program's result is %d bytes encoded, more than the sandbox may return "
            "(Limits.max_frame_bytes, or what is left of the execution's host budget)" % report["size"]
        )
        error = {"kind": "runtime_error", "type": "ResultTooLargeError", "message": message, "traceback": ""}
    else:
        error = dict(error, message=_clip(error["message"], 1024), traceback=_clip(error["traceback"], 4096, True))
    return {"value": None, "error": error, "memory": report["memory"]}  # "repr" left out: no value


def _seed() -> None:
    """A fresh seed for `random` from 256 bits of the host's randomness.

    `random.seed()` itself reads 2,496 bytes, which wasi-libc fetches 256 at a
    time: ten host calls, measured 235 us of every execution (and 2.5 KB in
    every journal), against 13 us for one call of 32 bytes.
    """
    random.seed(int.from_bytes(os.urandom(32), "big"))


def run(code: str, report_limit: int = 1 << 62) -> None:
    """One program, in a namespace of its own."""
    _seed()  # the snapshot's state is shared by every instance
    namespace: dict[str, Any] = {"__name__": "__main__", "__file__": PROGRAM, "__builtins__": builtins}
    _LEFT.append(namespace)
    _run(code, report_limit, namespace, PROGRAM, session=False)


_MISSING = object()
_session: dict[str, Any] | None = None  # the namespace a session's cells share


def run_cell(code: str, cell: int, report_limit: int = 1 << 62) -> None:
    """One cell of a session: the namespace is the one the earlier cells left."""
    global _session
    if _session is None:
        _seed()  # once: a cell's random state is what the one before it left
        _session = {"__name__": "__main__", "__file__": PROGRAM, "__builtins__": builtins}
    _run(code, report_limit, _session, "<cell %d>" % cell, session=True)


_streams: Any = None


def _session_streams() -> Any:
    """A session's stdout and stderr, the same from cell to cell (one an earlier cell kept still writes here)."""
    global _streams
    if _streams is None:
        _streams = make_streams()
    _streams[0].reopen()
    return _streams


def _run(code: str, report_limit: int, namespace: dict[str, Any], filename: str, session: bool) -> None:
    """Compile, run and report (a session's cell: in the namespace its earlier cells left)."""
    earlier = namespace.get("result", _MISSING)  # what a session's earlier cells left
    namespace.pop(_LAST, None)
    sink, stdout, stderr = _session_streams() if session else make_streams()
    sys.stdout, sys.stderr = stdout, stderr
    time.sleep = _sleep
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
    report: dict[str, Any] = {"value": None, "error": None}
    try:
        tree = _parse(code, filename)
        code_obj = _code(tree, filename)
    except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:
        # MemoryError/RecursionError here: a parser bomb, not a memory limit.
        report["error"] = _error("syntax_error", exc)
    else:
        host.started()
        try:
            if "tools" in code:  # (a program that names no tools has none to preload: no walk of its statements)
                _ptc_tools.preload(tree)
            _execute(code_obj, namespace, session)
            if not session:
                value, report["repr"] = _value(namespace)
            else:
                now = namespace.get("result", _MISSING)
                own = now is not earlier or (now is not _MISSING and _may_bind_result(code) and _binds_result(tree))
                value, report["repr"] = _value(namespace, own)
            report["value"] = value
            _ptc_codec.pack(value)  # a lone surrogate in it raises UnicodeEncodeError: the program's error
        except SystemExit as exc:
            if exc.code not in (None, 0):
                report["error"] = _error("runtime_error", exc)
        except BaseException as exc:  # everything the program raises is its own error
            kind = _kind(exc)
            if isinstance(exc, MemoryError) and (not session or kind == "memory_limit"):
                namespace.clear()  # frees memory for the report (a session's instance is replaced then)
            if not session:
                _LEFT.append(exc)  # and its frames' locals
            else:
                sys.last_exc = sys.last_value = exc  # as the REPL: the next cell may look at it
                sys.last_type, sys.last_traceback = type(exc), exc.__traceback__
            report["error"] = _error(kind, exc)
    try:
        sys.stdout.flush()
    except Exception:
        pass
    sink.flush()
    report["memory"] = _memory_pages() * 65536
    if not _send(report, report_limit):
        _send(_smaller(report), report_limit)


_WARM_UP_PROGRAM = """
import asyncio
values = [n * 2 for n in range(50)]
await asyncio.sleep(0)
await asyncio.gather(*(asyncio.sleep(0) for _ in range(3)))
summary = {"total": sum(values), "names": sorted(str(v) for v in values[:5])}
summary
"""


def warm_up() -> None:
    """Run at build time only (no host functions): the path every execution takes.

    CPython specializes bytecode and fills caches as code first runs; done in
    the snapshot, an instance's first run writes to fewer of the snapshot's
    pages (each such write is a copy-on-write fault, paid per execution).
    """
    for _ in range(3):
        namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
        tree = _parse(_WARM_UP_PROGRAM, PROGRAM)
        _binds_result(tree)
        _execute(_code(tree, PROGRAM), namespace)
        report = {"value": _value(namespace)[0], "error": None, "memory": 0}
        _ptc_codec.unpack(_ptc_codec.pack(report))
        try:
            exec(_compile("1 / 0"), {"__builtins__": builtins})
        except ZeroDivisionError as exc:
            _error(_kind(exc), exc)
        try:
            _compile("def broken(:\n")
        except SyntaxError as exc:
            _error("syntax_error", exc)
    linecache.cache.pop(PROGRAM, None)
    global _made_loop
    _made_loop = HostEventLoop()
