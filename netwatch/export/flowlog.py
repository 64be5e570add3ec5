"""Flow logs for a SIEM: when a flow record is written, and with which byte counts.

A conversation is reported the way NetFlow/IPFIX exporters and Zeek's conn.log do it: one
record when it ends (it left the snapshot: its socket closed or capture let it go idle), and
for a long one an interim record every `active_timeout` seconds (IPFIX's "active timeout",
RFC 7011 section 5.11.3's flowEndReason 2), so a VPN tunnel that stays up for a week is seen
all week instead of once at the end. Every record carries the bytes and packets moved in its
own period (the increase since the conversation's previous record), so a SIEM's sum over
records is the conversation's traffic, never counted twice; the codec record of the JSONL
format also carries the running totals. At shutdown every open conversation gets a last
record (`shutdown`), so nothing the daemon saw is lost from the log.

Listening sockets are not conversations and are never reported. A conversation's socket
outlives its owner and its counters (a TCP socket in TIME_WAIT has neither): the record keeps
the last counts and the last owner seen (attribution `cached`), so what the process moved
is not lost from the log. Pure: the caller gives the time and the tick's flows.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import cast

from netwatch.model import Attribution, EnrichedFlow, FlowKey
from netwatch.model.versions import UNNUMBERED, Version, keep, missing, recall, versions

ACTIVE_TIMEOUT = 300.0
"""Default seconds between interim records of a conversation that goes on (five minutes:
between Cisco's 60 s minimum and its 30 min default active timeout; short enough that a
dashboard over the last hour shows a tunnel that is still up)."""


class Reason(StrEnum):
    """Why a flow record was written (ECS `event.reason`)."""

    END = "end"
    """The conversation ended: it is no longer in the snapshot."""
    ACTIVE = "active_timeout"
    """The conversation goes on; this is its traffic since the previous record."""
    SHUTDOWN = "shutdown"
    """The daemon stopped while the conversation was open."""


Counts = tuple[int | None, int | None, int | None, int | None]
"""bytes_sent, bytes_received, packets_sent, packets_received (None: not known)."""


def _counts(ef: EnrichedFlow) -> Counts:
    f = ef.flow
    return (f.bytes_sent, f.bytes_received, f.packets_sent, f.packets_received)


def _known(new: Counts, old: Counts) -> Counts:
    """Each counter as now, or as last known where the source no longer says."""
    if None not in new:
        return new
    return (
        old[0] if new[0] is None else new[0],
        old[1] if new[1] is None else new[1],
        old[2] if new[2] is None else new[2],
        old[3] if new[3] is None else new[3],
    )


def _owned(ef: EnrichedFlow, before: EnrichedFlow) -> EnrichedFlow:
    """`ef`, with `before`'s process when the socket no longer names one (cached)."""
    f, p = ef.flow, before.flow.process
    if f.process is not None or p is None:
        return ef
    return replace(ef, flow=replace(f, process=p, attribution=Attribution.CACHED))


def _grown(now: int | None, before: int | None) -> int | None:
    """The increase of one counter since the last record (all of it after a reset)."""
    if now is None:
        return None
    if before is None or now < before:
        return now
    return now - before


@dataclass(frozen=True, slots=True)
class FlowReport:
    """One flow record: the conversation as last seen, why it is written, and its period.

    `bytes_sent` and the rest are the period's increases (local to remote for `sent`, as on
    `Flow`); the flow itself keeps the running totals.
    """

    flow: EnrichedFlow
    reason: Reason
    start: float
    """Start of the period: the conversation's first packet, or its previous record."""
    end: float
    """End of the period: when it was last seen (or the time of an interim record)."""
    bytes_sent: int | None
    bytes_received: int | None
    packets_sent: int | None
    packets_received: int | None

    @property
    def final(self) -> bool:
        """Whether this is the conversation's last record."""
        return self.reason is not Reason.ACTIVE


class _Open:
    """A conversation being watched: its latest flow, what was reported, since when.

    `since` starts the period the next record covers; `noted` is when the reporter last
    looked at it (first saw it, or wrote its interim record): interim records fall due
    `active_timeout` after that, so the open table stays in due order (a conversation met
    at start-up with an old first packet is not reported at once for its whole past).
    """

    __slots__ = ("counts", "ef", "noted", "reported", "since")

    def __init__(self, ef: EnrichedFlow, since: float, noted: float) -> None:
        self.ef = ef
        self.counts = _counts(ef)
        """The latest counters known (`_known`): what the next record reports up to."""
        self.reported: Counts = (None, None, None, None)
        self.since = since
        self.noted = noted


_LISTENING = _Open.__new__(_Open)
"""The row of a listening socket's flow: not a conversation, never reported (no fields set)."""


class FlowReporter:
    """Decides when each conversation gets a flow record (see the module doc).

    `active_timeout` 0 turns interim records off (one record per conversation, at its end).
    The change contract keeps a tick cheap (docs/architecture.md, section 4): a tick whose
    flow versions are last tick's costs one comparison and the check of the oldest open
    period; otherwise only the flows whose version moved are looked at. Conversations ended
    only when there are fewer conversations in the tick than open ones; then those whose
    last version left with no new one in its place are the ended ones (a tick with an
    unnumbered flow, serial 0, compares keys instead).
    """

    def __init__(self, active_timeout: float = ACTIVE_TIMEOUT) -> None:
        self.active_timeout = active_timeout
        self._open: OrderedDict[FlowKey, _Open] = OrderedDict()
        """Open conversations in due order (`_Open.noted`; an interim record moves one to
        the end)."""
        self._versions: list[Version] | None = None
        self._rows: dict[Version, _Open] = {}
        """Last tick's flow versions -> their conversation (`_LISTENING` for listeners)."""
        self._numbered = False
        """Whether every flow of last tick was numbered (`_rows` holds them all)."""

    def __len__(self) -> int:
        return len(self._open)

    def observe(self, flows: Sequence[EnrichedFlow], now: float) -> list[FlowReport]:
        """Take one tick's flows; return the records due: ended, then interim ones."""
        out: list[FlowReport] = []
        tick = versions(flows)
        if tick != self._versions:
            self._versions = None if UNNUMBERED in tick else tick
            out = self._update(flows, now)
        if self.active_timeout > 0:
            out.extend(self._interim(now))
        return out

    def _update(self, flows: Sequence[EnrichedFlow], now: float) -> list[FlowReport]:
        open_, before = self._open, self._rows
        tick = versions(flows)
        got = recall(before, tick)
        for i in missing(got):  # new conversations and new versions of known ones
            ef = flows[i]
            key = ef.flow.key
            if key.remote is None:
                got[i] = _LISTENING  # a listening socket: not a conversation
                continue
            entry = open_.get(key)
            if entry is None:
                first = ef.flow.first_seen
                entry = open_[key] = _Open(ef, now if first is None else min(first, now), now)
            elif entry.ef is not ef:
                entry.ef = _owned(ef, entry.ef)
                entry.counts = _known(_counts(ef), entry.counts)
            got[i] = entry
        made = cast(list[_Open], got)
        rows, numbered = keep(tick, made)
        if len(open_) == len(made) - made.count(_LISTENING):
            gone = []  # every open conversation has its flow in this tick: none ended
        elif numbered and self._numbered:
            gone = [
                e.ef.flow.key
                for v in before.keys() - rows.keys()  # set arithmetic in C
                if (e := before[v]) is not _LISTENING and e.ef.version not in rows
            ]
        else:  # an unnumbered flow has no version to be found by: compare keys
            alive = {e.ef.flow.key for e in made if e is not _LISTENING}
            gone = list(open_.keys() - alive)
        self._rows, self._numbered = rows, numbered
        return [self._report(open_.pop(k), Reason.END, now) for k in gone if k in open_]

    def _interim(self, now: float) -> list[FlowReport]:
        out: list[FlowReport] = []
        open_, due = self._open, now - self.active_timeout
        while open_:
            key, entry = next(iter(open_.items()))
            if entry.noted > due:
                break
            out.append(self._report(entry, Reason.ACTIVE, now))
            entry.noted = now
            open_.move_to_end(key)
        return out

    def finish(self, now: float) -> list[FlowReport]:
        """The last record of every open conversation (the daemon is stopping)."""
        out = [self._report(e, Reason.SHUTDOWN, now) for e in self._open.values()]
        self._open.clear()
        self._versions, self._rows, self._numbered = None, {}, False
        return out

    @staticmethod
    def _report(entry: _Open, reason: Reason, now: float) -> FlowReport:
        ef = entry.ef
        counts = entry.counts
        before = entry.reported
        last = ef.flow.last_seen
        end = now if reason is Reason.ACTIVE or last is None else max(last, entry.since)
        report = FlowReport(
            flow=ef,
            reason=reason,
            start=entry.since,
            end=end,
            bytes_sent=_grown(counts[0], before[0]),
            bytes_received=_grown(counts[1], before[1]),
            packets_sent=_grown(counts[2], before[2]),
            packets_received=_grown(counts[3], before[3]),
        )
        entry.reported = counts
        entry.since = end
        return report
