"""Policy: which flows expected-VPN entries cover, trusted and foreign remotes."""

from __future__ import annotations

import ipaddress

import pytest

from netwatch.detect.policy import PolicyView, entry_matches
from netwatch.model import EndpointPattern, ExpectedVpn, Policy, Transport
from tests.builders import make_flow, make_label, make_process, make_remote

OVPN = make_flow(
    remote_ip="203.0.113.5",
    remote_port=1194,
    transport=Transport.UDP,
    process=make_process("openvpn", exe="/usr/sbin/openvpn"),
    label=make_label("openvpn"),
)
PCAP_OVPN = make_flow(
    remote_ip="203.0.113.5", remote_port=1194, transport=Transport.UDP, label=make_label("openvpn")
)
SOCKET_OVPN = make_flow(
    remote_ip="203.0.113.5",
    remote_port=1194,
    transport=Transport.UDP,
    process=make_process("openvpn"),
)
NET = ipaddress.ip_network


@pytest.mark.parametrize(
    ("entry", "flow", "expected"),
    [
        (ExpectedVpn(process=("openvpn",)), OVPN, True),
        (ExpectedVpn(process=("open*",)), OVPN, True),
        (ExpectedVpn(process=("wireguard-go",)), OVPN, False),
        (ExpectedVpn(path=("/usr/sbin/openvpn",)), OVPN, True),
        (ExpectedVpn(path=("/opt/*",)), OVPN, False),
        (ExpectedVpn(protocols=("openvpn",)), OVPN, True),
        (ExpectedVpn(protocols=("wireguard",)), OVPN, False),
        (ExpectedVpn(endpoints=(EndpointPattern(NET("203.0.113.0/24")),)), OVPN, True),
        (ExpectedVpn(endpoints=(EndpointPattern(NET("203.0.113.5/32"), 1194),)), OVPN, True),
        (ExpectedVpn(endpoints=(EndpointPattern(NET("203.0.113.5/32"), 443),)), OVPN, False),
        (ExpectedVpn(endpoints=(EndpointPattern(NET("2001:db8::/32")),)), OVPN, False),
        # Every named field must agree: the right program to the wrong server is not expected.
        (
            ExpectedVpn(process=("openvpn",), endpoints=(EndpointPattern(NET("198.51.100.0/24")),)),
            OVPN,
            False,
        ),
        # Unknown facts neither prove nor refute, but something must be known and agree.
        (ExpectedVpn(process=("openvpn",)), PCAP_OVPN, False),
        (ExpectedVpn(process=("openvpn",), protocols=("openvpn",)), PCAP_OVPN, True),
        (ExpectedVpn(process=("openvpn",), protocols=("openvpn",)), SOCKET_OVPN, True),
        (ExpectedVpn(protocols=("openvpn",)), SOCKET_OVPN, False),
    ],
)
def test_entry_matches(entry: ExpectedVpn, flow: object, expected: bool) -> None:
    assert entry_matches(entry, flow) is expected  # type: ignore[arg-type]


def test_trusted_and_foreign() -> None:
    view = PolicyView(Policy(trusted_networks=(NET("203.0.113.0/24"),), home_country="RU"))
    assert view.trusted(OVPN)
    assert not view.trusted(make_flow(remote_ip="198.51.100.1"))
    assert not view.trusted(make_flow(remote_ip=None))
    assert not view.foreign(make_flow(remote=make_remote(country="RU")))
    assert view.foreign(make_flow(remote=make_remote(country="JP")))
    assert not view.foreign(make_flow(remote=make_remote(country=None)))
    assert PolicyView().foreign(make_flow(remote=make_remote(country="RU")))


def test_expected_by_names_the_entry() -> None:
    work = ExpectedVpn("work", process=("openvpn",))
    view = PolicyView(Policy(expected_vpn=(ExpectedVpn("wg", protocols=("wireguard",)), work)))
    assert view.expected(OVPN)
    assert view.expected_by(OVPN) is work
