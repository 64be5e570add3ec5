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

import json
import sys
import time
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


# --- IPv6 around an IPv4-only tunnel, and the tunnel going down (no kill switch) ----------

SENDER = r"""
import ctypes, socket, sys, time
ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)  # PR_SET_NAME
family = socket.AF_INET6 if ":" in sys.argv[2] else socket.AF_INET
target, seconds = (sys.argv[2], int(sys.argv[3])), float(sys.argv[4])
s = socket.socket(family, socket.SOCK_DGRAM)
connected = sys.argv[5:] == ["connect"]
if connected:
    s.connect(target)
end = time.monotonic() + seconds
while time.monotonic() < end:  # bounded: `seconds`, 20 datagrams a second
    try:
        if connected:
            s.send(b"p" * 200)
        else:
            s.sendto(b"p" * 200, target)  # unconnected: each datagram takes today's route
    except OSError:  # no route for a moment while the tunnel goes away
        pass
    time.sleep(0.05)
"""

COUNT_IN = """
table inet nwcount {{
    counter clear {{ }}
    chain input {{
        type filter hook input priority 0; policy accept;
        ip saddr {src} udp dport {port} counter name clear
    }}
}}
"""


def _counted(lab: Lab, ns: str) -> int:
    """Bytes the peer's nftables counter saw (IP packets, headers included)."""
    res = lab.run(ns, ["nft", "-j", "list", "counter", "inet", "nwcount", "clear"])
    assert res.returncode == 0, res.stderr
    for item in json.loads(res.stdout)["nftables"]:
        if "counter" in item:
            return int(item["counter"]["bytes"])
    raise AssertionError(res.stdout)


@requires_tools("wireguard-go", "wg", "nft")
def test_ipv6_around_an_ipv4_tunnel_and_the_tunnel_going_down(lab: Lab, tmp_path: Path) -> None:
    server, direct, direct6 = "198.51.100.41", "203.0.113.97", "2001:db8:97::7"
    peer = lab.add_peer(server)
    outside = lab.add_peer(direct, ip6=direct6)
    host_pub, peer_pub = _wg_keys(lab, tmp_path, "host"), _wg_keys(lab, tmp_path, "peer")
    _wg_up(lab, peer.ns, tmp_path, "peer", "10.82.0.2", host_pub, None, "10.82.0.1")
    wg = _wg_up(lab, lab.host, tmp_path, "host", "10.82.0.1", peer_pub, server, "10.82.0.2")
    h = lab.host
    # A full IPv4 tunnel: the default route is wg's; the physical link is the fallback the
    # kernel takes once wg is gone. IPv6 keeps its default route by the physical link.
    lab.exec_ok(h, ["wg", "set", wg, "peer", peer_pub, "allowed-ips", "0.0.0.0/0"])
    lab.exec_ok(h, ["ip", "route", "del", f"{direct}/32"])
    lab.exec_ok(h, ["ip", "route", "add", "default", "dev", wg, "metric", "10"])
    lab.exec_ok(h, ["ip", "route", "add", "default", "dev", outside.host_if, "src", "192.0.2.1",
                    "metric", "500"])  # fmt: skip
    lab.exec_ok(h, ["ip", "-6", "route", "add", "default", "dev", outside.host_if])
    rules = tmp_path / "count.nft"
    rules.write_text(COUNT_IN.format(src="192.0.2.1", port=9998))
    lab.exec_ok(outside.ns, ["nft", "-f", str(rules)])
    mmdb = write_mmdb(
        tmp_path / "t.mmdb",
        {f"{ip}/32": ("NL", 64530 + i, f"Net {i}") for i, ip in enumerate((server, direct))}
        | {f"{direct6}/128": ("NL", 64539, "Net 6")},
    )
    script = tmp_path / "sender.py"
    script.write_text(SENDER)
    # The IPv6 sender starts before the daemon, so its first full socket sample lists it: a
    # socket that starts between full samples is not always named yet over IPv6 (an
    # attribution gap of its own, not what this test is about).
    six = lab.spawn(h, [sys.executable, str(script), "leaker6", direct6, "9997", "12"])
    nw = Netwatch(lab, tmp_path, mmdb, ticks=12, config=POLICY)
    four = lab.spawn(h, [sys.executable, str(script), "clearsend", direct, "9998", "7"])
    time.sleep(2.5)
    lab.exec_ok(h, ["ip", "link", "del", wg])  # the tunnel goes away mid-transfer
    assert six.wait(20) == 0 and four.wait(20) == 0
    alerts = nw.alerts()

    v6 = by_rule(alerts, "vpn.ipv6_leak")
    assert v6 and all(proc_name(a) == "leaker6" for a in v6), [
        (proc_name(a), a["flow"]) for a in v6
    ]
    assert outside.host_if in v6[0]["message"], v6[0]["message"]
    assert not [a for a in by_rule(alerts, "vpn.leak") if proc_name(a) == "leaker6"]

    down = [a for a in by_rule(alerts, "vpn.tunnel_down") if proc_name(a) == "clearsend"]
    assert down, [(a["rule"], proc_name(a)) for a in alerts]
    evidence = {e["name"]: e["value"] for e in down[-1]["evidence"]}
    assert evidence["interface"] == outside.host_if, evidence
    counted = _counted(lab, outside.ns)
    assert counted > 0
    assert abs(int(evidence["sent_in_clear"]) - counted) <= 0.02 * counted, (evidence, counted)


def test_without_capture_a_leak_is_found_by_the_route_lookup(lab: Lab, tmp_path: Path) -> None:
    """`--no-capture`: the socket's interface comes from the kernel's route lookup, and the
    alert says so (`egress_by = route`)."""
    direct = "203.0.113.66"
    outside = lab.add_peer(direct)
    mmdb = write_mmdb(tmp_path / "t.mmdb", {f"{direct}/32": ("NL", 64540, "Net 66")})
    script = tmp_path / "sender.py"
    script.write_text(SENDER)
    lab.spawn(
        lab.host, [sys.executable, str(script), "routedleak", direct, "9996", "10", "connect"]
    )
    nw = Netwatch(lab, tmp_path, mmdb, ticks=4, config=POLICY, extra=("--no-capture",))
    alerts = nw.alerts()
    leaks = [a for a in by_rule(alerts, "vpn.leak") if proc_name(a) == "routedleak"]
    assert leaks, [(a["rule"], proc_name(a)) for a in alerts]
    evidence = {e["name"]: e["value"] for e in leaks[0]["evidence"]}
    assert evidence["egress_by"] == "route", evidence
    assert evidence["interface"] == outside.host_if, evidence
