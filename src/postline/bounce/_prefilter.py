"""Literal prefilters for regular expressions (the technique of RE2 sets and Hyperscan).

For a pattern, :func:`required_literals` finds a set of literal strings such that any
text the pattern matches contains at least one of them. A text containing none of them
cannot match, so a large rule set only runs the regexes of the few rules whose literals
occur in the text. The analysis is conservative: when unsure it returns None ("always
try this pattern"), which costs speed, never correctness.

It reads the parse tree of Python's own regex compiler (``re._parser``), which has been
stable since Python 3.11; if that ever changes, every pattern simply gets None.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["required_literals"]

_c: Any
_p: Any
try:  # pragma: no cover - depends on the interpreter
    _c = importlib.import_module("re._constants")
    _p = importlib.import_module("re._parser")
    _AVAILABLE = True
except ImportError:  # pragma: no cover
    _AVAILABLE = False

_MIN_LEN = 3
Disjunction = frozenset[str]


def _best(cands: list[Disjunction]) -> Disjunction | None:
    usable = [d for d in cands if d and min(len(s) for s in d) >= _MIN_LEN]
    if not usable:
        return None
    return max(usable, key=lambda d: (min(len(s) for s in d), -len(d)))


def _sequence(items: Any) -> Disjunction | None:
    cands: list[Disjunction] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            cands.append(frozenset({"".join(run)}))
            run.clear()

    for op, av in items:
        if op is _c.LITERAL:
            run.append(chr(av).lower())
        elif op in (_c.AT, _c.ASSERT_NOT, _c.ASSERT):
            continue  # zero-width: the literals around it stay adjacent
        elif op is _c.SUBPATTERN:
            flush()
            inner = _sequence(av[-1])
            if inner is not None:
                cands.append(inner)
        elif op is _c.BRANCH:
            flush()
            alternatives = [_sequence(branch) for branch in av[1]]
            if all(a is not None for a in alternatives):
                merged: set[str] = set()
                for a in alternatives:
                    assert a is not None
                    merged |= a
                cands.append(frozenset(merged))
        elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT, getattr(_c, "POSSESSIVE_REPEAT", None)):
            flush()
            if av[0] >= 1:
                inner = _sequence(av[2])
                if inner is not None:
                    cands.append(inner)
        else:
            flush()
    flush()
    return _best(cands)


def required_literals(pattern: str) -> frozenset[str] | None:
    """Lower-case literals, one of which occurs in any (lower-cased) text ``pattern``
    matches; None when no useful set is known."""
    if not _AVAILABLE:  # pragma: no cover
        return None
    try:
        tree = _p.parse(pattern)
    except Exception:
        return None
    try:
        return _sequence(tree)
    except Exception:
        return None
