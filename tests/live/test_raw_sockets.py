"""Live: traffic a program sends over raw and packet sockets is named after that program.

Three rows of issue 13's table, each in a lab the test builds (host 192.0.2.1, one peer on
a documentation address): a program copied under a distinct name sends, for about two
seconds and a bounded number of packets,

* ICMP echo requests over a raw ICMP socket (`rawpinger`),
* IP protocol 253 (RFC 3692, for experiments) over a raw socket (`proto253`),
* UDP in Ethernet frames it builds itself and writes to an AF_PACKET socket bound to the
  host's end of the veth (`frameinject`).

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
from pathlib import Path

import pytest

from tests.conftest import requires_root, requires_tools
from tests.live.capture_lab import Watch, process_name
from tests.netns import HOST_IP, Lab

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
peer, count, gap, ifname, dst_mac, src_ip = sys.argv[1:7]
count, gap = int(count), float(gap)

def checksum(data):
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    return ~(s + (s >> 16)) & 0xFFFF

s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # sends only: receives nothing
s.bind((ifname, 0))
src_mac = s.getsockname()[4]
for seq in range(count):
    payload = b"injected frame %d " % seq + b"-" * 60
    udp = struct.pack("!HHHH", 40000, 9999, 8 + len(payload), 0) + payload
    head = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), seq, 0, 64, 17, 0,
        socket.inet_aton(src_ip), socket.inet_aton(peer),
    )
    head = head[:10] + struct.pack("!H", checksum(head)) + head[12:]
    frame = bytes.fromhex(dst_mac.replace(":", "")) + src_mac + b"\\x08\\x00" + head + udp
    s.send(frame)
    time.sleep(gap)
"""


def _counter(lab: Lab, ns: str, match: str, verdict: str) -> None:
    """An nftables counter `seen` in `ns`'s input hook over packets from the host."""
    rules = f"""
table inet nwraw {{
    counter seen {{ }}
    chain input {{
        type filter hook input priority 0; policy accept;
        ip saddr {HOST_IP} {match} counter name seen {verdict}
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


SCENARIOS = {
    "raw-icmp": ("rawpinger", RAW_PING, "icmp", "ip protocol icmp", "accept"),
    "raw-253": ("proto253", RAW_253, "other", "ip protocol 253", "drop"),
    "af-packet": ("frameinject", INJECT, "udp", "udp dport 9999", "drop"),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_program_behind_raw_or_packet_socket_is_named(tmp_path: Path, scenario: str) -> None:
    name, script, transport, match, verdict = SCENARIOS[scenario]
    with Lab("raw") as lab:
        peer = lab.add_peer("203.0.113.53")
        _counter(lab, peer.ns, match, verdict)
        program = tmp_path / name  # a copy of the interpreter, so the process has our name
        shutil.copy2(sys.executable, program)
        (tmp_path / "program.py").write_text(script)
        argv = [str(program), str(tmp_path / "program.py"), peer.ip, str(COUNT), str(GAP)]
        if scenario == "af-packet":
            mac = lab.run(peer.ns, ["cat", f"/sys/class/net/{peer.peer_if}/address"])
            argv += [peer.host_if, mac.stdout.strip(), HOST_IP]
        watch = Watch(lab, tmp_path, interval=0.3, record=False).start()
        res = lab.run(lab.host, argv, timeout=30)
        assert res.returncode == 0, res.stderr
        watch.stop()
        packets, reference = _counted(lab, peer.ns)
    assert packets == COUNT, f"the peer counted {packets} packets"
    latest: dict[tuple[object, ...], dict] = {}
    for f in watch.flows(lambda f: f["transport"] == transport and f["dst"] == peer.ip):
        latest[(f["src"], f["sport"], f["dst"], f["dport"])] = f
    assert latest, f"no {transport} flow to {peer.ip} in netwatch's snapshots"
    total = sum(f["bytes_sent"] or 0 for f in latest.values())
    named = sum(f["bytes_sent"] or 0 for f in latest.values() if process_name(f) == name)
    owners = {(process_name(f), f["attribution"]) for f in latest.values()}
    assert abs(total - reference) <= 0.1 * reference, (total, reference)
    assert named >= 0.95 * total, f"{named} of {total} bytes named {name}: {owners}"
    # Raw sockets and packet sockets are paired by protocol and interface: a guess.
    assert {a for n, a in owners if n == name} == {"guessed"}, owners
