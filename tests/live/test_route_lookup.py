"""The route lookup (`sources.routes`) against a real routing table in a namespace.

Lab tag "rout": the host namespace gets two links (veth pairs with both ends inside, as
this kernel has no dummy links), `nwdirect` (203.0.113.0/24) and
`nwtun0` (a default route, as a full tunnel sets it), and a policy rule that sends packets
marked 0x51 by a third table through `nwdirect` (wg-quick's fwmark pattern). The lookup,
run inside the namespace, must give the interface `ip route get` gives, and none for an
address with no route.
"""

from __future__ import annotations

import json
import sys

import pytest

from tests.conftest import requires_root, requires_tools
from tests.netns import Lab

pytestmark = [pytest.mark.live, requires_root, requires_tools("ip"), pytest.mark.timeout(60)]

ASK = """
import json, sys
from netwatch.sources.routes import RouteLookup
r = RouteLookup()
print(json.dumps({a: r.egress(a) for a in sys.argv[1:]}))
"""


def test_lookup_follows_the_namespace_routing_table() -> None:
    with Lab("rout") as lab:
        ns = lab.host
        for cmd in (
            ["ip", "link", "add", "nwdirect", "type", "veth", "peer", "name", "nwdirectp"],
            ["ip", "link", "add", "nwtun0", "type", "veth", "peer", "name", "nwtun0p"],
            *(["ip", "link", "set", d, "up"] for d in ("nwdirect", "nwdirectp", "nwtun0")),
            ["ip", "link", "set", "nwtun0p", "up"],
            ["ip", "addr", "add", "203.0.113.1/24", "dev", "nwdirect"],
            ["ip", "addr", "add", "198.51.100.1/32", "dev", "nwtun0"],
            ["ip", "route", "add", "default", "dev", "nwtun0"],
            ["ip", "route", "add", "default", "dev", "nwdirect", "table", "51"],
            ["ip", "rule", "add", "fwmark", "0x51", "table", "51"],
        ):
            lab.exec_ok(ns, cmd)
        res = lab.run(ns, [sys.executable, "-c", ASK, "203.0.113.40", "192.0.2.99", "2001:db8::5"])
        assert res.returncode == 0, res.stderr
        got = json.loads(res.stdout)
        want = {}
        for addr in got:
            out = lab.run(ns, ["ip", "route", "get", addr])
            words = out.stdout.split()
            want[addr] = words[words.index("dev") + 1] if out.returncode == 0 else None
        assert got == want
        assert got["203.0.113.40"] == "nwdirect"
        assert got["192.0.2.99"] == "nwtun0"  # unmarked traffic takes the tunnel
        assert got["2001:db8::5"] is None  # no IPv6 route at all
