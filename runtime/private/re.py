"""The regex engine's private surface (the standard library's `re._parser` and `re._constants`).

ptc bounds what a hostile upstream `pattern` can cost before running it
(ptc.hostcalls.calls.patterns): it reads the pattern's parse tree, made by
CPython's own parser, so the analysis sees exactly what `re` will run.
Both modules exist since Python 3.11 (`sre_parse`/`sre_constants` before,
deprecated). Public alternative: none; a second regex parser written here
could disagree with the engine, and a disagreement is a ReDoS.
"""

from __future__ import annotations

from re import _constants as constants  # type: ignore[attr-defined]
from re import _parser as parser  # type: ignore[attr-defined]

__all__ = ["constants", "parser"]
