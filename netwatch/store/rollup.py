"""Usage history rollups: bytes and new connections per minute and per who-talked-to-whom.

Pure (no sqlite3, no clock): the daemon hands `Rollups.add` each tick's flows and the tick's
time, and takes the finished rows at its flow-summary flush (`take`), which the store writes
in the same transaction as the summaries (`Store.save_flows`). The history is what moved in
each tick, not the counters' running totals, so it adds up over any time range:

* the bytes of a conversation in a tick are its counters minus the counters it had last tick,
  found by its serial (docs/architecture.md section 4). A flow whose version is last tick's
  has by the change contract the same counters, so only flows whose version moved are
  visited (found in C, `model.versions`), and of those only the ones whose `rev_traffic`
  moved are counted; a whole tick whose versions are last tick's costs one list comparison.
  A flow without a serial (0) is followed by its key and its counters compared every tick;
* a counter that went down (a socket closed and its key reused) counts from zero again;
* a conversation new to the book counts all its bytes and one connection, except on the
  first tick after a start: those conversations were open before, and their counters hold
  traffic from before (counting them would put hours of a long download into one minute).

Rows are keyed by the minute (`SPAN`) and by `Dims`: process name and executable, remote
address, country, ASN, AS organisation, provider, transport and label. Listening sockets are
not conversations and are skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from netwatch.model import EnrichedFlow, FlowKey
from netwatch.model.usage import BY, TIME_BY, Away, UsageAnswer, UsageQuery, UsageTotal
from netwatch.model.versions import Filed, TickChanges, recall

SPAN = 60
"""Seconds per fresh row; kept for the configured age (`Retention.hourly_after`)."""
HOUR = 3600
DAY = 86400
SPANS = (DAY, HOUR, SPAN)
"""Every row is written at each of these spans (coarsest first): a long window is read from
day rows and only its ragged ends from hour and minute rows (`usage.plan`)."""

Dims = tuple[
    str | None, str | None, str | None, str | None, int | None, str | None, str | None, str,
    str | None,
]  # fmt: skip
"""(process name, exe, remote address, country, ASN, AS org, provider, transport, label)."""
DIM_NAMES = (
    "process_name",
    "process_exe",
    "remote_ip",
    "country",
    "asn",
    "as_org",
    "provider",
    "transport",
    "label",
)
"""The column of each position of `Dims`, in the store and in `netwatch history` output."""


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One bucket of one `Dims`: bytes both ways and conversations that began in it."""

    bucket: int
    """Start of the bucket, whole Unix seconds (a multiple of `span`)."""
    span: int
    dims: Dims
    bytes_out: int
    bytes_in: int
    connections: int


def dims_of(ef: EnrichedFlow) -> Dims:
    """The rollup key of one flow."""
    f, r = ef.flow, ef.remote
    p = f.process
    k = f.key
    return (
        p.name if p else None,
        p.exe if p else None,
        None if k.remote is None else str(k.remote.ip),
        r.country if r else None,
        r.asn if r else None,
        r.as_org if r else None,
        r.provider.name if r and r.provider else None,
        k.transport.value,
        f.label.name if f.label else None,
    )


class _Seen:
    """What the book remembers of one conversation: its traffic revision and counters, the key
    its bytes go under, and the bytes it moved in the current minute (not yet in a row)."""

    __slots__ = ("acc_in", "acc_new", "acc_out", "dims", "facts", "received", "rev", "sent")

    def __init__(self, rev: int, sent: int, received: int) -> None:
        self.rev = rev
        self.sent = sent
        self.received = received
        self.facts = (0, 0)
        """(rev_facts, rev_remote) that `dims` was made from."""
        self.dims: Dims | None = None
        self.acc_out = self.acc_in = self.acc_new = 0


_LISTENING = _Seen(-1, 0, 0)
"""The answer for a listening socket's flow: not a conversation, never counted."""


class Rollups:
    """Per-minute usage built from tick deltas, held until `take`."""

    def __init__(self) -> None:
        self._known: Filed[_Seen] = Filed()
        """Last tick's answers by flow version: a flow with last tick's version moved nothing."""
        self._by_conversation: dict[int | FlowKey, _Seen] = {}
        """Counters by serial (by key for an unnumbered flow), for a flow whose version moved;
        rebuilt from `_known` when it holds many conversations that left."""
        self._started = False
        self._bucket = 0
        """The minute the conversations' `acc_*` belong to."""
        self._dirty: list[_Seen] = []
        """Conversations with bytes in `_bucket` not yet summed into `_pending`."""
        self._pending: dict[tuple[int, Dims], list[int]] = {}
        """(minute, dims) -> [bytes out, bytes in, connections]."""

    def add(
        self, flows: Sequence[EnrichedFlow], now: float, given: TickChanges | None = None
    ) -> None:
        """Account one tick taken at `now` (seconds); `given`: how the flows differ from the
        engine's tick before (`Snapshot.changes`; else worked out here, in C).

        Only the flows whose version moved are visited (`model.versions.Filed`), so a tick
        costs what changed; of those, a flow whose serial and `rev_traffic` are the ones the
        book holds moved facts or its remote, not bytes. A conversation's bytes are added up
        on its own record through the minute and summed per key once, when the minute ends
        (`_fold`), so a busy tick costs a few attribute updates per moved flow.
        """
        changes = self._known.changes(flows, given)
        if self._started and not (changes.new or changes.gone):
            self._known.file(changes, ())
            return  # nothing moved: equal versions promise equal counters
        counting = self._started
        self._started = True
        bucket = int(now) // SPAN * SPAN
        if bucket != self._bucket:
            self._fold()
            self._bucket = bucket
        moved = changes.new
        got: list[_Seen] = []
        by_conv = self._by_conversation
        dirty = self._dirty
        for i in moved:
            ef = flows[i]
            f = ef.flow
            key = f.key
            if key.remote is None:
                got.append(_LISTENING)
                continue
            ident: int | FlowKey = f.serial or key
            seen = by_conv.get(ident)
            if seen is not None and f.serial and seen.rev == f.rev_traffic:
                got.append(seen)
                continue
            sent = f.bytes_sent or 0
            received = f.bytes_received or 0
            if seen is None:
                seen = by_conv[ident] = _Seen(f.rev_traffic, sent, received)
                d_out, d_in, new = sent, received, 1
            else:
                d_out = sent - seen.sent if sent >= seen.sent else sent
                d_in = received - seen.received if received >= seen.received else received
                new = 0
                seen.rev, seen.sent, seen.received = f.rev_traffic, sent, received
            got.append(seen)
            if not counting or not (d_out or d_in or new):
                continue
            # The key's text is made once per facts and remote revision (numbered flows).
            facts = (f.rev_facts, ef.rev_remote)
            if seen.dims is None or not f.serial or seen.facts != facts:
                if seen.dims is not None and (seen.acc_out or seen.acc_in or seen.acc_new):
                    self._fold_one(seen)  # bytes so far go under the key they were moved by
                seen.dims, seen.facts = dims_of(ef), facts
            if not (seen.acc_out or seen.acc_in or seen.acc_new):
                dirty.append(seen)
            seen.acc_out += d_out
            seen.acc_in += d_in
            seen.acc_new += new
        self._known.file(changes, got)
        if len(by_conv) > 2 * len(flows) + 1024:  # conversations that left: forget them
            answers = recall(self._known.answers, changes.versions)
            for i, seen in zip(moved, got, strict=True):
                answers[i] = seen  # flows without a serial are not filed
            self._by_conversation = {
                (ef.flow.serial or ef.flow.key): seen
                for ef, seen in zip(flows, answers, strict=True)
                if seen is not None and seen is not _LISTENING
            }

    def _fold_one(self, seen: _Seen) -> None:
        """Sum one conversation's bytes of the current minute into its key's row."""
        if seen.dims is not None:
            acc = self._pending.setdefault((self._bucket, seen.dims), [0, 0, 0])
            acc[0] += seen.acc_out
            acc[1] += seen.acc_in
            acc[2] += seen.acc_new
        seen.acc_out = seen.acc_in = seen.acc_new = 0

    def _fold(self) -> None:
        """Sum every conversation's bytes of the current minute into rows."""
        for seen in self._dirty:
            if seen.acc_out or seen.acc_in or seen.acc_new:
                self._fold_one(seen)
        self._dirty.clear()

    def take(self) -> list[UsageRow]:
        """The rows accounted since the last call, oldest first; the book keeps its counters."""
        self._fold()
        rows = [
            UsageRow(bucket, SPAN, dims, v[0], v[1], v[2])
            for (bucket, dims), v in sorted(self._pending.items(), key=lambda kv: kv[0][0])
        ]
        self._pending.clear()
        return rows

    def __len__(self) -> int:
        return len(self._pending) + len(self._dirty)


__all__ = [  # the query types live in model.usage; these names stay importable from here
    "BY",
    "DAY",
    "DIM_NAMES",
    "HOUR",
    "SPAN",
    "SPANS",
    "TIME_BY",
    "Away",
    "Dims",
    "Rollups",
    "UsageAnswer",
    "UsageQuery",
    "UsageRow",
    "UsageTotal",
    "dims_of",
]
