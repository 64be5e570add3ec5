"""Leaks around a required tunnel, live in namespaces (Lab tag "leak"; issue 15, item 2).

`netwatch daemon` (socket sampling plus capture, the bundled rules) runs in the lab's host
namespace with `[policy.tunnel] required = true`. A WireGuard tunnel (wireguard-go) joins the
host to a peer namespace at 198.51.100.21 and carries 203.0.113.88; another peer,
203.0.113.77, is reached directly by its veth. One program sends UDP to 203.0.113.77 (a
leak), DNS to 203.0.113.77:53 (a DNS leak) and UDP to 203.0.113.88 (inside the tunnel).
Expected: `vpn.leak` and `vpn.dns_leak` naming the program and the veth; nothing for the
tunnelled traffic nor for wireguard-go's own outer packets, which leave by the veth too.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import requires_root, requires_tools
from tests.live.test_vpn_captures import _wg_keys, _wg_up
from tests.live.test_vpngate_scenarios import Netwatch, by_rule, proc_name
from tests.mmdb import write_mmdb
from tests.netns import Lab

pytestmark = [pytest.mark.live, requires_root, pytest.mark.timeout(150)]

LEAKER = r"""
import ctypes, socket, sys, time
ctypes.CDLL(None).prctl(15, b"leaker", 0, 0, 0)  # PR_SET_NAME: the program the alert names
socks = []
for target in sys.argv[1:]:
    host, port = target.split(":")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((host, int(port)))
    socks.append(s)
end = time.monotonic() + 4
while time.monotonic() < end:
    for s in socks:
        try:
            s.send(b"leak" * 8)
        except OSError:  # ICMP port unreachable from the peer: keep sending
            pass
    time.sleep(0.2)
"""

POLICY = """
[policy.tunnel]
required = true
interfaces = ["wg*"]
"""


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab("leak") as lab:
        yield lab


@requires_tools("wireguard-go", "wg")
def test_leaks_outside_the_tunnel_are_named_and_tunnelled_traffic_is_not(
    lab: Lab, tmp_path: Path
) -> None:
    server, direct, inside = "198.51.100.21", "203.0.113.77", "203.0.113.88"
    peer = lab.add_peer(server)
    outside = lab.add_peer(direct)
    host_pub, peer_pub = _wg_keys(lab, tmp_path, "host"), _wg_keys(lab, tmp_path, "peer")
    _wg_up(lab, peer.ns, tmp_path, "peer", "10.79.0.2", host_pub, None, "10.79.0.1")
    mmdb = write_mmdb(
        tmp_path / "t.mmdb",
        {
            f"{ip}/32": ("NL", 64520 + i, f"Net {i}")
            for i, ip in enumerate((server, direct, inside))
        },
    )
    nw = Netwatch(lab, tmp_path, mmdb, ticks=8, config=POLICY)
    wg = _wg_up(lab, lab.host, tmp_path, "host", "10.79.0.1", peer_pub, server, "10.79.0.2")
    lab.exec_ok(lab.host, ["wg", "set", wg, "peer", peer_pub,
                           "allowed-ips", f"10.79.0.2/32,{inside}/32"])  # fmt: skip
    lab.exec_ok(lab.host, ["ip", "route", "add", f"{inside}/32", "dev", wg])
    script = tmp_path / "leaker.py"
    script.write_text(LEAKER)
    targets = [f"{direct}:9999", f"{direct}:53", f"{inside}:9999"]
    res = lab.run(lab.host, [sys.executable, str(script), *targets], timeout=30)
    assert res.returncode == 0, res.stderr
    alerts = nw.alerts()

    leaks = by_rule(alerts, "vpn.leak")
    assert leaks, [a["rule"] for a in alerts]
    for a in leaks:  # only the direct flow: not the tunnelled one, not wireguard-go's
        assert a["flow"]["remote_ip"] == direct and a["flow"]["remote_port"] == 9999, a
        assert proc_name(a) == "leaker", a
        assert outside.host_if in a["message"], a["message"]
        evidence = {e["name"]: e["value"] for e in a["evidence"]}
        assert evidence["interface"] == outside.host_if, evidence
    dns = by_rule(alerts, "vpn.dns_leak")
    assert dns, [a["rule"] for a in alerts]
    assert all(a["flow"]["remote_ip"] == direct and a["flow"]["remote_port"] == 53 for a in dns), (
        dns
    )
    assert proc_name(dns[0]) == "leaker", dns[0]
    assert not [a for a in alerts if a["rule"].startswith("vpn.") and inside in a["message"]]
