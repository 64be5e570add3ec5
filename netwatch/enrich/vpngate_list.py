"""The VPN Gate server list (`/api/iphone/`): parse and validate, never trust blindly.

Format (as https://www.vpngate.net/api/iphone/ serves it, and as independent parsers such as
https://github.com/G1010yzd10/vpngate-monitor read it): line 1 is `*vpn_servers`, line 2 a
`#`-prefixed header of 15 columns, then one CSV row per relay, then a lone `*`; rows end in CRLF.
The API sometimes answers with an HTML placeholder page instead, so anything that is not this layout
is rejected with one line saying where (`vpngate list: line 7: ...`). Each relay's base64 OpenVPN
config gives its OpenVPN `proto` and `port`. Pure: bytes in, relays out.
"""

from __future__ import annotations

import base64
import binascii
import csv
from dataclasses import dataclass

from netwatch.errors import DataFileError
from netwatch.model import IPAddress, parse_ip

MARKER = "*vpn_servers"
HEADER = (
    "HostName", "IP", "Score", "Ping", "Speed", "CountryLong", "CountryShort",
    "NumVpnSessions", "Uptime", "TotalUsers", "TotalTraffic", "LogType", "Operator",
    "Message", "OpenVPN_ConfigData_Base64",
)  # fmt: skip
MAX_BYTES = 64 * 1024 * 1024
"""A real list is a few MB; anything larger is not one."""


@dataclass(frozen=True, slots=True)
class Relay:
    """One row of the list: a volunteer relay, with the ports its OpenVPN config names."""

    hostname: str
    ip: IPAddress
    country: str | None = None
    score: int | None = None
    sessions: int | None = None
    operator: str = ""
    ports: tuple[tuple[str, int], ...] = ()
    """(`tcp`|`udp`, port) pairs from the OpenVPN config."""

    @property
    def fqdn(self) -> str:
        """The relay's DNS name: `<HostName>.opengw.net` (third-party convention)."""
        return f"{self.hostname}.opengw.net" if self.hostname else ""


class ListFormatError(DataFileError):
    """A list that is not in the expected format."""


def _int(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isdecimal() else None


def openvpn_ports(config_b64: str) -> tuple[tuple[str, int], ...]:
    """The (proto, port) pairs an embedded `.ovpn` file names; nothing if it does not decode."""
    try:
        text = base64.b64decode(config_b64.strip(), validate=False).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return ()
    proto = "udp"
    remotes: list[int] = []
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "proto":
            proto = "tcp" if words[1].startswith("tcp") else "udp"
        elif len(words) >= 3 and words[0] == "remote" and words[2].isdecimal():
            port = int(words[2])
            if 0 < port < 65536:
                remotes.append(port)
    return tuple(dict.fromkeys((proto, p) for p in remotes))


def _looks_like_html(text: str) -> bool:
    head = text[:1024].lstrip().lower()
    return head.startswith("<") or "<html" in head or "<!doctype" in head


def parse_vpngate(data: bytes | str, source: str = "vpngate list") -> list[Relay]:
    """Parse a downloaded list; raise `ListFormatError` (one located line) if it is not one."""
    if len(data) > MAX_BYTES:
        raise ListFormatError(f"{source}: {len(data)} bytes is too large for a VPN Gate list")
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ListFormatError(f"{source}: not UTF-8 text ({exc.reason})") from None
    else:
        text = data.removeprefix("\ufeff")
    if _looks_like_html(text):
        raise ListFormatError(
            f"{source}: got an HTML page instead of the VPN Gate list "
            "(the API serves a placeholder page to some addresses); nothing was changed"
        )
    lines = text.split("\n")
    if not lines or lines[0].rstrip("\r") != MARKER:
        raise ListFormatError(f"{source}: line 1: expected {MARKER!r}, not a VPN Gate list")
    if len(lines) < 2 or not lines[1].startswith("#"):
        raise ListFormatError(f"{source}: line 2: expected the '#HostName,IP,...' header")
    header = tuple(h.strip() for h in lines[1].rstrip("\r")[1:].split(","))
    if header != HEADER:
        raise ListFormatError(
            f"{source}: line 2: header has {len(header)} columns {','.join(header)[:80]!r}, "
            f"expected the {len(HEADER)} columns starting 'HostName,IP,Score'"
        )
    relays: list[Relay] = []
    for number, raw in enumerate(lines[2:], start=3):
        line = raw.rstrip("\r")
        if line == "*":
            return relays
        if not line.strip():
            continue
        relays.append(_row(line, number, source))
    raise ListFormatError(f"{source}: no closing '*' line (the download was cut short?)")


def _row(line: str, number: int, source: str) -> Relay:
    try:
        cells = next(csv.reader([line]))
    except csv.Error as exc:
        raise ListFormatError(f"{source}: line {number}: not CSV ({exc})") from None
    if len(cells) != len(HEADER):
        raise ListFormatError(
            f"{source}: line {number}: {len(cells)} columns, expected {len(HEADER)}"
        )
    try:
        ip = parse_ip(cells[1])
    except ValueError:
        raise ListFormatError(
            f"{source}: line {number}: {cells[1][:60]!r} is not an IP address"
        ) from None
    country = cells[6].strip().upper()
    return Relay(
        hostname=cells[0].strip()[:253],
        ip=ip,
        country=country if len(country) == 2 and country.isalpha() else None,
        score=_int(cells[2]),
        sessions=_int(cells[7]),
        operator=cells[12].strip()[:200],
        ports=openvpn_ports(cells[14]),
    )


def format_vpngate(relays: list[Relay], configs: dict[str, str] | None = None) -> str:
    """Write relays in the list format (tests and fixtures write the lists they serve)."""
    out = [MARKER, "#" + ",".join(HEADER)]
    for r in relays:
        ovpn = (configs or {}).get(str(r.ip))
        if ovpn is None:
            proto, port = r.ports[0] if r.ports else ("tcp", 443)
            ovpn = f"client\r\nproto {proto}\r\nremote {r.ip} {port}\r\n"
        b64 = base64.b64encode(ovpn.encode()).decode()
        cells = [
            r.hostname, str(r.ip), str(r.score or 0), "10", "100000000", "Japan",
            r.country or "JP", str(r.sessions or 0), "1000", "1", "1000", "2weeks",
            r.operator or "tester's owner", "", b64,
        ]  # fmt: skip
        out.append(",".join(cells))
    out.append("*")
    return "\r\n".join(out) + "\r\n"
