"""The cgroup hooks' records and ring buffer walk, on bytes laid out as the kernel writes them.

Record layout: `cgroup_bpf_records.RECORD` (what the program stores); ring layout: the
kernel's Documentation/bpf/ringbuf.rst (8-byte header: length with BUSY bit 31 and DISCARD
bit 30, then the page offset; records 8-byte aligned; the data area mapped twice).
"""

from __future__ import annotations

import ipaddress
import struct

from hypothesis import given
from hypothesis import strategies as st

from netwatch.sources import cgroup_bpf_records as r


def record(
    pid: int = 4242,
    tid: int = 4243,
    family: int = r.AF_INET,
    lport: int = 40000,
    rport_word: int = 0x5000_0000,  # port 80 in the word's last two bytes (shifted form)
    lip4: str = "192.0.2.1",
    rip4: str = "198.51.100.7",
    lip6: str = "::",
    rip6: str = "::",
    cookie: int = 99,
    comm: bytes = b"curl\0garbage",
) -> bytes:
    return r.RECORD.pack(
        (pid << 32) | tid,
        r.KIND_TCP_CONNECT,
        family,
        lport,
        rport_word,
        ipaddress.IPv4Address(lip4).packed,
        ipaddress.IPv4Address(rip4).packed,
        ipaddress.IPv6Address(lip6).packed,
        ipaddress.IPv6Address(rip6).packed,
        cookie,
        comm.ljust(16, b"\0")[:16],
    )


def test_ipv4_record_names_pid_tuple_cookie_and_comm() -> None:
    got = r.decode(record())
    assert got == r.ConnectRecord(
        4242, 4243, r.AF_INET, ("192.0.2.1", 40000), ("198.51.100.7", 80), 99, "curl"
    )


def test_remote_port_in_either_half_of_its_word() -> None:
    shifted = r.decode(record(rport_word=struct.unpack("<I", b"\0\0\x01\xbb")[0]))
    unshifted = r.decode(record(rport_word=struct.unpack("<I", b"\x01\xbb\0\0")[0]))
    assert shifted is not None and unshifted is not None
    assert shifted.remote[1] == unshifted.remote[1] == 443


def test_ipv6_and_v4_mapped_addresses() -> None:
    six = r.decode(record(family=r.AF_INET6, lip6="2001:db8::1", rip6="2001:db8::2"))
    assert six is not None and six.local == ("2001:db8::1", 40000)
    assert six.remote[0] == "2001:db8::2"
    mapped = r.decode(
        record(family=r.AF_INET6, lip6="::ffff:192.0.2.1", rip6="::ffff:198.51.100.7")
    )
    assert mapped is not None and (mapped.local[0], mapped.remote[0]) == (
        "192.0.2.1",
        "198.51.100.7",
    )


def test_what_is_not_a_connect_record_is_none() -> None:
    assert r.decode(record()[:-1]) is None
    assert r.decode(record(family=1)) is None
    other = bytearray(record())
    other[8] = 7  # another kind
    assert r.decode(bytes(other)) is None


def ring(entries: list[tuple[int, bytes]], size: int = 256) -> tuple[bytes, int]:
    """A twice-mapped data area holding `entries` (header flags, payload) from position 0."""
    area = bytearray(size)
    pos = 0
    for flags, payload in entries:
        chunk = struct.pack("<II", len(payload) | flags, 0) + payload
        chunk += b"\0" * (-len(chunk) % 8)
        for i, byte in enumerate(chunk):
            area[(pos + i) % size] = byte
        pos += len(chunk)
    return bytes(area) * 2, pos


def test_walk_skips_discarded_and_stops_at_busy() -> None:
    data, prod = ring([(0, b"abc"), (r.DISCARD, b"zzzz"), (0, b"12345678"), (r.BUSY, b"x")])
    items, pos = r.walk(data, 255, 0, prod, 100)
    assert items == [b"abc", b"12345678"]
    assert pos == 16 + 16 + 16  # the busy record is read next time
    assert r.walk(data, 255, 0, prod, 1) == ([b"abc"], 16)


def test_walk_reads_a_record_that_wraps_in_one_piece() -> None:
    size = 64
    area = bytearray(size)
    start = 56  # header at 56..63, payload wraps to 0..
    payload = bytes(range(1, 17))
    chunk = struct.pack("<II", len(payload), 0) + payload
    for i, byte in enumerate(chunk):
        area[(start + i) % size] = byte
    items, pos = r.walk(bytes(area) * 2, size - 1, start, start + len(chunk), 10)
    assert items == [payload]
    assert pos == start + 24


def test_a_header_running_past_the_producer_ends_the_walk() -> None:
    data, prod = ring([(0, b"abcdefgh")])
    items, pos = r.walk(data, 255, 0, prod - 8, 10)
    assert items == []
    assert pos == prod - 8


@given(st.binary(max_size=200))
def test_decode_never_raises(data: bytes) -> None:
    got = r.decode(data)
    assert got is None or 0 <= got.remote[1] <= 0xFFFF


@given(st.binary(min_size=8, max_size=128), st.integers(0, 200), st.integers(0, 400))
def test_walk_never_raises_and_never_goes_backwards(area: bytes, cons: int, extra: int) -> None:
    size = 1 << (len(area).bit_length() - 1)
    data = area[:size] * 2
    items, pos = r.walk(data, size - 1, cons, cons + extra, 50)
    assert cons <= pos <= cons + extra
    assert all(len(i) < (1 << 30) for i in items)


def test_the_program_is_whole_slots_ending_in_exit() -> None:
    code = r.tcp_connect_program(5, 6)
    assert len(code) % 8 == 0
    assert code[-8:] == bytes.fromhex("9500000000000000")
    assert code[-16:-8] == bytes.fromhex("b700000001000000")  # always returns 1


def test_udp_owner_values_and_program() -> None:
    value = r.OWNER.pack((77 << 32) | 78, b"dig\0\0junk".ljust(16, b"\0"))
    assert r.decode_owner(value) == (77, "dig")
    assert r.decode_owner(value[:-1]) is None
    code = r.udp_owner_program(9)
    assert len(code) % 8 == 0
    # returns 1 whatever happens: 0 would refuse the connect or the send
    assert code[-16:] == bytes.fromhex("b7000000010000009500000000000000")


@given(st.binary(max_size=40))
def test_decode_owner_never_raises(data: bytes) -> None:
    got = r.decode_owner(data)
    assert got is None or got[0] >= 0
