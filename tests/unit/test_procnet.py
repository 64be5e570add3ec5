"""The /proc/net raw, ICMP and packet tables: parsed rows, and malformed text never raises.

Lines are built in the kernel's layouts (`raw_sock_seq_show`/`ping_v4_format_sock` print
the `tcp` layout with the protocol or echo id as local port; `packet_seq_show` prints
`sk RefCnt Type Proto Iface R Rmem User Inode`), then damaged by hypothesis: every row that
parses must also become a socket entry without raising.
"""

from __future__ import annotations

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
