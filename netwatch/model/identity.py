"""Recognising a stage's input as last tick's, by object identity, in C.

Every stage hands on last tick's object for what did not change (sampler entry -> flow ->
enriched flow). When nothing changed at all, a stage's whole input is last tick's objects
in last tick's order, and it can return last tick's output without a Python-level loop over
thousands of flows: `map(operator.is_, ...)` walks the two sequences in C.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence


def same_objects(new: Sequence[object], old: Sequence[object] | None) -> bool:
    """Whether `new` holds the very objects of `old`, in the same order."""
    if old is None:
        return False
    if new is old:
        return True
    return len(new) == len(old) and all(map(operator.is_, new, old))
