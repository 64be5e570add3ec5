"""Record the golden captures (run by hand, as root): `python -m tests.golden.record [NAME...]`.

Each capture is made by the live tests' own labs (tests/netns.py: network namespaces with
documentation addresses only, traffic never leaves them) running real software, and recorded
by tcpdump in the lab's host namespace (IPv4 only, without the link's own chatter) into
tests/golden/captures/NAME.pcap:

  dns_https     a DNS query for www.example.org answered by the lab's server, then an HTTPS
                fetch of that site (curl, the lab's own CA)
  vpngate_http  a plain-HTTP fetch of a VPN Gate-style relay list from "www.vpngate.net"
  openvpn_udp   an OpenVPN (TLS mode, UDP) client and server up to "Initialization Sequence
                Completed"
  wireguard     a wireguard-go handshake and three datagrams through the tunnel
  ikev2         strongSwan's charon on both sides: IKE_SA_INIT on UDP 500, then IKE_AUTH (PSK)
                on 4500 as strongSwan does (no NAT, but MOBIKE moves it there)

Run from the repository root with the project's interpreter, e.g.

    sudo PYTHONPATH=$PWD .venv/bin/python -m tests.golden.record            # all of them
    sudo PYTHONPATH=$PWD .venv/bin/python -m tests.golden.record wireguard  # just one

then regenerate the expected output and review its diff before committing both:

    PYTHONPATH=$PWD .venv/bin/python -m pytest tests/golden --golden-update

A capture is refused if it grows past 100 KB (keep them small: they are committed). Certificates
and keys are made afresh on each run, so re-recording changes bytes (and sizes in the expected
files) even when netwatch did not change: re-record only to add or change a scenario.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.live.capture_lab import wait_for_line, wait_until
from tests.live.test_vpn_captures import (
    _wg_keys,
    _wg_up,
    start_openvpn_client,
    start_openvpn_server,
    wait_wg_handshake,
    wg_poke,
)
from tests.live.test_vpngate_scenarios import start_vg_site
from tests.netns import HOST_IP, Lab

CAPTURES = Path(__file__).resolve().parent / "captures"
MAX_BYTES = 100_000

# Answers every A query with the address in argv[2]; one query per packet, then exits.
DNS_SERVER = r"""
import socket, sys
from scapy.layers.dns import DNS, DNSRR
srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); srv.bind((sys.argv[1], 53))
print("serving", flush=True)
query, peer = srv.recvfrom(512)
q = DNS(query)
answer = DNS(id=q.id, qr=1, aa=1, rd=q.rd, ra=1, qd=q.qd,
             an=DNSRR(rrname=q.qd.qname, type="A", ttl=300, rdata=sys.argv[2]))
srv.sendto(bytes(answer), peer)
"""

# Asks argv[1] for the A record of argv[2]; prints the answer.
DNS_CLIENT = r"""
import socket, sys
from scapy.layers.dns import DNS, DNSQR
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(10)
s.connect((sys.argv[1], 53))
s.send(bytes(DNS(id=4242, rd=1, qd=DNSQR(qname=sys.argv[2]))))
print(DNS(s.recv(512)).an.rdata)
"""


class Recorder:
    """tcpdump on every interface of the lab's host namespace, writing `path`."""

    def __init__(self, lab: Lab, path: Path) -> None:
        self.lab, self.path = lab, path

    def __enter__(self) -> Recorder:
        argv = ["tcpdump", "-i", "any", "-U", "--immediate-mode", "-n", "-w", str(self.path)]
        # IPv4 only: a new veth link sends IPv6 router solicitations and MLD reports, and ARP,
        # at moments of its own; left in, they would change every recording for no reason.
        argv.append("ip")
        self.proc = self.lab.spawn(self.lab.host, argv, stderr=subprocess.PIPE, bufsize=0)
        wait_for_line(self.proc.stderr, "listening on", 20)
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.5)  # the last replies reach tcpdump
        self.proc.terminate()
        self.proc.wait(10)


def _ok(res: subprocess.CompletedProcess[str], what: str) -> str:
    if res.returncode != 0:
        raise RuntimeError(f"{what} failed: {res.stderr.strip()[-800:]}")
    return res.stdout


def _curl(lab: Lab, site: str, url: str, *options: str) -> None:
    """curl `url` from the host, its host name resolved to `site` (the lab has no DNS)."""
    scheme, _, rest = url.partition("://")
    name = rest.split("/", 1)[0]
    port = 443 if scheme == "https" else 80
    argv = ["curl", "-sSf", "--resolve", f"{name}:{port}:{site}", *options, url]
    _ok(lab.run(lab.host, argv), f"fetching {url}")


def record_dns_https(lab: Lab, work: Path, out: Path) -> None:
    site = "203.0.113.80"
    start_vg_site(lab, work, site)
    (work / "dns_server.py").write_text(DNS_SERVER)
    (work / "dns_client.py").write_text(DNS_CLIENT)
    dns = lab.spawn(
        lab.peers[0].ns,
        [sys.executable, str(work / "dns_server.py"), site, site],
        stdout=subprocess.PIPE,
        bufsize=0,
    )
    wait_for_line(dns.stdout, "serving", 20)
    with Recorder(lab, out):
        got = _ok(
            lab.run(
                lab.host, [sys.executable, str(work / "dns_client.py"), site, "www.example.org"]
            ),
            "DNS query",
        )
        assert got.strip() == site, got
        _curl(lab, site, "https://www.example.org/", "--cacert", str(work / "ca.crt"))


def record_vpngate_http(lab: Lab, work: Path, out: Path) -> None:
    site = "203.0.113.81"
    start_vg_site(lab, work, site)
    with Recorder(lab, out):
        _curl(lab, site, "http://www.vpngate.net/api/iphone/")


def record_openvpn_udp(lab: Lab, work: Path, out: Path) -> None:
    server_ip = "198.51.100.10"
    start_openvpn_server(lab, work, server_ip)
    with Recorder(lab, out):
        client = start_openvpn_client(lab, work, server_ip)
        client.terminate()
        client.wait(10)


def record_wireguard(lab: Lab, work: Path, out: Path) -> None:
    server_ip = "198.51.100.11"
    peer = lab.add_peer(server_ip)
    host_pub, peer_pub = _wg_keys(lab, work, "host"), _wg_keys(lab, work, "peer")
    _wg_up(lab, peer.ns, work, "peer", "10.78.0.2", host_pub, None, "10.78.0.1")
    with Recorder(lab, out):
        ifname = _wg_up(lab, lab.host, work, "host", "10.78.0.1", peer_pub, server_ip, "10.78.0.2")
        wg_poke(lab)
        wait_wg_handshake(lab, ifname)
        for _ in range(3):
            wg_poke(lab)


STRONGSWAN_CONF = """
charon {
  load_modular = yes
  install_routes = no
  plugins {
    include /etc/strongswan.d/charon/*.conf
    vici {
      socket = unix://%(vici)s
    }
  }
}
"""

SWANCTL_CONF = """
connections {
  gold {
    version = 2
    local_addrs = %(me)s
    remote_addrs = %(them)s
    proposals = aes256-sha256-modp2048
    local { auth = psk
            id = %(my_id)s }
    remote { auth = psk
             id = %(their_id)s }
    children {
      net { local_ts = %(my_ts)s/32
            remote_ts = %(their_ts)s/32
            esp_proposals = aes256-sha256 }
    }
  }
}
secrets {
  ike-lab { id-1 = client
            id-2 = server
            secret = "golden-lab-only" }
}
"""


def _charon(lab: Lab, ns: str, work: Path, side: str, **conf: str) -> str:
    """strongSwan's charon in `ns` with its config loaded; its vici socket URI.

    charon keeps its pid file in /run whatever the namespace, so each one gets a /run of its
    own (a tmpfs mounted in the mount namespace `ip netns exec` makes for it); the vici socket
    and the configuration live in `work`.
    """
    vici = work / f"{side}.vici"
    (work / f"{side}-strongswan.conf").write_text(STRONGSWAN_CONF % {"vici": vici})
    (work / f"{side}-swanctl.conf").write_text(SWANCTL_CONF % conf)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
           "STRONGSWAN_CONF": str(work / f"{side}-strongswan.conf")}  # fmt: skip
    lab.spawn(ns, ["sh", "-c", "mount -t tmpfs none /run && exec /usr/lib/ipsec/charon"],
              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    wait_until(vici.exists, 15, f"charon's vici socket ({side})")
    uri = f"unix://{vici}"
    _ok(lab.run(ns, ["swanctl", "--load-all", "--file", str(work / f"{side}-swanctl.conf"),
                     "--uri", uri], env=env), f"swanctl --load-all ({side})")  # fmt: skip
    return uri


def record_ikev2(lab: Lab, work: Path, out: Path) -> None:
    server_ip = "198.51.100.13"
    peer = lab.add_peer(server_ip)
    _charon(lab, peer.ns, work, "server", me=server_ip, them=HOST_IP, my_id="server",
            their_id="client", my_ts="10.79.0.2", their_ts="10.79.0.1")  # fmt: skip
    uri = _charon(lab, lab.host, work, "client", me=HOST_IP, them=server_ip, my_id="client",
                  their_id="server", my_ts="10.79.0.1", their_ts="10.79.0.2")  # fmt: skip
    with Recorder(lab, out):
        # Only the IKE exchange is wanted: the CHILD_SA (ESP in the kernel's xfrm) may be
        # refused where the kernel lacks the algorithms, and is not needed.
        res = lab.run(lab.host, ["swanctl", "--initiate", "--child", "net", "--timeout", "20",
                                 "--uri", uri])  # fmt: skip
        if "IKE_SA gold[1] established" not in res.stdout:
            raise RuntimeError(f"the IKE_SA did not come up: {res.stdout[-800:]}")


SCENARIOS: dict[str, Callable[[Lab, Path, Path], None]] = {
    "dns_https": record_dns_https,
    "vpngate_http": record_vpngate_http,
    "openvpn_udp": record_openvpn_udp,
    "wireguard": record_wireguard,
    "ikev2": record_ikev2,
}


def record(name: str) -> Path:
    """Run scenario `name` in a fresh lab; the written capture's path."""
    out = CAPTURES / f"{name}.pcap"
    CAPTURES.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"golden-{name}-") as tmp, Lab("gold") as lab:
        raw = Path(tmp) / "raw.pcap"
        SCENARIOS[name](lab, Path(tmp), raw)
        size = raw.stat().st_size
        if size > MAX_BYTES:
            raise RuntimeError(f"{name}: {size} bytes, over {MAX_BYTES}: make the scenario smaller")
        out.write_bytes(raw.read_bytes())
        out.chmod(0o644)
    return out


def main(argv: list[str]) -> int:
    names = argv or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        print(f"unknown scenario: {', '.join(unknown)} (known: {', '.join(SCENARIOS)})")
        return 2
    for name in names:
        path = record(name)
        print(f"{path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}: "
              f"{path.stat().st_size} bytes (host {HOST_IP})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
