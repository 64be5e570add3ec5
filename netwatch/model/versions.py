"""Finding last tick's answers by the change contract's numbers, in C.

A stage that keeps an answer per flow (a rule match, an encoded text, a store row) keys it
on the flow's version (`EnrichedFlow.version`: serial and revisions, docs/architecture.md
section 4): equal versions promise equal values, so a version found is a valid answer, and
nothing has to be kept alive or recognised by identity. `versions` reads a tick's versions,
`recall` finds last tick's answers, `missing` the positions that need work, and `keep` files
this tick's answers; all walk the sequences in C (`map`, `itertools.compress`), which is what
keeps an idle tick of 10,000 flows cheap. A flow without a serial (0: built by hand or read
from a file) is never taken for another: its answers are not kept.

Walking every flow is still work per flow, and each stage did it (several hashes of 20,000
versions per stage per tick). `ChangeTracker` works out once per tick which versions are new
and which left (`TickChanges`, handed on with the flows as `Snapshot.changes`), and a stage
that keeps its answers in a `Filed` then costs what changed: that is the mechanism, named
once, that every stage after the engine uses (docs/architecture.md, section 4).
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

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


def same_objects(flows: Sequence[object], last: Sequence[object] | None) -> bool:
    """Whether `flows` holds `last`'s very objects, in order: one pass in C, no field read.

    Flows are frozen, so an object that was in last tick's sequence has last tick's version
    (and serial): a stage that kept last tick's sequence can take a tick of the same objects
    as unchanged without building a version per flow (about 1.4 ms for 20,000 flows; this
    is 0.2 ms, and nothing when it is the same sequence). The kept sequence holds its
    objects alive, so an object here is never a new one at a freed address. Any other
    sequence falls back to comparing versions.
    """
    if last is None:
        return False
    return flows is last or (len(flows) == len(last) and all(map(operator.is_, flows, last)))


_TOKENS = itertools.count(1)


@dataclass(frozen=True, slots=True)
class TickChanges:
    """How one tick's flows differ from the tick before them, by version (see module doc)."""

    follows: int
    """The token of the tick these changes are relative to (0: none, every flow is new)."""
    token: int
    """This tick's token, never given to another tick in this process."""
    versions: Sequence[Version]
    """Each flow's version, in the tick's order."""
    new: Sequence[int]
    """Positions of the flows whose version the tick before did not have (and of every flow
    without a serial: never taken for another)."""
    gone: Sequence[Version]
    """Numbered versions the tick before had and this tick has not."""


def _between(
    filed: Mapping[Version, object], follows: int, token: int, tick: list[Version]
) -> TickChanges:
    """The changes from the versions `filed` to `tick` (every flow looked up, in C)."""
    new = missing(recall(filed, tick))
    gone = list(filed.keys() - set(tick))  # hashes stored in the dict: no version re-hashed
    return TickChanges(follows, token, tick, new, gone)


def _numbered(tick: list[Version]) -> bool:
    """Whether every version has a serial (versions order by serial first: one min, in C)."""
    return not tick or min(tick)[0] != 0


class Filed(Generic[_T]):
    """One stage's answers by version, carried from tick to tick by `TickChanges`.

    `changes(flows, given)` says what the stage must work out this tick: `given` itself when
    it follows the tick last filed here (the engine's, see `ChangeTracker`), else the same
    worked out against the answers filed here (every flow looked up, as before there were
    given changes). `file` then drops the answers of the versions gone and files the new
    ones, so `answers` holds one answer per numbered version of this tick's flows.
    """

    def __init__(self) -> None:
        self.answers: dict[Version, _T] = {}
        self._token = 0
        self._versions: list[Version] | None = None
        """The versions last filed, when worked out here and all numbered (a shortcut)."""
        self._flows: tuple[EnrichedFlow, ...] | None = None
        """The flows `_versions` were read from (`same_objects`: no version read again)."""

    def changes(
        self, flows: Sequence[EnrichedFlow], given: TickChanges | None = None
    ) -> TickChanges:
        """What changed since the tick last filed here (see the class doc)."""
        if given is not None and self._token and given.follows == self._token:
            self._versions = self._flows = None
            return given
        if given is None and self._versions is not None and same_objects(flows, self._flows):
            return TickChanges(self._token, next(_TOKENS), self._versions, (), ())
        tick = versions(flows) if given is None else list(given.versions)
        token = next(_TOKENS) if given is None else given.token
        if tick == self._versions:
            if given is None:
                self._flows = tuple(flows)
            return TickChanges(self._token, token, tick, (), ())
        changes = None
        if given is None:
            changes = self._in_place(flows, token, tick)
        if changes is None:
            changes = _between(self.answers, self._token, token, tick)
        self._versions = tick if _numbered(tick) else None
        self._flows = tuple(flows) if self._versions is not None and given is None else None
        return changes

    def _in_place(
        self, flows: Sequence[EnrichedFlow], token: int, tick: list[Version]
    ) -> TickChanges | None:
        """The changes when last tick's flows were all numbered, each version once, and this
        tick has as many: only the positions whose flow is not last tick's object there are
        looked at. Such a position's version is new if it was not filed; a version of last
        tick's at such a position left if no such position has it now (no other position
        can: every other one holds last tick's object, and each version was there once). So
        a tick where 100 of 2,000 flows moved hashes 200 versions, not 4,000. None when it
        does not apply (the caller walks every version)."""
        kept_flows, kept = self._flows, self._versions
        if kept_flows is None or kept is None or len(flows) != len(kept_flows):
            return None
        if len(self.answers) != len(kept):  # a version was there twice: walk them all
            return None
        moved = list(itertools.compress(range(len(tick)), map(operator.is_not, flows, kept_flows)))
        answers = self.answers
        new = [i for i in moved if tick[i] not in answers]
        was = {kept[i] for i in moved}
        gone = list(was.difference([tick[i] for i in moved]))
        return TickChanges(self._token, token, tick, new, gone)

    def file(self, changes: TickChanges, answers: Sequence[_T]) -> list[_T]:
        """Drop the versions gone, file `answers` (one per position of `changes.new`), and
        return the answers of the versions gone (the flows that left)."""
        filed = self.answers
        left = [filed.pop(v) for v in changes.gone if v in filed]
        tick = changes.versions
        for i, answer in zip(changes.new, answers, strict=True):
            v = tick[i]
            if v[0]:  # a flow without a serial is never taken for another
                filed[v] = answer
        self._token = changes.token
        return left

    def keep_only(self, answers: dict[Version, _T]) -> None:
        """File just these answers (those still true): the next `changes` is worked out
        against them, in full."""
        self.answers = answers
        self._token = 0
        self._versions = self._flows = None


class ChangeTracker:
    """Gives each tick's `TickChanges` against the tick before (one per engine): a `Filed`
    whose only answer is that a version was there."""

    def __init__(self) -> None:
        self._filed: Filed[bool] = Filed()

    def step(self, flows: Sequence[EnrichedFlow]) -> TickChanges:
        """This tick's changes; one comparison in C when no version moved."""
        changes = self._filed.changes(flows)
        self._filed.file(changes, [True] * len(changes.new))
        return changes
