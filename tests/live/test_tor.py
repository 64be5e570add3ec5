"""A real Tor client and bridge between namespaces: Tor is named as Tor, on port 443 too.

Debian's `tor` runs twice: a bridge in a peer namespace (its ORPort on 443, the port Tor
shares with the web) and a client in the lab's host namespace that uses only that bridge.
The peer's default route is removed first, so the bridge's own attempts to reach the real
network fail at once inside its namespace; the client's one connection is the link
handshake with the bridge and its directory requests over that link. netwatch's live
capture watches and tcpdump records; the flow must be labelled Tor by its client hello (the
random `www.<base32>.com` name and the P-224 group, `dissect.tor`), owned by the `tor`
process, and raise `anon.tor`, never a VPN alert. Clients that share some of the traits
(Tor's groups with an ALPN; a made-up-looking name without Tor's groups) are not Tor.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.certs import make_cert, write_pem
from tests.conftest import requires_root, requires_tools
from tests.live.capture_lab import Watch, analyze, process_name, remote_is, wait_for_line
from tests.netns import Lab

pytestmark = [pytest.mark.live, requires_root, pytest.mark.timeout(120)]


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab("tor") as lab:
        yield lab


def _tor(lab: Lab, ns: str, work: Path, *options: str) -> subprocess.Popen[bytes]:
    """Debian's tor with only `options`: no torrc of this machine, a private data folder."""
    data = work / "data"
    data.mkdir(parents=True, mode=0o700)
    empty = work / "torrc"
    empty.write_text("")
    return lab.spawn(
        ns,
        ["tor", "-f", str(empty), "--defaults-torrc", str(empty), "--DataDirectory", str(data),
         "--SocksPort", "0", "--Log", "notice stdout", *options],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0,
    )  # fmt: skip


@requires_tools("tor", "tcpdump")
def test_a_tor_client_talking_to_a_bridge_on_443_is_tor(lab: Lab, tmp_path: Path) -> None:
    bridge_ip = "203.0.113.60"
    peer = lab.add_peer(bridge_ip)
    lab.exec_ok(peer.ns, ["ip", "route", "del", "default"])
    bridge = _tor(
        lab, peer.ns, tmp_path / "bridge",
        "--ORPort", f"{bridge_ip}:443", "--Address", bridge_ip, "--BridgeRelay", "1",
        "--PublishServerDescriptor", "0", "--AssumeReachable", "1", "--ExitRelay", "0",
    )  # fmt: skip
    wait_for_line(bridge.stdout, "Opened OR listener", 60)
    watch = Watch(lab, tmp_path, bpf=f"host {bridge_ip}").start()
    client = _tor(
        lab, lab.host, tmp_path / "client", "--UseBridges", "1", "--Bridge", f"{bridge_ip}:443"
    )
    wait_for_line(client.stdout, "Handshake with a relay done", 60)
    client.terminate()
    client.wait(10)
    watch.stop()

    live = [f for f in watch.flows(remote_is(bridge_ip, 443)) if f["app"] == "tor"]
    assert live, watch.flows(remote_is(bridge_ip, 443))[-1:]
    assert {process_name(f) for f in live} == {"tor"}

    records = analyze(watch.pcap)
    (flow,) = [r for r in records if r["type"] == "flow" and remote_is(bridge_ip, 443)(r)]
    assert (flow["app"], flow["confidence"]) == ("tor", "high"), flow
    evidence = {e["name"]: e["value"] for e in flow["evidence"]}
    assert "P-224" in evidence["tls_groups"]
    assert evidence["sni"].startswith("www.") and evidence["sni"].endswith(".com")
    alerts = [r for r in records if r["type"] == "alert"]
    assert [a["rule"] for a in alerts if "443" in a["message"]] == ["anon.tor"], alerts
    assert [a for a in alerts if "VPN" in a["message"]] == []


@requires_tools("openssl", "tcpdump")
def test_one_tor_trait_alone_is_not_tor(lab: Lab, tmp_path: Path) -> None:
    """A client with Tor's groups and a Tor-shaped name that also offers an ALPN (as web
    clients do), and one with a made-up-looking name (no digit, so not random enough)
    without Tor's groups: plain TLS, no alert."""
    server_ip = "198.51.100.61"
    peer = lab.add_peer(server_ip)
    cert, key = write_pem(make_cert({"CN": "www.example.com"}), tmp_path)
    server = lab.spawn(
        peer.ns,
        ["openssl", "s_server", "-accept", "443", "-cert", str(cert), "-key", str(key),
         "-www", "-naccept", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0,
    )  # fmt: skip
    wait_for_line(server.stdout, "ACCEPT", 20)
    watch = Watch(lab, tmp_path, bpf=f"host {server_ip}").start()
    for name, groups, alpn in (
        ("www.example.com", "P-256:X25519:P-224", ["-alpn", "http/1.1"]),
        ("www.qwrtzpkx.com", "X25519", []),
    ):
        res = lab.run(
            lab.host,
            ["openssl", "s_client", "-connect", f"{server_ip}:443", "-servername", name,
             "-groups", groups, *alpn],
            input="GET / HTTP/1.0\r\n\r\n", timeout=20,
        )  # fmt: skip
        assert "BEGIN CERTIFICATE" in res.stdout or res.returncode == 0, res.stderr
    watch.stop()

    records = analyze(watch.pcap)
    flows = [r for r in records if r["type"] == "flow" and remote_is(server_ip, 443)(r)]
    assert len(flows) == 2, flows
    assert {(f["app"], f["vpn"]) for f in flows} == {("tls", False)}, flows
    assert [r for r in records if r["type"] == "alert"] == []
