"""Rules as loaded from the pack: cases with conditions, windows, messages; and findings.

A `Rule` is data: one or more `Case`s, each a condition over one flow with a message; a case
may aggregate the flows it matches over a `Window` (distinct peers, countries, ...) and fire
only when `having` holds. Rules whose logic outgrows the language name a Python
implementation (`python = "first_connection"`); their cases act as a prefilter. A `Finding`
is what a rule reports before suppression turns findings into `Alert`s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from netwatch.detect.conditions import Node, Pred
from netwatch.errors import Location
from netwatch.model import EnrichedFlow, Evidence, Severity


@dataclass(frozen=True, slots=True)
class Window:
    """Aggregate matching flows per group over `seconds`; fire when `having` holds."""

    seconds: float
    group_by: tuple[str, ...]
    having: Node
    having_pred: Pred = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Case:
    """One way a rule matches: a condition, a message template, optional overrides."""

    when: Node
    pred: Pred = field(repr=False, compare=False)
    message: str = ""
    severity: Severity | None = None
    window: Window | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    """A bundled or user rule; `identifier` fields make the dedup key of its alerts."""

    id: str
    title: str
    severity: Severity
    cases: tuple[Case, ...]
    identifier: tuple[str, ...]
    suppress_for: float
    tags: tuple[str, ...] = ()
    description: str = ""
    python: str | None = None
    location: Location | None = None


@dataclass(frozen=True, slots=True)
class RuleSet:
    """The rules in load order, and the files they came from."""

    rules: tuple[Rule, ...]
    files: tuple[str, ...] = ()

    def get(self, rule_id: str) -> Rule | None:
        """Return the rule with this id, if loaded."""
        for r in self.rules:
            if r.id == rule_id:
                return r
        return None

    @property
    def ids(self) -> tuple[str, ...]:
        """Every rule id, in load order."""
        return tuple(r.id for r in self.rules)


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule hit before suppression: who, what, why, and the occurrences it counts.

    `occurrences` are what `Alert.count` counts (distinct flows, or distinct peers of a relay);
    an occurrence already counted on an open alert does not raise the count again. `details`,
    when set, renders the message and evidence on demand: suppression needs them only for the
    last finding of each alert that changed in a tick, not for every matching flow.
    """

    rule: Rule
    identifier: str
    message: str
    severity: Severity
    at: float
    flow: EnrichedFlow | None = None
    evidence: tuple[Evidence, ...] = ()
    occurrences: tuple[str, ...] = ()
    details: Callable[[], tuple[str, tuple[Evidence, ...]]] | None = field(
        default=None, repr=False, compare=False
    )

    def text(self) -> tuple[str, tuple[Evidence, ...]]:
        """The message and evidence, rendering them now if they were deferred."""
        return (self.message, self.evidence) if self.details is None else self.details()
