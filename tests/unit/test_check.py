"""`netwatch check`'s judgement on recorded facts: SoftEther files, packages, listeners, alerts."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from netwatch import codec
from netwatch.cli.check import WIDTH, render
from netwatch.detect.check import check, incomplete, worst
from netwatch.model import (
    CheckFacts,
    DefaultRoute,
    Finding,
    HostFacts,
    InstalledVpn,
    Listener,
    Severity,
    TunnelPolicy,
)
from netwatch.sources.hostfacts import parse_softether_config, read_host_facts
from tests.builders import make_alert
from tests.softether_files import SERVER_CONFIG, client_config

SERVER = "/var/lib/softether/vpn_server.config"
CLIENT = "/var/lib/softether/vpn_client.config"
VPNGATE_ACCOUNT = ("vpngate-jp", "public-vpn-226.opengw.net", "VPNGATE", False, 0)
OFFICE_STARTUP = ("office", "vpn.example.com", "OFFICE", True, 4294967295)
OFFICE_MANUAL = ("manual", "vpn.example.com", "OFFICE", False, 0)


def _facts(*texts: tuple[str, str], **kw: object) -> CheckFacts:
    host = HostFacts(1.0, tuple(parse_softether_config(t, p) for p, t in texts))
    return CheckFacts(host, **kw)  # type: ignore[arg-type]


def test_client_accounts_are_parsed() -> None:
    cfg = parse_softether_config(client_config(VPNGATE_ACCOUNT, OFFICE_STARTUP), CLIENT)
    assert [(a.name, a.hostname, a.hub, a.startup, a.retries, a.port) for a in cfg.accounts] == [
        ("vpngate-jp", "public-vpn-226.opengw.net", "VPNGATE", False, 0, 443),
        ("office", "vpn.example.com", "OFFICE", True, 4294967295, 443),
    ]
    assert cfg.damage == ""
    assert parse_softether_config(SERVER_CONFIG, SERVER).damage == ""


def test_a_client_using_a_vpngate_relay_is_not_itself_a_relay() -> None:
    using = parse_softether_config(client_config(VPNGATE_ACCOUNT), CLIENT)
    assert not using.vpngate  # HubName VPNGATE: every public relay serves that hub
    relay = client_config(VPNGATE_ACCOUNT).replace(
        "\tdeclare Config", "\tdeclare VPNGATE\n\t{\n\t}\n\tdeclare Config"
    )
    assert parse_softether_config(relay, CLIENT).vpngate  # any other mention still counts


def test_vpngate_hub_is_high_with_advice() -> None:
    (f,) = check(_facts((SERVER, SERVER_CONFIG)))
    assert f.severity is Severity.HIGH
    assert f.id == f"softether.vpngate_relay:{SERVER}"
    assert f.evidence == (f"{SERVER}: hub VPNGATE declared", "listener ports: 443, 5555")
    assert "HubDelete VPNGATE" in f.advice
    assert "systemctl disable --now softether-vpnserver" in f.advice
    assert worst([f]) is Severity.HIGH


def test_server_without_vpngate_hub_finds_nothing() -> None:
    assert check(_facts((SERVER, SERVER_CONFIG.replace("VPNGATE", "OFFICE")))) == []


def test_client_accounts_to_vpngate_or_starting_alone_are_medium() -> None:
    text = client_config(VPNGATE_ACCOUNT, OFFICE_STARTUP, OFFICE_MANUAL)
    found = check(_facts((CLIENT, text)))
    assert [(f.severity, f.title) for f in found] == [
        (Severity.MEDIUM, "SoftEther connection 'office' to vpn.example.com:443"),
        (
            Severity.MEDIUM,
            "SoftEther connection 'vpngate-jp' to public-vpn-226.opengw.net:443 (VPN Gate)",
        ),
    ]
    office, vg = found
    assert office.evidence[1:] == (
        "connects when the client service starts (StartupAccount)",
        "reconnects for ever after a drop (NumRetry)",
    )
    assert "server public-vpn-226.opengw.net is a VPN Gate relay" in vg.evidence
    assert "AccountDelete vpngate-jp" in vg.advice


def test_damaged_files_are_one_low_finding_each_and_the_check_goes_on() -> None:
    cut = SERVER_CONFIG[: SERVER_CONFIG.index("\tdeclare VirtualHUB")]
    extra_brace = client_config(VPNGATE_ACCOUNT) + "}\n"
    facts = _facts(
        ("/a/vpn_server.config", cut),
        ("/b/vpn_client.config", extra_brace),
        ("/c/vpn_server.config", "this is not a config\n"),
        ("/d/vpn_server.config", SERVER_CONFIG),
    )
    found = check(facts)
    unread = [f for f in found if f.id.startswith("unreadable:")]
    assert [f.evidence for f in unread] == [
        ("/a/vpn_server.config: end of file inside the 'root' block (the file is cut short)",),
        (f"/b/vpn_client.config: line {len(extra_brace.splitlines())}: '}}' closes no block",),
        ("/c/vpn_server.config: no 'declare root' block: not a SoftEther config",),
    ]
    assert all(f.severity is Severity.LOW for f in unread)
    assert incomplete(found)
    # What the damaged client file still says, and the sound server file, are still judged.
    assert found[0].id == "softether.vpngate_relay:/d/vpn_server.config"
    assert any("vpngate-jp" in f.title for f in found)


def test_unreadable_files_from_the_reader(tmp_path: Path) -> None:
    locked = tmp_path / "vpn_server.config"
    locked.write_bytes(b"declare root\n{\n\x00\x00\n}\n")
    facts = read_host_facts(1.0, [locked])
    (f,) = check(CheckFacts(facts))
    assert f.severity is Severity.LOW
    assert f.evidence == (f"{locked}: line 3: binary data, not a SoftEther text config",)


def test_packages_are_info_or_low_when_running() -> None:
    facts = CheckFacts(
        HostFacts(1.0),
        packages=(
            InstalledVpn("openvpn", "2.6"),
            InstalledVpn("softether-vpnserver", "5.01", ("vpnserver (pid 7)",)),
        ),
    )
    found = check(facts)
    assert [(f.severity, f.title) for f in found] == [
        (Severity.LOW, "softether-vpnserver 5.01 is installed and running"),
        (Severity.INFO, "openvpn 2.6 is installed"),
    ]
    assert found[0].evidence == ("running: vpnserver (pid 7)",)
    assert worst(found) is Severity.LOW
    assert not incomplete(found)


def test_listeners_of_vpn_programs_are_medium_others_ignored() -> None:
    socks = (
        Listener("tcp", "0.0.0.0", 443, "vpnserver", 7),
        Listener("tcp", "0.0.0.0", 5555, "vpnserver", 7),
        Listener("udp", "0.0.0.0", 1194, "openvpn", 9),
        Listener("tcp", "0.0.0.0", 443, "nginx", 3),
        Listener("udp", "0.0.0.0", 51820, "", None),
        Listener("udp", "0.0.0.0", 53, "", None),
    )
    found = check(CheckFacts(HostFacts(1.0), listeners=socks))
    assert [(f.severity, f.title) for f in found] == [
        (Severity.MEDIUM, "openvpn listens on UDP 1194"),
        (Severity.MEDIUM, "vpnserver listens on TCP 443, TCP 5555"),
        (
            Severity.LOW,
            "UDP port 51820 is open with no program: WireGuard's usual port "
            "(a kernel tunnel has no process)",
        ),
    ]


def test_recent_alerts_vpngate_high_vpn_medium_others_ignored() -> None:
    alerts = [
        make_alert("vpngate.list_fetch", count=2),
        make_alert("vpngate.list_fetch", first_seen=1_700_000_100.0),
        make_alert("vpn.unexpected", message="openvpn to 198.51.100.7"),
        make_alert("dns.odd", message="not about VPNs"),
    ]
    found = check(CheckFacts(HostFacts(1.0)), alerts, notes=["no alert store at /x"])
    assert [(f.severity, f.id) for f in found] == [
        (Severity.HIGH, "alert:vpngate.list_fetch"),
        (Severity.MEDIUM, "alert:vpn.unexpected"),
        (Severity.INFO, "not_checked:0"),
    ]
    assert found[0].evidence == (
        "3 times, last at 2023-11-14 22:15:01Z",
        "vpnclient fetched the VPN Gate relay list",
    )
    assert found[2].title == "no alert store at /x"
    assert not incomplete(found)
    assert incomplete(check(CheckFacts(HostFacts(1.0)), damaged=["/x: not a netwatch store"]))


def test_report_fits_100_columns_and_jsonl_has_every_field() -> None:
    text = client_config(VPNGATE_ACCOUNT)
    found = check(_facts((SERVER, SERVER_CONFIG), (CLIENT, text)))
    lines = render(found)
    assert max(len(line) for line in lines) <= WIDTH
    assert lines[0].startswith("HIGH      VPN Gate relay")
    assert any(line.startswith("MEDIUM    SoftEther connection 'vpngate-jp'") for line in lines)
    d = codec.finding_to_dict(found[0])
    assert d == {
        "schema": codec.SCHEMA,
        "type": "finding",
        "id": found[0].id,
        "severity": "high",
        "title": found[0].title,
        "evidence": list(found[0].evidence),
        "advice": found[0].advice,
    }
    assert render([]) == ["nothing found: no VPN software, relay, VPN listener or recent VPN alert"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "{",
                "}",
                "\n",
                "\t",
                " ",
                "declare ",
                "root",
                "AccountDatabase",
                "ClientOption",
                "Account0",
                "VirtualHUB",
                "VPNGATE",
                "bool StartupAccount true",
                "uint NumRetry ",
                "uint Port ",
                "99999999999999",
                "string Hostname x.opengw.net",
                "\x00",
                "\u2028",
            ]
        ),  # fmt: skip
        max_size=80,
    ).map("".join)
)
def test_client_config_parser_and_checks_never_crash(text: str) -> None:
    cfg = parse_softether_config(text, "x/vpn_client.config")
    found = check(CheckFacts(HostFacts(1.0, (cfg,))))
    render(found)
    assert "\n" not in cfg.damage


# --- the tunnel's state and servers abroad (issue 15: leaks, foreign servers) -------------


def _routes(v4: str | None, v6: str | None) -> tuple[DefaultRoute, ...]:
    return (DefaultRoute("ipv4", v4), DefaultRoute("ipv6", v6))


def _tunnel(found: list[Finding]) -> dict[str, Severity]:
    return {f.id: f.severity for f in found if f.id.startswith("tunnel.")}


def test_ipv6_direct_beside_an_ipv4_tunnel_is_a_high_leak() -> None:
    facts = CheckFacts(
        HostFacts(1.0, interfaces=("eth0", "lo", "wg0"), routes=_routes("wg0", "eth0"))
    )
    found = check(facts, tunnel=TunnelPolicy(required=True))
    assert _tunnel(found) == {"tunnel.ipv6_leak": Severity.HIGH}
    (leak,) = (f for f in found if f.id == "tunnel.ipv6_leak")
    assert "eth0" in leak.title and "wg0" in leak.title
    assert "net.ipv6.conf.eth0.disable_ipv6" in leak.advice


def test_a_required_tunnel_that_is_not_up_is_high_for_each_family_that_leaves() -> None:
    facts = CheckFacts(HostFacts(1.0, interfaces=("eth0", "lo"), routes=_routes("eth0", None)))
    found = check(facts, tunnel=TunnelPolicy(required=True))
    assert _tunnel(found) == {"tunnel.outside:ipv4": Severity.HIGH}
    assert worst(found) is Severity.HIGH


def test_a_split_tunnel_without_requirement_is_only_low() -> None:
    facts = CheckFacts(HostFacts(1.0, interfaces=("eth0", "tun0"), routes=_routes("eth0", None)))
    found = check(facts, tunnel=TunnelPolicy(required=False))
    assert _tunnel(found) == {"tunnel.outside:ipv4": Severity.LOW}


def test_everything_through_the_tunnel_is_info_and_says_the_policy_is_missing() -> None:
    facts = CheckFacts(HostFacts(1.0, interfaces=("eth0", "wg0"), routes=_routes("wg0", "wg0")))
    assert _tunnel(check(facts)) == {"tunnel.ok": Severity.INFO, "tunnel.no_policy": Severity.INFO}
    assert _tunnel(check(facts, tunnel=TunnelPolicy(required=True))) == {"tunnel.ok": Severity.INFO}


def test_the_policy_globs_say_what_a_tunnel_is() -> None:
    facts = CheckFacts(
        HostFacts(1.0, interfaces=("eth0", "vpn_se"), routes=_routes("vpn_se", None))
    )
    policy = TunnelPolicy(required=True, interfaces=("vpn_*",))
    assert _tunnel(check(facts, tunnel=policy)) == {"tunnel.ok": Severity.INFO}
    assert _tunnel(check(facts, tunnel=TunnelPolicy(required=True))) == {
        "tunnel.outside:ipv4": Severity.HIGH
    }


def test_no_tunnel_and_no_policy_or_no_routes_say_nothing() -> None:
    plain = CheckFacts(HostFacts(1.0, interfaces=("eth0",), routes=_routes("eth0", "eth0")))
    assert _tunnel(check(plain)) == {}
    unseen = CheckFacts(HostFacts(1.0, interfaces=("wg0",)))
    assert _tunnel(check(unseen, tunnel=TunnelPolicy(required=True))) == {}


ABROAD = ("relay", "203.0.113.50", "DEFAULT", False, 0)


def test_a_connection_to_a_server_abroad_is_medium_only_with_a_home_country() -> None:
    facts = _facts((CLIENT, client_config(ABROAD)), countries=(("203.0.113.50", "RU"),))
    found = check(facts, home_country="DE")
    (f,) = (f for f in found if f.id.startswith("softether.foreign_server"))
    assert f.severity is Severity.MEDIUM and "RU" in f.title
    assert any("home is DE" in e for e in f.evidence)
    assert not [f for f in check(facts) if f.id.startswith("softether.foreign_server")]
    home = check(facts, home_country="RU")
    assert not [f for f in home if f.id.startswith("softether.foreign_server")]
