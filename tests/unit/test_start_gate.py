"""The start watcher's gate: repeats, fair shares per conversation class (recorded inputs)."""

from __future__ import annotations

import ipaddress
import struct

from scapy.layers.inet import IP, TCP, UDP

from netwatch.sources.connect_owners import start_ids
from netwatch.sources.start_gate import StartGate, Verdict


def _ids(packet: object) -> tuple[bytes, bytes]:
    ids = start_ids(bytes(packet))  # type: ignore[call-overload]
    assert ids is not None
    return ids


_DNS = {dst: bytes(IP(src="192.0.2.1", dst=dst) / UDP(dport=53)) for dst in ("198.51.100.53",
        "198.51.100.54")}  # fmt: skip


def _dns(sport: int, dst: str = "198.51.100.53") -> tuple[bytes, bytes]:
    raw = _DNS[dst]  # the source port patched in: 16,000 packets built by scapy take seconds
    return _ids(raw[:20] + struct.pack("!H", sport) + raw[22:])


def _syn(sport: int, dst: str = "203.0.113.80", dport: int = 443) -> tuple[bytes, bytes]:
    return _ids(IP(src="192.0.2.1", dst=dst) / TCP(sport=sport, dport=dport, flags="S"))


def test_a_flood_from_one_class_cannot_starve_another_class() -> None:
    # The flood: 16,000 DNS queries, each from a new socket, within one second, while
    # another program makes 20 connections; recorded as they would interleave.
    gate = StartGate()
    verdicts: dict[str, list[Verdict]] = {"flood": [], "other": []}
    other = iter(range(20))
    for n in range(16_000):
        now = n / 16_000
        verdicts["flood"].append(gate.admit(*_dns(1024 + n % 60_000), now))
        if n % 800 == 0:
            port = 40_000 + next(other)
            verdicts["other"].append(gate.admit(*_syn(port), now))
    assert verdicts["other"] == [Verdict.NEW] * 20
    admitted = verdicts["flood"].count(Verdict.NEW)
    assert admitted <= gate.burst + gate.rate * 1.0 + 1  # its own share, no more
    assert verdicts["flood"].count(Verdict.REFUSED) == 16_000 - admitted == gate.refused


def test_repeats_of_one_flow_are_not_new_starts_and_spend_no_tokens() -> None:
    gate = StartGate(burst=2, rate=0.0)
    same = _dns(5353)
    assert gate.admit(*same, 0.0) is Verdict.NEW
    assert [gate.admit(*same, 0.1 * i) for i in range(1, 50)] == [Verdict.REPEAT] * 49
    assert gate.admit(*_dns(5354), 5.0) is Verdict.NEW  # the bucket still had its second token
    assert gate.repeats == 49 and gate.refused == 0


def test_a_flow_started_again_after_the_window_is_a_new_start() -> None:
    gate = StartGate(repeat_window=5.0)
    flow = _syn(40_000)
    assert gate.admit(*flow, 0.0) is Verdict.NEW
    assert gate.admit(*flow, 4.9) is Verdict.REPEAT
    assert gate.admit(*flow, 10.0) is Verdict.NEW  # port reuse, much later


def test_sixty_connections_in_a_row_to_one_server_fit_the_burst() -> None:
    gate = StartGate()
    assert {gate.admit(*_syn(41_000 + i), i * 0.01) for i in range(60)} == {Verdict.NEW}


def test_a_refused_class_gets_tokens_back_with_time() -> None:
    gate = StartGate(burst=3, rate=2.0)
    assert [gate.admit(*_dns(p), 0.0) for p in range(1000, 1005)] == (
        [Verdict.NEW] * 3 + [Verdict.REFUSED] * 2
    )
    assert gate.admit(*_dns(2000), 0.5) is Verdict.NEW  # one token back after half a second
    assert gate.admit(*_dns(2001), 0.5) is Verdict.REFUSED


def test_classes_are_told_apart_by_transport_remote_address_and_port() -> None:
    gate = StartGate(burst=1, rate=0.0)
    assert gate.admit(*_dns(1000), 0.0) is Verdict.NEW
    assert gate.admit(*_dns(1001), 0.0) is Verdict.REFUSED
    assert gate.admit(*_dns(1002, dst="198.51.100.54"), 0.0) is Verdict.NEW
    assert gate.admit(*_syn(1003, dst="198.51.100.53", dport=53), 0.0) is Verdict.NEW


def test_memory_is_bounded() -> None:
    gate = StartGate(max_keys=100)
    for n in range(1000):
        gate.admit(*_syn(1000 + n, dst=str(ipaddress.ip_address("203.0.113.0") + n % 250)), 0.0)
    assert len(gate._flows) <= 100 and len(gate._buckets) <= 100
