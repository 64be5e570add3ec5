"""The /proc/net raw, ICMP and packet tables: parsed rows, and malformed text never raises.

Lines are built in the kernel's layouts (`raw_sock_seq_show`/`ping_v4_format_sock` print
the `tcp` layout with the protocol or echo id as local port; `packet_seq_show` prints
`sk RefCnt Type Proto Iface R Rmem User Inode`), then damaged by hypothesis: every row that
parses must also become a socket entry without raising.
"""

from __future__ import annotations

import ipaddress
import socket

from hypothesis import given
from hypothesis import strategies as st

from netwatch.model import SocketEntry, Transport
from netwatch.sources import procnet, sockets

HEAD = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid ..."
PACKET_HEAD = "sk               RefCnt Type Proto  Iface R Rmem   User   Inode"


def _line(local: str, remote: str, uid: str = "0", inode: str = "4242") -> str:
    return f"   1: {local} {remote} 07 00000000:00000000 00:00000000 00000000 {uid} 0 {inode} 2 0 0"


def test_raw_row_protocol_253_bound_and_connected() -> None:
    # 192.0.2.1 bound, protocol 0xFD, connected to 198.51.100.7 (words in host order).
    local = socket.inet_aton("192.0.2.1")[::-1].hex().upper() + ":00FD"
    remote = socket.inet_aton("198.51.100.7")[::-1].hex().upper() + ":0000"
    (row,) = procnet.parse_proc_net(f"{HEAD}\n{_line(local, remote)}\n", socket.AF_INET)
    assert (socket.inet_ntoa(row.src), row.lport, socket.inet_ntoa(row.dst)) == (
        "192.0.2.1",
        253,
        "198.51.100.7",
    )
    entry = _entries([row], Transport.RAW)[0]
    assert str(entry.key.local) == "192.0.2.1:253"
    assert entry.key.remote is not None and str(entry.key.remote.ip) == "198.51.100.7"


def test_out_of_range_fields_are_skipped_not_raised() -> None:
    text = "\n".join(
        [
            HEAD,
            _line("00000000:1FFFF", "00000000:0000"),  # port past 16 bits
            _line("00000000:0001", "00000000:0000", uid="-1"),
            _line("0000000000:0001", "00000000:0000"),  # 5-byte address
            _line("00000000000000000000000000000000:0001", "00000000:0000"),  # v6 in v4 table
            _line("00000000:0001", "00000000:0000", inode="9"),
        ]
    )
    rows = list(procnet.parse_proc_net(text, socket.AF_INET))
    assert [r.inode for r in rows] == [9]


def test_packet_rows_with_interface_and_damage() -> None:
    text = "\n".join(
        [
            PACKET_HEAD,
            "ffff8dd2c4f3e000 3      3    0003   2     1 0      0      71023",
            "ffff8dd2c4f3e800 3      3    0000   0     1 0      1000   71030",
            "ffff8dd2c4f3e800 3      3    0000   -4    1 0      1000   71031",
            "ffff8dd2c4f3e800 3      3    zz     0     1 0      1000   71032",
        ]
    )
    assert procnet.parse_packet_sockets(text) == [(3, 2, 0, 71023), (0, 0, 1000, 71030)]


def test_interface_names_of_packet_sockets() -> None:
    assert sockets.interface_name(0) is None
    assert sockets.interface_name(socket.if_nametoindex("lo")) == "lo"
    assert sockets.interface_name(2**31 - 1) == "#2147483647"
    assert sockets.interface_name(2**70) == f"#{2**70}"


def _entries(rows: list[procnet.ProcNetRow], transport: Transport) -> list[SocketEntry]:
    sampler = sockets.SocketSampler(backend="psutil")
    records = [procnet.as_record(r) for r in rows]
    out, _ = sampler._entries([(transport, records, None)], {}, True)
    return out


_hexword = st.text("0123456789ABCDEFabcdef-_ xyz", min_size=0, max_size=34)
_field = st.one_of(st.text(max_size=12), st.integers(-(2**70), 2**70).map(str), _hexword)


@given(
    st.lists(
        st.tuples(_hexword, _hexword, _hexword, _hexword, _field, _field, _field),
        max_size=6,
    ),
    st.sampled_from([socket.AF_INET, socket.AF_INET6]),
)
def test_damaged_raw_and_icmp_tables_never_raise(lines: list[tuple[str, ...]], family: int) -> None:
    text = (
        HEAD
        + "\n"
        + "\n".join(_line(f"{a}:{b}", f"{c}:{d}", u, i) + f" {s}" for a, b, c, d, u, i, s in lines)
    )
    rows = list(procnet.parse_proc_net(text, family))
    for transport in (Transport.RAW, Transport.ICMP):
        _entries(rows, transport)


@given(st.text(max_size=600))
def test_any_text_as_a_raw_table_never_raises(text: str) -> None:
    for family in (socket.AF_INET, socket.AF_INET6):
        _entries(list(procnet.parse_proc_net(text, family)), Transport.RAW)


@given(st.lists(st.lists(_field, min_size=0, max_size=11), max_size=8))
def test_damaged_packet_tables_never_raise(lines: list[list[str]]) -> None:
    text = PACKET_HEAD + "\n" + "\n".join(" ".join(parts) for parts in lines)
    rows = procnet.parse_packet_sockets(text)
    assert all(min(r) >= 0 for r in rows)
    sockets._packet_entries(rows[:3], {}, {})  # interface names looked up without raising


# A namespace's /proc/net/fib_trie as the kernel prints it (`fib_trie_seq_show`): a leaf
# line, then one line per route at that leaf; "/32 host LOCAL" marks an address it owns.
FIB_TRIE = """Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 172.17.0.0/16 2 0 2
        +-- 172.17.0.0/30 2 0 2
           |-- 172.17.0.0
              /16 link UNICAST
           |-- 172.17.0.2
              /32 host LOCAL
        |-- 172.17.255.255
           /32 link BROADCAST
Local:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
           |-- 127.0.0.1
              /32 host LOCAL
"""
IF_INET6 = """fd000000000000000000000000000002 04 40 00 82     eth0
fe8000000000000000fc00fffe000001 04 40 20 80     eth0
00000000000000000000000000000001 01 80 10 80       lo
zz not an address
"""


def test_a_namespace_s_own_addresses_from_its_tables() -> None:

    assert procnet.parse_fib_trie_local(FIB_TRIE) == {
        ipaddress.IPv4Address("127.0.0.1"),
        ipaddress.IPv4Address("172.17.0.2"),
    }
    assert procnet.parse_if_inet6(IF_INET6) == {
        ipaddress.IPv6Address("fd00::2"),
        ipaddress.IPv6Address("fe80::fc:ff:fe00:1"),
        ipaddress.IPv6Address("::1"),
    }


def test_this_namespace_s_addresses_include_loopback() -> None:
    """Read live from this machine's own tables (Linux): loopback is always there."""

    found = procnet.read_addresses("/proc/net")
    assert ipaddress.IPv4Address("127.0.0.1") in found
    assert procnet.read_addresses("/nonexistent") == frozenset()


@given(st.text(max_size=2000))
def test_any_text_as_address_tables_never_raises(text: str) -> None:
    procnet.parse_fib_trie_local(text)
    procnet.parse_if_inet6(text)


@given(
    st.lists(
        st.sampled_from(
            ["|-- 10.0.0.1", "|-- 999.1.1.1", "/32 host LOCAL", "+-- 10.0.0.0/8 2 0 2", "", "  "]
        ),
        max_size=30,
    )
)
def test_damaged_fib_tries_never_raise_and_name_only_leaves(lines: list[str]) -> None:

    found = procnet.parse_fib_trie_local("\n".join(lines))
    assert found <= {ipaddress.IPv4Address("10.0.0.1")}
