"""Packets per second through `Dissector.inspect` for a realistic traffic mix.

Builds flows the way the flow table feeds them (initiator first, per-direction index): TLS
web sessions, QUIC v1 with encrypted Initials, DNS, clear HTTP, OpenVPN over UDP, WireGuard,
and unknown UDP, each with a long tail of data packets. Prints one table: packets/s when the
caller honours `done` (what `analyze` does) and when it calls for every packet (the
early-rejection path), plus microseconds per inspected packet. Never asserts.

    python bench/dissect.py [--flows N] [--packets-per-flow M]
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.tls.extensions import ServerName, TLS_Ext_ServerName
from scapy.layers.tls.handshake import TLSClientHello
from scapy.layers.tls.record import TLS

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netwatch.dissect import Dissector  # noqa: E402 - after the path set-up above
from netwatch.dissect.quic import InitialKeys  # noqa: E402
from netwatch.model import Endpoint, FlowKey, PacketContext, Transport, parse_ip  # noqa: E402

Packet = tuple[bool, bytes]


def _tls_flow(rng: random.Random, n: int) -> list[Packet]:
    hello = bytes(
        TLS(
            msg=[
                TLSClientHello(
                    ext=[
                        TLS_Ext_ServerName(
                            servernames=[
                                ServerName(
                                    servername=f"cdn{rng.randrange(999)}.example.com".encode()
                                )
                            ]
                        )
                    ]
                )
            ]
        )
    )
    out: list[Packet] = [(True, hello), (False, b"\x16\x03\x03" + rng.randbytes(1400))]
    out += [(rng.random() < 0.3, b"\x17\x03\x03" + rng.randbytes(1200)) for _ in range(n - 2)]
    return out


def _quic_initial(rng: random.Random) -> bytes:
    dcid = rng.randbytes(8)
    keys = InitialKeys.derive(1, dcid)
    hello = bytes(
        TLSClientHello(
            ext=[TLS_Ext_ServerName(servernames=[ServerName(servername=b"video.example.net")])]
        )
    )
    frames = b"\x06\x00" + (0x4000 | len(hello)).to_bytes(2, "big") + hello
    payload = frames + bytes(1162 - len(frames))
    header = (
        b"\xc3\x00\x00\x00\x01\x08"
        + dcid
        + b"\x00\x00"
        + (0x4000 | (4 + len(payload) + 16)).to_bytes(2, "big")
        + b"\x00\x00\x00\x00"
    )
    sealed = AESGCM(keys.key).encrypt(keys.iv, payload, header)
    enc = Cipher(algorithms.AES(keys.hp), modes.ECB()).encryptor()  # noqa: S305 - RFC 9001 header protection
    mask = enc.update(sealed[:16]) + enc.finalize()
    head = bytearray(header)
    head[0] ^= mask[0] & 0x0F
    for i in range(4):
        head[-4 + i] ^= mask[1 + i]
    return bytes(head) + sealed


def _quic_flow(rng: random.Random, n: int) -> list[Packet]:
    out: list[Packet] = [(True, _quic_initial(rng))]
    out += [
        (rng.random() < 0.2, bytes([0x40 | rng.randrange(64)]) + rng.randbytes(1200))
        for _ in range(n - 1)
    ]
    return out


def _dns_flow(rng: random.Random, _n: int) -> list[Packet]:
    name = f"host{rng.randrange(9999)}.example.org"
    q = bytes(DNS(id=rng.randrange(65536), rd=1, qd=DNSQR(qname=name)))
    a = bytes(DNS(id=1, qr=1, qd=DNSQR(qname=name), an=[DNSRR(rrname=name, rdata="203.0.113.4")]))
    return [(True, q), (False, a)]


def _http_flow(rng: random.Random, n: int) -> list[Packet]:
    req = b"GET /img/%d.png HTTP/1.1\r\nHost: www.example.com\r\n\r\n" % rng.randrange(999)
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: 9000\r\n\r\n" + rng.randbytes(1300)
    return [(True, req), (False, resp)] + [(False, rng.randbytes(1400)) for _ in range(n - 2)]


def _openvpn_flow(rng: random.Random, n: int) -> list[Packet]:
    c, s = rng.randbytes(8), rng.randbytes(8)
    out: list[Packet] = [
        (True, b"\x38" + c + b"\x00" + bytes(4)),
        (False, b"\x40" + s + b"\x01" + bytes(4) + c + bytes(4)),
    ]
    out += [(rng.random() < 0.5, b"\x48\x00\x00\x01" + rng.randbytes(1300)) for _ in range(n - 2)]
    return out


def _wireguard_flow(rng: random.Random, n: int) -> list[Packet]:
    i, r = rng.randbytes(4), rng.randbytes(4)
    out: list[Packet] = [
        (True, b"\x01\x00\x00\x00" + i + rng.randbytes(140)),
        (False, b"\x02\x00\x00\x00" + r + i + rng.randbytes(80)),
    ]
    for k in range(n - 2):
        side = rng.random() < 0.5
        out.append(
            (
                side,
                b"\x04\x00\x00\x00"
                + (r if side else i)
                + struct.pack("<Q", k)
                + rng.randbytes(1280),
            )
        )
    return out


def _random_udp_flow(rng: random.Random, n: int) -> list[Packet]:
    return [(rng.random() < 0.5, rng.randbytes(rng.randrange(20, 1200))) for _ in range(n)]


MIX = [
    (_tls_flow, 443, Transport.TCP, 40),
    (_quic_flow, 443, Transport.UDP, 20),
    (_dns_flow, 53, Transport.UDP, 15),
    (_http_flow, 80, Transport.TCP, 8),
    (_openvpn_flow, 1194, Transport.UDP, 5),
    (_wireguard_flow, 51820, Transport.UDP, 5),
    (_random_udp_flow, 30000, Transport.UDP, 7),
]


def build(flows: int, per_flow: int) -> list[tuple[PacketContext, bytes]]:
    rng = random.Random(7)
    kinds = [k for k in MIX for _ in range(k[3])]
    packets: list[tuple[PacketContext, bytes]] = []
    for f in range(flows):
        make, port, transport, _weight = rng.choice(kinds)
        key = FlowKey(
            transport,
            Endpoint(parse_ip("192.0.2.10"), 10000 + f % 50000),
            Endpoint(parse_ip(f"198.51.100.{f % 250 + 1}"), port),
        )
        index = [0, 0]
        for side, payload in make(rng, per_flow):
            packets.append((PacketContext(key, side, index[0 if side else 1], 0.0), payload))
            index[0 if side else 1] += 1
    return packets


def plan(packets: list[tuple[PacketContext, bytes]]) -> list[tuple[PacketContext, bytes]]:
    """The packets a flow table that honours `done` hands to the dissector."""
    d = Dissector()
    done: set[FlowKey] = set()
    kept = []
    for ctx, payload in packets:
        if ctx.flow in done:
            continue
        kept.append((ctx, payload))
        facts = d.inspect(ctx, payload)
        if facts is not None and facts.done:
            done.add(ctx.flow)
    return kept


def run(packets: list[tuple[PacketContext, bytes]]) -> float:
    """CPU seconds spent in `inspect` for these packets with a fresh Dissector.

    CPU time rather than wall time, because the machine is shared and wall time swings.
    """
    inspect = Dissector().inspect
    start = time.process_time()
    for ctx, payload in packets:
        inspect(ctx, payload)
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=4000)
    parser.add_argument("--packets-per-flow", type=int, default=50)
    args = parser.parse_args()
    packets = build(args.flows, args.packets_per_flow)
    print(
        f"{len(packets)} packets in {args.flows} flows (mix: TLS 40%, QUIC 20%, DNS 15%, "
        "HTTP 8%, OpenVPN 5%, WireGuard 5%, unknown UDP 7%)"
    )
    calls = plan(packets)
    print(f"{'caller':<26}{'inspect calls':>14}{'us/call':>9}{'packets/s of all':>18}")
    for label, todo in (("honours done (analyze)", calls), ("calls for every packet", packets)):
        seconds = min(run(todo) for _ in range(5))
        rate = len(packets) / seconds
        print(f"{label:<26}{len(todo):>14,}{seconds / len(todo) * 1e6:>9.2f}{rate:>18,.0f}")


if __name__ == "__main__":
    main()
