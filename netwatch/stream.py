"""The delta protocol: a stream of snapshots as one full `state`, then one `delta` per tick.

What crosses a process boundary (the daemon's socket) and fills a recording. A `state`
record holds everything a reader needs (head, status, counters, the process table, every
flow, the recent alerts); each `delta` after it holds what changed since the record before
it, found through the change contract (docs/architecture.md, section 4): a flow whose
`EnrichedFlow.version` did not move is not sent. Flows are keyed by serial; processes are
sent once, as a numbered table, and flows refer to them by number. The records are JSON
objects (`codec.frame` makes them lines); `StreamEncoder` writes them and `StreamDecoder`
reads them back into whole `Snapshot`s. Pure: no I/O, no clock.

Records (`"schema": 2`):

* `state`: `stream` (a name for the encoder, when it was given one), `seq`, `taken_at`,
  `interval`, `status`, `counters`, `processes` (every process a flow refers to: `{"id",
  ...the codec process object}`), `flows` (entries, below, in the snapshot's order),
  `alerts` (codec alert records without `schema`/`type`).
* `delta`: `seq`, `prev` (the `seq` of the record it follows: a reader that missed one
  knows), `taken_at`, `interval`, `counters`, `status` only when it changed, `processes`
  new since the record before, `gone` (process ids no flow refers to any more, freed),
  `upserts` (entries), `removals` (serials gone), `order` only when the flows' order is
  not the old order without the removals followed by the new flows, `alerts` raised or
  updated this tick.

A flow entry: `serial`, `rev` (`[rev_facts, rev_traffic, rev_remote]`) and what changed:
`flow` (the codec flow record's fields, without `schema`, `type`, `remote`, with `proc`,
the process id, instead of `process`) when the flow is new or its facts moved, or else
`traffic` (`codec.TRAFFIC_FIELDS`) when only the traffic moved; `remote` (the codec remote
object, or null) when new or `rev_remote` moved. A state's entries carry all three.

A flow with serial 0 (built by hand, read from an old file) has no revisions to compare: the
encoder numbers it itself with a negative serial, kept per flow key while that key is seen,
and sends it again whenever its value changes; the decoder gives it serial 0 back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from operator import attrgetter
from typing import Any

from netwatch import codec
from netwatch.codec import CodecError, JSONDict
from netwatch.model import Alert, EnrichedFlow, FlowKey, ProcessRef, Snapshot, SourceStatus

STREAM_SCHEMA = 2
"""The version of `state`/`delta` records. Schema 1 was one whole `snapshot` record per
tick (`codec.snapshot_to_dict`); `StreamDecoder` still reads those."""

_VERSION = attrgetter("version")
"""`EnrichedFlow.version` as a function for `map` (over 10,000 flows: ~1 ms, the quiet
tick's main cost)."""

Version = tuple[int, int, int, int]


class OutOfStepError(CodecError):
    """A delta that does not follow the record the decoder holds: a record was lost, or the
    stream did not start with a `state`. The reader needs a fresh `state`."""


class _Entry:
    """What the encoder last sent of one flow: enough to diff and to write a state."""

    __slots__ = ("ef", "flow", "proc", "remote", "version")

    def __init__(
        self, ef: EnrichedFlow, version: Version, flow: JSONDict, proc: int | None
    ) -> None:
        self.ef = ef
        self.version = version
        self.flow = flow
        """The entry's `flow` object as last sent, traffic patches applied."""
        self.proc = proc
        self.remote: JSONDict | None = None


def _head(snap: Snapshot, kind: str) -> JSONDict:
    return {
        "schema": STREAM_SCHEMA,
        "type": kind,
        "seq": snap.seq,
        "taken_at": snap.taken_at,
        "interval": snap.interval,
    }


def _alert(a: Alert) -> JSONDict:
    d = codec.alert_to_dict(a)
    del d["schema"], d["type"]
    return d


class StreamEncoder:
    """Writes one stream: `delta(snap)` per tick, `state()` whenever a reader starts.

    One encoder per stream; every reader of the stream must have had a `state` from this
    encoder and then every `delta` after it. `encode` does both for a recording (a state
    first, deltas after). The daemon keeps one encoder, sends each tick's delta to every
    client (the same bytes) and a new client `state()` (see `netwatch.daemon.service`).
    """

    def __init__(self, stream: str | None = None) -> None:
        self.stream = stream
        """Names this stream in its states: serials are only unique within one engine, so a
        reader reuses flows it holds across states only when they name the same stream (a
        daemon restarted under a reader numbers its flows anew). None: never reused."""
        self._entries: dict[int, _Entry] = {}
        """The flows last sent, by wire serial, in the snapshot's order."""
        self._versions: list[Version] | None = None
        """The versions of the last snapshot's flows, in order (a quiet tick has the same)."""
        self._unnumbered = False
        """The last snapshot had serial-0 flows (their versions say nothing)."""
        self._keys: dict[FlowKey, list[int]] = {}
        """Wire serials given to serial-0 flows, by key, for those of the last snapshot."""
        self._next_local = 0
        self._procs: dict[ProcessRef, int] = {}
        self._proc_records: dict[int, JSONDict] = {}
        self._proc_refs: dict[int, ProcessRef] = {}
        self._refs: dict[int, int] = {}
        """How many flows refer to each process id; at 0 the process is gone."""
        self._next_proc = 0
        self._last: Snapshot | None = None
        self._status: SourceStatus | None = None
        self.upserts = 0
        """Flow entries in the last delta (the others were unchanged)."""

    @property
    def started(self) -> bool:
        """Whether a snapshot was encoded (a `state` has something to hold)."""
        return self._last is not None

    def encode(self, snap: Snapshot) -> JSONDict:
        """The record for `snap` in a recording: a `state` first, then deltas."""
        first = self._last is None
        delta = self.delta(snap)
        return self.state(snap.alerts) if first else delta

    def state(self, alerts: Sequence[Alert] | None = None) -> JSONDict:
        """Everything of the last snapshot encoded, as one `state` record.

        `alerts` are the alerts a new reader should know (the daemon's recent ones); by
        default the last snapshot's. Costs one JSON object per flow, no flow encoding.
        """
        last = self._last
        if last is None:
            raise ValueError("state() before any snapshot was encoded")
        record = _head(last, "state")
        if self.stream is not None:
            record["stream"] = self.stream
        record["status"] = codec.status_to_dict(last.status)
        record["counters"] = codec.counters_to_dict(last.counters)
        record["processes"] = list(self._proc_records.values())
        record["flows"] = [
            {"serial": s, "rev": list(e.version[1:]), "flow": e.flow, "remote": e.remote}
            for s, e in self._entries.items()
        ]
        record["alerts"] = [_alert(a) for a in (last.alerts if alerts is None else alerts)]
        return record

    def delta(self, snap: Snapshot) -> JSONDict:
        """What changed from the last snapshot encoded to `snap`, as one `delta` record."""
        flows = snap.flows
        versions: list[Version] = list(map(_VERSION, flows))
        record = _head(snap, "delta")
        record["prev"] = None if self._last is None else self._last.seq
        record["counters"] = codec.counters_to_dict(snap.counters)
        if snap.status != self._status:
            record["status"] = codec.status_to_dict(snap.status)
            self._status = snap.status
        upserts: list[JSONDict] = []
        removals: list[int] = []
        if versions != self._versions or self._unnumbered:
            self._diff(flows, versions, record, upserts, removals)
            self._versions = versions
        record["upserts"] = upserts
        record["removals"] = removals
        record["alerts"] = [_alert(a) for a in snap.alerts]
        self.upserts = len(upserts)
        self._last = snap
        return record

    def _diff(
        self,
        flows: Sequence[EnrichedFlow],
        versions: list[Version],
        record: JSONDict,
        upserts: list[JSONDict],
        removals: list[int],
    ) -> None:
        """Fill the delta's flow and process fields, and move the tables to `flows`."""
        old = self._entries
        entries: dict[int, _Entry] = {}
        keys: dict[FlowKey, list[int]] = {}
        new_procs: list[JSONDict] = []
        released: list[int] = []
        appended: list[int] = []
        for ef, version in zip(flows, versions, strict=True):
            serial = version[0]
            if serial <= 0 or serial in entries:  # unnumbered, or a serial given twice
                serial = self._local_serial(ef.flow.key, keys, entries)
                version = (serial, 0, 0, 0)
                entry = old.get(serial)
                changed = entry is None or entry.ef != ef
                facts = changed
            else:
                entry = old.get(serial)
                changed = entry is None or entry.version != version
                facts = entry is None or entry.version[1] != version[1]
            if entry is None:
                appended.append(serial)
            if not changed:
                assert entry is not None  # noqa: S101  # changed is True without an entry
                entries[serial] = entry
                continue
            upsert: JSONDict = {"serial": serial, "rev": list(version[1:])}
            if facts:
                proc = self._proc_id(ef.flow.process, new_procs)
                if entry is not None and entry.proc is not None:
                    released.append(entry.proc)
                body = codec.flow_to_dict(ef)
                del body["schema"], body["type"], body["process"]
                remote = body.pop("remote")
                body["proc"] = proc
                upsert["flow"] = body
                new = _Entry(ef, version, body, proc)
                new.remote = upsert["remote"] = remote
            else:
                assert entry is not None  # noqa: S101  # facts is True without an entry
                new = _Entry(ef, version, entry.flow, entry.proc)
                new.remote = entry.remote
                if entry.version[2] != version[2]:
                    traffic = codec.traffic_to_dict(ef.flow)
                    upsert["traffic"] = traffic
                    new.flow = {**entry.flow, **traffic}
                if entry.version[3] != version[3]:
                    new.remote = upsert["remote"] = codec.remote_to_dict(ef.remote)
            entries[serial] = new
            upserts.append(upsert)
        for serial, entry in old.items():
            if serial not in entries:
                removals.append(serial)
                if entry.proc is not None:
                    released.append(entry.proc)
        gone = self._release(released)
        if new_procs:
            record["processes"] = new_procs
        if gone:
            record["gone"] = gone
        if list(entries) != [s for s in old if s in entries] + appended:
            record["order"] = list(entries)
        self._entries, self._keys = entries, keys
        self._unnumbered = bool(keys)

    def _local_serial(
        self, key: FlowKey, keys: dict[FlowKey, list[int]], entries: dict[int, _Entry]
    ) -> int:
        """A negative wire serial for a serial-0 flow: the one the same key had last
        snapshot (the n-th flow of a key takes the n-th serial), or a new one."""
        mine = keys.setdefault(key, [])
        before = self._keys.get(key, ())
        serial = before[len(mine)] if len(mine) < len(before) else 0
        if not serial or serial in entries:
            self._next_local -= 1
            serial = self._next_local
        mine.append(serial)
        return serial

    def _proc_id(self, process: ProcessRef | None, new: list[JSONDict]) -> int | None:
        """The id of `process` in the table, sending it (in `new`) if it is not there."""
        if process is None:
            return None
        pid = self._procs.get(process)
        if pid is None:
            self._next_proc += 1
            pid = self._procs[process] = self._next_proc
            self._proc_refs[pid] = process
            body = codec.process_to_dict(process)
            assert body is not None  # noqa: S101  # a process encodes to an object
            self._proc_records[pid] = {"id": pid, **body}
            new.append(self._proc_records[pid])
        self._refs[pid] = self._refs.get(pid, 0) + 1
        return pid

    def _release(self, released: list[int]) -> list[int]:
        """Drop one reference per id in `released`; the ids no flow refers to any more."""
        gone: list[int] = []
        refs = self._refs
        for pid in released:
            refs[pid] -= 1
            if not refs[pid]:
                del refs[pid]
                del self._proc_records[pid]
                del self._procs[self._proc_refs.pop(pid)]
                gone.append(pid)
        return sorted(gone)


class StreamDecoder:
    """Reads one stream back: `apply` each record, `snapshot()` for the state it leaves.

    A flow that did not change is the very object the decoder built before (and a quiet
    tick gives the very same `flows` tuple), so a reader's caches keep working. A `state` of
    the same named stream as the last one reuses the objects of flows whose serial and
    revisions it already holds (a resync costs what changed, not every flow). A schema-1
    `snapshot` record (an old recording) decodes to itself; a delta after it is out of step.
    Malformed records raise `CodecError` and change nothing; a delta that does not follow
    the last record raises `OutOfStepError`, and so does every delta after a malformed one, until
    the next `state`.
    """

    def __init__(self) -> None:
        self._flows: dict[int, EnrichedFlow] = {}
        self._procs: dict[int, ProcessRef] = {}
        self._tuple: tuple[EnrichedFlow, ...] | None = ()
        """`_flows` as the snapshot's tuple; None when it must be built again."""
        self._last: Snapshot | None = None
        """The last record's snapshot (its flows may be stale: see `_tuple`)."""
        self._seq: int | None = None
        """The seq a delta must name as `prev`; None when out of step."""
        self._stream: str | None = None
        """The `stream` of the last state (None: unnamed, nothing is reused across states)."""

    @property
    def synced(self) -> bool:
        """Whether the next delta can be applied (a state was read and nothing was lost)."""
        return self._seq is not None

    def restart(self) -> None:
        """A new stream starts (a reconnect): the next record must be a `state`. The flows
        held stay, so that state reuses their objects."""
        self._seq = None

    def decode(self, record: Any) -> Snapshot:
        """`apply` then `snapshot`."""
        self.apply(record)
        return self.snapshot()

    def snapshot(self) -> Snapshot:
        """The snapshot of the last record applied."""
        last = self._last
        if last is None:
            raise OutOfStepError("no state record yet")
        if self._tuple is None:
            self._tuple = tuple(self._flows.values())
        if last.flows is not self._tuple:
            last = self._last = replace(last, flows=self._tuple)
        return last

    @property
    def alerts(self) -> tuple[Alert, ...]:
        """The alerts of the last record applied."""
        return () if self._last is None else self._last.alerts

    def apply(self, record: Any) -> None:
        """Take one record (a parsed JSON object)."""
        if not isinstance(record, dict):
            raise CodecError(f"expected a JSON object, got {type(record).__name__}")
        schema, kind = record.get("schema"), record.get("type")
        if schema == codec.SCHEMA and kind == "snapshot":
            snap = codec.snapshot_from_dict(record)
            self._flows, self._procs, self._seq = {}, {}, None
            self._last, self._tuple = snap, snap.flows
            return
        if schema != STREAM_SCHEMA:
            raise CodecError(
                f"unsupported schema version {schema!r} (this netwatch reads {STREAM_SCHEMA})"
            )
        if kind == "state":
            self._state(record)
        elif kind == "delta":
            if self._seq is None or record.get("prev") != self._seq:
                held, self._seq = self._seq, None
                raise OutOfStepError(f"a delta that does not follow the record held ({held!r})")
            try:
                self._delta(record)
            except CodecError:
                self._seq = None  # a lost delta: only a state can set this right
                raise
        else:
            raise CodecError(f"unknown record type {kind!r}")

    def _state(self, d: JSONDict) -> None:
        status = codec.status_from_dict(codec.get_object(d, "status") or {})
        head = codec.tick_from_dict(d, status, _alerts(d))
        procs = _processes(d, {})
        stream = d.get("stream")
        if stream is not None and not isinstance(stream, str):
            raise CodecError("field 'stream' must be a string")
        same = stream is not None and stream == self._stream
        before: dict[int, EnrichedFlow] = self._flows if same else {}
        flows: dict[int, EnrichedFlow] = {}
        for item in codec.get_list(d, "flows"):
            serial, revs = _serial(item)
            if serial in flows:
                raise CodecError(f"serial {serial} given twice")
            held = before.get(serial)
            if held is not None and serial > 0 and held.version[1:] == revs:
                flows[serial] = held  # the contract: same serial and revisions, same values
                continue
            body = codec.get_object(item, "flow")
            if body is None:
                raise CodecError(f"serial {serial} comes without its flow")
            new = _whole(body, codec.get_object(item, "remote"), serial, revs, procs)
            flows[serial] = held if held is not None and held == new else new
        self._flows, self._procs, self._tuple = flows, procs, None
        self._last, self._seq, self._stream = head, head.seq, stream

    def _delta(self, d: JSONDict) -> None:
        last = self._last
        assert last is not None  # noqa: S101  # in step implies a state was read
        raw_status = codec.get_object(d, "status")
        status = last.status if raw_status is None else codec.status_from_dict(raw_status)
        head = codec.tick_from_dict(d, status, _alerts(d))
        procs = _processes(d, self._procs)
        flows = self._flows
        upserts, removals = codec.get_list(d, "upserts"), codec.get_list(d, "removals")
        order = codec.get_list(d, "order")
        if upserts or removals or order:
            flows = dict(flows)
            for item in upserts:
                serial, revs = _serial(item)
                flows[serial] = _upsert(item, serial, revs, flows.get(serial), procs)
            for serial in removals:
                if not isinstance(serial, int) or flows.pop(serial, None) is None:
                    raise CodecError(f"removal of a serial not held: {serial!r}")
            if order:
                try:
                    ordered = {s: flows[s] for s in order}
                except (KeyError, TypeError):
                    raise CodecError("an order naming a serial not held") from None
                if len(ordered) != len(flows):
                    raise CodecError("an order that does not name every flow once")
                flows = ordered
        for pid in codec.get_list(d, "gone"):
            if not isinstance(pid, int) or procs.pop(pid, None) is None:
                raise CodecError(f"a process id not held is gone: {pid!r}")
        if flows is not self._flows:
            self._flows, self._tuple = flows, None
        self._procs = procs
        self._last, self._seq = head, head.seq


def _alerts(d: JSONDict) -> tuple[Alert, ...]:
    return tuple(codec.alert_from_dict(a) for a in codec.get_list(d, "alerts"))


def _processes(d: JSONDict, known: dict[int, ProcessRef]) -> dict[int, ProcessRef]:
    """`known` plus the record's new processes (a copy when the record adds or frees any)."""
    items = codec.get_list(d, "processes")
    if not items and not codec.get_list(d, "gone"):
        return known
    procs = dict(known)
    for p in items:
        process = codec.process_from_dict(p)
        assert process is not None  # noqa: S101  # an object decodes to a process
        procs[codec.get_int(p, "id")] = process
    return procs


def _serial(item: Any) -> tuple[int, tuple[int, int, int]]:
    serial = codec.get_int(item, "serial")
    rev = codec.get_list(item, "rev")
    if len(rev) != 3 or not all(isinstance(r, int) and not isinstance(r, bool) for r in rev):
        raise CodecError("field 'rev' must be three whole numbers")
    return serial, (rev[0], rev[1], rev[2])


def _whole(
    body: JSONDict,
    remote: JSONDict | None,
    serial: int,
    revs: tuple[int, int, int],
    procs: dict[int, ProcessRef],
) -> EnrichedFlow:
    """A flow from its whole `flow` object (and `remote`)."""
    pid = codec.get_optional_int(body, "proc")
    process = None
    if pid is not None:
        process = procs.get(pid)
        if process is None:
            raise CodecError(f"a flow refers to a process id not held: {pid}")
    flow = codec.flow_of(
        body, process, serial=max(serial, 0), rev_facts=revs[0], rev_traffic=revs[1]
    )
    return EnrichedFlow(flow, codec.remote_from_dict(remote), rev_remote=revs[2])


def _upsert(
    item: Any,
    serial: int,
    revs: tuple[int, int, int],
    before: EnrichedFlow | None,
    procs: dict[int, ProcessRef],
) -> EnrichedFlow:
    """A delta's flow entry applied to the flow held for its serial (None: a new one)."""
    body = codec.get_object(item, "flow")
    if body is not None:
        remote = codec.get_object(item, "remote")
        if "remote" not in item and before is not None:
            return replace(_whole(body, None, serial, revs, procs), remote=before.remote)
        return _whole(body, remote, serial, revs, procs)
    if before is None:
        raise CodecError(f"a change to serial {serial}, which is not held")
    flow = before.flow
    if flow.rev_facts != revs[0]:
        raise CodecError(f"serial {serial}: its facts moved but its flow was not sent")
    traffic = codec.get_object(item, "traffic")
    if traffic is not None:
        flow = replace(flow, rev_traffic=revs[1], **codec.traffic_from_dict(traffic))
    elif flow.rev_traffic != revs[1]:
        flow = replace(flow, rev_traffic=revs[1])
    info = before.remote
    if "remote" in item:
        info = codec.remote_from_dict(codec.get_object(item, "remote"))
    return EnrichedFlow(flow, info, rev_remote=revs[2])
