"""Recognising a stage's input as last tick's, by object identity, in C.

Every stage hands on last tick's object for what did not change (sampler entry -> flow ->
enriched flow). A stage keeps what it made last tick in a dict keyed by the input object's
id, and holds those input objects alive meanwhile, so an id found there is that very
object. `recall` finds last tick's answers, `missing` the inputs that need work, and `keep`
files this tick's answers: all three walk the sequences in C (`map`, `itertools.compress`),
not in a Python loop over thousands of flows. When nothing changed at all, `same_objects`
says so and a stage returns last tick's output whole.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Mapping, Sequence
from typing import TypeVar

_T = TypeVar("_T")
_NONES = itertools.repeat(None)


def same_objects(new: Sequence[object], old: Sequence[object] | None) -> bool:
    """Whether `new` holds the very objects of `old`, in the same order."""
    if old is None:
        return False
    if new is old:
        return True
    return len(new) == len(old) and all(map(operator.is_, new, old))


def recall(answers: Mapping[int, _T], items: Sequence[object]) -> list[_T | None]:
    """Each item's answer from last tick (`answers` by object id), or None if it is new."""
    return list(map(answers.get, map(id, items)))


def missing(found: Sequence[object | None]) -> list[int]:
    """The positions of None in `found`: the items `recall` had no answer for."""
    return list(itertools.compress(range(len(found)), map(operator.is_, found, _NONES)))


def keep(items: Sequence[object], answers: Sequence[_T]) -> dict[int, _T]:
    """This tick's answers by item id, for the next `recall` (keep `items` alive too)."""
    return dict(zip(map(id, items), answers, strict=True))
