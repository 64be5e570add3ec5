"""`netwatch analyze` raises the VPN Gate and SoftEther alerts on captures built here.

Captures are written with scapy, byte-exact to each protocol: the VPN Gate list fetched over
clear HTTP (`GET /api/iphone/`, body `*vpn_servers`) and over TLS (only the server name and
sizes show); SoftEther phoning home (TLS server name `DDNS`, a NAT-T `nat_t_register` PACK on
UDP 5004); and ordinary HTTPS browsing, which must raise no `vpngate.*` alert.
"""

from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.layers.tls.extensions import ServerName, TLS_Ext_ServerName
from scapy.layers.tls.handshake import TLSClientHello
from scapy.layers.tls.record import TLS
from scapy.packet import Packet, Raw
from scapy.utils import wrpcap

from netwatch.enrich.vpngate_list import Relay, format_vpngate
from netwatch.model import parse_ip
from tests.mmdb import write_mmdb

T0 = 1_700_000_000.0
HOST, SERVER = "192.0.2.1", "203.0.113.80"


def _tcp_session(
    sport: int, dport: int, request: bytes, response: bytes, server: str = SERVER
) -> list[Packet]:
    """Handshake, one request, one response, FIN both ways."""

    def a(**kw: object) -> Packet:
        return IP(src=HOST, dst=server) / TCP(sport=sport, dport=dport, **kw)

    def b(**kw: object) -> Packet:
        return IP(src=server, dst=HOST) / TCP(sport=dport, dport=sport, **kw)

    c, s = 1000, 5000
    return [
        a(flags="S", seq=c),
        b(flags="SA", seq=s, ack=c + 1),
        a(flags="A", seq=c + 1, ack=s + 1),
        a(flags="PA", seq=c + 1, ack=s + 1) / Raw(request),
        b(flags="PA", seq=s + 1, ack=c + 1 + len(request)) / Raw(response),
        a(flags="FA", seq=c + 1 + len(request), ack=s + 1 + len(response)),
        b(flags="FA", seq=s + 1 + len(response), ack=c + 2 + len(request)),
    ]


def _hello(sni: str) -> bytes:
    return bytes(
        TLS(
            msg=[
                TLSClientHello(
                    ext=[TLS_Ext_ServerName(servernames=[ServerName(servername=sni.encode())])]
                )
            ]
        )
    )


def _pack(*elements: tuple[str, int, bytes]) -> bytes:
    """SoftEther PACK (Pack.c WriteElement): count, then name(len+1), type, 1 value."""
    out = struct.pack(">I", len(elements))
    for name, vtype, value in elements:
        out += struct.pack(">I", len(name) + 1) + name.encode() + struct.pack(">II", vtype, 1)
        out += value if vtype == 0 else struct.pack(">I", len(value)) + value
    return out


def _analyze(cmd: list[str], root: Path, tmp: Path, pkts: list[Packet], mmdb: Path) -> list[dict]:
    return [r for r in _records(cmd, root, tmp, pkts, mmdb) if r["type"] == "alert"]


def _records(cmd: list[str], root: Path, tmp: Path, pkts: list[Packet], mmdb: Path) -> list[dict]:
    """Every JSONL record `analyze` prints for a capture of `pkts`: flows, then alerts."""
    frames = [Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / p for p in pkts]
    for i, f in enumerate(frames):
        f.time = T0 + i * 0.01
    path = tmp / "c.pcap"
    wrpcap(str(path), frames)
    res = subprocess.run(
        [*cmd, "analyze", str(path), "--format", "jsonl", "--geoip-db", str(mmdb)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=root,
    )
    assert res.returncode == 0, res.stderr
    return [json.loads(line) for line in res.stdout.splitlines()]


@pytest.fixture
def mmdb(tmp_path: Path) -> Path:
    return write_mmdb(
        tmp_path / "t.mmdb",
        {
            "203.0.113.0/24": ("RU", 64500, "Relay Host"),
            "198.51.100.0/24": ("JP", 64501, "Tsukuba"),
            "192.0.2.128/25": ("US", 64502, "Relay US"),
        },
    )


LIST = format_vpngate([Relay("vpn123456789", parse_ip("198.51.100.99"), "KR")]).encode()


def test_list_fetch_over_plain_http(
    netwatch_cmd: list[str], repo_root: Path, tmp_path: Path, mmdb: Path
) -> None:
    request = b"GET /api/iphone/ HTTP/1.1\r\nHost: www.vpngate.net\r\nUser-Agent: x\r\n\r\n"
    response = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(LIST) + LIST
    alerts = _analyze(
        netwatch_cmd, repo_root, tmp_path, _tcp_session(41000, 80, request, response), mmdb
    )
    (fetch,) = [a for a in alerts if a["rule"] == "vpngate.list_fetch"]
    assert fetch["message"].startswith("An unknown program downloaded the list of VPN Gate relays")
    assert fetch["remote"]["country"] == "RU"
    assert fetch["severity"] == "medium"


def test_list_fetch_over_tls_by_server_name(
    netwatch_cmd: list[str], repo_root: Path, tmp_path: Path, mmdb: Path
) -> None:
    pkts = _tcp_session(41001, 443, _hello("www.vpngate.net"), b"\x16\x03\x03" + bytes(3000))
    alerts = _analyze(netwatch_cmd, repo_root, tmp_path, pkts, mmdb)
    (fetch,) = [a for a in alerts if a["rule"] == "vpngate.list_fetch"]
    assert "www.vpngate.net" in fetch["message"]
    assert {"name": "names", "value": "www.vpngate.net"} in fetch["evidence"]


def test_softether_cloud_ddns_and_natt(
    netwatch_cmd: list[str], repo_root: Path, tmp_path: Path, mmdb: Path
) -> None:
    ddns = _tcp_session(
        41002, 443, _hello("DDNS"), b"\x16\x03\x03" + bytes(500), server="198.51.100.60"
    )
    register = _pack(
        ("opcode", 2, b"nat_t_register"),
        ("svc_name", 2, b"SoftEther_VPN"),
        ("host_name", 2, b"DESKTOP-NHD6789"),
        ("private_ip", 2, b"192.168.1.13"),
    )
    natt = [
        IP(src=HOST, dst="198.51.100.61") / UDP(sport=40001, dport=5004) / Raw(register),
        IP(src="198.51.100.61", dst=HOST)
        / UDP(sport=5004, dport=40001)
        / Raw(b"IP=203.0.113.9,PORT=40001"),
    ]
    alerts = _analyze(netwatch_cmd, repo_root, tmp_path, [*ddns, *natt], mmdb)
    cloud = [a for a in alerts if a["rule"] == "softether.cloud"]
    remotes = {a["remote"]["ip"] for a in cloud}
    assert remotes == {"198.51.100.60", "198.51.100.61"}, [a["message"] for a in alerts]
    # The TLS server name is the literal DDNS (the dissector lower-cases names).
    assert any(
        e["name"] == "sni" and e["value"].lower() == "ddns" for a in cloud for e in a["evidence"]
    ), [(a["message"], a["evidence"]) for a in cloud]
    relay = [a for a in alerts if a["rule"] == "vpngate.relay_mode"]
    assert relay and "NAT traversal" in relay[0]["message"] and relay[0]["severity"] == "medium"


def test_ordinary_https_browsing_raises_no_vpngate_alert(
    netwatch_cmd: list[str], repo_root: Path, tmp_path: Path, mmdb: Path
) -> None:
    pkts: list[Packet] = []
    for i, name in enumerate(
        ["www.example.com", "news.example.org", "mail.example.net", "vpngate.example.com"]
    ):
        pkts += _tcp_session(
            42000 + i,
            443,
            _hello(name),
            b"\x16\x03\x03" + bytes(2000),
            server=f"203.0.113.{90 + i}",
        )
    alerts = _analyze(netwatch_cmd, repo_root, tmp_path, pkts, mmdb)
    assert [a for a in alerts if a["rule"].startswith("vpngate.")] == []


def _record(length: int) -> bytes:
    """An encrypted TLS application-data record: only its type and length are clear."""
    return b"\x17\x03\x03" + length.to_bytes(2, "big") + bytes(length)


@pytest.mark.parametrize(
    ("records", "softether"),
    [
        ((69, 272, 3286), True),  # Debian's vpnclient: Finished, POST header, watermark upload
        ((69, 310, 820), False),  # an app (video, conferencing, a speaker) with an IP as SNI
    ],
    ids=["softether-client", "app-with-ip-sni"],
)
def test_the_server_address_as_server_name_needs_the_softether_upload(
    netwatch_cmd: list[str],
    repo_root: Path,
    tmp_path: Path,
    mmdb: Path,
    records: tuple[int, ...],
    softether: bool,
) -> None:
    server = "203.0.113.85"
    request = _hello(server) + b"".join(_record(n) for n in records)
    pkts = _tcp_session(42100, 443, request, b"\x16\x03\x03" + bytes(1400), server=server)
    out = _records(netwatch_cmd, repo_root, tmp_path, pkts, mmdb)
    (flow,) = [r for r in out if r["type"] == "flow" and r["dst"] == server]
    vpn_alerts = [r["rule"] for r in out if r["type"] == "alert" and r["rule"].startswith("vpn.")]
    if softether:
        assert (flow["app"], flow["vpn"], flow["confidence"]) == ("softether", True, "medium")
        assert "vpn.unexpected" in vpn_alerts
    else:
        assert (flow["app"], flow["vpn"]) == ("tls", False), flow["evidence"]
        assert "numeric_sni" in [e["name"] for e in flow["evidence"]]
        assert vpn_alerts == []


def test_a_tor_looking_connection_on_443_is_an_anonymizer_not_a_vpn_endpoint(
    netwatch_cmd: list[str], repo_root: Path, tmp_path: Path, mmdb: Path
) -> None:
    relay = "192.0.2.200"  # a US address in the test GeoIP file: 5/9/14 Eyes
    pkts = _tcp_session(
        42200, 443, _hello("www.q4cyamnc6mtokjurvdclt.com"), b"\x16\x03\x03" + bytes(900), relay
    )
    alerts = _analyze(netwatch_cmd, repo_root, tmp_path, pkts, mmdb)
    (tor,) = [a for a in alerts if a["rule"] == "anon.tor"]
    assert "looks like Tor" in tor["message"] and "port 443" in tor["message"], tor["message"]
    assert [a["message"] for a in alerts if "VPN" in a["message"]] == []
