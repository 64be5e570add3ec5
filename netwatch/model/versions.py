"""Finding last tick's answers by the change contract's numbers, in C.

A stage that keeps an answer per flow (a rule match, an encoded text, a store row) keys it
on the flow's version (`EnrichedFlow.version`: serial and revisions, docs/architecture.md
section 4): equal versions promise equal values, so a version found is a valid answer, and
nothing has to be kept alive or recognised by identity. `versions` reads a tick's versions,
`recall` finds last tick's answers, `missing` the positions that need work, and `keep` files
this tick's answers; all walk the sequences in C (`map`, `itertools.compress`), which is what
keeps an idle tick of 10,000 flows cheap. A flow without a serial (0: built by hand or read
from a file) is never taken for another: its answers are not kept.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Mapping, Sequence
from typing import TypeVar

from netwatch.model.remote import EnrichedFlow

_T = TypeVar("_T")
_NONES = itertools.repeat(None)

Version = tuple[int, int, int, int]
"""(serial, rev_facts, rev_traffic, rev_remote): `EnrichedFlow.version`."""
UNNUMBERED: Version = (0, 0, 0, 0)
"""The version of a flow no stage numbered: never a key."""

_VERSION = operator.attrgetter("version")


def versions(flows: Sequence[EnrichedFlow]) -> list[Version]:
    """Each flow's version, in order."""
    return list(map(_VERSION, flows))


def recall(answers: Mapping[Version, _T], keys: Sequence[Version]) -> list[_T | None]:
    """Each version's answer from last tick, or None where there is none."""
    return list(map(answers.get, keys))


def missing(found: Sequence[object | None]) -> list[int]:
    """The positions of None in `found`: the items `recall` had no answer for."""
    return list(itertools.compress(range(len(found)), map(operator.is_, found, _NONES)))


def keep(keys: Sequence[Version], answers: Sequence[_T]) -> tuple[dict[Version, _T], bool]:
    """This tick's answers by version, for the next `recall`, and whether every flow was
    numbered (only then may a caller take a whole tick with last tick's versions as it)."""
    kept = dict(zip(keys, answers, strict=True))
    return kept, kept.pop(UNNUMBERED, None) is None
