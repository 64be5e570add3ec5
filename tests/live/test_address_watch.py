"""`sources.capture.AddressWatch` in a namespace the test makes: it reads the addresses
again only after the kernel reported a change, and sees an address added or removed at
the next call.

Lab tag "addr": the host namespace (192.0.2.1 and 2001:db8::1 on lo) gets a veth pair
with both ends inside; the test adds and removes 198.51.100.7 and 2001:db8::7 there.
"""

from __future__ import annotations

import ipaddress
import subprocess

import pytest

from netwatch.model import IPAddress
from netwatch.sources.capture import AddressWatch, local_addresses
from tests.conftest import requires_root, requires_tools
from tests.netns import Lab
from tests.starts_lab import in_netns

pytestmark = [pytest.mark.live, requires_root, requires_tools("ip"), pytest.mark.timeout(60)]

V4, V6 = ipaddress.ip_address("198.51.100.7"), ipaddress.ip_address("2001:db8::7")


def test_addresses_are_read_again_only_after_a_change() -> None:
    with Lab("addr") as lab:
        ns = lab.host
        reads: list[frozenset[IPAddress]] = []

        def read() -> frozenset[IPAddress]:
            with in_netns(ns):  # psutil reads the namespace of the calling thread
                reads.append(local_addresses())
            return reads[-1]

        def ip(*args: str) -> None:
            subprocess.run(["ip", "netns", "exec", ns, "ip", *args], check=True)

        ip("link", "add", "nwaddr0", "type", "veth", "peer", "name", "nwaddr1")
        ip("link", "set", "nwaddr0", "up")
        with in_netns(ns):
            watch = AddressWatch(read)  # its netlink socket belongs to the lab namespace
        try:
            first = watch()
            assert ipaddress.ip_address("192.0.2.1") in first and V4 not in first
            for _ in range(3):
                assert watch() is first  # nothing changed: not read again
            assert len(reads) == 1
            ip("addr", "add", "198.51.100.7/32", "dev", "nwaddr0")
            ip("-6", "addr", "add", "2001:db8::7/128", "dev", "nwaddr0", "nodad")
            now = watch()
            assert V4 in now and V6 in now
            assert len(reads) == 2
            assert watch() is now and len(reads) == 2
            ip("addr", "del", "198.51.100.7/32", "dev", "nwaddr0")
            assert V4 not in watch() and V6 in watch()
        finally:
            watch.close()
        assert watch() is not None and len(reads) >= 4  # closed: read every call
