"""The change contract's numbers: a serial per conversation, fresh revisions when parts change.

Every flow the live engine or offline analysis hands on carries `serial` (which conversation)
and `rev_facts` / `rev_traffic` (which values of its parts); `EnrichedFlow.rev_remote` says
the same of the enrichment answer (docs/architecture.md, section 4). Stages after the flows
compare these numbers instead of values or object identities.

Revisions are drawn from one counter for the whole process (`fresh_rev`), so a revision
number is only ever given to one value: a stage that makes a new value for a part draws a
fresh number, a stage that hands on an unchanged part hands on its number. Two flows with the
same serial and the same revisions therefore have the same values, whichever stage made them
(a socket's flow, a packet flow, their merge) and however the views of one conversation come
and go. Serials come from one counter too, so serials of two engines (a daemon reload) or of
offline analysis never meet.

`SerialBook` gives the serial of a conversation by its `FlowKey`, so the socket view and the
packet view of one conversation, made by different stages, get the same serial and merge into
one flow. The engine tells it which serials the snapshot kept (`retain`); a key that left the
snapshot is forgotten, and a conversation that comes back later is a new serial.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Hashable, Sequence

from netwatch.model import Flow
from netwatch.model.versions import same_objects

_REVS = itertools.count(1)
_SERIALS = itertools.count(1)
_SERIAL = operator.attrgetter("serial")

FACTS = operator.attrgetter(
    "key", "direction", "state", "process", "attribution", "first_seen", "dns_name", "sni",
    "http_host", "label", "tls_cert", "http_request", "body_prefix", "interface", "egress_by",
    "forwarded", "container",
)  # fmt: skip
"""Every part of a flow that `rev_facts` covers (all but the traffic and the numbers)."""
TRAFFIC = operator.attrgetter(
    "bytes_sent", "bytes_received", "packets_sent", "packets_received", "last_seen"
)
"""The parts `rev_traffic` covers: counters and the last packet's time."""


SerialOf = Callable[[Hashable], int]
"""A conversation's serial by what names it (`SerialBook.serial`)."""


def fresh_rev() -> int:
    """A revision number never given before in this process."""
    return next(_REVS)


def new_serial() -> int:
    """A serial never given before in this process (a conversation no book knows)."""
    return next(_SERIALS)


def revisions(flow: Flow, prev: Flow | None) -> tuple[int, int]:
    """(rev_facts, rev_traffic) for `flow`, a new value of `prev`'s conversation (or None).

    A part equal to `prev`'s keeps `prev`'s number; a changed part gets a fresh one.
    """
    if prev is None:
        return fresh_rev(), fresh_rev()
    facts = prev.rev_facts if FACTS(prev) == FACTS(flow) else fresh_rev()
    traffic = prev.rev_traffic if TRAFFIC(prev) == TRAFFIC(flow) else fresh_rev()
    return facts, traffic


def numbered(flow: Flow, serial: int, prev: Flow | None) -> Flow:
    """`flow`, just made by the caller and not yet handed on, with its serial and revisions.

    Set in place (the dataclass is frozen to everyone it is handed to, not to its maker):
    `dataclasses.replace` would copy every field of every changed flow a second time.
    """
    facts, traffic = revisions(flow, prev if prev is not None and prev.serial == serial else None)
    object.__setattr__(flow, "serial", serial)
    object.__setattr__(flow, "rev_facts", facts)
    object.__setattr__(flow, "rev_traffic", traffic)
    return flow


class SerialBook:
    """Conversation -> serial, for one engine: the socket and packet views share it.

    Keyed by the flow's `FlowKey`, or by anything hashable a stage needs to tell apart
    conversations that share a key (two sockets listening on one port with SO_REUSEPORT).
    """

    def __init__(self) -> None:
        self._serials: dict[Hashable, int] = {}
        self._kept: list[int] = []
        self._flows: tuple[Flow, ...] | None = None
        """The flows of the last `retain` (`model.versions.same_objects`)."""

    def __len__(self) -> int:
        return len(self._serials)

    def serial(self, key: Hashable) -> int:
        """The serial of this conversation (a new one the first time it is asked)."""
        found = self._serials.get(key)
        if found is None:
            found = self._serials[key] = next(_SERIALS)
        return found

    def retain(self, flows: Sequence[Flow]) -> None:
        """Forget every conversation whose serial is not among these flows' (the snapshot's).

        Costs one pass in C when the snapshot holds the serials of the last call, and less
        when it holds the last call's very flows (`model.versions.same_objects`).
        """
        if same_objects(flows, self._flows):
            return
        self._flows = tuple(flows)
        kept = list(map(_SERIAL, flows))
        if kept == self._kept:
            return
        self._kept = kept
        live = set(kept)
        self._serials = {k: s for k, s in self._serials.items() if s in live}
