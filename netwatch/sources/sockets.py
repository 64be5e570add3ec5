"""The socket sampler: every inet socket on the machine with its owning process.

`SocketSampler.sample()` returns a `SocketTable`. Two backends fill it:

* `netlink` (Linux): sock_diag dumps of TCP (one walk for IPv4 and IPv6) and UDP, with
  tcp_info byte and segment counters, plus raw/ICMP/packet sockets from /proc/net; owners
  come from the cached inode -> process map in `sources.processes`. bench/sample.py
  measures a warm sample of 20,000 sockets at about a quarter of `psutil.net_connections()`
  (which has no counters) and of `ss -tanpi`, which is why Linux uses it.
* `psutil` (portable): `psutil.net_connections()`; no byte counters.

Entries are cached by the kernel's socket identity, so an unchanged socket costs a dict
lookup per sample instead of new address objects; that is what keeps 1 Hz sampling cheap.
Most of what remains is the kernel's own work of walking its socket tables.
"""

from __future__ import annotations

import ipaddress
import operator
import socket
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

import psutil

from netwatch.clock import Clock, SystemClock
from netwatch.flows.attribution import assign_directions, infer_direction, listeners_from
from netwatch.model import (
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
from netwatch.sources import netlink, procnet
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
_UDP_FILES: dict[int, str] = {socket.AF_INET: "udp", socket.AF_INET6: "udp6"}
_ZERO4 = bytes(4)
_ZERO16 = bytes(16)
_UNSPECIFIED = ipaddress.IPv4Address(0)

_CacheValue = tuple[netlink.DiagRecord, Transport, ProcessRef | None, SocketEntry]
_Fresh = tuple[int, Transport, netlink.DiagRecord, ProcessRef | None, FlowKey, str | None]
_INODE = operator.itemgetter(4)
_LISTENISH = frozenset((10, 7))  # TCP_LISTEN; TCP_CLOSE is how the kernel shows unconnected UDP
_PLACEHOLDER = SocketEntry(
    key=FlowKey(Transport.OTHER, Endpoint(ipaddress.IPv4Address(0)), None),
    state=None,
    direction=Direction.UNKNOWN,
)


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
        self._cache: dict[bytes, _CacheValue] = {}
        self._owners_version = -1
        self._listeners: dict[tuple[Transport, int], frozenset[IPAddress]] = {}
        self._endpoints: dict[tuple[bytes, int], Endpoint] = {}
        self._hidden = 0
        self.backend = "psutil"
        if backend != "psutil" and sys.platform.startswith("linux"):
            try:
                self._diag = netlink.DiagSocket()
                self.backend = "netlink"
            except netlink.NetlinkUnavailableError as exc:
                if backend == "netlink":
                    raise
                self._fallback_reason = str(exc)
        elif backend == "netlink":
            raise netlink.NetlinkUnavailableError(0, "netlink needs Linux")

    @property
    def owners(self) -> SocketOwners:
        """The inode -> process cache (its `scans` counter shows when /proc was read)."""
        return self._owners

    def sample(self) -> SocketTable:
        """Return every inet socket now, with owners and (netlink) TCP counters."""
        taken_at = self._clock.now()
        if self._diag is not None:
            try:
                entries = self._sample_netlink(self._diag)
            except netlink.NetlinkUnavailableError as exc:
                self._diag.close()
                self._diag = None
                self.backend = "psutil"
                self._fallback_reason = str(exc)
                entries = self._sample_psutil()
        else:
            entries = self._sample_psutil()
        return SocketTable(taken_at=taken_at, entries=tuple(entries))

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

    # ------------------------------------------------------------ netlink

    def _sample_netlink(self, diag: netlink.DiagSocket) -> list[SocketEntry]:
        batches: list[tuple[Transport, list[netlink.DiagRecord]]] = []
        dumps: Sequence[tuple[int, int, Transport]] = _DUMPS
        if self._tcp_both:
            try:
                batches.append((Transport.TCP, diag.dump_tcp()))
                dumps = _DUMPS[2:]
            except netlink.NetlinkUnavailableError:
                self._tcp_both = False  # no compat request here: one dump per family
        for family, proto, transport in dumps:
            if transport is Transport.UDP and not self._udp_diag:
                batches.append((transport, _proc_records(_UDP_FILES[family], family)))
                continue
            try:
                batches.append((transport, diag.dump(family, proto)))
            except netlink.NetlinkUnavailableError:
                if transport is not Transport.UDP:
                    raise
                self._udp_diag = False  # udp_diag not loaded: /proc/net/udp has the same rows
                batches.append((transport, _proc_records(_UDP_FILES[family], family)))
        for name, family, transport in _PROC_TABLES:
            batches.append((transport, _proc_records(name, family)))
        packet_rows = procnet.read_packet_sockets()
        inodes: set[int] = set()
        for _, records in batches:
            inodes.update(map(_INODE, records))
        inodes.update(inode for _, _, inode in packet_rows)
        owners = self._owners.owners(inodes)
        stable = self._owners.version == self._owners_version
        self._owners_version = self._owners.version
        entries, changed = self._entries(batches, owners, stable)
        if changed or packet_rows:
            entries.extend(_packet_entries(packet_rows, owners))
            self._count_hidden(entries)
        return entries

    def _entries(
        self,
        batches: list[tuple[Transport, list[netlink.DiagRecord]]],
        owners: Mapping[int, ProcessRef],
        stable: bool,
    ) -> tuple[list[SocketEntry], bool]:
        """Entries for this sample, reusing last sample's objects for unchanged sockets.

        An entry is reused when the kernel's record is byte-for-byte the same and so is its
        owner (`stable`: the owner map did not change at all). New sockets are built once
        their direction is known, which needs the listening sockets of the whole sample;
        reused entries are re-classified only when the listeners changed. This loop runs
        once per socket per sample, which is why it is written so tersely.
        """
        old: dict[bytes, _CacheValue] = self._cache
        new: dict[bytes, _CacheValue] = {}
        out: list[SocketEntry] = []
        fresh: list[_Fresh] = []
        listening: list[tuple[FlowKey, str | None]] = []
        append = out.append
        for transport, records in batches:
            for r in records:
                ident = r[2]
                hit = old.get(ident)
                if (
                    hit is not None
                    and hit[0] == r
                    and hit[1] is transport
                    and (stable or hit[2] is owners.get(r[4]))
                ):
                    new[ident] = hit
                    entry = hit[3]
                    if r[1] in _LISTENISH:
                        listening.append((entry.key, entry.state))
                    append(entry)
                    continue
                prev = hit[3] if hit is not None and hit[1] is transport else None
                key = prev.key if prev is not None else self._key(transport, r)
                state = _state(transport, r[1])
                if r[1] in _LISTENISH:
                    listening.append((key, state))
                fresh.append((len(out), transport, r, owners.get(r[4]), key, state))
                append(_PLACEHOLDER)
        self._cache = new
        if not fresh and len(new) == len(old):
            return out, False
        listeners = listeners_from(listening)
        if listeners != self._listeners:
            self._listeners = listeners
            # A listener opened or closed: reused entries may change direction (rare).
            in_order = (r for _, batch in batches for r in batch)
            for i, (e, r) in enumerate(zip(out, in_order, strict=True)):
                if e is _PLACEHOLDER:
                    continue
                d = infer_direction(e.key, e.state, listeners)
                if d is not e.direction:
                    out[i] = e = replace(e, direction=d)
                    v = new[r[2]]
                    new[r[2]] = (v[0], v[1], v[2], e)
        for i, transport, r, proc, key, state in fresh:
            acked, received, segs_out, segs_in = netlink.decode_counters(r[5])
            entry = SocketEntry(
                key=key,
                state=state,
                direction=infer_direction(key, state, listeners),
                process=proc,
                inode=r[4] or None,
                uid=r[3],
                bytes_sent=acked,
                bytes_received=received,
                segs_out=segs_out,
                segs_in=segs_in,
            )
            out[i] = entry
            new[r[2]] = (r, transport, proc, entry)
        return out, True

    def _key(self, transport: Transport, r: netlink.DiagRecord) -> FlowKey:
        local = self._endpoint(r.src, r.sport)
        dst, dport = r.dst, r.dport
        remote = None
        if dport or (dst != _ZERO4 and dst != _ZERO16):
            remote = self._endpoint(dst, dport)
        return FlowKey(transport, local, remote)

    def _endpoint(self, raw: bytes, port: int) -> Endpoint:
        """Endpoints are shared: the 10,000 clients of one server all name the same one."""
        cached = self._endpoints.get((raw, port))
        if cached is None:
            if len(self._endpoints) > 100_000:
                self._endpoints.clear()
            cached = Endpoint(ipaddress.ip_address(raw), port)
            self._endpoints[(raw, port)] = cached
        return cached

    def _count_hidden(self, entries: Iterable[SocketEntry]) -> None:
        me = self._privs.euid
        self._hidden = sum(
            1
            for e in entries
            if e.process is None and e.inode and e.uid is not None and e.uid != me
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
        return assign_directions(entries)


def _packet_entries(
    rows: list[tuple[int, int, int]], owners: Mapping[int, ProcessRef]
) -> list[SocketEntry]:
    """AF_PACKET sockets have no addresses: local is 0.0.0.0 with the ethertype as port."""
    return [
        SocketEntry(
            key=FlowKey(Transport.PACKET, Endpoint(_UNSPECIFIED, proto), None),
            state=None,
            direction=Direction.UNKNOWN,
            process=owners.get(inode),
            inode=inode or None,
            uid=uid,
        )
        for proto, uid, inode in rows
    ]


def _proc_records(name: str, family: int) -> list[netlink.DiagRecord]:
    return [_row_record(r) for r in procnet.read_proc_net(name, family)]


def _row_record(row: procnet.ProcNetRow) -> netlink.DiagRecord:
    """A /proc/net row in the shape of a diag record (no counters; the inode as cookie)."""
    ident = netlink.make_ident(row.lport, row.rport, row.src, row.dst, row.inode)
    return netlink.DiagRecord(row.family, row.state, ident, row.uid, row.inode, b"")
