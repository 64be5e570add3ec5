"""Socket table -> flows, and the join of packet-observed flows to the processes that own them.

Pure: takes a `SocketTable` (already sampled by `sources`) and returns model objects. The
join lives here, not in the display (bandwhich keeps it in its UI state; we do not).
"""

from __future__ import annotations

from collections.abc import Iterable

from netwatch.model import Attribution, Direction, Flow, SocketEntry, SocketTable


def flow_from_socket(entry: SocketEntry, now: float) -> Flow:
    """Turn one socket into a flow as seen from its local process."""
    return Flow(
        key=entry.key,
        direction=entry.direction,
        state=entry.state,
        process=entry.process,
        attribution=Attribution.SOCKET if entry.process else Attribution.UNKNOWN,
        first_seen=None,
        last_seen=now,
        bytes_sent=entry.bytes_sent,
        bytes_received=entry.bytes_received,
        packets_sent=entry.segs_out,
        packets_received=entry.segs_in,
    )


def flows_from_sockets(table: SocketTable, now: float | None = None) -> list[Flow]:
    """One flow per socket of the table (listening sockets included, as `listen` flows)."""
    at = table.taken_at if now is None else now
    return [flow_from_socket(e, at) for e in table.entries]


def listening_ports(entries: Iterable[SocketEntry]) -> set[tuple[str, int]]:
    """The (transport, port) pairs something listens on: accepted sockets share them."""
    return {
        (e.key.transport.value, e.key.local.port)
        for e in entries
        if e.direction is Direction.LISTEN
    }
