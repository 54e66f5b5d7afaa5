"""Render a catalog into stub modules (one per tool) and an API reference.

The module table `render_stubs` returns is what the sandbox imports (served
by the host on demand) and what `write_stubs` puts on disk: the same sources.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from ptc.catalog import ToolCatalog, ToolDefinition, ToolParameter
from ptc.stubgen.types import TypedDictDef, TypeRenderer, class_name

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("ptc.stubgen", "templates"),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENV.filters["pyrepr"] = repr

_EXAMPLE_VALUES = {"string": '"..."', "integer": "1", "number": "1.0", "boolean": "True", "array": "[]", "object": "{}"}


def _doc(text: str) -> str:
    """Text safe inside a triple-quoted docstring."""
    return text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


def _render_class(cls: TypedDictDef) -> str:
    doc = f'    """{_doc(cls.description)}"""\n' if cls.description else ""
    if cls.class_syntax:
        lines = [f"class {cls.name}(TypedDict, total=False):", *([doc.rstrip("\n")] if doc else [])]
        for key, annotation, required, description in cls.fields:
            comment = f"  # {description.splitlines()[0]}" if description else ""
            wrapped = f"Required[{annotation}]" if required else annotation
            lines.append(f"    {key}: {wrapped}{comment}")
        if not cls.fields:
            lines.append("    pass")
        return "\n".join(lines)
    items = ", ".join(
        f"{key!r}: {f'Required[{annotation}]' if required else annotation}"
        for key, annotation, required, _ in cls.fields
    )
    return f"{cls.name} = TypedDict({cls.name!r}, {{{items}}}, total=False)"


@dataclass
class ToolStub:
    """Everything the templates need about one tool."""

    tool: ToolDefinition
    function: str
    signature: str
    returns: str
    args: str
    omit: tuple[str, ...]
    classes: list[str]
    docstring: str
    summary: str
    api_lines: list[str] = field(default_factory=list)

    @property
    def tool_name(self) -> str:
        return self.tool.name

    @property
    def names(self) -> dict[str, str]:
        """Python parameter names -> the tool's own, in signature order."""
        return {p.python_name: p.name for p in _ordered(self.tool.parameters)}

    @property
    def module(self) -> str:
        return f"tools.{self.tool.domain}.{self.function}"

    @property
    def exports(self) -> list[str]:
        return [self.function, *(c.split("(")[0].split()[-1] for c in self.classes if c.startswith("class "))]


def _ordered(parameters: list[ToolParameter]) -> list[ToolParameter]:
    """Required parameters first (Python needs them before defaulted ones), else as declared."""
    return [p for p in parameters if p.required] + [p for p in parameters if not p.required]


def build_stub(tool: ToolDefinition) -> ToolStub:
    types = TypeRenderer()
    base = class_name(tool.python_name)
    params: list[str] = []
    args: list[str] = []
    omit: list[str] = []
    doc_args: list[str] = []
    api_lines: list[str] = []
    input_fields = []
    example: list[str] = []
    for p in _ordered(tool.parameters):
        schema = p.schema_dict()
        annotation = types.annotation(schema, base + class_name(p.name))
        input_fields.append((p.name, annotation, p.required, p.description))
        if p.required:
            params.append(f"{p.python_name}: {annotation}")
            example.append(f"{p.python_name}={_example(schema, p)}")
        elif p.default is None and "default" not in schema:
            if not annotation.endswith("| None") and annotation not in ("Any", "None"):
                annotation += " | None"
            params.append(f"{p.python_name}: {annotation} = None")
            if not p.nullable:
                omit.append(p.name)
        else:
            default = p.default if p.default is not None else schema.get("default")
            params.append(f"{p.python_name}: {annotation} = {default!r}")
        args.append(f"{p.name!r}: {p.python_name}")
        kind = annotation if p.required else f"{annotation}, optional"
        default_text = (
            ""
            if p.required or (p.default is None and "default" not in schema)
            else (f" Defaults to {p.default if p.default is not None else schema.get('default')!r}.")
        )
        description = p.description.strip()
        if description and default_text and not description.endswith("."):
            description += "."
        doc_args.append(f"{p.python_name} ({kind}): {description}{default_text}".replace(":  ", ": ").rstrip())
        api_lines.append(f"`{p.python_name}`: {description or annotation}{default_text}")
    params.append("*")
    params.append("idempotency_key: str | None = None")
    doc_args.append("idempotency_key (str, optional): calls repeating a key get the first call's result.")

    input_cls = TypedDictDef(base + "Input", f"Parameters of {tool.name}.", input_fields)
    types.classes.insert(0, input_cls)
    returns = "Any"
    if tool.output_schema:
        returns = types.annotation(tool.output_schema, base + "Result")
    returns_doc = (
        f"{returns}: {tool.output_schema.get('description', 'the tool result')}"
        if tool.output_schema
        else ("Any: the tool's result (plain data)")
    )
    summary = (tool.description.strip().splitlines() or [f"The {tool.name} tool."])[0]
    call_example = f"{'result' if returns == 'Any' else 'value'} = await {tool.python_name}({', '.join(example)})"
    sections = [
        _doc(tool.description.strip() or summary),
        "Args:\n" + "\n".join("    " + _doc(line) for line in doc_args),
        "Returns:\n    " + _doc(returns_doc),
        "Example:\n    " + f"from tools.{tool.domain} import {tool.python_name}\n    " + _doc(call_example),
    ]
    notes = [*tool.notes, *types.fallbacks]
    if notes:
        sections.append("Notes:\n" + "\n".join("    " + _doc(n) for n in notes))
    if tool.name != tool.python_name:
        api_lines.insert(0, f"calls the tool named `{tool.name}`")
    api_lines.extend(f"`{c.name}` = `{c.shape()}`" for c in types.classes[1:])
    docstring = "\n".join(("    " + line) if line else "" for line in "\n\n".join(sections).splitlines()).lstrip()
    return ToolStub(
        tool=tool,
        function=tool.python_name,
        signature=", ".join(params),
        returns=returns,
        args="{" + ", ".join(args) + "}",
        omit=tuple(omit),
        classes=[_render_class(c) for c in types.classes],
        docstring=docstring,
        summary=summary,
        api_lines=api_lines,
    )


def _example(schema: dict[str, Any], p: ToolParameter) -> str:
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return repr(schema["enum"][0])
    kind = schema.get("type")
    return _EXAMPLE_VALUES.get(kind if isinstance(kind, str) else "", "...")


def _stubs_by_domain(catalog: ToolCatalog) -> dict[str, list[ToolStub]]:
    return {domain: [build_stub(t) for t in tools] for domain, tools in catalog.domains().items()}


def render_stubs(catalog: ToolCatalog) -> dict[str, str]:
    """{module name: source} for `tools`, `tools.<domain>` and `tools.<domain>.<tool>`."""
    by_domain = _stubs_by_domain(catalog)
    context = {"source": catalog.source, "version": catalog.version}
    modules = {
        "tools": _ENV.get_template("package.py.j2").render(domains=list(by_domain), **context),
        "tools._outside": _ENV.get_template("outside.py.j2").render(**context),
    }
    for domain, stubs in by_domain.items():
        modules[f"tools.{domain}"] = _ENV.get_template("domain.py.j2").render(domain=domain, tools=stubs, **context)
        for stub in stubs:
            modules[stub.module] = _ENV.get_template("tool.py.j2").render(stub=stub, **context)
    return modules


def write_stubs(catalog: ToolCatalog, out_dir: str | Path) -> list[Path]:
    """Write the stub package under out_dir/tools/; returns the files written."""
    root = Path(out_dir)
    written = []
    for module, source in render_stubs(catalog).items():
        parts = module.split(".")
        path = (
            root.joinpath(*parts, "__init__.py") if len(parts) <= 2 else root.joinpath(*parts[:-1], parts[-1] + ".py")
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != source:
            path.write_text(source, encoding="utf-8")
        written.append(path)
    return written


def render_api_reference(catalog: ToolCatalog) -> str:
    """The whole catalog as one compact, prompt-ready reference (markdown)."""
    return _ENV.get_template("api.md.j2").render(
        source=catalog.source, version=catalog.version, domains=_stubs_by_domain(catalog)
    )
