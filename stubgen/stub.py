"""`ToolStub`: what the templates (ptc.stubgen.render) and the checker (ptc.stubgen.verify) know of one tool."""

from __future__ import annotations

from dataclasses import dataclass, field

from ptc.catalog import ToolDefinition
from ptc.stubgen.text import md_text
from ptc.stubgen.types import TypedDictDef


@dataclass
class ToolStub:
    """Everything the templates need about one tool.

    `docstring` is escaped source for between the function's triple quotes;
    `doc` is the text it reads as. `summary` is the description's first line
    as written (plain data); `api_lines` are markdown-safe.
    """

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
    names: dict[str, str] = field(default_factory=dict)  # Python name -> the tool's, in signature order
    keyword_only: tuple[str, ...] = ()  # the Python names of `names` that come after `*`
    doc: str = ""
    class_defs: list[TypedDictDef] = field(default_factory=list)
    fallback: bool = False

    @property
    def tool_name(self) -> str:
        return self.tool.name

    @property
    def module(self) -> str:
        return f"tools.{self.tool.domain}.{self.function}"

    @property
    def exports(self) -> list[str]:
        return [self.function, *(c.name for c in self.class_defs)]

    @property
    def api_summary(self) -> str:
        return md_text(self.summary)
