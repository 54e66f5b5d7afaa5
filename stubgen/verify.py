"""Belt and braces: a rendered module must have exactly the structure its template intends.

Escaping (`ptc.stubgen.text`) is what keeps upstream text out of code; this
check is what proves it for each module before it is served. A tool module
is parsed with `ast` and must be, in order: its docstring (reading as the
text meant), the three imports, `__all__`, the TypedDicts (class or
functional form, annotations built only from typing names, builtins, the
module's own classes and literals), and one async def decorated with
`_tool(...)` whose body is its docstring and the one `return await
_call(...)`. Anything else (another statement, a call in an annotation, a
name from nowhere, a default that is not a literal) raises StubError.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from ptc.errors import StubError
from ptc.stubgen.stub import ToolStub

_SURROGATE = re.compile("[\ud800-\udfff]")
_TYPING = ("Any", "Literal", "NotRequired", "Required", "TypedDict")
_ANNOTATION_NAMES = frozenset(
    {"Any", "Literal", "NotRequired", "Required", "str", "int", "float", "bool", "list", "dict"}
)


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise StubError(what)


def _docstring(node: ast.stmt, expected: str, what: str) -> None:
    _require(
        isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and node.value.value == expected,
        f"{what}: the docstring is not the text meant",
    )


def _import(node: ast.stmt, module: str, names: tuple[str, ...]) -> None:
    _require(
        isinstance(node, ast.ImportFrom)
        and node.module == module
        and node.level == 0
        and tuple(a.name for a in node.names) == names
        and all(a.asname is None for a in node.names),
        f"expected `from {module} import {', '.join(names)}`",
    )


def _constant(node: ast.AST | None, value: Any) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) is type(value) and node.value == value


def _literal(node: ast.AST | None) -> bool:
    if node is None:
        return False
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, RecursionError):
        return False
    return True


def _annotation(node: ast.AST | None, classes: frozenset[str], quoted: bool = False) -> None:
    """Names of types, subscripts, `|` and tuples; constants only inside `Literal[...]`. A string
    elsewhere is a forward reference `typing.get_type_hints` evaluates as code: it must itself be
    an annotation of these (a class named before it is defined), and hold no string of its own."""
    if isinstance(node, ast.Name):
        _require(node.id in _ANNOTATION_NAMES or node.id in classes, f"an annotation names {node.id!r}")
    elif isinstance(node, ast.Constant) and isinstance(node.value, str) and not quoted:
        try:
            inner = ast.parse(node.value, mode="eval").body
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            raise StubError("a forward reference that is not an annotation") from None
        _annotation(inner, classes, quoted=True)
    elif isinstance(node, ast.Constant):
        _require(node.value is None, "a constant outside Literal[...] in an annotation")
    elif isinstance(node, ast.BinOp):
        _require(isinstance(node.op, ast.BitOr), "an annotation operator other than |")
        _annotation(node.left, classes, quoted)
        _annotation(node.right, classes, quoted)
    elif isinstance(node, ast.Subscript):
        _require(isinstance(node.value, ast.Name), "an annotation subscripts something other than a name")
        _annotation(node.value, classes, quoted)
        if isinstance(node.value, ast.Name) and node.value.id == "Literal":
            values = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            _require(all(_literal_value(v) for v in values), "Literal[...] holds something other than constants")
        else:
            for item in node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]:
                _annotation(item, classes, quoted)
    else:
        _require(False, f"an annotation holds {type(node).__name__}")


def _literal_value(node: ast.AST) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        node = node.operand
        return isinstance(node, ast.Constant) and type(node.value) in (int, float)
    return isinstance(node, ast.Constant) and type(node.value) in (str, int, float, bool)


def _typeddict(node: ast.stmt, name: str, keys: list[str], doc: str | None, classes: frozenset[str]) -> None:
    total_false = [("total", False)]
    if isinstance(node, ast.ClassDef):
        _require(node.name == name, f"class {node.name!r} where {name!r} was meant")
        _require(
            [ast.unparse(b) for b in node.bases] == ["TypedDict"]
            and [(k.arg, k.value.value if isinstance(k.value, ast.Constant) else None) for k in node.keywords]
            == total_false
            and not node.decorator_list
            and not getattr(node, "type_params", None),
            f"class {name}: not a plain TypedDict",
        )
        body = list(node.body)
        if doc is not None:
            _docstring(body.pop(0), doc, f"class {name}")
        if not keys:
            _require(len(body) == 1 and isinstance(body[0], ast.Pass), f"class {name}: an empty body expected")
            return
        _require(len(body) == len(keys), f"class {name}: other statements than its fields")
        for stmt, key in zip(body, keys, strict=True):
            if not (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and stmt.target.id == key
                and stmt.value is None
                and stmt.simple == 1
            ):
                raise StubError(f"class {name}: field {key!r} is not a plain annotation")
            _annotation(stmt.annotation, classes)
        return
    _require(
        isinstance(node, ast.Assign)
        and len(node.targets) == 1
        and isinstance(node.targets[0], ast.Name)
        and node.targets[0].id == name
        and isinstance(node.value, ast.Call),
        f"{name}: neither a TypedDict class nor `{name} = TypedDict(...)`",
    )
    assert isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
    call = node.value
    _require(
        isinstance(call.func, ast.Name)
        and call.func.id == "TypedDict"
        and len(call.args) == 2
        and _constant(call.args[0], name)
        and isinstance(call.args[1], ast.Dict)
        and [(k.arg, k.value.value if isinstance(k.value, ast.Constant) else None) for k in call.keywords]
        == total_false,
        f"{name}: not a functional TypedDict",
    )
    fields = call.args[1]
    assert isinstance(fields, ast.Dict)
    _require(
        [k.value if isinstance(k, ast.Constant) else None for k in fields.keys] == keys,
        f"{name}: its keys are not the schema's",
    )
    for value in fields.values:
        _annotation(value, classes)


def verify_tool_module(source: str, stub: ToolStub, module_doc: str) -> None:
    """Raise StubError unless `source` is exactly the tool module `stub` describes."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError) as exc:  # ValueError: a NUL in the source
        raise StubError(f"does not parse: {exc}") from None
    for node in ast.walk(tree):  # the sandbox's compiler refuses a lone surrogate, even escaped
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            _require(_SURROGATE.search(node.value) is None, "a string holds a lone surrogate")
    body = list(tree.body)
    classes = stub.class_defs
    _require(len(body) == 6 + len(classes), f"{len(body)} statements where {6 + len(classes)} were meant")
    _docstring(body[0], module_doc, "the module")
    _import(body[1], "__future__", ("annotations",))
    _import(body[2], "typing", _TYPING)
    _import(body[3], "tools", ("_call", "_tool"))
    exports = body[4]
    _require(
        isinstance(exports, ast.Assign)
        and [ast.unparse(t) for t in exports.targets] == ["__all__"]
        and isinstance(exports.value, ast.List)
        and [e.value if isinstance(e, ast.Constant) else None for e in exports.value.elts] == stub.exports,
        "__all__ is not the module's exports",
    )
    names = frozenset(c.name for c in classes)
    for node, cls in zip(body[5:-1], classes, strict=True):
        doc = cls.doc if cls.class_syntax and cls.description else None
        _typeddict(node, cls.name, [key for key, *_ in cls.fields], doc, names)
    _function(body[-1], stub, names)


def _function(node: ast.stmt, stub: ToolStub, classes: frozenset[str]) -> None:
    _require(isinstance(node, ast.AsyncFunctionDef) and node.name == stub.function, "the tool's async def is missing")
    assert isinstance(node, ast.AsyncFunctionDef)
    _require(not getattr(node, "type_params", None), "type parameters on the tool's function")
    _require(len(node.decorator_list) == 1, "the function has other decorators than _tool")
    decorator = node.decorator_list[0]
    _require(
        isinstance(decorator, ast.Call)
        and isinstance(decorator.func, ast.Name)
        and decorator.func.id == "_tool"
        and len(decorator.args) == 2
        and not decorator.keywords
        and _constant(decorator.args[0], stub.tool_name)
        and _literal(decorator.args[1])
        and ast.literal_eval(decorator.args[1]) == stub.names,
        "the _tool(...) decorator is not the tool's",
    )
    _arguments(node.args, stub, classes)
    _annotation(node.returns, classes)
    _require(len(node.body) == 2, "the function body holds other statements than its docstring and return")
    _docstring(node.body[0], stub.doc, "the function")
    _return(node.body[1], stub)


def _arguments(args: ast.arguments, stub: ToolStub, classes: frozenset[str]) -> None:
    _require(not args.posonlyargs and args.vararg is None, "positional-only or *args parameters")
    keyword = list(stub.keyword_only)
    _require(
        [a.arg for a in args.args] + [a.arg for a in args.kwonlyargs[:-1]] == list(stub.names)
        and [a.arg for a in args.kwonlyargs[:-1]] == keyword,
        "the parameters are not the tool's",
    )
    for arg in args.args + args.kwonlyargs[:-1]:
        _annotation(arg.annotation, classes)
    _require(all(_literal(d) for d in args.defaults), "a default that is not a literal")
    _require(all(d is None or _literal(d) for d in args.kw_defaults), "a default that is not a literal")
    last = args.kwonlyargs[-1] if args.kwonlyargs else None
    _require(
        last is not None
        and last.arg == "idempotency_key"
        and last.annotation is not None
        and ast.unparse(last.annotation) == "str | None"
        and len(args.kw_defaults) == len(args.kwonlyargs)
        and _constant(args.kw_defaults[-1], None),
        "idempotency_key is not the last keyword-only parameter",
    )
    if stub.fallback:
        _require(args.kwarg is not None and args.kwarg.arg == "params", "the minimal stub takes **params")
        _annotation(args.kwarg.annotation if args.kwarg else None, classes)
    else:
        _require(args.kwarg is None, "a **kwargs parameter")


def _return(node: ast.stmt, stub: ToolStub) -> None:
    _require(
        isinstance(node, ast.Return) and isinstance(node.value, ast.Await) and isinstance(node.value.value, ast.Call),
        "the body does not return await _call(...)",
    )
    assert isinstance(node, ast.Return) and isinstance(node.value, ast.Await) and isinstance(node.value.value, ast.Call)
    call = node.value.value
    _require(isinstance(call.func, ast.Name) and call.func.id == "_call" and len(call.args) == 3, "not a _call(...)")
    tool, payload, key = call.args
    _require(_constant(tool, stub.tool_name), "_call names another tool")
    _require(isinstance(key, ast.Name) and key.id == "idempotency_key", "_call is not given the idempotency key")
    if stub.fallback:
        _require(isinstance(payload, ast.Name) and payload.id == "params", "the minimal stub sends **params")
    else:
        _require(
            isinstance(payload, ast.Dict)
            and [k.value if isinstance(k, ast.Constant) else None for k in payload.keys] == list(stub.names.values())
            and [v.id if isinstance(v, ast.Name) else None for v in payload.values] == list(stub.names),
            "_call is not sent the parameters by their tool names",
        )
    expected = [("omit", stub.omit)] if stub.omit else []
    _require(
        [(k.arg, ast.literal_eval(k.value) if _literal(k.value) else None) for k in call.keywords] == expected,
        "_call has other keywords than omit",
    )


def verify_domain_module(source: str, functions: list[str], domain: str) -> None:
    """Raise StubError unless `source` is a domain package: docstring, imports, `__all__`, and the block that
    gives a checker each function by name and the sandbox its lazy loader (`if TYPE_CHECKING: ... else: ...`)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError) as exc:
        raise StubError(f"the domain module does not parse: {exc}") from None
    body = tree.body
    _require(len(body) == 5, "the domain module holds other statements")
    _require(
        isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str),
        "the domain module's docstring",
    )
    _import(body[1], "typing", ("TYPE_CHECKING",))
    _import(body[2], "tools", ("_lazy_domain",))
    _require(ast.unparse(body[3]) == f"__all__ = {functions!r}", "the domain module's names")
    expected = "\n".join(
        ["if TYPE_CHECKING:"]
        + [f"    from tools.{domain}.{name} import {name} as {name}" for name in functions]
        + ["else:", "    __getattr__, __dir__ = _lazy_domain(__name__, __all__)"]
    )
    _require(ast.unparse(body[4]) == expected, "the domain module's lazy loader and TYPE_CHECKING imports")
