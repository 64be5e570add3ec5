"""The socket sampler: every inet socket on the machine with its owning process.

`SocketSampler.sample()` returns a `SocketTable`. Two backends fill it:

* `netlink` (Linux): sock_diag dumps of TCP (one walk for IPv4 and IPv6) and UDP, with
  tcp_info byte and segment counters, plus raw/ICMP/packet sockets from /proc/net; owners
  come from the cached inode -> process map in `sources.processes`. bench/sample.py
  measures a warm sample of 20,000 sockets at about a quarter of `psutil.net_connections()`
  (which has no counters) and of `ss -tanpi`, which is why Linux uses it.
* `psutil` (portable): `psutil.net_connections()`; no byte counters.

Entries are cached by the kernel's record of the socket, and matched in C, so an unchanged
socket costs no Python bytecode per sample; that is what keeps 1 Hz sampling cheap. Most of
what remains is the kernel's own work of walking its socket tables, which `refresh()`
avoids: it re-reads only the sockets capture saw packets on, one exact request each (sent
a chunk a write), and when they were only re-read in place it patches last sample's
entries rather than matching every record again, so its Python work follows the number of
sockets re-read, not the number on the machine.
"""

from __future__ import annotations

import contextlib
import gc
import ipaddress
import itertools
import operator
import socket
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import NamedTuple, cast

import psutil

from netwatch.clock import Clock, SystemClock
from netwatch.model import (
    ConnectionView,
    Container,
    Direction,
    Endpoint,
    FlowKey,
    IPAddress,
    ProcessRef,
    SocketEntry,
    SocketTable,
    SourceStatus,
    Transport,
)
from netwatch.sources import conntrack, netlink, procnet
from netwatch.sources.namespaces import Namespaces
from netwatch.sources.privileges import Privileges, missing_lines, probe
from netwatch.sources.processes import ProcessReader, PsutilReader, SocketOwners

BACKENDS = ("auto", "netlink", "psutil")

_DUMPS = (
    (socket.AF_INET, socket.IPPROTO_TCP, Transport.TCP),
    (socket.AF_INET6, socket.IPPROTO_TCP, Transport.TCP),
    (socket.AF_INET, socket.IPPROTO_UDP, Transport.UDP),
    (socket.AF_INET6, socket.IPPROTO_UDP, Transport.UDP),
)
_PROC_TABLES = (
    ("raw", socket.AF_INET, Transport.RAW),
    ("raw6", socket.AF_INET6, Transport.RAW),
    ("icmp", socket.AF_INET, Transport.ICMP),
    ("icmp6", socket.AF_INET6, Transport.ICMPV6),
)
_PROC_TRANSPORTS = frozenset(t for _, _, t in _PROC_TABLES)
_UDP_FILES: dict[int, str] = {socket.AF_INET: "udp", socket.AF_INET6: "udp6"}
_UNSPECIFIED = ipaddress.IPv4Address(0)

_INODE = operator.itemgetter(4)
_STATE = operator.itemgetter(1)
_IDENT = operator.itemgetter(2)
_KEY = operator.attrgetter("key")
_PROTOCOLS = {Transport.TCP: socket.IPPROTO_TCP, Transport.UDP: socket.IPPROTO_UDP}
Conversation = tuple[Transport, Endpoint, Endpoint]
"""(transport, local end, remote end) of a conversation capture saw packets on."""
_BULK = 1000
"""Entries made in one sample beyond which the cyclic garbage collector waits until they
are all made (see `_collector_paused`)."""
_NEW_LOOKUPS = 256
"""At most this many connections the last sample did not list are looked up per refresh
(each may take two requests); the rest wait for the next full sample."""
_ABSENT_FOR = 3.0
"""Seconds before a conversation whose socket was not found is looked up again."""
_NO_ENTRIES: dict[netlink.Record, SocketEntry] = {}
Batch = tuple[Transport, list[netlink.Record], Container | None]
"""The records of one transport, and the namespace they are from (None: this host's)."""
_NONES = itertools.repeat(None)
_STAMPS = itertools.count(1)
"""Stamps of the entries every sampler in this process makes (`SocketEntry.stamp`)."""


def new_stamp() -> int:
    """A stamp no entry of this process has had (`SocketEntry.stamp`): for entries made
    elsewhere, e.g. decoded from the privileged collector (`sources.remote`)."""
    return next(_STAMPS)


def _state(transport: Transport, state: int) -> str | None:
    if transport is Transport.TCP:
        return netlink.TCP_STATES.get(state, str(state))
    if transport is Transport.UDP:
        return "ESTABLISHED" if state == 1 else None
    return None


class SocketSampler:
    """Samples the socket table; one instance is kept for the life of the engine."""

    def __init__(
        self,
        *,
        backend: str = "auto",
        clock: Clock | None = None,
        proc_root: str = "/proc",
        reader: ProcessReader | None = None,
        namespaces: Namespaces | bool = True,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown socket backend {backend!r}")
        self._clock: Clock = clock or SystemClock()
        self._reader: ProcessReader = reader or PsutilReader()
        self._owners = SocketOwners(proc_root, self._reader)
        self._privs: Privileges = probe(proc_root)
        self._diag: netlink.DiagSocket | None = None
        self._udp_diag = True
        self._tcp_both = True
        self._fallback_reason: str | None = None
        self._seen: dict[tuple[Transport, Container | None], dict[netlink.Record, SocketEntry]]
        self._seen = {}
        """Last sample's entry for each kernel record, per transport and namespace."""
        self._namespaces: Namespaces | None = None
        """Other network namespaces (containers) whose sockets are listed too (Linux)."""
        self._nat: tuple[tuple[ConnectionView, ConnectionView], ...] = ()
        """The host's translated connections (conntrack), read while containers exist."""
        self._homes: tuple[tuple[int, tuple[IPAddress, ...]], ...] = ()
        """Each listed namespace's own addresses (`Namespaces.homes`)."""
        self._conntrack = conntrack.Conntrack()
        self._keys: dict[bytes, FlowKey] = {}
        """Socket ident -> key, so a socket whose counters moved keeps its key object."""
        self._owner_refs: Mapping[int, ProcessRef] = {}
        """Last sample's owners by inode, to find the inodes whose owner changed."""
        self._packet_seen: dict[procnet.PacketRow, SocketEntry] = {}
        """Last sample's packet-socket entries by their /proc row."""
        self._last: _Last | None = None
        """The last netlink sample's records and table, for `refresh`."""
        self._absent: dict[Conversation, float] = {}
        """Conversations `refresh` found no socket for, until when not to ask again."""
        self._owners_version = -1
        self._endpoints: dict[bytes, Endpoint] = {}
        self._hidden = 0
        self._patched_from: tuple[tuple[SocketEntry, ...], list[int], SocketTable] | None = None
        """(the table's entries a refresh patched, the positions it changed, its table)."""
        self.backend = "psutil"
        if backend != "psutil" and sys.platform.startswith("linux"):
            try:
                self._diag = netlink.DiagSocket()
                self.backend = "netlink"
                if namespaces:
                    self._namespaces = (
                        namespaces if isinstance(namespaces, Namespaces) else Namespaces(proc_root)
                    )
            except netlink.NetlinkUnavailableError as exc:
                if backend == "netlink":
                    raise
                self._fallback_reason = str(exc)
        elif backend == "netlink":
            raise netlink.NetlinkUnavailableError(0, "netlink needs Linux")

    @property
    def namespaces(self) -> Namespaces | None:
        """The other network namespaces listed with the host's sockets (None: not listed)."""
        return self._namespaces

    @property
    def owners(self) -> SocketOwners:
        """The inode -> process cache (its `scans` counter shows when /proc was read)."""
        return self._owners

    def sample(self) -> SocketTable:
        """Return every inet socket now, with owners and (netlink) TCP counters."""
        taken_at = self._clock.now()
        self._absent.clear()  # a full sample lists what there is
        self._patched_from = None
        if self._diag is not None:
            try:
                with _collector_paused(not self._seen):  # a first sample: every object new
                    entries = self._sample_netlink(self._diag)
            except netlink.NetlinkUnavailableError as exc:
                self._diag.close()
                self._diag = None
                self.backend = "psutil"
                self._fallback_reason = str(exc)
                entries = self._sample_psutil()
        else:
            entries = self._sample_psutil()
        return self._last_table(taken_at, entries)

    def _last_table(self, taken_at: float, entries: list[SocketEntry]) -> SocketTable:
        table = SocketTable(
            taken_at=taken_at, entries=tuple(entries), nat=self._nat, homes=self._homes
        )
        if self._last is not None:
            self._last.made = table
        return table

    def status(self) -> SourceStatus:
        """What this sampler can see; `missing` says what is hidden and why."""
        privs = self._privs
        missing = missing_lines(
            privs, hidden_sockets=self._hidden, counters=self.backend == "netlink"
        )
        return SourceStatus(
            mode="local",
            privileged=privs.sees_all_processes,
            capture=False,
            capture_reason=None if privs.can_capture else "packet capture needs CAP_NET_RAW",
            missing=tuple(missing),
        )

    def close(self) -> None:
        """Release the netlink socket."""
        if self._diag is not None:
            self._diag.close()
            self._diag = None
        if self._namespaces is not None:
            self._namespaces.close()

    # ------------------------------------------------------------ netlink

    def _sample_netlink(self, diag: netlink.DiagSocket) -> list[SocketEntry]:
        batches: list[Batch] = []
        dumps: Sequence[tuple[int, int, Transport]] = _DUMPS
        if self._tcp_both:
            try:
                batches.append((Transport.TCP, diag.dump_tcp(), None))
                dumps = _DUMPS[2:]
            except netlink.NetlinkUnavailableError:
                self._tcp_both = False  # no compat request here: one dump per family
        for family, proto, transport in dumps:
            if transport is Transport.UDP and not self._udp_diag:
                batches.append((transport, _proc_records(_UDP_FILES[family], family), None))
                continue
            try:
                batches.append((transport, diag.dump(family, proto), None))
            except netlink.NetlinkUnavailableError:
                if transport is not Transport.UDP:
                    raise
                self._udp_diag = False  # udp_diag not loaded: /proc/net/udp has the same rows
                batches.append((transport, _proc_records(_UDP_FILES[family], family), None))
        batches.extend(_proc_batches())
        if self._namespaces is not None:
            contained = self._namespaces.batches()
            batches.extend(contained)
            # Translations matter only for traffic from behind this host (containers).
            self._nat = self._conntrack.translations() if contained else ()
            homes = self._namespaces.homes()
            if homes != self._homes:
                self._homes = homes  # else the same object: the table's index stays valid
        return self._table_from(batches, procnet.read_packet_sockets())

    def _table_from(
        self,
        batches: list[Batch],
        packet_rows: list[procnet.PacketRow],
        owners: Mapping[int, ProcessRef] | None = None,
    ) -> list[SocketEntry]:
        """Entries for these kernel records, owners attached; kept for `refresh`.

        `owners`: the records' owners, when the caller already asked for them.
        """
        if owners is None:
            inodes: set[int] = set()
            for _, records, _ns in batches:
                inodes.update(map(_INODE, records))
            inodes.update(row.inode for row in packet_rows)
            owners = self._owners.owners(inodes)
        stable = self._owners.version == self._owners_version
        self._owners_version = self._owners.version
        entries, changed = self._entries(batches, owners, stable)
        # Last sample's packet sockets are gone too when none are left: `_hidden` and the
        # packet cache always describe the entries kept in `_last` (`_patch` counts on it).
        if changed or packet_rows or self._packet_seen:
            packets = _packet_entries(packet_rows, owners, self._packet_seen)
            self._packet_seen = dict(zip(packet_rows, packets, strict=True))
            entries.extend(packets)
            self._count_hidden(entries)
        made = _Last(batches, packet_rows, entries)
        if self._last is not None:
            made.keep_same_positions(self._last)
        self._last = made
        return entries

    # ------------------------------------------------------------ refresh

    def refresh(self, active: Iterable[Conversation]) -> SocketTable:
        """The last sample with the sockets of the `active` conversations read again.

        Between full samples the engine asks only about the conversations capture saw
        packets on. A TCP socket's counters and state change only with its packets, so one
        exact sock_diag request per such socket (about 7 us) replaces a walk of every socket
        on the machine. A conversation no socket of the last sample covers is looked up as
        a new socket (TCP or UDP: a VPN client's UDP socket is found with its first packets).
        Listening sockets, and sockets that sent nothing, wait for the next full `sample()`.
        Without netlink, or before the first sample, this is `sample()`.
        """
        last, diag = self._last, self._diag
        if last is None or diag is None:
            return self.sample()
        wanted = list(active)
        table = last.table(self._clock.now())
        self._patched_from = None
        if not wanted:
            return table
        taken_at = self._clock.now()
        try:
            read = self._reread(diag, last, table, wanted)
        except netlink.NetlinkUnavailableError:
            return self.sample()  # the next sample falls back as a full one would
        if read is None:  # nothing read again had changed
            return table
        # Raw, ping and packet sockets are read again too (five small /proc files): a flow
        # is paired with them as of the table's time (`flows.raw_pairing`), so a table
        # stamped now must not hold the last full sample's.
        fresh = iter(_proc_batches())  # the host's raw and ping tables, in the same order
        batches = [
            next(fresh) if b[2] is None and b[0] in _PROC_TRANSPORTS else b for b in read.batches
        ]
        entries, patch = self._rebuilt(last, batches, procnet.read_packet_sockets(), read)
        made = self._last
        if read.in_place and made is not None:  # every TCP record where it was
            made.keep_positions(last)
        if patch is None or made is None:
            return self._last_table(taken_at, entries)
        # Every socket where it was, with its key and owner: what the last table worked out
        # on first use carries over (`SocketTable.reread`: its lookup index, which a UDP
        # conversation asks for, and its owners' pids): the patched entries are in place.
        made.made = table.reread(taken_at, tuple(entries), self._nat, self._homes)
        self._patched_from = (table.entries, patch.positions, made.made)
        return made.made

    def patched(self, table: SocketTable) -> tuple[tuple[SocketEntry, ...], list[int]] | None:
        """For the table the last `refresh` patched in place (else None): the entries of the
        table it was patched from, and the positions (ascending) whose entry is new, every
        other being that table's very entry. `collector.TableDiff` finds the changed
        entries there, instead of comparing 20,000 pairs."""
        hint = self._patched_from
        return None if hint is None or hint[2] is not table else (hint[0], hint[1])

    def _rebuilt(
        self, last: _Last, batches: list[Batch], packet_rows: list[procnet.PacketRow], read: _Reread
    ) -> tuple[list[SocketEntry], _Patch | None]:
        """A refresh's entries from its records: patched in place when that applies (with
        the patch), else the full path's (and None)."""
        owners = None
        if read.in_place and self._patchable(last, batches, packet_rows, read.changed):
            owners = self._owners.owners_again()
            if self._owners.version == self._owners_version:
                patch = self._patch(last, batches, packet_rows, read.changed, owners)
                return patch.entries, patch
        return self._table_from(batches, packet_rows, owners), None

    def _reread(
        self, diag: netlink.DiagSocket, last: _Last, table: SocketTable, active: list[Conversation]
    ) -> _Reread | None:
        """Last sample's records with those of `active` re-read, dropped or added.

        Returns None when nothing read again had changed.
        """
        batches = list(last.batches)
        where = last.tcp_positions()
        copied: set[int] = set()
        changed: dict[tuple[int, int], netlink.Record] = {}
        places: dict[tuple[int, int], None] = {}  # records to re-read; named twice, read once
        gone: set[tuple[int, int]] = set()
        added: dict[Transport, list[netlink.Record]] = {}
        # A container's sockets are re-read with its namespace's next full sample; the
        # host's sock_diag socket cannot see them.
        tries = _NEW_LOOKUPS
        now, absent = self._clock.monotonic(), self._absent
        for conversation in active:
            transport, local, remote = conversation
            at = (
                where.get(FlowKey(transport, local, remote)) if transport is Transport.TCP else None
            )
            if at is None:
                # An unconnected UDP socket on the local end is this conversation's socket.
                listed = transport is Transport.UDP and table.lookup(transport, local, remote)
                if tries > 0 and not listed and absent.get(conversation, 0.0) <= now:
                    tries -= 1
                    found = diag.find(
                        _PROTOCOLS[transport],
                        (local.ip.packed, local.port),
                        (remote.ip.packed, remote.port),
                        counters=True,
                    )
                    if found is not None:
                        added.setdefault(transport, []).append(found)
                    else:  # another namespace's (a container's), or gone: not every tick
                        absent[conversation] = now + _ABSENT_FOR
                continue
            places[at] = None
        olds = [batches[b][1][i] for b, i in places]  # each socket once, in a few writes
        news = diag.reread_many([(old[0], old[2]) for old in olds])
        for at, old, new in zip(places, olds, news, strict=True):
            if new == old:
                continue
            b, i = at
            if b not in copied:
                copied.add(b)
                batches[b] = (Transport.TCP, list(batches[b][1]), None)
            if new is None:
                gone.add(at)
            else:
                batches[b][1][i] = changed[at] = new
        if not (copied or added):
            return None
        if not (gone or added):
            return _Reread(batches, changed, True)
        for b in {b for b, _ in gone}:
            kept = [r for i, r in enumerate(batches[b][1]) if (b, i) not in gone]
            batches[b] = (Transport.TCP, kept, batches[b][2])
        for transport, records in added.items():
            b = next(i for i, (t, _, ns) in enumerate(batches) if t is transport and ns is None)
            idents = set(map(_IDENT, batches[b][1]))
            fresh = [r for r in records if r[2] not in idents]
            batches[b] = (transport, [*batches[b][1], *fresh], None)
        return _Reread(batches, changed, False)

    def _patchable(
        self,
        last: _Last,
        batches: list[Batch],
        packet_rows: list[procnet.PacketRow],
        changed: Mapping[tuple[int, int], netlink.Record],
    ) -> bool:
        """Whether a refresh that re-read the `changed` records in place may be patched
        (`_patch`), owners aside: every other record is the one of `last` (no raw or packet
        socket came or went) and each re-read socket kept its inode (else its 4-tuple names
        a new socket, whose owner is looked up)."""
        before = last.batches
        if packet_rows != last.packet_rows or len(batches) != len(before):
            return False
        touched = {b for b, _ in changed}
        for b, (now, then) in enumerate(zip(batches, before, strict=True)):
            if b not in touched and now[1] is not then[1] and now[1] != then[1]:
                return False  # the raw and ping tables read again: small lists
        return all(new[4] == before[b][1][i][4] for (b, i), new in changed.items())

    def _patch(
        self,
        last: _Last,
        batches: list[Batch],
        packet_rows: list[procnet.PacketRow],
        changed: Mapping[tuple[int, int], netlink.Record],
        owners: Mapping[int, ProcessRef],
    ) -> _Patch:
        """`_table_from(batches, packet_rows)` for a patchable refresh (`_patchable`) whose
        owners did not change, made in time of the `changed` records ((batch, position) ->
        new record).

        At 20,000 sockets the full path walks every record a few times in Python (matching
        them with last sample's entries, rebuilding that cache, collecting and checking
        every inode for owners, counting hidden sockets): ~19 ms a refresh that re-read 200.
        Here its result is known: last sample's entries with the re-read ones made anew, in
        their places (the list copy is done in C), and the caches patched to match.
        """
        before, starts = last.batches, last.starts
        fresh = [
            (starts[b] + i, batches[b][0], new, batches[b][2]) for (b, i), new in changed.items()
        ]
        entries = list(last.entries)
        gone = [entries[at] for at, _, _, _ in fresh]
        self._build(cast(list[SocketEntry | None], entries), fresh, owners)
        for (b, i), new in changed.items():  # the record cache, as `_entries` would leave it
            transport, records, ns = before[b]
            seen = self._seen[(transport, ns)]
            del seen[records[i]]
            seen[new] = entries[starts[b] + i]
        made = [entries[at] for at, _, _, _ in fresh]
        self._hidden += sum(map(self._hides, made)) - sum(map(self._hides, gone))
        self._last = _Last(batches, packet_rows, entries)
        return _Patch(entries, sorted(at for at, _, _, _ in fresh))

    def _entries(
        self,
        batches: list[Batch],
        owners: Mapping[int, ProcessRef],
        stable: bool,
    ) -> tuple[list[SocketEntry], bool]:
        """Entries for this sample, reusing last sample's objects for unchanged sockets.

        An entry is reused when the kernel's record is byte-for-byte the same (state, uid,
        inode, counters) and so is its owner. The match runs in C (`map` over dict lookups
        keyed by the whole record), so a socket that did not change costs no Python bytecode:
        at 1 Hz most sockets of a busy machine are idle, and the per-socket Python loop this
        replaced was a third of the sample. A reused entry keeps its `stamp`, a new one gets
        a new stamp: that is how the stages after the sampler know an unchanged socket.
        Entries are the kernel's view: who initiated a socket is judged later, from the whole
        table (`flows.socket_flows`).
        """
        old_seen = self._seen
        moved = frozenset() if stable else self._owner_changes(owners)
        out: list[SocketEntry | None] = []
        fresh: list[tuple[int, Transport, netlink.Record, Container | None]] = []
        for transport, records, ns in batches:
            seen = old_seen.get((transport, ns), _NO_ENTRIES)
            got: list[SocketEntry | None] = list(map(seen.get, records))
            base = len(out)
            positions = range(len(records))
            misses = set(itertools.compress(positions, map(operator.is_, got, _NONES)))
            if moved:
                misses.update(
                    itertools.compress(positions, map(moved.__contains__, map(_INODE, records)))
                )
            fresh.extend((base + i, transport, records[i], ns) for i in sorted(misses))
            out.extend(got)
        if not fresh and len(out) == sum(map(len, old_seen.values())):
            return cast(list[SocketEntry], out), False  # the very same sockets: keep the cache
        with _collector_paused(len(fresh) >= _BULK):
            self._build(out, fresh, owners)
        entries = cast(list[SocketEntry], out)
        # The record cache, from the entries as they finally are.
        self._seen = {}
        base = 0
        for transport, records, ns in batches:
            self._seen.setdefault((transport, ns), {}).update(
                zip(records, entries[base : base + len(records)], strict=True)
            )
            base += len(records)
        return entries, True

    def _build(
        self,
        out: list[SocketEntry | None],
        fresh: list[tuple[int, Transport, netlink.Record, Container | None]],
        owners: Mapping[int, ProcessRef],
    ) -> None:
        """Make the entries of `fresh` records in `out`."""
        keys = self._keys
        if len(keys) > 2 * len(out) + 1024:
            keys.clear()  # forget closed sockets' keys now and then, not every sample
        for i, transport, r, ns in fresh:
            key = keys.get(r[2]) or self._key(transport, r)
            keys[r[2]] = key
            acked, received, segs_out, segs_in = netlink.decode_counters(r[5])
            proc = owners.get(r[4])
            entry = SocketEntry(
                key=key,
                state=_state(transport, r[1]),
                direction=Direction.UNKNOWN,
                process=proc,
                inode=r[4] or None,
                uid=r[3],
                bytes_sent=acked,
                bytes_received=received,
                segs_out=segs_out,
                segs_in=segs_in,
                container=ns,
                stamp=next(_STAMPS),
            )
            out[i] = entry

    def _owner_changes(self, owners: Mapping[int, ProcessRef]) -> frozenset[int]:
        """Inodes whose owner differs from last sample's, by value.

        The owner cache hands on an unchanged process's `ProcessRef`, so most owners are
        last sample's objects: `is` rules those out in C, and only the rest are compared.
        """
        before, self._owner_refs = self._owner_refs, owners
        inodes = list(owners)
        refs = list(map(owners.__getitem__, inodes))
        maybe = itertools.compress(inodes, map(operator.is_not, map(before.get, inodes), refs))
        changed = {i for i in maybe if before.get(i) != owners[i]}
        changed.update(before.keys() - owners.keys())  # set arithmetic in C
        return frozenset(changed)

    def _key(self, transport: Transport, record: netlink.Record) -> FlowKey:
        """The socket's key, from the kernel's `inet_diag_sockid` (sport, dport, src, dst)."""
        ident = record[2]
        width = 4 if record[0] == socket.AF_INET else 16
        local = self._endpoint(ident[0:2] + ident[4 : 4 + width])
        remote = None
        far = ident[2:4] + ident[20 : 20 + width]
        if far.count(0) != len(far):  # unconnected: port and address all zero
            remote = self._endpoint(far)
        return FlowKey(transport, local, remote)

    def _endpoint(self, port_and_address: bytes) -> Endpoint:
        """Endpoints are shared: the 10,000 clients of one server all name the same one.

        Keyed by the kernel's bytes (big-endian port, then the address): one bytes object
        hashes faster than a tuple, and the address object is made once per endpoint.
        """
        cached = self._endpoints.get(port_and_address)
        if cached is None:
            if len(self._endpoints) > 100_000:
                self._endpoints.clear()
            port = int.from_bytes(port_and_address[:2], "big")
            cached = Endpoint(ipaddress.ip_address(port_and_address[2:]), port)
            self._endpoints[port_and_address] = cached
        return cached

    def _count_hidden(self, entries: Iterable[SocketEntry]) -> None:
        self._hidden = sum(map(self._hides, entries))

    def _hides(self, e: SocketEntry) -> bool:
        """Whether `e` is another user's socket whose owner this process cannot see."""
        return (
            e.process is None and bool(e.inode) and e.uid is not None and e.uid != self._privs.euid
        )

    # ------------------------------------------------------------ psutil

    def _sample_psutil(self) -> list[SocketEntry]:
        try:
            conns = psutil.net_connections(kind="inet")
        except psutil.AccessDenied:
            conns = []  # macOS without root; the table stays empty rather than failing
        procs: dict[int, ProcessRef | None] = {}
        entries = []
        for c in conns:
            proc = None
            if c.pid:
                if c.pid not in procs:
                    procs[c.pid] = self._reader.read(c.pid)
                proc = procs[c.pid]
            transport = Transport.TCP if c.type == socket.SOCK_STREAM else Transport.UDP
            if not isinstance(c.laddr, tuple) or len(c.laddr) != 2:
                continue  # psutil gives () for a socket that has no address (yet)
            local = Endpoint(ipaddress.ip_address(c.laddr[0]), int(c.laddr[1]))
            remote = None
            if isinstance(c.raddr, tuple) and len(c.raddr) == 2:
                remote = Endpoint(ipaddress.ip_address(c.raddr[0]), int(c.raddr[1]))
            state = None if c.status == psutil.CONN_NONE else c.status
            if transport is Transport.UDP and remote is not None:
                state = "ESTABLISHED"
            entries.append(
                SocketEntry(
                    key=FlowKey(transport, local, remote),
                    state=state,
                    direction=Direction.UNKNOWN,
                    process=proc,
                )
            )
        self._hidden = sum(1 for e in entries if e.process is None)
        return entries


def _packet_entries(
    rows: list[procnet.PacketRow],
    owners: Mapping[int, ProcessRef],
    seen: Mapping[procnet.PacketRow, SocketEntry],
) -> list[SocketEntry]:
    """AF_PACKET sockets have no addresses: local is 0.0.0.0 with the ethertype as port, and
    `interface` names the interface a socket is bound to (None: every interface).

    A row whose entry in `seen` (last sample's) has an equal owner keeps that entry."""
    out = []
    for row in rows:
        proc = owners.get(row.inode)
        entry = seen.get(row)
        if entry is None or not (entry.process is proc or entry.process == proc):
            entry = SocketEntry(
                key=FlowKey(Transport.PACKET, Endpoint(_UNSPECIFIED, row.protocol), None),
                state=None,
                direction=Direction.UNKNOWN,
                process=proc,
                inode=row.inode or None,
                uid=row.uid,
                stamp=next(_STAMPS),
                interface=interface_name(row.ifindex),
            )
        out.append(entry)
    return out


def interface_name(ifindex: int) -> str | None:
    """The name of interface `ifindex` (None for 0, every interface); an index no interface
    has now (it went away) is named `#<index>`, which no packet's interface matches."""
    if ifindex == 0:
        return None
    try:
        return socket.if_indextoname(ifindex)
    except (OSError, OverflowError, ValueError):
        return f"#{ifindex}"


def _proc_batches() -> list[Batch]:
    """The host's raw and ping socket tables, as batches of a sample (after its TCP and UDP
    dumps, before other namespaces' batches)."""
    return [(t, _proc_records(name, family), None) for name, family, t in _PROC_TABLES]


def _proc_records(name: str, family: int) -> list[netlink.Record]:
    return [procnet.as_record(r) for r in procnet.read_proc_net(name, family)]


class _Reread(NamedTuple):
    """What `SocketSampler._reread` found."""

    batches: list[Batch]
    """Last sample's batches with the re-read records in them (the changed ones copied)."""
    changed: dict[tuple[int, int], netlink.Record]
    """(batch, position) -> its new record, for each record re-read in place."""
    in_place: bool
    """Whether records were only re-read in place: none gone, none added."""


class _Patch(NamedTuple):
    """A refresh's entries as `SocketSampler._patch` made them."""

    entries: list[SocketEntry]
    positions: list[int]
    """Where the entries made anew are, ascending; every other is last sample's."""


class _Last:
    """A netlink sample's records (by batch) and what was made of them, for `refresh`."""

    __slots__ = ("_positions", "batches", "entries", "made", "packet_rows", "starts")

    def __init__(
        self,
        batches: list[Batch],
        packet_rows: list[procnet.PacketRow],
        entries: list[SocketEntry],
    ) -> None:
        self.batches = batches
        self.packet_rows = packet_rows
        self.entries = entries
        """In the order of the batches' records (packet sockets after them)."""
        self.made: SocketTable | None = None
        self._positions: dict[FlowKey, tuple[int, int]] | None = None
        self.starts = list(itertools.accumulate((len(r) for _, r, _ns in batches), initial=0))
        """Where each batch's records start among all of them."""

    def table(self, now: float) -> SocketTable:
        """The table made from these records (made now if the sampler has not yet)."""
        if self.made is None:
            self.made = SocketTable(taken_at=now, entries=tuple(self.entries))
        return self.made

    def keep_positions(self, before: _Last) -> None:
        """Take `before`'s TCP position map: for a refresh that re-read records in place
        (none gone or added) it is this sample's too, and rebuilding it hashes every TCP
        socket's key in Python (~5 ms a refresh at 20,000 sockets)."""
        self._positions = before._positions

    def keep_same_positions(self, before: _Last) -> None:
        """Take `before`'s TCP position map if this sample's host TCP records are the same
        sockets in the same places (their idents, cookie included, equal one by one).

        So it is between two full samples of a machine whose connections all stayed (idle
        long-lived ones, as bench/daemon.py holds): the first refresh after each full sample
        then does not rebuild the map (~5 ms at 20,000 sockets). The comparison runs in C
        and stops at the first difference, and at once when a count differs."""
        known = before._positions
        if known is None:
            return
        mine, theirs = _host_tcp(self.batches), _host_tcp(before.batches)
        if [b for b, _ in mine] != [b for b, _ in theirs]:
            return
        for (_, now), (_, then) in zip(mine, theirs, strict=True):
            if len(now) != len(then):
                return
            if not all(map(operator.eq, map(_IDENT, now), map(_IDENT, then))):
                return
        self._positions = known

    def tcp_positions(self) -> dict[FlowKey, tuple[int, int]]:
        """TCP socket key -> (batch, position of its record), built once per sample in C."""
        if self._positions is None:
            positions: dict[FlowKey, tuple[int, int]] = {}
            at = 0
            for b, (transport, records, ns) in enumerate(self.batches):
                n = len(records)
                if transport is Transport.TCP and ns is None:  # the host's: `refresh` re-reads
                    keys = map(_KEY, self.entries[at : at + n])
                    positions.update(zip(keys, zip(itertools.repeat(b), range(n)), strict=True))
                at += n
            self._positions = positions
        return self._positions


def _host_tcp(batches: list[Batch]) -> list[tuple[int, list[netlink.Record]]]:
    """(batch number, records) of the host's TCP batches (those `refresh` re-reads)."""
    return [(b, r) for b, (t, r, ns) in enumerate(batches) if t is Transport.TCP and ns is None]


@contextlib.contextmanager
def _collector_paused(pause: bool) -> Iterator[None]:
    """Hold off the cyclic garbage collector while many long-lived objects are made.

    A first sample of 20,000 sockets makes ~100,000 objects that all survive; each 700
    allocations start a collection that walks the survivors again, generation after
    generation. bench/sample.py measured 30 ms of a 280 ms cold sample spent so. The objects
    form no cycles; collection resumes (if it was on) as soon as they exist.
    """
    if not pause or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
