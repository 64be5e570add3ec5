"""Protocols with their own magic, on real connections between namespaces, recorded and analysed.

* OpenVPN 2.6 with tls-crypt-v2 (a real server/client pair, UDP and TCP): the client's
  P_CONTROL_HARD_RESET_CLIENT_V3 carries packet id 0x0f000001 and the wrapped client key.
* wireguard-go with Tailscale DISCO packets (crafted per tailscale `disco/disco.go`, sent
  from the WireGuard port with a raw socket) ahead of the real handshake on the same flow.
* AnyConnect's CSTP tunnel request and a DTLS datagram, SSTP's request in clear HTTP, and an
  ordinary GET, sent over real TCP/UDP to a small server in a peer namespace.

Each test asserts what `netwatch analyze` makes of the tcpdump recording; the OpenVPN and
WireGuard tests also check netwatch's live capture, like tests/live/test_vpn_captures.py.
"""

from __future__ import annotations

import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import requires_root, requires_tools
from tests.live.capture_lab import analyze, process_name, remote_is, wait_for_line
from tests.live.test_vpn_captures import _vpn_flows, openvpn_pair, wg_handshake, wg_pair
from tests.netns import HOST_IP, Lab

pytestmark = [pytest.mark.live, requires_root, pytest.mark.timeout(120)]


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab("mag") as lab:
        yield lab


def _evidence(flow: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in flow["evidence"]}


# ---------------------------------------------------------------- OpenVPN tls-crypt-v2


@requires_tools("openvpn", "openssl", "tcpdump")
@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_openvpn_26_tls_crypt_v2(lab: Lab, tmp_path: Path, proto: str) -> None:
    server_ip = "198.51.100.20"
    server_key, client_key = tmp_path / "v2-server.key", tmp_path / "v2-client.key"
    gen = ["openvpn", "--genkey", "tls-crypt-v2-server", str(server_key)]
    subprocess.run(gen, check=True, capture_output=True, timeout=30)
    gen = ["openvpn", "--tls-crypt-v2", str(server_key), "--genkey", "tls-crypt-v2-client"]
    subprocess.run([*gen, str(client_key)], check=True, capture_output=True, timeout=30)
    server_wrap, client_wrap = (
        ("--tls-crypt-v2", str(server_key)),
        ("--tls-crypt-v2", str(client_key)),
    )
    watch = openvpn_pair(lab, tmp_path, server_ip, "10.79.0", proto, server_wrap, client_wrap)

    owned = [f for f in watch.flows(remote_is(server_ip, 1194)) if process_name(f) == "openvpn"]
    assert any(f["app"] == "openvpn" and f["vpn"] for f in owned), owned[-1:]

    (flow,) = _vpn_flows(analyze(watch.pcap), server_ip, 1194)
    assert (flow["app"], flow["vpn"], flow["confidence"]) == ("openvpn", True, "high")
    assert _evidence(flow)["opcode"] == "P_CONTROL_HARD_RESET_CLIENT_V3"


# ---------------------------------------------------------------- Tailscale DISCO + WireGuard

DISCO_SENDER = textwrap.dedent(
    """
    import os, socket, struct, sys
    # Tailscale DISCO: magic "TS\\U0001f4ac", 32-byte disco key, 24-byte nonce, sealed box.
    dst, key = sys.argv[1], bytes.fromhex(sys.argv[2])
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
    for _ in range(2):
        body = "TS\\U0001f4ac".encode() + key + os.urandom(24) + os.urandom(16 + 46)
        s.sendto(struct.pack("!HHHH", 51820, 51820, 8 + len(body), 0) + body, (dst, 0))
    """
)


@requires_tools("wireguard-go", "wg", "tcpdump")
def test_tailscale_disco_then_wireguard_on_one_flow(lab: Lab, tmp_path: Path) -> None:
    server_ip = "198.51.100.21"
    watch, ifname = wg_pair(lab, tmp_path, server_ip, "10.80.0")
    # Path discovery first, as tailscaled does: pings both ways on the WireGuard port.
    host_disco = "ab" * 32
    lab.exec_ok(lab.host, ["python3", "-c", DISCO_SENDER, server_ip, host_disco])
    lab.exec_ok(lab.peers[0].ns, ["python3", "-c", DISCO_SENDER, HOST_IP, "cd" * 32])
    wg_handshake(lab, ifname, "10.80.0.2")
    watch.stop()

    live = watch.flows(remote_is(server_ip, 51820))
    assert any(f["app"] == "tailscale" and f["vpn"] for f in live), live[-1:]

    (flow,) = _vpn_flows(analyze(watch.pcap), server_ip, 51820)
    assert (flow["app"], flow["vpn"], flow["confidence"]) == ("tailscale", True, "high")
    ev = _evidence(flow)
    assert ev["disco_key"] == host_disco[:16] and ev["tunnel"] == "wireguard"
    assert "receiver_index" in ev, ev  # the real handshake pair matched after the DISCO pings


# ---------------------------------------------------------------- AnyConnect, SSTP, plain HTTP

SERVER = textwrap.dedent(
    """
    import socket, sys, time
    tcp = socket.create_server(("0.0.0.0", 80))
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("0.0.0.0", 443))
    tcp.settimeout(20)
    print("ready", flush=True)
    for _ in range(int(sys.argv[1])):
        conn, _ = tcp.accept()
        conn.settimeout(5)
        data = b""
        while b"\\r\\n\\r\\n" not in data and len(data) < 65536:
            more = conn.recv(4096)
            if not more:
                break
            data += more
        if data.startswith(b"CONNECT"):
            conn.sendall(b"HTTP/1.1 200 CONNECTED\\r\\nX-CSTP-Version: 1\\r\\n\\r\\n")
        else:
            conn.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok")
        time.sleep(0.2)
        conn.close()
    """
)

CLIENT = textwrap.dedent(
    """
    import os, socket, struct, sys, time
    server, other = sys.argv[1], sys.argv[2]
    cstp = (
        b"CONNECT /CSCOSSLC/tunnel HTTP/1.1\\r\\nHost: vpn.example.net\\r\\n"
        b"X-CSTP-Version: 1\\r\\nX-CSTP-MTU: 1399\\r\\nX-CSTP-Address-Type: IPv6,IPv4\\r\\n"
        b"X-DTLS-Master-Secret: " + os.urandom(48).hex().encode() + b"\\r\\n"
        b"X-DTLS-CipherSuite: AES256-SHA\\r\\n\\r\\n"
    )
    sstp = (
        b"SSTP_DUPLEX_POST /sra_{BA195980-CD49-458b-9E23-C84EE0ADCD75}/ HTTP/1.1\\r\\n"
        b"Host: vpn.example.net\\r\\nContent-Length: 18446744073709551615\\r\\n\\r\\n"
    )
    get = b"GET /index.html HTTP/1.1\\r\\nHost: www.example.com\\r\\n\\r\\n"
    for request in (cstp, sstp, get):
        with socket.create_connection((server, 80), timeout=5) as c:
            c.sendall(request)
            c.recv(4096)
        time.sleep(0.1)  # one connection at a time in the recording, on a busy machine too
    # A DTLS 1.0 ClientHello record (RFC 6347 4.1) to the server, then to another host.
    body = b"\\x01" + os.urandom(120)
    hello = struct.pack(">BHH", 0x16, 0xFEFF, 0) + bytes(6) + struct.pack(">H", len(body)) + body
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.sendto(hello, (server, 443))
    u.sendto(hello, (other, 443))
    print("sent", flush=True)
    """
)


@requires_tools("tcpdump")
def test_cstp_dtls_and_sstp_in_clear_with_an_ordinary_get(lab: Lab, tmp_path: Path) -> None:
    server_ip, other_ip = "198.51.100.22", "198.51.100.23"
    peer = lab.add_peer(server_ip)
    lab.add_peer(other_ip)
    server = lab.spawn(peer.ns, ["python3", "-c", SERVER, "3"], stdout=subprocess.PIPE, bufsize=0)
    wait_for_line(server.stdout, "ready", 20)
    pcap = tmp_path / "clear.pcap"
    tcpdump = lab.spawn(
        lab.host,
        ["tcpdump", "-i", "any", "-B", "8192", "-U", "--immediate-mode", "-n", "-w", str(pcap)],
        stderr=subprocess.PIPE,
        bufsize=0,
    )
    wait_for_line(tcpdump.stderr, "listening on", 20)
    res = lab.run(lab.host, ["python3", "-c", CLIENT, server_ip, other_ip], timeout=30)
    assert res.returncode == 0 and "sent" in res.stdout, res.stderr
    server.wait(20)
    tcpdump.terminate()
    tcpdump.wait(10)
    assert tcpdump.stderr is not None
    stats = tcpdump.stderr.read().decode(errors="replace")  # "N packets dropped by kernel"

    flows = [r for r in analyze(pcap) if r["type"] == "flow" and r["src"] == HOST_IP]
    tcp = [f for f in flows if f["transport"] == "tcp" and f["evidence"]]
    by_request = {f["evidence"][0]["value"]: f for f in tcp}
    assert len(by_request) == 3, (by_request.keys(), stats)
    cstp = by_request["CONNECT /CSCOSSLC/tunnel HTTP/1.1"]
    assert (cstp["app"], cstp["vpn"], cstp["confidence"]) == ("anyconnect", True, "high")
    assert "x-dtls-master-secret" in _evidence(cstp)["cstp_headers"]
    sstp = by_request["SSTP_DUPLEX_POST /sra_{BA195980-CD49-458b-9E23-C84EE0ADCD75}/ HTTP/1.1"]
    assert (sstp["app"], sstp["vpn"], sstp["confidence"]) == ("sstp", True, "high")
    web = [f for f in flows if f["http_host"] == "www.example.com"]
    assert web and all(not f["vpn"] for f in web), web

    (dtls,) = [f for f in flows if f["transport"] == "udp" and f["dst"] == server_ip]
    assert (dtls["app"], dtls["vpn"], dtls["confidence"]) == ("anyconnect", True, "medium")
    assert _evidence(dtls)["dtls_record"] == "handshake v1.0"
    (stray,) = [f for f in flows if f["transport"] == "udp" and f["dst"] == other_ip]
    assert not stray["vpn"], stray  # DTLS to a host without a CSTP session proves nothing
