"""The dashboard's filter language, on flows built with the builders (no Textual)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netwatch.model import Direction, ListHit, Transport
from netwatch.ui.query import matches, parse
from tests.builders import make_flow, make_label, make_process, make_remote

VPN = make_flow(
    "90.189.249.23",
    443,
    process=make_process("vpnclient", pid=4242, user="root"),
    label=make_label("softether", "vpn", vpn=True),
    remote=replace(
        make_remote("90.189.249.23", "RU", 12389, "PJSC Rostelecom"),
        lists=(ListHit("vpngate"),),
    ),
)
WEB = make_flow(
    "140.82.112.3",
    443,
    local_port=40000,
    process=make_process("firefox", pid=2100),
    sni="github.com",
    remote=make_remote("140.82.112.3", "US", 36459, "GITHUB", ("5 Eyes", "9 Eyes", "14 Eyes")),
)
DNS = make_flow(
    "9.9.9.9",
    53,
    transport=Transport.UDP,
    process=None,
    remote=make_remote("9.9.9.9", "CH", 19281, "Quad9"),
)
SSH_IN = make_flow(
    "203.0.113.9",
    50022,
    local_port=22,
    direction=Direction.INBOUND,
    process=make_process("sshd", pid=700, user="root"),
    remote=make_remote("203.0.113.9", "JP", 2516, "KDDI"),
)
ALL = [VPN, WEB, DNS, SSH_IN]


def hits(text: str) -> list[str]:
    q = parse(text)
    assert not q.errors, q.errors
    names = []
    for ef in ALL:
        if matches(q, ef):
            names.append(ef.flow.process.name if ef.flow.process else "?")
    return names


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ["vpnclient", "firefox", "?", "sshd"]),
        ("proc:vpnclient", ["vpnclient"]),
        ("proc:VPN", ["vpnclient"]),
        ("proc:2100", ["firefox"]),
        ("proc:unknown", ["?"]),
        ("pid:700", ["sshd"]),
        ("country:RU", ["vpnclient"]),
        ("country:ru,us", ["vpnclient", "firefox"]),
        ("vpn:true", ["vpnclient"]),
        ("vpn:false", ["firefox", "?", "sshd"]),
        ("port:443", ["vpnclient", "firefox"]),
        ("port:22", ["sshd"]),
        ("rport:22", []),
        ("lport:22", ["sshd"]),
        ("proc:vpnclient country:RU vpn:true port:443", ["vpnclient"]),
        ("-country:RU", ["firefox", "?", "sshd"]),
        ("!proc:firefox -proc:sshd", ["vpnclient", "?"]),
        ("asn:12389", ["vpnclient"]),
        ("asn:AS36459", ["firefox"]),
        ("asn:quad9", ["?"]),
        ("org:rostelecom", ["vpnclient"]),
        ("name:github", ["firefox"]),
        ("proto:udp", ["?"]),
        ("proto:softether", ["vpnclient"]),
        ("proto:vpn", ["vpnclient"]),
        ("dir:in", ["sshd"]),
        ("dir:out", ["vpnclient", "firefox", "?"]),
        ("eyes:5", ["firefox"]),
        ("eyes:none", ["vpnclient", "?", "sshd"]),
        ("list:vpngate", ["vpnclient"]),
        ("user:root", ["vpnclient", "sshd"]),
        ("ip:90.189", ["vpnclient"]),
        ("github", ["firefox"]),
        ("-github", ["vpnclient", "?", "sshd"]),
        ("rostelecom 443", ["vpnclient"]),
    ],
)
def test_query_selects_the_expected_flows(text: str, expected: list[str]) -> None:
    assert hits(text) == expected


def test_unknown_fields_and_empty_values_are_reported_not_raised() -> None:
    q = parse("colour:red port: proc:curl")
    assert q.errors == ("unknown field 'colour'", "port: needs a value")
    assert [t.field for t in q.terms] == ["proc"]


def test_a_lone_dash_is_free_text() -> None:
    q = parse("-")
    assert q.terms[0].field is None and not q.terms[0].negated


@given(st.text(max_size=80))
def test_any_query_text_parses_and_matches_without_raising(text: str) -> None:
    q = parse(text)
    for ef in ALL:
        matches(q, ef)
