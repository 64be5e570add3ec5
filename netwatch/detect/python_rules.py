"""The registry of rules written in Python, by the name a rule file gives in `python = ...`.

A Python rule receives the flows that passed its rule's condition and selects the ones to
report, with extra evidence; the engine builds identifiers, messages and alerts as for any
other rule. Each factory gets the shared first-seen store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from netwatch.detect.fields import Env
from netwatch.detect.novelty import FirstConnection, FirstSeenStore, NewCountry, Selected
from netwatch.detect.tunnel import TunnelDown
from netwatch.model import EnrichedFlow


class PythonRule(Protocol):
    """What a Python rule implements."""

    @property
    def incremental(self) -> bool:
        """True when a flow shown once can never fire later, so the engine may show the rule
        only flows that are new since the last tick; False shows it every matching flow."""
        ...

    @property
    def repeats(self) -> bool:
        """True when a flow reported once is news again on every tick it is selected (its
        evidence moves, e.g. bytes sent in the clear): each tick counts as one occurrence,
        so the alert's evidence and count follow it. False: one occurrence per flow."""
        ...

    def select(self, flows: Sequence[EnrichedFlow], env: Env) -> Iterable[Selected]:
        """The flows to report, each with evidence beyond the rule's condition."""
        ...


PYTHON_RULES: dict[str, Callable[[FirstSeenStore], PythonRule]] = {
    "first_connection": FirstConnection,
    "new_country": NewCountry,
    "tunnel_down": TunnelDown,
}
"""Implementation name -> factory."""
