"""`netwatch check` on a real tunnel's routes, in namespaces (Lab tag "ctun"; issue 15).

A WireGuard tunnel (wireguard-go) joins the lab's host namespace to a peer at 198.51.100.31,
and the host's IPv4 default route goes through it, as a full-tunnel VPN client sets it. IPv6
first keeps a default route by the physical link (the veth): the check, run in the host
namespace with `[policy.tunnel] required = true`, must report the IPv6 leak as high, name
both interfaces, and exit 4. With IPv6 also routed into the tunnel, it reports the traffic as
going through the tunnel and nothing high. A SoftEther connection setting to 203.0.113.50,
which the test's GeoIP file puts in RU, is reported as a server abroad (home country DE).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import requires_root, requires_tools
from tests.live.test_vpn_captures import _wg_keys, _wg_up
from tests.locks import softether_lock
from tests.mmdb import write_mmdb
from tests.netns import Lab
from tests.softether_files import client_config

pytestmark = [pytest.mark.live, requires_root, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[2]
CONFIG = """
[policy]
home_country = "DE"

[policy.tunnel]
required = true
interfaces = ["wg*"]
"""


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab("ctun") as lab:
        yield lab


def _check(lab: Lab, tmp_path: Path, softether: Path) -> tuple[int, dict[str, dict[str, Any]]]:
    argv = [sys.executable, "-m", "netwatch", "check", "--format", "jsonl",
            "--config", str(tmp_path / "config.toml"), "--softether-dir", str(softether),
            "--db", str(tmp_path / "none.db")]  # fmt: skip
    env = {**os.environ, "NETWATCH_GEOIP_DIR": str(tmp_path / "geoip")}
    res = lab.run(lab.host, argv, timeout=60, cwd=REPO, env=env)
    assert "Traceback" not in res.stderr, res.stderr
    return res.returncode, {f["id"]: f for f in map(json.loads, res.stdout.splitlines())}


@requires_tools("wireguard-go", "wg")
def test_check_sees_ipv6_going_around_a_full_tunnel(lab: Lab, tmp_path: Path) -> None:
    server = "198.51.100.31"
    peer = lab.add_peer(server, ip6="2001:db8:31::1")
    host_pub, peer_pub = _wg_keys(lab, tmp_path, "host"), _wg_keys(lab, tmp_path, "peer")
    _wg_up(lab, peer.ns, tmp_path, "peer", "10.81.0.2", host_pub, None, "10.81.0.1")
    wg = _wg_up(lab, lab.host, tmp_path, "host", "10.81.0.1", peer_pub, server, "10.81.0.2")
    lab.exec_ok(lab.host, ["ip", "route", "add", "default", "dev", wg])
    lab.exec_ok(lab.host, ["ip", "-6", "route", "add", "default", "dev", peer.host_if])
    (tmp_path / "config.toml").write_text(CONFIG)
    (tmp_path / "geoip").mkdir()
    write_mmdb(tmp_path / "geoip" / "t.mmdb", {"203.0.113.0/24": ("RU", 64500, "Test RU")})
    softether = tmp_path / "se"
    softether.mkdir()
    (softether / "vpn_client.config").write_text(
        client_config(("abroad", "203.0.113.50", "DEFAULT", False, 0))
    )

    with softether_lock():
        code, found = _check(lab, tmp_path, softether)
        leak = found.get("tunnel.ipv6_leak")
        assert leak is not None and leak["severity"] == "high", found
        assert peer.host_if in leak["title"] and wg in leak["title"], leak
        assert code == 4
        foreign = found.get(f"softether.foreign_server:{softether}/vpn_client.config:abroad")
        assert foreign is not None and "RU" in foreign["title"], found

        lab.exec_ok(lab.host, ["ip", "-6", "route", "del", "default", "dev", peer.host_if])
        lab.exec_ok(lab.host, ["ip", "-6", "route", "add", "default", "dev", wg])
        code, found = _check(lab, tmp_path, softether)
    assert not [i for i in found if i.startswith("tunnel.") and i != "tunnel.ok"], found
    assert f"through {wg}" in found["tunnel.ok"]["title"], found["tunnel.ok"]
    assert code in (0, 1), found
