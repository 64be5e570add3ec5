"""Live: traffic a program sends over raw and packet sockets is named after that program.

The three raw rows of issue 13's table and four more ways to send without a TCP or UDP
socket, each in a lab the test builds (host 192.0.2.1, one peer on a documentation address):
a program copied under a distinct name sends, for about two seconds and a bounded number of
packets,

* ICMP echo requests over a raw ICMP socket (`rawpinger`),
* IP protocol 253 (RFC 3692, for experiments) over a raw socket (`proto253`),
* UDP in Ethernet frames it builds itself and writes to an AF_PACKET socket bound to the
  host's end of the veth (`frameinject`), or bound to none (`anyinject`),
* UDP in whole IP packets written to an IPPROTO_RAW socket, as scapy's `send` does
  (`hdrsender`),
* ICMP and ICMPv6 echo requests over ping sockets (`sockpinger`, `sockpinger6`), which the
  kernel stamps with the socket's echo id: an exact pairing, `socket`.

netwatch's live engine runs in the host namespace (`tests.live.capture_probe`, no tcpdump
beside it: its packet socket would be a second candidate for the frames). The byte reference
is an nftables counter in the peer's input hook, not netwatch: the flow's bytes sent must be
within 10% of it, and at least 95% of them must be named after the program. Raw sockets of
the flow's protocol and packet sockets of its interface are paired as guesses
(`flows.raw_pairing`): a raw socket sees every packet of its protocol, and the kernel keeps
no sender for a frame written to a packet socket, so `guessed` is what netwatch can honestly
say there (docs/architecture.md, section 1, "Flows no port names").
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import requires_root, requires_tools
from tests.live.capture_lab import Watch, process_name, remote_is
from tests.netns import HOST_IP, HOST_IP6, Lab

pytestmark = [pytest.mark.live, requires_root, requires_tools("nft"), pytest.mark.timeout(90)]

COUNT = 20
GAP = 0.1
"""Packets each program sends, and the seconds between them: two seconds of traffic, many
probe ticks (0.3 s) while its socket is open."""

RAW_PING = """
import socket, struct, sys, time
peer, count, gap = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])

def checksum(data):
    data += b"\\0" * (len(data) % 2)
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    return ~(s + (s >> 16)) & 0xFFFF

s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
for seq in range(count):
    body = struct.pack("!HH", 0x4E57, seq) + b"netwatch raw ping " * 3
    msg = struct.pack("!BBH", 8, 0, 0) + body
    msg = struct.pack("!BBH", 8, 0, checksum(msg)) + body
    s.sendto(msg, (peer, 0))
    time.sleep(gap)
"""

RAW_253 = """
import socket, sys, time
peer, count, gap = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 253)
for seq in range(count):
    s.sendto(b"experimental protocol 253 #%d " % seq + b"." * 40, (peer, 0))
    time.sleep(gap)
"""

INJECT = """
import socket, struct, sys, time
peer, count, gap, ifname, dst_mac, src_ip, mode = sys.argv[1:8]
count, gap = int(count), float(gap)

def checksum(data):
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    return ~(s + (s >> 16)) & 0xFFFF

if mode == "bound":
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # sends only: receives nothing
    s.bind((ifname, 0))
else:  # unbound, and receiving IPv4 like a sniffer would (so it is no send-only socket)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
with open(f"/sys/class/net/{ifname}/address") as fh:
    src_mac = bytes.fromhex(fh.read().strip().replace(":", ""))
for seq in range(count):
    payload = b"injected frame %d " % seq + b"-" * 60
    udp = struct.pack("!HHHH", 40000, 9999, 8 + len(payload), 0) + payload
    head = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), seq, 0, 64, 17, 0,
        socket.inet_aton(src_ip), socket.inet_aton(peer),
    )
    head = head[:10] + struct.pack("!H", checksum(head)) + head[12:]
    frame = bytes.fromhex(dst_mac.replace(":", "")) + src_mac + b"\\x08\\x00" + head + udp
    s.sendto(frame, (ifname, 0))  # bound or not, the frame names its interface
    time.sleep(gap)
"""


PING_SOCKET = """
import socket, sys, time
peer, count, gap = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
v6 = ":" in peer
family = socket.AF_INET6 if v6 else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM, socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP)
for seq in range(count):
    # The kernel writes the socket's echo id and the checksum (a ping socket, not raw).
    head = bytes([128 if v6 else 8, 0, 0, 0, 0, 0]) + seq.to_bytes(2, "big")
    s.sendto(head + b"netwatch ping socket " * 3, (peer, 0))
    time.sleep(gap)
"""

HDRINCL = """
import socket, struct, sys, time
peer, count, gap = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)  # sends only
for seq in range(count):
    payload = b"whole IP packet %d " % seq + b"=" * 50
    udp = struct.pack("!HHHH", 40001, 9998, 8 + len(payload), 0) + payload
    # Length, checksum, id and (0.0.0.0) source are the kernel's to fill in (raw(7)).
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 0, 0, 0, 64, 17, 0, bytes(4),
                       socket.inet_aton(peer))
    s.sendto(head + udp, (peer, 0))
    time.sleep(gap)
"""

PEER_IP, PEER_IP6 = "203.0.113.53", "2001:db8::53"


@dataclass(frozen=True)
class Scenario:
    name: str
    """The program's name (its copy of the interpreter)."""
    script: str
    transport: str
    match: str
    """The nftables match, in the peer, for the program's packets."""
    verdict: str
    attribution: str
    peer: str = PEER_IP


SCENARIOS = {
    "raw-icmp": Scenario(
        "rawpinger", RAW_PING, "icmp", f"ip saddr {HOST_IP} ip protocol icmp", "accept", "guessed"
    ),
    "raw-253": Scenario(
        "proto253", RAW_253, "other", f"ip saddr {HOST_IP} ip protocol 253", "drop", "guessed"
    ),
    "af-packet": Scenario(
        "frameinject", INJECT, "udp", f"ip saddr {HOST_IP} udp dport 9999", "drop", "guessed"
    ),
    # Not bound to an interface and receiving IPv4: a candidate among the unbound packet
    # sockets that see the flow, where the probe's own capture and start-watcher sockets
    # are too (and are left out: without that the flow is contested, unknown).
    "af-packet-unbound": Scenario(
        "anyinject", INJECT, "udp", f"ip saddr {HOST_IP} udp dport 9999", "drop", "guessed"
    ),
    "ipproto-raw": Scenario(
        "hdrsender", HDRINCL, "udp", f"ip saddr {HOST_IP} udp dport 9998", "drop", "guessed"
    ),
    # A ping socket's echo id is written by the kernel: an exact pairing.
    "ping-socket": Scenario(
        "sockpinger", PING_SOCKET, "icmp", f"ip saddr {HOST_IP} ip protocol icmp", "accept",
        "socket",
    ),
    "ping-socket-v6": Scenario(
        "sockpinger6", PING_SOCKET, "icmpv6", f"ip6 saddr {HOST_IP6} meta l4proto ipv6-icmp",
        "accept", "socket", PEER_IP6,
    ),
}  # fmt: skip


def _counter(lab: Lab, ns: str, match: str, verdict: str) -> None:
    """An nftables counter `seen` in `ns`'s input hook over `match`."""
    rules = f"""
table inet nwraw {{
    counter seen {{ }}
    chain input {{
        type filter hook input priority 0; policy accept;
        {match} counter name seen {verdict}
    }}
}}
"""
    res = lab.run(ns, ["nft", "-f", "-"], input=rules)
    assert res.returncode == 0, res.stderr


def _counted(lab: Lab, ns: str) -> tuple[int, int]:
    """(packets, bytes) the peer's counter saw."""
    res = lab.run(ns, ["nft", "-j", "list", "counter", "inet", "nwraw", "seen"])
    assert res.returncode == 0, res.stderr
    (item,) = [x["counter"] for x in json.loads(res.stdout)["nftables"] if "counter" in x]
    return int(item["packets"]), int(item["bytes"])


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_program_behind_raw_ping_or_packet_socket_is_named(tmp_path: Path, scenario: str) -> None:
    sc = SCENARIOS[scenario]
    with Lab("raw") as lab:
        peer = lab.add_peer(PEER_IP, PEER_IP6)
        # Ping sockets are for the groups in this range (per namespace; the default is none).
        lab.exec_ok(lab.host, ["sysctl", "-qw", "net.ipv4.ping_group_range=0 0"])
        _counter(lab, peer.ns, sc.match, sc.verdict)
        program = tmp_path / sc.name  # a copy of the interpreter, so the process has our name
        shutil.copy2(sys.executable, program)
        (tmp_path / "program.py").write_text(sc.script)
        argv = [str(program), str(tmp_path / "program.py"), sc.peer, str(COUNT), str(GAP)]
        if scenario.startswith("af-packet"):
            mac = lab.run(peer.ns, ["cat", f"/sys/class/net/{peer.peer_if}/address"])
            mode = "unbound" if scenario.endswith("unbound") else "bound"
            argv += [peer.host_if, mac.stdout.strip(), HOST_IP, mode]
        watch = Watch(lab, tmp_path, interval=0.3, record=False).start()
        res = lab.run(lab.host, argv, timeout=30)
        assert res.returncode == 0, res.stderr
        watch.stop()
        packets, reference = _counted(lab, peer.ns)
    assert packets >= COUNT, f"the peer counted {packets} packets"
    records = watch.flows(lambda f: f["transport"] == sc.transport and remote_is(sc.peer)(f))
    latest: dict[tuple[object, ...], dict] = {}
    for f in records:
        latest[(f["src"], f["sport"], f["dst"], f["dport"])] = f
    assert latest, f"no {sc.transport} flow with {sc.peer} in netwatch's snapshots"
    # Bytes this host sent (a flow's `bytes_sent` is the local side's, whichever started it).
    total = sum(f["bytes_sent"] or 0 for f in latest.values())
    named = sum(f["bytes_sent"] or 0 for f in latest.values() if process_name(f) == sc.name)
    owners = {(process_name(f), f["attribution"]) for f in latest.values()}
    assert abs(total - reference) <= 0.1 * reference, (total, reference)
    assert named >= 0.95 * total, f"{named} of {total} bytes named {sc.name}: {owners}"
    assert all(f["direction"] == "outbound" for f in latest.values()), latest
    # Raw and packet sockets are paired by protocol and interface (a guess, kept after the
    # program exits); a ping socket by the echo id the kernel wrote (exact while the socket
    # lives, `cached` once it is gone).
    ways = {f["attribution"] for f in records if process_name(f) == sc.name}
    if sc.attribution == "guessed":
        assert ways == {"guessed"}, ways
    else:
        assert "socket" in ways and ways <= {"socket", "cached"}, ways
