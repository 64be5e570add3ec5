"""Joining the two views of one conversation: its socket's flow and its packets' flow.

The socket table knows the owning process and TCP byte counters; capture knows labels, names
and the bytes of UDP and other protocols. The live engine merges them each tick; an unchanged
pair of twins keeps last tick's merge (object identity, `model.identity`), so the stages after
it skip unchanged flows.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Sequence
from dataclasses import replace

from netwatch.model import Flow, FlowKey

_KEY = operator.attrgetter("key")

MergeMemo = dict[int, tuple[Flow, Flow, Flow]]
"""id(packet flow) -> (packet flow, socket twin, their merge), for one tick."""


def merge_flows(
    socket_flows: Sequence[Flow],
    packet_flows: Sequence[Flow],
    last: MergeMemo | None = None,
    memo: MergeMemo | None = None,
) -> list[Flow]:
    """Join the two views of the same conversations by key.

    The socket table knows the process and TCP byte counters; packets know labels, names and
    UDP/other bytes. A packet flow with a socket twin takes the socket's process; byte counts
    keep the larger (both count the same bytes, each misses some: sockets opened before capture,
    packets dropped by the kernel). When both twins are last tick's objects (`last`), so is
    their merge; `memo` collects this tick's merges for the next call.
    """
    if not packet_flows:
        return list(socket_flows)
    by_key = dict(zip(map(_KEY, socket_flows), socket_flows, strict=True))  # in C
    merged: list[Flow] = []
    seen: set[FlowKey] = set()
    for pf in packet_flows:
        sf = by_key.get(pf.key)
        if sf is None:
            merged.append(pf)
            continue
        seen.add(pf.key)
        hit = last.get(id(pf)) if last is not None else None
        both = hit[2] if hit is not None and hit[0] is pf and hit[1] is sf else _merge(pf, sf)
        if memo is not None:
            memo[id(pf)] = (pf, sf, both)
        merged.append(both)
    unmatched = map(operator.not_, map(seen.__contains__, map(_KEY, socket_flows)))
    merged.extend(itertools.compress(socket_flows, unmatched))
    return merged


def _merge(pf: Flow, sf: Flow) -> Flow:
    """The packet flow with its socket twin's process, state and larger byte counts."""
    return replace(
        pf,
        direction=sf.direction,
        state=sf.state,
        process=sf.process or pf.process,
        attribution=sf.attribution if sf.process else pf.attribution,
        bytes_sent=_max(sf.bytes_sent, pf.bytes_sent),
        bytes_received=_max(sf.bytes_received, pf.bytes_received),
    )


def _max(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)
