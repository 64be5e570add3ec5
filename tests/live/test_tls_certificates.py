"""Real TLS servers in a namespace: the certificate a TLS 1.2 server sends in clear is read.

`openssl s_server` runs in a peer namespace with a certificate built by the test (FortiGate's
factory subject `O=Fortinet, OU=FortiGate, CN=FGT60E...`, or an ordinary web server's); curl
in the host namespace fetches a page over TLS 1.2 or 1.3. netwatch's live capture watches,
tcpdump records, and `netwatch analyze` of the recording must show the certificate's names as
flow facts and label only the FortiGate one as a VPN, with its evidence and confidence.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.certs import FORTIGATE_SUBJECT, make_cert, write_pem
from tests.conftest import requires_root, requires_tools
from tests.live.capture_lab import REPO, Watch, analyze, remote_is, wait_for_line
from tests.netns import Lab

pytestmark = [pytest.mark.live, requires_root, pytest.mark.timeout(120)]

FORTI_DN = "CN=FGT60E0000000000,OU=FortiGate,O=Fortinet"


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab("cap") as lab:
        yield lab


def _serve(lab: Lab, ns: str, folder: Path, subject: dict[str, str], port: int) -> None:
    """Start `openssl s_server -www` in `ns` on `port` with a certificate for `subject`."""
    folder.mkdir()
    cert, key = write_pem(make_cert(subject, san=("www.example.com",)), folder)
    server = lab.spawn(
        ns,
        ["openssl", "s_server", "-accept", str(port), "-cert", str(cert), "-key", str(key),
         "-www", "-naccept", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0,
    )  # fmt: skip
    wait_for_line(server.stdout, "ACCEPT", 20)


def _fetch(lab: Lab, ip: str, port: int, version: str) -> None:
    """One HTTPS request from the host namespace, pinned to TLS `version` (1.2 or 1.3)."""
    res = lab.run(
        lab.host,
        ["curl", "-sk", "--max-time", "10", f"--tlsv{version}", "--tls-max", version,
         "-o", "/dev/null", "-w", "%{http_code}", f"https://{ip}:{port}/"],
        timeout=20,
    )  # fmt: skip
    assert res.stdout == "200", (res.returncode, res.stdout, res.stderr)


def _flow(records: list[dict], ip: str, port: int) -> dict:
    (flow,) = [r for r in records if r["type"] == "flow" and remote_is(ip, port)(r)]
    return flow


@requires_tools("openssl", "curl", "tcpdump")
def test_fortigate_certificate_over_tls12_is_labelled_fortinet(lab: Lab, tmp_path: Path) -> None:
    server_ip = "198.51.100.30"
    peer = lab.add_peer(server_ip)
    _serve(lab, peer.ns, tmp_path / "fgt", FORTIGATE_SUBJECT, 10443)
    watch = Watch(lab, tmp_path, bpf=f"host {server_ip}").start()
    _fetch(lab, server_ip, 10443, "1.2")
    watch.stop()

    live = watch.flows(remote_is(server_ip, 10443))
    assert any(f["app"] == "fortinet" and f["vpn"] for f in live), live[-1:]

    flow = _flow(analyze(watch.pcap), server_ip, 10443)
    assert flow["tls_cert"] == {"subject": FORTI_DN, "issuer": FORTI_DN, "san": ["www.example.com"]}
    assert (flow["app"], flow["category"], flow["vpn"]) == ("fortinet", "vpn", True)
    assert flow["confidence"] == "medium"
    assert flow["evidence"] == [{"name": "cert_subject", "value": FORTI_DN}]
    # The table names the flow by its certificate when there is no SNI, DNS name or Host.
    table = subprocess.run(
        [sys.executable, "-m", "netwatch", "analyze", str(watch.pcap), "--format", "table"],
        capture_output=True, text=True, timeout=120, cwd=REPO, check=True,
    ).stdout  # fmt: skip
    (row,) = [line for line in table.splitlines() if f"{server_ip}:10443" in line]
    assert "fortinet" in row and "CN=FGT60E0000000000" in row  # the column is cut


@requires_tools("openssl", "curl", "tcpdump")
def test_ordinary_tls12_and_tls13_servers_are_not_vpns(lab: Lab, tmp_path: Path) -> None:
    server_ip = "198.51.100.31"
    peer = lab.add_peer(server_ip)
    _serve(lab, peer.ns, tmp_path / "web12", {"CN": "www.example.com"}, 8443)
    _serve(lab, peer.ns, tmp_path / "web13", {"CN": "www.example.com"}, 9443)
    watch = Watch(lab, tmp_path, bpf=f"host {server_ip}").start()
    _fetch(lab, server_ip, 8443, "1.2")
    _fetch(lab, server_ip, 9443, "1.3")
    watch.stop()

    records = analyze(watch.pcap)
    tls12, tls13 = _flow(records, server_ip, 8443), _flow(records, server_ip, 9443)
    assert tls12["tls_cert"] == {
        "subject": "CN=www.example.com",
        "issuer": "CN=www.example.com",
        "san": ["www.example.com"],
    }
    assert tls13["tls_cert"] is None  # encrypted in TLS 1.3: nothing to read, no error
    for flow in (tls12, tls13):
        assert (flow["app"], flow["vpn"]) == ("tls", False)
