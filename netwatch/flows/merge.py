"""Joining the two views of one conversation: its socket's flow and its packets' flow.

The socket table knows the owning process and TCP byte counters; capture knows labels, names
and the bytes of UDP and other protocols. The live engine merges them each tick. Both twins
carry the serial of their conversation (one serial book numbers both views, by key), and the
merge is that serial's flow; a pair whose revisions are last tick's keeps last tick's merge,
and a new merge moves only the revisions of the parts that changed (`flows.serials`).
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Hashable, Sequence
from dataclasses import replace

from netwatch.flows.serials import numbered
from netwatch.model import ConnectionView, Endpoint, Flow, FlowKey, Transport

_KEY = operator.attrgetter("key")
_SERIAL = operator.attrgetter("serial")

Translated = Callable[[Transport, Endpoint, Endpoint], ConnectionView | None]
"""The other view of a connection the host translates (`SocketTable.translated`)."""
MergeMemo = dict[int, tuple[tuple[int, int, int, int], Flow]]
"""serial -> (the twins' revisions: packet facts and traffic, socket facts and traffic; their
merge), for one tick."""


def merge_flows(
    socket_flows: Sequence[Flow],
    packet_flows: Sequence[Flow],
    last: MergeMemo | None = None,
    memo: MergeMemo | None = None,
    translated: Translated | None = None,
    *,
    one_book: bool = False,
) -> list[Flow]:
    """Join the two views of the same conversations by key.

    The socket table knows the process and TCP byte counters; packets know labels, names and
    UDP/other bytes. A packet flow with a socket twin takes the socket's process; byte counts
    keep the larger (both count the same bytes, each misses some: sockets opened before capture,
    packets dropped by the kernel). When both twins have last tick's revisions (`last`), the
    merge is last tick's; `memo` collects this tick's merges for the next call.

    With `translated`, a packet flow without a twin under its own key is joined to the
    socket of its connection's other view: a container's socket behind masquerade or a
    published port, seen by capture under the host's address, is one flow, not two.
    """
    if not packet_flows:
        return list(socket_flows)
    if not one_book:
        return _merged(socket_flows, packet_flows, last, memo, translated, None)
    serials = list(map(_SERIAL, socket_flows))
    by_serial = dict(zip(serials, socket_flows, strict=True))  # int keys: hashed in C
    if len(by_serial) != len(serials) or 0 in by_serial:
        return _merged(socket_flows, packet_flows, last, memo, translated, None)
    return _merged(socket_flows, packet_flows, last, memo, translated, (serials, by_serial))


def _merged(
    socket_flows: Sequence[Flow],
    packet_flows: Sequence[Flow],
    last: MergeMemo | None,
    memo: MergeMemo | None,
    translated: Translated | None,
    numbered_alike: tuple[list[int], dict[int, Flow]] | None,
) -> list[Flow]:
    """Each packet flow merged with its twin (or alone), then the socket flows no packet
    flow took. With `numbered_alike` (every socket flow's serial, in order, and the flows by
    serial: one book numbered both views, one serial each) a twin has its packet flow's
    serial, and no key is hashed unless a twin is sought through a translation; without,
    twins are found by key."""
    serials, by_serial = numbered_alike if numbered_alike is not None else ([], None)
    by_key: dict[FlowKey, Flow] | None = None
    merged: list[Flow] = []
    seen: set[Hashable] = set()
    for pf in packet_flows:
        sf = by_serial.get(pf.serial) if by_serial is not None and pf.serial else None
        if sf is not None and sf.key != pf.key:
            sf = None  # not this engine's numbering: looked up by key below
        if sf is None and (by_serial is None or not pf.serial or translated is not None):
            if by_key is None:
                by_key = dict(zip(map(_KEY, socket_flows), socket_flows, strict=True))
            sf = by_key.get(pf.key)
            if sf is None and translated is not None and pf.key.remote is not None:
                sf = _translated_twin(pf.key, by_key, translated)
        if sf is None:
            merged.append(pf)
            continue
        seen.add(sf.key if by_serial is None else sf.serial)
        merged.append(_joined(pf, sf, last, memo))
    idents = map(_KEY, socket_flows) if by_serial is None else iter(serials)
    unmatched = map(operator.not_, map(seen.__contains__, idents))
    merged.extend(itertools.compress(socket_flows, unmatched))
    return merged


def _joined(pf: Flow, sf: Flow, last: MergeMemo | None, memo: MergeMemo | None) -> Flow:
    """The merge of twins: last tick's when both have last tick's revisions."""
    serial = pf.serial
    revs = (pf.rev_facts, pf.rev_traffic, sf.rev_facts, sf.rev_traffic)
    hit = last.get(serial) if last is not None and serial else None
    if hit is not None and hit[0] == revs:
        both = hit[1]
    else:
        both = numbered(_merge(pf, sf), serial, sf if hit is None else hit[1])
    if memo is not None:
        memo[serial] = (revs, both)
    return both


def _translated_twin(
    key: FlowKey, by_key: dict[FlowKey, Flow], translated: Translated
) -> Flow | None:
    """The socket flow of the other view of `key`'s connection, seen from either end."""
    assert key.remote is not None  # noqa: S101  # checked by the caller
    t = key.transport
    other = translated(t, key.local, key.remote) or translated(t, key.remote, key.local)
    if other is None:
        return None
    _, a, b = other
    return by_key.get(FlowKey(t, a, b)) or by_key.get(FlowKey(t, b, a))


def _merge(pf: Flow, sf: Flow) -> Flow:
    """The packet flow with its socket twin's process, state and larger byte counts."""
    return replace(
        pf,
        direction=sf.direction,
        state=sf.state,
        process=sf.process or pf.process,
        attribution=sf.attribution if sf.process else pf.attribution,
        container=sf.container or pf.container,
        bytes_sent=_max(sf.bytes_sent, pf.bytes_sent),
        bytes_received=_max(sf.bytes_received, pf.bytes_received),
    )


def _max(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)
