"""Regular expressions from schemas, run only where their cost is bounded.

A schema's `pattern` is upstream text that Python's backtracking `re` runs
against program values, holding the GIL: `(a+)+$` on thirty `a`s and a `!`
never ends, and it would stall every execution of the host. No guarded
engine is installed (re2 and `regex` are compiled dependencies), so each
pattern's parse tree (CPython's own parser) is read once for its worst case:

* a backreference, a conditional, or a repetition (of more than one) of
  anything that can itself match in more than one way (`(a+)+`, `(a|aa)*`,
  `(a?){30}`) makes backtracking exponential: such a pattern is never run;
* otherwise each repetition with a choice of counts (`+`, `*`, `{2,9}`) can
  multiply the work by the subject's length, an unanchored search once
  more, and each alternation by its number of branches: a pattern of
  degree d and width w costs at most about w * len(pattern) * (n+1)**d steps
  on n characters. A subject is matched only if that is within MAX_STEPS
  (tens of milliseconds of `re` at worst); a longer one is not checked.

A pattern not run is left to the backend, which validates its own input (as
it did before ptc checked patterns at all). JSON Schema patterns are
ECMA-262: one Python cannot compile, or longer than MAX_PATTERN, is not run.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from ptc.errors import PtcError
from ptc.private.re import constants as _c
from ptc.private.re import parser as _sre

MAX_STEPS = 20_000_000
MAX_PATTERN = 1_000
_MAX_WIDTH = 1 << 20

_REPEATS = {_c.MAX_REPEAT, _c.MIN_REPEAT, _c.POSSESSIVE_REPEAT}
_REFERENCES = {_c.GROUPREF, _c.GROUPREF_EXISTS}
_ANCHORS = {_c.AT_BEGINNING, _c.AT_BEGINNING_STRING}


class _Exponential(PtcError):
    """The pattern can take exponential time on some subject: it is not run."""


@dataclass(frozen=True)
class Pattern:
    """A compiled pattern and the shape of its worst case."""

    regex: re.Pattern[str]
    degree: int
    width: int

    def affordable(self, length: int) -> bool:
        """Whether searching a subject of `length` characters stays within MAX_STEPS."""
        steps: int = self.width * len(self.regex.pattern) * (length + 1) ** self.degree
        return steps <= MAX_STEPS

    def search(self, subject: str) -> bool | None:
        """Whether the pattern matches somewhere in `subject`; None: not checked (too costly)."""
        if not self.affordable(len(subject)):
            return None
        return self.regex.search(subject) is not None


@functools.lru_cache(maxsize=1024)
def compiled(pattern: str) -> Pattern | None:
    """The pattern, or None when it is never run (see the module docstring)."""
    if not isinstance(pattern, str) or len(pattern) > MAX_PATTERN:
        return None
    try:
        tree = _sre.parse(pattern)
        degree, width, _ = _shape(list(tree))
        regex = re.compile(pattern)
    except (_Exponential, re.error, RecursionError, ValueError, TypeError, OverflowError):
        return None
    if not (tree and tree[0][0] == _c.AT and tree[0][1] in _ANCHORS) or regex.flags & re.MULTILINE:
        degree += 1  # `search` tries every start
    return Pattern(regex, degree, width) if width <= _MAX_WIDTH else None


def _shape(items: list[tuple[Any, Any]]) -> tuple[int, int, bool]:
    """(degree, width, whether it can match in more than one way) of a sequence of parsed items."""
    degree, width, choice = 0, 1, False
    for op, av in items:
        if op in _REFERENCES:
            raise _Exponential
        if op in _REPEATS:
            low, high, body = av
            inner, inner_width, inner_choice = _shape(list(body))
            if high > 1 and inner_choice:
                raise _Exponential
            degree, width = degree + inner + (low != high), width * inner_width
            choice = choice or inner_choice or low != high
        elif op == _c.BRANCH:
            shapes = [_shape(list(alternative)) for alternative in av[1]]
            degree += max(s[0] for s in shapes)
            width *= sum(s[1] for s in shapes)
            choice = choice or len(shapes) > 1 or any(s[2] for s in shapes)
        elif op in (_c.SUBPATTERN, _c.ASSERT, _c.ASSERT_NOT, _c.ATOMIC_GROUP):
            body = av[-1] if isinstance(av, tuple) else av
            inner, inner_width, inner_choice = _shape(list(body))
            degree, width, choice = degree + inner, width * inner_width, choice or inner_choice
        if width > _MAX_WIDTH:
            raise _Exponential
    return degree, width, choice
