"""Connection starts: the SYN parser, the one-socket sock_diag lookup, the fd-link search.

The live path (a connection shorter than a tick, named by its start) is tested in
tests/live/test_capture.py; these are its parts on recorded or local inputs.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6

from netwatch.model import Endpoint, FlowKey, ProcessRef, Transport
from netwatch.sources import netlink
from netwatch.sources.capture import compile_bpf
from netwatch.sources.connect_owners import (
    DNS_FILTER,
    DNS_PROGRAM,
    MECHANISM_EVENTS,
    SYN_FILTER,
    SYN_PROGRAM,
    ConnectionOwners,
    StartStats,
    outgoing_start,
    start_ids,
)
from netwatch.sources.decode import PacketDecoder
from netwatch.sources.processes import find_holders

ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD


def _decode(ethertype: int, data: bytes) -> FlowKey | None:
    return outgoing_start(PacketDecoder().decode_cooked(ethertype, data, 0.0, "lo"))


def test_an_ipv4_and_an_ipv6_syn_give_their_flow_key_this_host_first() -> None:
    syn4 = bytes(IP(src="192.0.2.1", dst="203.0.113.80") / TCP(sport=40000, dport=443, flags="S"))
    assert _decode(ETH_IPV4, syn4) == FlowKey(
        Transport.TCP,
        Endpoint(ipaddress.ip_address("192.0.2.1"), 40000),
        Endpoint(ipaddress.ip_address("203.0.113.80"), 443),
    )
    syn6 = bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(sport=5, dport=80, flags="S"))
    key = _decode(ETH_IPV6, syn6)
    assert key is not None and key.remote == Endpoint(ipaddress.ip_address("2001:db8::2"), 80)


def test_a_dns_query_is_a_start_of_its_own_udp_flow() -> None:
    query = bytes(IP(src="192.0.2.1", dst="198.51.100.53") / UDP(sport=41000, dport=53))
    assert _decode(ETH_IPV4, query) == FlowKey(
        Transport.UDP,
        Endpoint(ipaddress.ip_address("192.0.2.1"), 41000),
        Endpoint(ipaddress.ip_address("198.51.100.53"), 53),
    )


@pytest.mark.parametrize(
    "packet",
    [
        IP(src="192.0.2.1", dst="203.0.113.80") / TCP(sport=1, dport=2, flags="SA"),
        IP(src="192.0.2.1", dst="203.0.113.80") / TCP(sport=1, dport=2, flags="A"),
        IP(src="192.0.2.1", dst="203.0.113.80") / UDP(sport=1, dport=2),
        IP(src="192.0.2.1", dst="203.0.113.80") / UDP(sport=53, dport=40000),
    ],
    ids=["syn-ack", "ack", "udp", "dns-answer"],
)
def test_anything_but_a_bare_syn_or_a_dns_query_is_not_a_start(packet: object) -> None:
    assert _decode(ETH_IPV4, bytes(packet)) is None  # type: ignore[call-overload]


@given(st.sampled_from([ETH_IPV4, ETH_IPV6, 0x0806, 0]), st.binary(max_size=120))
def test_garbage_never_raises(ethertype: int, data: bytes) -> None:
    key = _decode(ethertype, data)
    assert key is None or key.transport in (Transport.TCP, Transport.UDP)


@pytest.mark.parametrize(
    ("program", "expression"), [(SYN_PROGRAM, SYN_FILTER), (DNS_PROGRAM, DNS_FILTER)]
)
def test_the_built_in_programs_are_what_libpcap_compiles_for_the_filters(
    program: bytes, expression: str
) -> None:
    # Two instructions first (outgoing only, else jump to the final "ret 0"), then libpcap's.
    compiled = compile_bpf(expression)
    assert program[16:] == compiled
    assert program[-8:] == struct.pack("HBBI", 0x06, 0, 0, 0)  # where the jump lands
    assert struct.unpack("HBBI", program[8:16])[2] == len(compiled) // 8 - 1


def test_lookup_request_is_an_inet_diag_req_v2_for_one_socket() -> None:
    req = netlink.build_lookup_request(
        socket.AF_INET6, socket.IPPROTO_TCP, (b"\x20" * 16, 40000), (b"\x30" * 16, 443), seq=7
    )
    length, kind, flags, seq, _ = struct.unpack_from("=IHHII", req)
    assert (length, kind, seq) == (len(req), netlink.SOCK_DIAG_BY_FAMILY, 7) and length == 72
    assert flags == netlink.NLM_F_REQUEST  # not a dump
    family, proto, _ext, _pad, states = struct.unpack_from("=BBBBI", req, 16)
    assert (family, proto, states) == (socket.AF_INET6, socket.IPPROTO_TCP, 0xFFFFFFFF)
    sport, dport = struct.unpack_from("!HH", req, 24)
    assert (sport, dport) == (40000, 443)
    assert req[28:44] == b"\x20" * 16 and req[44:60] == b"\x30" * 16
    assert req[64:72] == b"\xff" * 8  # INET_DIAG_NOCOOKIE


@pytest.fixture
def connection() -> Iterator[tuple[socket.socket, socket.socket]]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    cli = socket.create_connection(srv.getsockname())
    peer, _ = srv.accept()
    yield cli, srv
    for s in (cli, peer, srv):
        s.close()


def _inode(sock: socket.socket) -> int:
    return int(os.readlink(f"/proc/self/fd/{sock.fileno()}")[8:-1])


def test_lookup_finds_exactly_that_socket_and_nothing_else(
    connection: tuple[socket.socket, socket.socket],
) -> None:
    cli, srv = connection
    lo = socket.inet_aton("127.0.0.1")
    diag = netlink.DiagSocket()
    try:
        here, there = (lo, cli.getsockname()[1]), (lo, srv.getsockname()[1])
        rec = diag.lookup(socket.AF_INET, socket.IPPROTO_TCP, here, there)
        assert rec is not None and rec.inode == _inode(cli) and rec.uid == os.geteuid()
        assert diag.lookup(socket.AF_INET, socket.IPPROTO_TCP, here, (lo, 1)) is None
    finally:
        diag.close()


@pytest.mark.parametrize("connected", [True, False], ids=["connected", "sendto"])
def test_a_udp_start_finds_the_socket_that_sent_it(connected: bool) -> None:
    from netwatch.sources.connect_owners import _lookup

    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    if connected:
        client.connect(server.getsockname())
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # a bystander on the same host
    other.bind(("127.0.0.1", 0))
    lo = ipaddress.ip_address("127.0.0.1")
    key = FlowKey(
        Transport.UDP,
        Endpoint(lo, client.getsockname()[1]),
        Endpoint(lo, server.getsockname()[1]),
    )
    diag = netlink.DiagSocket()
    try:
        rec = _lookup(diag, key)
        assert rec is not None and rec.inode == _inode(client)
    finally:
        diag.close()
        for s in (server, client, other):
            s.close()


def test_find_holders_reads_the_given_pids_in_order_and_stops(
    connection: tuple[socket.socket, socket.socket],
) -> None:
    cli, _ = connection
    inode = _inode(cli)
    assert find_holders({inode}, [2**22 + 1, os.getpid()]) == {inode: os.getpid()}
    assert find_holders({inode}, [2**22 + 1]) == {}  # no such process: skipped
    assert find_holders(set(), [os.getpid()]) == {}


def test_kept_owners_expire_by_age_and_count() -> None:
    owners = ConnectionOwners(keep=10.0, max_kept=3)
    ref = ProcessRef(pid=1, create_time=0.0, name="init")
    keys = [
        FlowKey(Transport.TCP, Endpoint(ipaddress.ip_address("192.0.2.1"), p), None)
        for p in range(6)
    ]
    for i, key in enumerate(keys[:5]):
        owners._remember(key, ref, float(i))
    assert [owners.owner(k) is not None for k in keys[:5]] == [False, False, True, True, True]
    owners._remember(keys[5], ref, 100.0)  # everything older than 90 s goes
    assert [owners.owner(k) is not None for k in keys] == [False] * 5 + [True]


@pytest.mark.parametrize(
    ("ethertype", "packet"),
    [
        (
            ETH_IPV4,
            IP(src="192.0.2.1", dst="203.0.113.80") / TCP(sport=40000, dport=443, flags="S"),
        ),
        (
            ETH_IPV4,
            IP(src="192.0.2.1", dst="198.51.100.53", ihl=6, options=b"\x01\x01\x01\x00")
            / UDP(sport=5, dport=53),
        ),
        (ETH_IPV6, IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(sport=5, dport=80, flags="S")),
    ],
    ids=["syn4", "dns4-options", "syn6"],
)  # fmt: skip
def test_start_ids_name_the_same_flow_as_the_decoder(ethertype: int, packet: object) -> None:
    raw = bytes(packet)  # type: ignore[call-overload]
    key = _decode(ethertype, raw)
    ids = start_ids(raw)
    assert key is not None and key.remote is not None and ids is not None
    flow, klass = ids
    ip_len = 4 if ethertype == ETH_IPV4 else 16
    assert flow[1 : 1 + ip_len] == key.local.ip.packed
    assert flow[1 + ip_len : 1 + 2 * ip_len] == key.remote.ip.packed
    assert struct.unpack("!HH", flow[-4:]) == (key.local.port, key.remote.port)
    assert klass == flow[:1] + key.remote.ip.packed + struct.pack("!H", key.remote.port)


@given(st.binary(max_size=80))
def test_start_ids_never_raise_on_garbage(data: bytes) -> None:
    ids = start_ids(data)
    assert ids is None or len(ids[0]) in (13, 37)


def test_start_stats_cross_the_channel_whole_and_read_an_older_collectors_three() -> None:
    stats = StartStats(10, 6, 4, 1, 2, 1, MECHANISM_EVENTS)
    assert StartStats.from_wire(json.loads(json.dumps(stats.wire()))) == stats
    old = StartStats.from_wire([10, 6, 4])
    assert (old.seen, old.attributed, old.missed, old.missed_budget) == (10, 6, 4, 0)


def test_a_holder_gone_before_its_details_are_read_is_named_from_its_exec(
    tmp_path: Path,
) -> None:
    from netwatch.sources.proc_events import ProcessEvents, ProcEvent

    class Reader:  # stands in for psutil: what it read when the process was still there
        def read(self, pid: int) -> ProcessRef | None:
            return ProcessRef(pid=pid, create_time=1.0, name="shortlived")

    (tmp_path / "900").mkdir()
    (tmp_path / "900" / "stat").write_bytes(b"900 (shortlived) S " + b"1 " * 20)
    events = ProcessEvents(reader=Reader(), proc_root=str(tmp_path))
    events.note(ProcEvent("exec", 900), 0.0)
    events.note(ProcEvent("exit", 900), 0.1)
    (tmp_path / "900" / "stat").unlink()  # gone from /proc before the watcher asked
    (tmp_path / "900").rmdir()
    owners = ConnectionOwners(reader=Reader(), proc_root=str(tmp_path), events=events)
    ref = owners._process(900)
    assert ref is not None and ref.name == "shortlived"
    assert ConnectionOwners(reader=Reader(), proc_root=str(tmp_path))._process(900) is None
