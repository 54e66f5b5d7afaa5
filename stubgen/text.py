"""Upstream text in generated code and prompts: escaped, never executed.

Tool names, descriptions, titles, property names, enum values and defaults
come from tools, schemas and MCP servers, which are hostile input. In a stub
they only ever appear as:

* docstring text, through `doc_text` (the one escaping function for text
  inside a triple-quoted string);
* a comment, through `comment_text` (one sanitized line);
* a literal, through `literal` (the `repr` of a plain JSON value that
  `ast.literal_eval` reads back to the same value) or `repr` of a str;
* an identifier only if `ptc.catalog.is_identifier` accepts it.

In the markdown API reference they go through `md_text`, `md_inline` or `md_code`.
"""

from __future__ import annotations

import ast
import re
from typing import Any

MAX_LITERAL_CHARS = 500  # a longer default is not shown in a signature (the tool's own default still applies)
_FENCE = re.compile(r"`{3,}|~{3,}")
_BLOCK_START = re.compile(r"^(?:[#>*+=|-]|\d+[.)]|\s)")


_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_lines(text: str) -> str:
    """Upstream text normalized for a stub: line endings as `\\n` (`\\r\\n` and a lone `\\r` are line
    ends too), and each lone surrogate as U+FFFD (the sandbox's compiler refuses even an escaped one)."""
    return _SURROGATE.sub("\ufffd", text.replace("\r\n", "\n").replace("\r", "\n"))


def _escape_char(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return "\\x%02x" % code
    if code < 0x10000:
        return "\\u%04x" % code
    return "\\U%08x" % code


def _visible(text: str, keep: str) -> str:
    """Every character that is not printable (controls, line and paragraph separators, format
    characters, surrogates) as a Python escape, except those in `keep`."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in keep else _escape_char(c) for c in text)


def doc_text(text: str) -> str:
    """`text` as the body of a triple-quoted (\""") string: it reads back as exactly `text`.

    A backslash is doubled; a `"` is escaped when another `"` or the end of the
    text follows it, so no run of quotes can close the string (a plain quote
    in prose stays readable); non-printable characters become escapes, except
    newline and tab, which a docstring holds as they are. A lone surrogate
    becomes U+FFFD (pass text through `clean_lines` first to know what it reads as).
    """
    text = _visible(_SURROGATE.sub("\ufffd", text.replace("\\", "\\\\")), keep="\n\t")
    if '"' not in text:
        return text
    out = []
    for i, char in enumerate(text):
        out.append('\\"' if char == '"' and (i + 1 == len(text) or text[i + 1] == '"') else char)
    return "".join(out)


def comment_text(text: str, limit: int = 160) -> str:
    """The first line of `text`, safe after a `#`: printable characters only, at most `limit` of them."""
    lines = clean_lines(text).strip().splitlines()
    line = _visible(lines[0].strip(), keep="") if lines else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def md_text(text: str) -> str:
    """`text` as a markdown line of its own: `md_inline`, and a start that would make it a heading,
    quote, list item or table row is escaped with a backslash, so upstream text cannot add sections."""
    line = md_inline(text)
    return "\\" + line if _BLOCK_START.match(line) else line


def md_inline(text: str) -> str:
    """`text` as markdown prose inside a line: no line breaks, no code fences, no control characters."""
    line = " ".join(clean_lines(text).split())
    return _FENCE.sub(lambda m: "'" * len(m.group()), _visible(line, keep=""))


def md_code(text: str) -> str:
    """`text` for inside a markdown code span: `md_inline` without backticks."""
    return md_inline(text).replace("`", "'")


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same JSON types all the way down (True is not 1, 1.0 is not 1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


def _plain(value: Any, depth: int = 0) -> bool:
    """Plain JSON the frame codec carries: UTF-8 text (no lone surrogates), 64-bit integers."""
    if value is None or type(value) in (bool, float):
        return True
    if type(value) is int:
        return -(2**63) <= value < 2**64
    if type(value) is str:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if depth > 16:
        return False
    if type(value) is list:
        return all(_plain(v, depth + 1) for v in value)
    if type(value) is dict:
        return all(type(k) is str and _plain(v, depth + 1) for k, v in value.items())
    return False


def literal(value: Any, limit: int = MAX_LITERAL_CHARS) -> str | None:
    """Python source for a plain JSON value, or None when it cannot be one.

    Only None, bool, int, float, str and lists and dicts of them qualify, and
    only if `ast.literal_eval` reads the `repr` back to the same value: not
    nan or inf (`repr` gives a name), not an Enum member or any other object
    whose `repr` is code, not a text longer than `limit` characters. The
    program sends a shown default as it is, so it must also be a value the
    frame codec carries: an int in 64 bits, a str without lone surrogates.
    """
    if not _plain(value):
        return None
    try:
        source = repr(value)
        if len(source) > limit or not _same(ast.literal_eval(source), value):
            return None
    except (ValueError, SyntaxError, RecursionError, MemoryError):
        return None
    return source
