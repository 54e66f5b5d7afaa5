"""Render a catalog into stub modules (one per tool) and an API reference.

The module table `render_stubs` returns is what the sandbox imports (served
by the host on demand) and what `write_stubs` puts on disk: the same sources.

A tool's names, descriptions and schema are upstream text (see
`ptc.stubgen.text`): they reach a stub only escaped, as literals or as
vetted identifiers, and every rendered tool module is parsed again and
checked against what the template intends (`ptc.stubgen.verify`). A module
that fails the check is replaced by a minimal stub that still calls the
tool, so every tool stays importable whatever its text.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from ptc.catalog import ToolCatalog, ToolDefinition, ToolParameter
from ptc.errors import PROGRAM_ERRORS, StubError, program_errors_source
from ptc.schemas import link, normalize, normalize_properties
from ptc.stubgen.stub import ToolStub
from ptc.stubgen.text import clean_lines, comment_text, doc_text, literal, md_code, md_inline
from ptc.stubgen.types import TypedDictDef, TypeRenderer, class_name
from ptc.stubgen.verify import verify_domain_module, verify_tool_module

logger = logging.getLogger("ptc")

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("ptc.stubgen", "templates"),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENV.filters["pyrepr"] = repr
# The program-facing ToolError family, defined once in ptc.errors
_ENV.globals["errors"] = [cls.__name__ for cls in PROGRAM_ERRORS]
_ENV.globals["errors_source"] = program_errors_source()
_ENV.filters["md_inline"] = md_inline

_EXAMPLE_VALUES = {"string": '"..."', "integer": "1", "number": "1.0", "boolean": "True", "array": "[]", "object": "{}"}
_FALLBACK_NOTE = "This tool's definition could not be rendered as a typed stub: pass its parameters by keyword."


def _render_class(cls: TypedDictDef) -> str:
    def annotation(required: bool, annotation: str) -> str:
        return f"Required[{annotation}]" if required else annotation

    if cls.class_syntax:
        lines = [f"class {cls.name}(TypedDict, total=False):"]
        if cls.description:
            lines.append(f'    """{doc_text(cls.doc)}"""')
        for key, type_, required, description in cls.fields:
            comment = comment_text(description)
            lines.append(f"    {key}: {annotation(required, type_)}" + (f"  # {comment}" if comment else ""))
        if not cls.fields:
            lines.append("    pass")
        return "\n".join(lines)
    items = ", ".join(
        f"{key!r}: {annotation(required, repr(type_) if key in cls.forward else type_)}"
        for key, type_, required, _ in cls.fields
    )  # evaluated as the module runs: a class defined later (a recursive one) is named in a string
    return f"{cls.name} = TypedDict({cls.name!r}, {{{items}}}, total=False)"


def _ordered(parameters: list[ToolParameter]) -> list[ToolParameter]:
    """Positional-or-keyword parameters, then keyword-only ones; required first within each (Python
    needs a positional one before the defaulted ones), else as declared."""
    return [
        p
        for keyword_only in (False, True)
        for required in (True, False)
        for p in parameters
        if p.keyword_only == keyword_only and p.required == required
    ]


def _python_names(parameters: list[ToolParameter]) -> list[str]:
    """Each parameter's Python name, unique in the signature (`a-b` and `a_b` -> `a_b`, `a_b_`)."""
    taken: set[str] = set()
    names = []
    for p in parameters:
        name = p.python_name
        while name in taken:
            name += "_"
        taken.add(name)
        names.append(name)
    return names


@dataclass
class _Default:
    """How a defaulted parameter appears: `source` in the signature, `text` in its docs."""

    source: str | None  # None: the signature says `= None` and the call leaves the parameter out
    text: str


def _default(p: ToolParameter, schema: dict[str, Any]) -> _Default | None:
    """None for a required parameter or one without a default."""
    if p.required or (p.default is None and "default" not in schema):
        return None
    value = p.default if p.default is not None else schema.get("default")
    source = literal(value)
    if source is None:
        return _Default(None, " Defaults to the tool's own default (not a plain value, so not shown).")
    return _Default(source, f" Defaults to {source}.")


def build_stub(tool: ToolDefinition, result_cap: int | None = None) -> ToolStub:
    """`result_cap`: the tool's Policy.max_result_bytes as its executor merges it (else the definition's own)."""
    inputs = normalize_properties({p.name: p.schema_dict() for p in tool.parameters})
    linked = link(inputs.schema)
    types = TypeRenderer(reserved=frozenset({tool.python_name}), definitions=linked.names)
    for note in inputs.notes:
        types.fallback(note)
    schemas = linked.root.get("properties", {})
    base = class_name(tool.python_name)
    ordered = _ordered(tool.parameters)
    python_names = _python_names(ordered)
    params: list[str] = []
    args: list[str] = []
    omit: list[str] = []
    doc_args: list[str] = []
    api_lines: list[str] = []
    input_fields = []
    example: list[str] = []
    for p, name in zip(ordered, python_names, strict=True):
        if p.keyword_only and "*" not in params:
            params.append("*")
        schema = schemas.get(p.name, {})
        annotation = types.annotation(schema, base + class_name(p.name))
        input_fields.append((p.name, annotation, p.required, p.description))
        default = _default(p, schema)
        if p.required:
            params.append(f"{name}: {annotation}")
            example.append(f"{name}={_example(schema)}")
        elif default is None or default.source is None:
            if not annotation.endswith("| None") and annotation not in ("Any", "None"):
                annotation += " | None"
            params.append(f"{name}: {annotation} = None")
            if not p.nullable or default is not None:
                omit.append(p.name)
        else:
            params.append(f"{name}: {annotation} = {default.source}")
        args.append(f"{p.name!r}: {name}")
        kind = annotation if p.required else f"{annotation}, optional"
        default_text = default.text if default is not None else ""
        description = clean_lines(p.description).strip()
        if description and default_text and not description.endswith("."):
            description += "."
        doc_args.append(f"{name} ({kind}): {description}{default_text}".replace(":  ", ": ").rstrip())
        api_lines.append(f"`{name}`: " + md_inline((description or annotation) + default_text))
    if "*" not in params:
        params.append("*")
    params.append("idempotency_key: str | None = None")
    doc_args.append("idempotency_key (str, optional): calls repeating a key get the first call's result.")

    input_cls = TypedDictDef(base + "Input", f"Parameters of {tool.name}.", input_fields)
    param_classes = len(types.classes)
    returns = "Any"
    if tool.output_schema:
        output = normalize(tool.output_schema)
        linked = link(output.schema)
        types.use(linked.names)
        for note in output.notes:
            types.fallback(note)
        returns = types.annotation(linked.root, base + "Result")
    # A functional-form TypedDict evaluates its annotations at import: it must follow the classes it names.
    types.classes.insert(0 if input_cls.class_syntax else param_classes, input_cls)
    output_description = tool.output_schema.get("description") if tool.output_schema else None
    returns_doc = (
        f"{returns}: {output_description if isinstance(output_description, str) else 'the tool result'}"
        if tool.output_schema
        else "Any: the tool's result (plain data)"
    )
    summary = (clean_lines(tool.description).strip().splitlines() or [f"The {tool.python_name} tool."])[0].strip()
    call_example = f"{'result' if returns == 'Any' else 'value'} = await {tool.python_name}({', '.join(example)})"
    sections = [
        clean_lines(tool.description).strip() or summary,
        "Args:\n" + "\n".join("    " + line for line in doc_args),
        "Returns:\n    " + returns_doc,
        "Example:\n    " + f"from tools.{tool.domain} import {tool.python_name}\n    " + call_example,
    ]
    notes = [*tool.notes, *(note for note in types.fallbacks if note not in tool.notes)]
    if result_cap is None and tool.policy is not None:
        result_cap = tool.policy.max_result_bytes
    if result_cap is not None:  # the model reads the budget where it reads the signature
        notes.append(f"A result larger than {int(result_cap)} bytes raises ToolResultTooLarge: ask for less.")
        api_lines.append(f"results over {int(result_cap)} bytes raise `ToolResultTooLarge`")
    if notes:
        sections.append("Notes:\n" + "\n".join("    " + n for n in notes))
    if tool.name != tool.python_name:
        api_lines.insert(0, f"calls the tool named `{md_code(tool.name)}`")
    api_lines.extend(f"`{c.name}` = `{md_code(c.shape())}`" for c in types.classes if c is not input_cls)
    doc = _indented(clean_lines("\n\n".join(sections))) + "\n    "
    return ToolStub(
        tool=tool,
        function=tool.python_name,
        signature=", ".join(params),
        returns=returns,
        args="{" + ", ".join(args) + "}",
        omit=tuple(omit),
        classes=[_render_class(c) for c in types.classes],
        docstring=doc_text(doc),
        summary=summary,
        api_lines=api_lines,
        names=dict(zip(python_names, (p.name for p in ordered), strict=True)),
        keyword_only=tuple(name for p, name in zip(ordered, python_names, strict=True) if p.keyword_only),
        doc=doc,
        class_defs=list(types.classes),
    )


def _indented(text: str) -> str:
    """Every line but the first indented by four spaces (the function body's), blank lines left empty."""
    return "\n".join(("    " + line) if line else "" for line in text.split("\n")).lstrip()


def fallback_stub(tool: ToolDefinition) -> ToolStub:
    """The minimal stub of a tool whose full stub failed its check: keyword arguments, checked by the host."""
    doc = _indented(f"{_FALLBACK_NOTE}\n\nThe host checks them against the tool's schema.") + "\n    "
    return ToolStub(
        tool=tool,
        function=tool.python_name,
        signature="*, idempotency_key: str | None = None, **params: Any",
        returns="Any",
        args="params",
        omit=(),
        classes=[],
        docstring=doc_text(doc),
        summary=_FALLBACK_NOTE,
        api_lines=[md_inline(_FALLBACK_NOTE)],
        doc=doc,
        fallback=True,
    )


def _example(schema: dict[str, Any]) -> str:
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return literal(schema["enum"][0], limit=40) or "..."
    kind = schema.get("type")
    return _EXAMPLE_VALUES.get(kind if isinstance(kind, str) else "", "...")


ResultCaps = Callable[[str], int | None]  # tool name -> its Policy.max_result_bytes (an executor's merged policy)


def _stubs_by_domain(catalog: ToolCatalog, result_caps: ResultCaps | None = None) -> dict[str, list[ToolStub]]:
    return {
        domain: [build_stub(t, result_caps(t.name) if result_caps else None) for t in tools]
        for domain, tools in catalog.domains().items()
    }


def module_doc(stub: ToolStub, source: str, version: str) -> str:
    """The text a tool module's docstring reads as."""
    first = f"{stub.tool_name}: {stub.summary}"
    origin = f"the {json.dumps(source, ensure_ascii=False)} catalog (version {json.dumps(version, ensure_ascii=False)})"
    return clean_lines(f"{first}\n\nGenerated by ptc.stubgen from {origin}. Do not edit.\n")


def render_tool_module(stub: ToolStub, source: str, version: str) -> str:
    """A tool's module, checked; a minimal stub (logged) if the full one fails its check."""
    rendered = _render_tool(stub, source, version)
    try:
        verify_tool_module(rendered, stub, module_doc(stub, source, version))
        return rendered
    except StubError as exc:
        if stub.fallback:
            raise
        logger.warning("ptc: the stub of tool %r failed its check (%s); serving a minimal stub", stub.tool_name, exc)
    minimal = fallback_stub(stub.tool)
    rendered = _render_tool(minimal, source, version)
    verify_tool_module(rendered, minimal, module_doc(minimal, source, version))
    return rendered


def _render_tool(stub: ToolStub, source: str, version: str) -> str:
    return _ENV.get_template("tool.py.j2").render(
        stub=stub, module_doc=doc_text(module_doc(stub, source, version)), source=source, version=version
    )


def render_stubs(catalog: ToolCatalog, result_caps: ResultCaps | None = None) -> dict[str, str]:
    """{module name: source} for `tools`, `tools.<domain>` and `tools.<domain>.<tool>`."""
    by_domain = _stubs_by_domain(catalog, result_caps)
    context = {"source": catalog.source, "version": catalog.version}
    modules = {
        "tools": _ENV.get_template("package.py.j2").render(domains=list(by_domain), **context),
        "tools._outside": _ENV.get_template("outside.py.j2").render(**context),
    }
    for domain, stubs in by_domain.items():
        modules[f"tools.{domain}"] = source = _ENV.get_template("domain.py.j2").render(
            domain=domain, tools=stubs, **context
        )
        verify_domain_module(source, [s.function for s in stubs], domain)
        for stub in stubs:
            modules[stub.module] = render_tool_module(stub, catalog.source, catalog.version)
    return modules


def write_stubs(catalog: ToolCatalog, out_dir: str | Path, result_caps: ResultCaps | None = None) -> list[Path]:
    """Write the stub package under out_dir/tools/; returns the files written."""
    return write_modules(render_stubs(catalog, result_caps), out_dir)


def write_modules(modules: dict[str, str], out_dir: str | Path) -> list[Path]:
    """Write rendered stub modules (`render_stubs`' table) as the package an IDE and a checker read."""
    root = Path(out_dir)
    written = []
    for module, source in modules.items():
        parts = module.split(".")
        path = (
            root.joinpath(*parts, "__init__.py") if len(parts) <= 2 else root.joinpath(*parts[:-1], parts[-1] + ".py")
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != source:
            path.write_text(source, encoding="utf-8")
        written.append(path)
    return written


def render_api_reference(catalog: ToolCatalog, result_caps: ResultCaps | None = None) -> str:
    """The whole catalog as one compact, prompt-ready reference (markdown).

    Upstream text in it is one line of prose per item (`md_text`): it cannot
    open a code fence, a heading or a list item of its own.
    """
    return _ENV.get_template("api.md.j2").render(
        source=catalog.source, version=catalog.version, domains=_stubs_by_domain(catalog, result_caps)
    )
