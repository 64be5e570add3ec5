"""VPN provider address ranges: the published formats, storage, matching, labels and rules.

Sample lists are written here in each provider's public format, with documentation
addresses only (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32).
"""

from __future__ import annotations

import ipaddress
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netwatch.detect.engine import RuleEngine
from netwatch.enrich.enricher import Enricher
from netwatch.enrich.provider_formats import (
    PARSERS,
    parse_icloud,
    parse_mullvad,
    parse_nordvpn,
    parse_protonvpn,
)
from netwatch.enrich.ranges import (
    BUNDLED,
    ProviderRange,
    RangeList,
    RangeMatcher,
    load_bundled,
    load_range_matcher,
    load_ranges,
    range_path,
    save_ranges,
)
from netwatch.enrich.vpngate_list import ListFormatError
from netwatch.errors import DataFileError
from netwatch.model import Confidence, Transport, parse_ip
from tests.builders import T0, make_flow, make_label, make_process
from tests.unit.test_lists import server  # noqa: F401  # the loopback list server fixture

MULLVAD = json.dumps(
    [
        {
            "hostname": "se-got-wg-001",
            "type": "wireguard",
            "active": True,
            "ipv4_addr_in": "198.51.100.7",
            "ipv6_addr_in": "2001:db8:7::1",
        },
        {"hostname": "se-got-ovpn-001", "type": "openvpn", "ipv4_addr_in": "198.51.100.8"},
        {"hostname": "broken", "type": "bridge", "ipv4_addr_in": "not an address"},
        "not an object",
    ]
)
PROTON = json.dumps(
    {
        "Code": 1000,
        "LogicalServers": [
            {
                "Name": "CH#1",
                "Servers": [{"EntryIP": "203.0.113.10", "ExitIP": "203.0.113.11"}],
            },
            {"Name": "SE#2", "Servers": [{"EntryIP": "203.0.113.12", "ExitIP": "203.0.113.12"}]},
        ],
    }
)
NORD = json.dumps(
    [
        {
            "hostname": "de1.nordvpn.com",
            "station": "192.0.2.21",
            "ipv6_station": "",
            "ips": [{"ip": {"ip": "192.0.2.22", "version": 4}}],
        },
        {"hostname": "us2.nordvpn.com", "station": "192.0.2.23", "ips": []},
    ]
)
ICLOUD = "192.0.2.128/25,US,US-CA,Los Angeles,\n2001:db8:1200::/40,DE,DE-BE,Berlin,\n\n"


def _nets(ranges: list[ProviderRange]) -> set[str]:
    return {str(r.network) for r in ranges}


# ---------------------------------------------------------------- parsers


def test_mullvad_relays_give_ipv4_and_ipv6_entry_addresses() -> None:
    ranges = parse_mullvad(MULLVAD)
    assert _nets(ranges) == {"198.51.100.7/32", "2001:db8:7::1/128", "198.51.100.8/32"}
    assert {r.note for r in ranges} == {"se-got-wg-001 wireguard", "se-got-ovpn-001 openvpn"}


def test_protonvpn_logicals_give_entry_and_exit_addresses() -> None:
    ranges = parse_protonvpn(PROTON.encode())
    assert _nets(ranges) == {"203.0.113.10/32", "203.0.113.11/32", "203.0.113.12/32"}
    notes = {str(r.network): r.note for r in ranges}
    assert notes["203.0.113.10/32"] == "CH#1 entry"
    assert notes["203.0.113.11/32"] == "CH#1 exit"


def test_nordvpn_servers_give_station_and_ips() -> None:
    ranges = parse_nordvpn(NORD)
    assert _nets(ranges) == {"192.0.2.21/32", "192.0.2.22/32", "192.0.2.23/32"}
    assert {r.note for r in ranges} == {"de1.nordvpn.com", "us2.nordvpn.com"}


def test_ipv4_mapped_entries_are_unmapped_as_flows_are() -> None:
    ranges = parse_nordvpn('[{"station": "::ffff:192.0.2.9", "ipv6_station": "::ffff:0:0/120"}]')
    assert _nets(ranges) == {"192.0.2.9/32", "0.0.0.0/24"}
    matcher = RangeMatcher([RangeList("nordvpn", tuple(ranges), "s", T0)])
    assert [h.list for h in matcher.match(parse_ip("::ffff:192.0.2.9"), None)] == ["nordvpn"]


def test_icloud_egress_csv_gives_prefixes_with_places() -> None:
    ranges = parse_icloud(ICLOUD)
    assert _nets(ranges) == {"192.0.2.128/25", "2001:db8:1200::/40"}
    assert {r.note for r in ranges} == {"egress US US-CA", "egress DE DE-BE"}


@pytest.mark.parametrize(
    ("parser", "data", "fragment"),
    [
        (parse_mullvad, "<!DOCTYPE html><html>blocked</html>", "HTML page"),
        (parse_mullvad, "[1, 2", "not valid JSON"),
        (parse_mullvad, '{"relays": []}', "no server addresses"),
        (parse_mullvad, '[{"ipv4_addr_in": "0.0.0.0/0"}]', "no server addresses"),
        (parse_protonvpn, "[]", "no server addresses"),
        (parse_protonvpn, '{"LogicalServers": [{"Servers": "x"}]}', "no server addresses"),
        (parse_nordvpn, '[{"station": 42}]', "no server addresses"),
        (parse_icloud, "garbage,US,,,\n", "no server addresses"),
        (parse_icloud, "<html><body>503</body></html>", "HTML page"),
    ],
)
def test_bad_provider_data_is_one_located_line(parser: object, data: str, fragment: str) -> None:
    with pytest.raises(ListFormatError) as exc:
        parser(data, "test source")  # type: ignore[operator]  # a parser from the table
    assert fragment in str(exc.value) and "test source" in str(exc.value)
    assert "\n" not in str(exc.value)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=15), kids, max_size=4)
    ),
    max_leaves=30,
)
KEYS = st.sampled_from(
    ["ipv4_addr_in", "ipv6_addr_in", "hostname", "type", "station", "ipv6_station", "ips", "ip",
     "LogicalServers", "Servers", "EntryIP", "ExitIP", "Name", "version"]
)  # fmt: skip
SHAPED = st.recursive(
    st.none() | st.integers() | st.sampled_from(["198.51.100.1", "2001:db8::1", "10.0.0.0/4", "x"]),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(KEYS, kids, max_size=4),
    max_leaves=30,
)


def _parse_or_format_error(name: str, data: bytes | str) -> None:
    try:
        ranges = PARSERS[name](data, "fuzz")
    except ListFormatError as exc:
        problem = str(exc)
        assert "\n" not in problem
        return
    assert ranges
    for r in ranges:
        assert r.network.prefixlen >= (8 if r.network.version == 4 else 16)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(PARSERS)), st.binary(max_size=300))
def test_provider_parsers_never_crash_on_bytes(name: str, data: bytes) -> None:
    _parse_or_format_error(name, data)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(PARSERS)), st.one_of(JSON, SHAPED))
def test_provider_parsers_never_crash_on_json_of_any_shape(name: str, doc: object) -> None:
    _parse_or_format_error(name, json.dumps(doc))


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(alphabet="0123456789abcdef.:/, \r\x00", max_size=40), max_size=8))
def test_icloud_parser_never_crashes_on_csv_like_lines(lines: list[str]) -> None:
    _parse_or_format_error("icloud-private-relay", "\n".join(lines))


# ---------------------------------------------------------------- matching


def _list(provider: str, *prefixes: str, ports: tuple[tuple[str, int], ...] = ()) -> RangeList:
    nets = [ProviderRange(ipaddress.ip_network(p), ports, f"{provider} server") for p in prefixes]
    return RangeList(provider, tuple(nets), f"https://example.org/{provider}", T0)


MATCHER = RangeMatcher(
    [
        _list("nordvpn", "198.51.100.0/24", "2001:db8::/32"),
        _list("mullvad", "198.51.100.128/25", "2001:db8:7::1/128"),
        _list("protonvpn", "198.51.100.200/32"),
        _list("warp", "203.0.113.0/24", ports=(("udp", 2408), ("tcp", 443))),
    ]
)


@pytest.mark.parametrize(
    ("ip", "provider"),
    [
        ("198.51.100.1", "nordvpn"),
        ("198.51.100.129", "mullvad"),
        ("198.51.100.200", "protonvpn"),
        ("198.51.100.201", "mullvad"),
        ("2001:db8:7::1", "mullvad"),
        ("2001:db8:7::2", "nordvpn"),
        ("203.0.113.99", "warp"),
        ("192.0.2.1", None),
        ("::c633:6401", None),  # 198.51.100.1's bits, but IPv6: the families never mix
    ],
)
def test_longest_prefix_wins(ip: str, provider: str | None) -> None:
    hits = MATCHER.match(parse_ip(ip), None)
    assert [h.list for h in hits] == ([provider] if provider else [])


def test_hit_detail_names_prefix_source_date_and_port() -> None:
    (hit,) = MATCHER.match(parse_ip("203.0.113.5"), 2408)
    assert hit.detail is not None
    assert "203.0.113.0/24" in hit.detail and "port 2408 listed" in hit.detail
    assert "https://example.org/warp" in hit.detail
    assert hit.last_seen == T0
    (other,) = MATCHER.match(parse_ip("203.0.113.5"), 80)
    assert other.detail is not None and "port 80 not listed" in other.detail


def test_label_is_low_with_address_list_evidence_and_needs_a_listed_port() -> None:
    label = MATCHER.label(parse_ip("198.51.100.7"), 51820, Transport.UDP)
    assert label is not None
    assert (label.name, label.vpn, label.confidence) == ("nordvpn", True, Confidence.LOW)
    ((name, value),) = [(e.name, e.value) for e in label.evidence]
    assert name == "address_list"
    assert value.startswith("nordvpn 198.51.100.0/24 (https://example.org/nordvpn, ")
    assert MATCHER.label(parse_ip("203.0.113.5"), 2408, Transport.UDP) is not None
    assert MATCHER.label(parse_ip("203.0.113.5"), 443, Transport.TCP) is not None
    assert MATCHER.label(parse_ip("203.0.113.5"), 2408, Transport.TCP) is None
    assert MATCHER.label(parse_ip("203.0.113.5"), 53, Transport.UDP) is None
    assert MATCHER.label(parse_ip("192.0.2.1"), 53, Transport.UDP) is None


# ---------------------------------------------------------------- storage


def test_saved_ranges_load_back_with_source_date_and_a_private_mode(tmp_path: Path) -> None:
    original = RangeList("mullvad", tuple(parse_mullvad(MULLVAD)), "https://example.org/m", T0)
    path = save_ranges(original, tmp_path)
    assert path == range_path("mullvad", tmp_path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_ranges("mullvad", tmp_path) == original
    assert load_ranges("nordvpn", tmp_path) is None


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        (lambda d: d["ranges"][0].update(prefix="0.0.0.0/0"), "ranges[0].prefix"),
        (lambda d: d["ranges"][0].update(ports=["udp/0"]), "ranges[0].ports"),
        (lambda d: d["ranges"][0].update(note=7), "ranges[0].note"),
        (lambda d: d.update(fetched=float("nan")), "fetched"),
        (lambda d: d.update(schema=9), "schema"),
        (lambda d: d.update(ranges={}), "ranges"),
    ],
)
def test_damaged_range_file_is_one_located_line(
    tmp_path: Path, damage: object, fragment: str
) -> None:
    path = save_ranges(_list("mullvad", "198.51.100.0/24"), tmp_path)
    doc = json.loads(path.read_text())
    damage(doc)  # type: ignore[operator]  # a lambda from the table
    path.write_text(json.dumps(doc))
    with pytest.raises(DataFileError) as exc:
        load_ranges("mullvad", tmp_path)
    text = str(exc.value)
    assert text.startswith(str(path)) and fragment in text and "\n" not in text


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 400), st.binary(min_size=1, max_size=8), st.booleans())
def test_mutated_range_files_load_checked_or_fail_in_one_line(
    at: int, junk: bytes, cut: bool
) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        path = save_ranges(_list("mullvad", "198.51.100.0/24", "2001:db8::/48"), base)
        data = path.read_bytes()
        at %= len(data)
        path.write_bytes(data[:at] + (b"" if cut else junk) + data[at + len(junk) :])
        try:
            got = load_ranges("mullvad", base)
        except DataFileError as exc:
            problem = str(exc)
            assert problem.startswith(str(path)) and "\n" not in problem
            return
        assert got is not None
        matcher = RangeMatcher([got])
        for r in got.ranges:  # matching and formatting a hit must not raise
            matcher.match(r.network.network_address, 443)
            matcher.label(r.network.network_address, 443, Transport.UDP)


def test_a_damaged_list_is_skipped_and_the_others_still_match(tmp_path: Path) -> None:
    save_ranges(_list("mullvad", "198.51.100.0/24"), tmp_path)
    range_path("nordvpn", tmp_path).write_text('{"schema": 1, "ranges": [')
    bundled = tmp_path / "warp.json"
    save_ranges(_list("warp", "203.0.113.0/24"), tmp_path)
    range_path("warp", tmp_path).rename(bundled)
    matcher, problems = load_range_matcher(tmp_path, bundled)
    assert list(problems) == [str(range_path("nordvpn", tmp_path))]
    assert "not JSON" in problems[str(range_path("nordvpn", tmp_path))]
    assert matcher is not None
    assert [h.list for h in matcher.match(parse_ip("198.51.100.1"), None)] == ["mullvad"]
    assert [h.list for h in matcher.match(parse_ip("203.0.113.1"), None)] == ["warp"]


def test_bundled_warp_ranges_carry_their_source_date_and_ports() -> None:
    """The shipped file loads, says where its facts come from, and each range matches."""
    warp = load_bundled()
    assert warp.provider == "warp"
    assert warp.source.startswith("https://developers.cloudflare.com/")
    assert json.loads(BUNDLED.read_text())["about"]
    assert int(warp.day[:4]) >= 2020
    ported = [r for r in warp.ranges if r.ports]
    assert ported and all(("udp", 500) in r.ports for r in ported)
    matcher = RangeMatcher([warp])
    for r in warp.ranges:
        (hit,) = matcher.match(r.network.network_address + 1, None)
        assert hit.list == "warp"


# ---------------------------------------------------------------- enricher and rules


def _enricher() -> Enricher:
    return Enricher([], lists=[MATCHER])


def test_an_unlabelled_flow_to_a_provider_range_gets_a_low_vpn_label() -> None:
    flow = make_flow(
        remote_ip="198.51.100.7", remote_port=51820, transport=Transport.UDP, label=None
    ).flow
    ef = _enricher().enrich(flow)
    assert ef.flow.label is not None
    assert (ef.flow.label.name, ef.flow.label.confidence) == ("nordvpn", Confidence.LOW)
    assert ef.remote is not None and [h.list for h in ef.remote.lists] == ["nordvpn"]


def test_a_protocol_signature_or_a_named_provider_wins_over_the_address_list() -> None:
    enricher = _enricher()
    for label in (
        make_label("wireguard", confidence=Confidence.HIGH),
        make_label("mullvad", confidence=Confidence.MEDIUM, evidence=(("sni", "x.mullvad.net"),)),
    ):
        flow = make_flow(remote_ip="198.51.100.7", remote_port=51820, label=label).flow
        assert enricher.enrich(flow).flow.label == label


def test_a_plain_label_gives_way_and_is_kept_as_evidence() -> None:
    tls = make_label("tls", "web", False, Confidence.HIGH, (("sni", "(none)"),))
    flow = make_flow(remote_ip="198.51.100.7", remote_port=443, label=tls).flow
    label = _enricher().enrich(flow).flow.label
    assert label is not None and label.name == "nordvpn"
    assert ("protocol", "tls") in [(e.name, e.value) for e in label.evidence]


def test_an_address_list_wins_over_a_guess_from_a_port_alone() -> None:
    guess = make_label(  # as dissect.verdicts labels TLS on a SoftEther port
        "softether", confidence=Confidence.GUESS, evidence=(("tls_port", "5555"), ("sni", "(none)"))
    )
    flow = make_flow(remote_ip="198.51.100.7", remote_port=5555, label=guess).flow
    label = _enricher().enrich(flow).flow.label
    assert label is not None and label.name == "nordvpn"
    assert ("protocol", "softether") in [(e.name, e.value) for e in label.evidence]
    # the same guess to an address on no list stays
    other = make_flow(remote_ip="192.0.2.1", remote_port=5555, label=guess).flow
    assert _enricher().enrich(other).flow.label == guess


def test_no_label_off_the_listed_ports_or_outside_the_ranges() -> None:
    enricher = _enricher()
    for ip, port in (("203.0.113.5", 53), ("192.0.2.1", 51820)):
        flow = make_flow(remote_ip=ip, remote_port=port, transport=Transport.UDP, label=None)
        assert enricher.enrich(flow.flow).flow.label is None


def _alerts(label: object) -> list[str]:
    flow = make_flow(
        remote_ip="198.51.100.7",
        remote_port=51820,
        transport=Transport.UDP,
        process=make_process("wg-quick"),
        label=label,  # type: ignore[arg-type]  # a Label or None
    )
    ef = _enricher().enrich(flow.flow)
    return [a.rule_id for a in RuleEngine().evaluate([ef], T0 + 10)]


def test_address_list_raises_provider_address_and_a_signature_raises_unexpected() -> None:
    by_address = _alerts(None)
    assert "vpn.provider_address" in by_address and "vpn.unexpected" not in by_address
    by_signature = _alerts(make_label("wireguard", confidence=Confidence.HIGH))
    assert "vpn.unexpected" in by_signature and "vpn.provider_address" not in by_signature


# ---------------------------------------------------------------- the command, on loopback

ROUTES = {
    "mullvad": ("/www/relays/all/", MULLVAD),
    "protonvpn": ("/vpn/logicals", PROTON),
    "nordvpn": ("/v1/servers?limit=16384", NORD),
    "icloud-private-relay": ("/egress-ip-ranges.csv", ICLOUD),
}


def _run(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})}
    )


def test_lists_update_ranges_stores_each_provider_and_status_shows_them(
    netwatch_cmd: list[str],
    server: tuple[str, dict[str, tuple[int, bytes]]],  # noqa: F811  # the imported fixture
) -> None:
    base, routes = server
    env = {}
    for name, (path, body) in ROUTES.items():
        routes[path] = (200, body.encode())
        env[f"NETWATCH_{name.upper().replace('-', '_')}_URL"] = base + path
    res = _run([*netwatch_cmd, "lists", "update", "--only", "ranges"], env)
    assert res.returncode == 0, res.stderr
    assert "mullvad: 3 ranges fetched (2 IPv4, 1 IPv6)" in res.stdout
    assert "icloud-private-relay: 2 ranges fetched (1 IPv4, 1 IPv6)" in res.stdout
    for name in ROUTES:
        assert stat.S_IMODE(os.stat(range_path(name)).st_mode) == 0o600
    status = _run([*netwatch_cmd, "lists", "status", "--format", "jsonl"])
    rows = {r["list"]: r for r in map(json.loads, status.stdout.splitlines())}
    assert rows["nordvpn"]["entries"] == 3 and rows["protonvpn"]["entries"] == 3
    assert rows["mullvad"]["source"] == base + ROUTES["mullvad"][0]
    assert rows["warp"]["kind"] == "bundled" and rows["warp"]["entries"] > 0
    assert rows["vpngate"]["entries"] == 0
    lookup = _run([*netwatch_cmd, "lookup", "198.51.100.7", "192.0.2.1", "--format", "jsonl"])
    assert lookup.returncode == 0, lookup.stderr
    records = {r["ip"]: r for r in map(json.loads, lookup.stdout.splitlines())}
    (hit,) = records["198.51.100.7"]["lists"]
    assert hit["list"] == "mullvad" and "198.51.100.7/32" in hit["detail"]
    assert records["192.0.2.1"]["lists"] == []


def test_lists_update_of_one_provider_rejects_a_page_in_one_line(
    netwatch_cmd: list[str],
    server: tuple[str, dict[str, tuple[int, bytes]]],  # noqa: F811  # the imported fixture
) -> None:
    base, routes = server
    routes["/nord"] = (200, b"<!doctype html><html>rate limited</html>")
    res = _run([*netwatch_cmd, "lists", "update", "--only", "nordvpn", "--url", f"{base}/nord"])
    assert res.returncode == 1
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith("netwatch: nordvpn: ") and "HTML page" in line
    assert not range_path("nordvpn").exists()
    usage = _run([*netwatch_cmd, "lists", "update", "--only", "ranges", "--url", base])
    assert usage.returncode != 0 and "--url needs --only" in usage.stderr
    assert "Traceback" not in usage.stderr


@pytest.mark.parametrize(
    ("data", "where"),
    [
        (b'{"schema": 1, "provider": "mullvad", "ranges": [', "not JSON"),
        (
            b'{"schema": 1, "provider": "mullvad", "source": "s", "fetched": NaN, "ranges": []}',
            "fetched",
        ),
        (
            b'{"schema": 1, "provider": "mullvad", "source": "s", "fetched": 1700000000,'
            b' "ranges": [{"prefix": "127.0.0.0/0", "ports": []}]}',
            "ranges[0].prefix",
        ),
    ],
)
def test_a_damaged_range_file_is_one_skipped_line_in_lookup_and_status(
    netwatch_cmd: list[str], data: bytes, where: str
) -> None:
    path = range_path("mullvad")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    for args in (["lookup", "127.0.0.1", "--format", "jsonl"], ["lists", "status"]):
        res = _run([*netwatch_cmd, *args])
        assert res.returncode == 1 and "Traceback" not in res.stderr
        (line,) = res.stderr.splitlines()
        assert line.startswith(f"netwatch: skipped {path}:") and where in line, line
        assert res.stdout  # the other files still answered
