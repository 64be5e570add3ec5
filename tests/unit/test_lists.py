"""VPN Gate and Tor list parsing, the rolling history, matchers, and `netwatch lists`."""

from __future__ import annotations

import contextlib
import http.server
import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netwatch.enrich.lists import (
    KEEP_DAYS,
    History,
    HistoryMatcher,
    load_history,
    load_matchers,
    parse_tor,
    relay_entries,
    save_history,
)
from netwatch.enrich.vpngate_list import (
    ListFormatError,
    Relay,
    format_vpngate,
    openvpn_ports,
    parse_vpngate,
)
from netwatch.errors import DataFileError
from netwatch.model import parse_ip
from tests.builders import T0

RELAYS = [
    Relay("vpn445617380", parse_ip("203.0.113.7"), "JP", 2772770, 3, ports=(("tcp", 1433),)),
    Relay("public-vpn-226", parse_ip("219.100.37.226"), "JP", 100, 12, ports=(("udp", 1195),)),
    Relay("vpn741799636", parse_ip("2001:db8::7"), "KR", 5, 0, ports=(("tcp", 443),)),
]
LIST = format_vpngate(RELAYS)


def test_parse_written_list() -> None:
    assert "\r\n" in LIST
    relays = parse_vpngate(LIST.encode())
    assert [str(r.ip) for r in relays] == ["203.0.113.7", "219.100.37.226", "2001:db8::7"]
    assert relays[0].ports == (("tcp", 1433),)
    assert relays[1].ports == (("udp", 1195),)
    assert relays[0].fqdn == "vpn445617380.opengw.net"
    assert relays[0].country == "JP"
    assert relays[0].score == 2772770


def test_lf_line_endings_and_bom_are_accepted() -> None:
    text = "\ufeff" + LIST.replace("\r\n", "\n")
    assert len(parse_vpngate(text.encode())) == 3


def test_openvpn_ports_from_config() -> None:
    import base64

    cfg = base64.b64encode(
        b"client\nproto tcp\nremote 1.2.3.4 995\nremote 1.2.3.4 99999\n"
    ).decode()
    assert openvpn_ports(cfg) == (("tcp", 995),)
    assert openvpn_ports("!!!not base64") == ()


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"<!DOCTYPE html><html><body>placeholder</body></html>", "HTML page"),
        (b"\n\n  <html>", "HTML page"),
        (b"hello\r\n", "line 1: expected '*vpn_servers'"),
        (b"*vpn_servers\r\nHostName,IP\r\n*\r\n", "line 2: expected the '#HostName"),
        (b"*vpn_servers\r\n#HostName,IP,Score\r\n*\r\n", "line 2: header has 3 columns"),
        (LIST.rsplit("*", 1)[0].encode(), "no closing '*' line"),
        (
            LIST.replace("203.0.113.7", "203.0.113.777").encode(),
            "line 3: '203.0.113.777' is not an IP",
        ),
        (LIST.replace(",2weeks,", ",").encode(), "line 3: 14 columns, expected 15"),
        (b"\xff\xfe*vpn", "not UTF-8"),
    ],
)
def test_bad_lists_are_rejected_with_one_located_line(data: bytes, fragment: str) -> None:
    with pytest.raises(ListFormatError) as info:
        parse_vpngate(data, "vpngate list")
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message
    assert message.startswith("vpngate list: ")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_vpngate_parser_never_crashes_on_bytes(data: bytes) -> None:
    with contextlib.suppress(ListFormatError):
        parse_vpngate(data)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(LIST)), st.integers(0, len(LIST)), st.text(max_size=8))
def test_vpngate_parser_never_crashes_on_damaged_lists(cut: int, at: int, junk: str) -> None:
    damaged = LIST[:cut] + junk + LIST[cut:at] if at > cut else LIST[:cut]
    try:
        relays = parse_vpngate(damaged)
    except ListFormatError:
        return
    assert all(isinstance(r, Relay) for r in relays)


CONSENSUS = "\n".join(
    [
        "network-status-version 3",
        "r moria1 lpXfw1/+uGEym58asExGOXAgzjE IpcU7dolas8+Q+oAzwgvZIWx7PA "
        "2023-06-13 08:11:02 198.51.100.50 9001 9030",
        "a [2001:db8::50]:9001",
        "s Authority Fast Running Stable V2Dir Valid",
        "r relay2 AAAAAAAAAAAAAAAAAAAAAAAAAAA BBBBBBBBBBBBBBBBBBBBBBBBBBB "
        "2023-06-13 08:11:02 203.0.113.60 443 0",
        "s Exit Fast Running",
        "",
    ]
)


def test_parse_tor_consensus() -> None:
    entries = {str(e.ip): e for e in parse_tor(CONSENSUS)}
    assert set(entries) == {"198.51.100.50", "2001:db8::50", "203.0.113.60"}
    assert entries["198.51.100.50"].ports == (("tcp", 9001),)
    assert entries["203.0.113.60"].ports == (("tcp", 443),)


def test_parse_tor_onionoo_and_exit_lists() -> None:
    doc = {
        "relays": [
            {"or_addresses": ["198.51.100.70:9001", "[2001:db8::70]:443"]},
            {"or_addresses": ["nonsense"], "exit_addresses": ["203.0.113.71"]},
        ]
    }
    entries = {str(e.ip): e for e in parse_tor(json.dumps(doc))}
    assert set(entries) == {"198.51.100.70", "2001:db8::70", "203.0.113.71"}
    assert entries["203.0.113.71"].exit
    exits = parse_tor(
        "ExitNode ABC\nExitAddress 198.51.100.80 2023-06-13 08:00:00\n198.51.100.81\n"
    )
    assert {str(e.ip) for e in exits} == {"198.51.100.80", "198.51.100.81"}


@pytest.mark.parametrize(
    "data", ["", "<html>no</html>", "{not json", '{"relays": 5}', "just words\n"]
)
def test_bad_tor_data_is_rejected(data: str) -> None:
    with pytest.raises(ListFormatError):
        parse_tor(data, "tor list")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_tor_parser_never_crashes(text: str) -> None:
    with contextlib.suppress(ListFormatError):
        parse_tor(text)


def test_history_keeps_first_seen_and_forgets_old(tmp_path: Path) -> None:
    h = History("vpngate", {}).merge(relay_entries(RELAYS), T0, "u1")
    ip = parse_ip("203.0.113.7")
    assert h.entries[ip].first_seen == T0
    later = h.merge(relay_entries(RELAYS[:1]), T0 + 86400, "u2")
    assert later.entries[ip].first_seen == T0
    assert later.entries[ip].last_seen == T0 + 86400
    assert later.updated == T0 + 86400
    much_later = later.merge([], T0 + (KEEP_DAYS + 0.5) * 86400, "u3")
    assert set(much_later.entries) == {ip}
    save_history(later, tmp_path)
    loaded = load_history("vpngate", tmp_path)
    assert loaded.entries == later.entries
    assert loaded.source == "u2"


def test_corrupt_history_is_a_data_file_error(tmp_path: Path) -> None:
    path = tmp_path / "lists" / "vpngate.json"
    path.parent.mkdir()
    path.write_text('{"schema": 1, "entries": [{"ip": "nope"}]}')
    with pytest.raises(DataFileError, match=r"entries\[0\]\.ip: .nope. is not an IP address"):
        load_history("vpngate", tmp_path)
    matchers, problems = load_matchers(tmp_path)
    assert matchers == []
    assert str(path) in problems


def test_matcher_hits_by_address_and_says_if_the_port_is_listed() -> None:
    matcher = HistoryMatcher(History("vpngate", {}).merge(relay_entries(RELAYS), T0, "u"))
    (hit,) = matcher.match(parse_ip("203.0.113.7"), 1433)
    assert hit.list == "vpngate"
    assert hit.detail is not None
    assert "vpn445617380.opengw.net" in hit.detail and "port 1433 listed" in hit.detail
    (other,) = matcher.match(parse_ip("203.0.113.7"), 80)
    assert other.detail is not None and "port 80 not listed" in other.detail
    assert matcher.match(parse_ip("198.51.100.1"), 443) == ()


# ---------------------------------------------------------------- the command, on loopback


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, bytes]] = {}

    def do_GET(self) -> None:
        status, body = self.routes.get(self.path, (404, b"not found"))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, dict[str, tuple[int, bytes]]]]:
    routes: dict[str, tuple[int, bytes]] = {}
    handler = type("H", (_Handler,), {"routes": routes})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", routes
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_lists_update_and_status(
    netwatch_cmd: list[str], server: tuple[str, dict[str, tuple[int, bytes]]]
) -> None:
    base, routes = server
    routes["/api/iphone/"] = (200, LIST.encode())
    routes["/consensus"] = (200, CONSENSUS.encode())
    res = subprocess.run(
        [
            *netwatch_cmd,
            "lists",
            "update",
            "--vpngate-url",
            f"{base}/api/iphone/",
            "--tor-url",
            f"{base}/consensus",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert "vpngate: 3 relays fetched" in res.stdout
    assert "tor: 3 relay addresses fetched" in res.stdout
    status = subprocess.run(
        [*netwatch_cmd, "lists", "status", "--format", "jsonl"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    rows = {r["list"]: r for r in map(json.loads, status.stdout.splitlines())}
    assert rows["vpngate"]["entries"] == 3
    assert rows["tor"]["entries"] == 3
    assert rows["vpngate"]["source"] == f"{base}/api/iphone/"


def test_lists_update_rejects_a_placeholder_page_and_keeps_the_history(
    netwatch_cmd: list[str], server: tuple[str, dict[str, tuple[int, bytes]]]
) -> None:
    base, routes = server
    routes["/api/iphone/"] = (200, b"<html><body>please wait</body></html>")
    res = subprocess.run(
        [
            *netwatch_cmd,
            "lists",
            "update",
            "--only",
            "vpngate",
            "--vpngate-url",
            f"{base}/api/iphone/",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "HTML page" in lines[0] and "Traceback" not in res.stderr
    status = subprocess.run(
        [*netwatch_cmd, "lists", "status", "--format", "jsonl"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(status.stdout.splitlines()[0])["entries"] == 0


def test_lists_update_reports_http_errors(
    netwatch_cmd: list[str], server: tuple[str, dict[str, tuple[int, bytes]]]
) -> None:
    base, _routes = server
    res = subprocess.run(
        [
            *netwatch_cmd,
            "lists",
            "update",
            "--vpngate-url",
            f"{base}/gone",
            "--tor-url",
            f"{base}/gone",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 2
    assert all(line.startswith("netwatch: ") and "404" in line for line in lines)


def test_matchers_feed_the_enricher_and_the_relay_connection_rule(tmp_path: Path) -> None:
    """End to end: a stored VPN Gate history -> ListMatcher -> RemoteInfo.lists -> alert."""
    from netwatch.detect.engine import RuleEngine
    from netwatch.enrich.enricher import Enricher, ListMatcher
    from tests.builders import make_flow, make_process

    save_history(History("vpngate", {}).merge(relay_entries(RELAYS), T0, "u"), tmp_path)
    matchers, problems = load_matchers(tmp_path)
    assert problems == {}
    typed: list[ListMatcher] = list(matchers)
    enricher = Enricher([], lists=typed)
    flow = make_flow(remote_ip="203.0.113.7", remote_port=1433, process=make_process("openvpn"))
    enriched = enricher.enrich(flow.flow)
    assert enriched.remote is not None
    assert [h.list for h in enriched.remote.lists] == ["vpngate"]
    alerts = RuleEngine().evaluate([enriched], T0 + 10)
    (relay,) = [a for a in alerts if a.rule_id == "vpngate.relay_connection"]
    assert relay.message.startswith("openvpn connected to a VPN Gate relay")
    assert any(e.name == "remote.lists" and e.value == "vpngate" for e in relay.evidence)
