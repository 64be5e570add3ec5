"""sock_diag and /proc/net parsing: crafted kernel messages, and fuzzing (never raises)."""

from __future__ import annotations

import contextlib
import socket
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netwatch.sources import netlink, procnet

NLHDR = struct.Struct("=IHHII")


def diag_msg(
    family: int = socket.AF_INET,
    state: int = 1,
    sport: int = 40000,
    dport: int = 443,
    src: bytes = bytes([127, 0, 0, 1]),
    dst: bytes = bytes([127, 0, 0, 2]),
    uid: int = 1000,
    inode: int = 4242,
    tcp_info: bytes | None = None,
) -> bytes:
    sockid = struct.pack("!HH", sport, dport) + src.ljust(16, b"\0") + dst.ljust(16, b"\0")
    sockid += struct.pack("=III", 0, 7, 0)
    body = (
        struct.pack("=BBBB", family, state, 0, 0)
        + sockid
        + struct.pack("=IIIII", 0, 0, 0, uid, inode)
    )
    if tcp_info is not None:
        rta_len = 4 + len(tcp_info)
        body += struct.pack("=HH", rta_len, netlink.INET_DIAG_INFO) + tcp_info
        body += b"\0" * ((4 - rta_len % 4) % 4)
    return NLHDR.pack(16 + len(body), netlink.SOCK_DIAG_BY_FAMILY, 2, 1, 0) + body


def tcp_info(acked: int, received: int, segs_out: int, segs_in: int, size: int = 232) -> bytes:
    info = bytearray(max(size, 144))
    struct.pack_into("=QQII", info, netlink.TCPI_BYTES_ACKED, acked, received, segs_out, segs_in)
    return bytes(info[:size])


def done() -> bytes:
    return NLHDR.pack(20, netlink.NLMSG_DONE, 2, 1, 0) + b"\0\0\0\0"


def named(buf: bytes) -> list[netlink.DiagRecord]:
    """Parse `buf` and give each record its field names (the parser hands out tuples)."""
    out: list[netlink.Record] = []
    netlink.parse_messages(buf, out)
    return [netlink.DiagRecord._make(r) for r in out]


def test_parses_endpoints_uid_inode_and_counters() -> None:
    out: list[netlink.Record] = []
    buf = diag_msg(tcp_info=tcp_info(5001, 77, 9, 8)) + done()
    assert netlink.parse_messages(buf, out) is True
    (r,) = map(netlink.DiagRecord._make, out)
    assert (r.family, r.state, r.sport, r.dport) == (socket.AF_INET, 1, 40000, 443)
    assert r.src == bytes([127, 0, 0, 1]) and r.dst == bytes([127, 0, 0, 2])
    assert (r.uid, r.inode) == (1000, 4242)
    assert netlink.decode_counters(r.counters) == (5001, 77, 9, 8)


def test_ipv6_addresses_are_16_bytes() -> None:
    src = socket.inet_pton(socket.AF_INET6, "2001:db8::1")
    out = named(diag_msg(family=socket.AF_INET6, src=src, dst=bytes(16)))
    assert out[0].src == src and out[0].dst == bytes(16)
    assert out[0].counters == b""


def test_short_tcp_info_of_old_kernels_gives_only_what_is_there() -> None:
    out = named(diag_msg(tcp_info=tcp_info(10, 20, 3, 4, size=136)))
    assert netlink.decode_counters(out[0].counters) == (10, 20, None, None)
    out = named(diag_msg(tcp_info=tcp_info(10, 20, 3, 4, size=104)))
    assert netlink.decode_counters(out[0].counters) == (None, None, None, None)


def test_several_messages_in_one_buffer_and_done_ends_the_dump() -> None:
    out: list[netlink.Record] = []
    buf = diag_msg(inode=1) + diag_msg(inode=2) + done() + diag_msg(inode=3)
    assert netlink.parse_messages(buf, out) is True
    assert [netlink.DiagRecord._make(r).inode for r in out] == [1, 2]


def test_ident_differs_when_endpoints_differ_and_is_stable_otherwise() -> None:
    out = named(diag_msg(sport=1) + diag_msg(sport=1, state=8) + diag_msg(sport=2))
    assert out[0].ident == out[1].ident
    assert out[0].ident != out[2].ident


def test_error_reply_raises_unavailable_with_errno() -> None:
    err = NLHDR.pack(36, netlink.NLMSG_ERROR, 0, 1, 0) + struct.pack("=i", -2) + bytes(16)
    with pytest.raises(netlink.NetlinkUnavailableError) as info:
        netlink.parse_messages(err, [])
    assert info.value.errno == 2


def test_request_asks_tcp_info_only_for_tcp() -> None:
    tcp = netlink.build_request(socket.AF_INET6, socket.IPPROTO_TCP)
    udp = netlink.build_request(socket.AF_INET, socket.IPPROTO_UDP)
    length, kind, flags, _, _ = NLHDR.unpack_from(tcp)
    assert (length, kind) == (len(tcp), netlink.SOCK_DIAG_BY_FAMILY) and length == 72
    assert flags == netlink.NLM_F_REQUEST | netlink.NLM_F_DUMP
    assert tcp[16:19] == bytes([socket.AF_INET6, socket.IPPROTO_TCP, 2])
    assert udp[16:19] == bytes([socket.AF_INET, socket.IPPROTO_UDP, 0])


@given(st.binary(max_size=600))
def test_garbage_never_raises_anything_but_unavailable(data: bytes) -> None:
    out: list[netlink.Record] = []
    with contextlib.suppress(netlink.NetlinkUnavailableError):
        netlink.parse_messages(data, out)
    for r in out:
        netlink.decode_counters(netlink.DiagRecord._make(r).counters)


@given(st.binary(max_size=400), st.integers(0, 400))
def test_truncated_and_corrupted_real_messages_never_crash(noise: bytes, cut: int) -> None:
    buf = bytearray(diag_msg(tcp_info=tcp_info(1, 2, 3, 4)) + diag_msg(inode=9))
    buf[cut % len(buf) : cut % len(buf) + len(noise)] = noise
    out: list[netlink.Record] = []
    with contextlib.suppress(netlink.NetlinkUnavailableError):
        netlink.parse_messages(bytes(buf[: len(buf) - cut // 3]), out)


HEAD = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid ..."
PROC_RAW = (
    f"{HEAD}\n"
    "   1: 00000000:0001 00000000:0000 07 00000000:00000000 00:00000000 00000000     0"
    "        0 9871 2 0000000000000000 0\n"
)
PROC_RAW6 = (
    f"{HEAD}\n"
    "   0: 00000000000000000000000001000000:003A 00000000000000000000000000000000:0000 07"
    " 00000000:00000000 00:00000000 00000000  1000        0 555 2 0000000000000000 0\n"
)


def test_proc_net_rows_decode_addresses_in_host_order() -> None:
    (row,) = procnet.parse_proc_net(PROC_RAW, socket.AF_INET)
    assert (row.src, row.lport, row.state, row.uid, row.inode) == (bytes(4), 1, 7, 0, 9871)
    tcp = "hdr\n   0: 0100007F:1F90 0200007F:0050 01 0:0 00:0 0 1000 0 77 1\n"
    (row,) = procnet.parse_proc_net(tcp, socket.AF_INET)
    assert socket.inet_ntop(socket.AF_INET, row.src) == "127.0.0.1"
    assert socket.inet_ntop(socket.AF_INET, row.dst) == "127.0.0.2"
    assert (row.lport, row.rport) == (8080, 80)


def test_proc_net_ipv6_rows() -> None:
    (row,) = procnet.parse_proc_net(PROC_RAW6, socket.AF_INET6)
    assert socket.inet_ntop(socket.AF_INET6, row.src) == "::1"
    assert (row.lport, row.uid, row.inode) == (58, 1000, 555)


@given(st.text(max_size=500))
def test_proc_net_garbage_never_raises(text: str) -> None:
    list(procnet.parse_proc_net(text, socket.AF_INET))
    list(procnet.parse_proc_net(text, socket.AF_INET6))


def _parse(buf: bytes, uniform: bool) -> tuple[list[netlink.DiagRecord], bool | str]:
    out: list[netlink.Record] = []
    try:
        done: bool | str = netlink.parse_messages(buf, out, uniform=uniform)
    except netlink.NetlinkUnavailableError as exc:
        done = f"error {exc.errno}"
    return [netlink.DiagRecord._make(r) for r in out], done


def test_uniform_runs_parse_like_the_loop_and_stop_at_a_different_message() -> None:
    conns = [
        diag_msg(sport=1000 + i, inode=i, tcp_info=tcp_info(i, 2 * i, 3, 4)) for i in range(40)
    ]
    time_wait = diag_msg(sport=9, state=6, inode=0)  # no tcp_info: shorter
    buf = b"".join(conns[:25]) + time_wait + b"".join(conns[25:]) + done()
    fast, fast_done = _parse(buf, uniform=True)
    slow, slow_done = _parse(buf, uniform=False)
    assert fast == slow and fast_done is slow_done is True
    assert len(fast) == 41 and fast[25].state == 6 and fast[25].counters == b""
    assert [netlink.decode_counters(r.counters)[0] for r in fast[:25]] == list(range(25))
    assert fast[40].sport == 1039 and fast[40].inode == 39


def test_runs_of_time_wait_sockets_parse_like_the_loop() -> None:
    tw = [diag_msg(sport=2000 + i, state=6, inode=0) for i in range(30)]
    est = [diag_msg(sport=3000 + i, inode=i, tcp_info=tcp_info(i, i, 1, 1)) for i in range(20)]
    buf = b"".join(tw[:10] + est[:5] + tw[10:] + est[5:]) + done()
    fast, slow = _parse(buf, uniform=True), _parse(buf, uniform=False)
    assert fast == slow and len(fast[0]) == 50
    assert [r.sport for r in fast[0][:12]] == [*range(2000, 2010), 3000, 3001]


@given(st.binary(min_size=1, max_size=64), st.integers(0, 20_000), st.integers(8, 30))
def test_uniform_path_equals_the_loop_on_corrupted_runs(noise: bytes, at: int, n: int) -> None:
    buf = bytearray(b"".join(diag_msg(inode=i, tcp_info=tcp_info(i, i, i, i)) for i in range(n)))
    at %= len(buf)
    buf[at : at + len(noise)] = noise
    assert _parse(bytes(buf), True) == _parse(bytes(buf), False)


def test_packet_sockets_from_proc(tmp_path: Path) -> None:
    (tmp_path / "packet").write_text(
        "sk               RefCnt Type Proto  Iface R Rmem   User   Inode\n"
        "ffff8dd2c4f3e000 3      3    0003   2     1 0      0      71023\n"
        "ffff8dd2c4f3e800 3      2    0800   0     1 0      1000   71030\n"
        "garbage line\n"
    )
    rows = procnet.read_packet_sockets(str(tmp_path))
    assert rows == [(3, 2, 0, 71023), (0x0800, 0, 1000, 71030)]
    assert (rows[0].protocol, rows[0].ifindex, rows[1].uid) == (3, 2, 1000)
    assert procnet.read_packet_sockets(str(tmp_path / "missing")) == []


def test_tcp_request_is_the_compat_dump_for_both_families() -> None:
    req = netlink.build_tcp_request(seq=7)
    length, kind, flags, seq, _ = NLHDR.unpack_from(req)
    assert (length, kind, seq) == (len(req), netlink.TCPDIAG_GETSOCK, 7) and length == 76
    assert flags == netlink.NLM_F_REQUEST | netlink.NLM_F_DUMP
    assert req[16:20] == bytes([socket.AF_UNSPEC, 0, 0, 2])  # family, src/dst len, ext=INFO
    assert struct.unpack_from("=I", req, 16 + 52)[0] == 0xFFFFFFFF  # every state


def test_compat_replies_parse_like_sock_diag_ones() -> None:
    msgs = [diag_msg(inode=i, tcp_info=tcp_info(i, i, 1, 1)) for i in range(12)]
    compat = [m[:4] + struct.pack("=H", netlink.TCPDIAG_GETSOCK) + m[6:] for m in msgs]
    fast, _ = _parse(b"".join(compat) + done(), uniform=True)
    assert fast == _parse(b"".join(msgs) + done(), uniform=True)[0]
    assert [r.inode for r in fast] == list(range(12))


def test_error_replies_can_be_collected_while_the_records_around_them_are_parsed() -> None:
    """The replies to many one-socket requests: a socket gone is an error among records."""
    err = NLHDR.pack(36, netlink.NLMSG_ERROR, 0, 1, 0) + struct.pack("=i", -2) + bytes(16)
    info = tcp_info(1, 2, 3, 4)
    buf = diag_msg(inode=1, tcp_info=info) + err + diag_msg(inode=2, tcp_info=info) + err
    out: list[netlink.Record] = []
    errors: list[int] = []
    assert netlink.parse_messages(buf, out, errors=errors) is False
    assert [r[4] for r in out] == [1, 2] and errors == [2, 2]
