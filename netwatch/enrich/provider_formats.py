"""VPN providers' published server lists: parse each public format into `ProviderRange`s.

Formats and where they are published (fetched only by `netwatch lists update --only ranges`):

* Mullvad, https://api.mullvad.net/www/relays/all/ (also served as
  https://api-www.mullvad.net/www/relays/all/, the URL nDPI's
  utils/mullvad_ip_addresses_download.sh uses): a JSON list of relays with `hostname`,
  `type` (`wireguard`, `openvpn`, `bridge`), `ipv4_addr_in` and `ipv6_addr_in`. The IPv4 field
  is confirmed by that script; `ipv6_addr_in` and `type` are from memory of the API.
* ProtonVPN, https://api.protonmail.ch/vpn/logicals (the same API also answers at
  https://api.protonvpn.ch/vpn/logicals): `{"LogicalServers": [{"Name", "Servers":
  [{"EntryIP", "ExitIP"}]}]}`, confirmed by nDPI's utils/protonvpn_ip_addresses_download.sh.
  Whether it still answers without an app's headers could not be checked offline.
* NordVPN, https://api.nordvpn.com/v1/servers?limit=16384: a JSON list of servers with
  `hostname`, `station` (IPv4), `ipv6_station` and `ips: [{"ip": {"ip", "version"}}]`. The
  `ips` form is confirmed by nDPI's utils/nordvpn_ip_addresses_download.sh; `station` and
  `ipv6_station` are from memory.
* iCloud Private Relay egress, https://mask-api.icloud.com/egress-ip-ranges.csv: CSV lines
  `prefix,country,region,city,` (the first column confirmed by nDPI's
  utils/icloud_private_relay_ip_addresses_download.sh; the others from memory). These are the
  addresses Private Relay users reach servers *from*: a hit is a peer using Private Relay
  (an inbound connection, for this host), not this host's own tunnel (that goes to
  mask.icloud.com, named by `dissect.names`).

Not handled: Surfshark publishes only server names
(https://api.surfshark.com/v4/server/clusters/all, `connectionName`), no addresses; turning
names into addresses needs DNS at fetch time, left out. Tor relays are `enrich.lists`'
rolling history. nDPI's scripts are at https://github.com/ntop/nDPI/tree/dev/utils.

Each parser skips entries it cannot read (a garbage address, a wrong type) and fails with one
`ListFormatError` line when nothing usable is left: an HTML error page, JSON of another shape,
an empty list.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from netwatch.enrich.ranges import ProviderRange, make_network
from netwatch.enrich.vpngate_list import ListFormatError

URLS = {
    "mullvad": "https://api.mullvad.net/www/relays/all/",
    "protonvpn": "https://api.protonmail.ch/vpn/logicals",
    "nordvpn": "https://api.nordvpn.com/v1/servers?limit=16384",
    "icloud-private-relay": "https://mask-api.icloud.com/egress-ip-ranges.csv",
}
"""Default source of each fetched provider list (`ranges.FETCHED`)."""


def _text(data: bytes | str, source: str) -> str:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    head = text[:1024].lstrip().lower()
    if head.startswith(("<!doctype", "<html")):
        raise ListFormatError(f"{source}: got an HTML page instead of a server list")
    return text


def _json(data: bytes | str, source: str) -> Any:
    try:
        return json.loads(_text(data, source))
    except (ValueError, RecursionError) as exc:
        raise ListFormatError(f"{source}: not valid JSON ({str(exc)[:80]})") from None


def _objects(value: Any) -> Iterable[dict[str, Any]]:
    return (v for v in value if isinstance(v, dict)) if isinstance(value, list) else ()


def _str(d: dict[str, Any], key: str) -> str | None:
    value = d.get(key)
    return value if isinstance(value, str) and value else None


def _add(out: dict[str, ProviderRange], address: Any, note: str | None) -> None:
    """Add one address or prefix (strings only; garbage and too-wide prefixes skipped)."""
    net = make_network(address) if isinstance(address, str) else None
    if net is not None and str(net) not in out:
        out[str(net)] = ProviderRange(net, (), note)


def _done(out: dict[str, ProviderRange], source: str, expected: str) -> list[ProviderRange]:
    if not out:
        raise ListFormatError(f"{source}: no server addresses found (expected {expected})")
    return list(out.values())


def parse_mullvad(data: bytes | str, source: str = "Mullvad relays") -> list[ProviderRange]:
    """Mullvad's relay list: each relay's `ipv4_addr_in` and `ipv6_addr_in`."""
    out: dict[str, ProviderRange] = {}
    for relay in _objects(_json(data, source)):
        note = " ".join(n for n in (_str(relay, "hostname"), _str(relay, "type")) if n) or None
        for key in ("ipv4_addr_in", "ipv6_addr_in"):
            _add(out, relay.get(key), note)
    return _done(out, source, "a JSON list of relays with ipv4_addr_in")


def parse_protonvpn(data: bytes | str, source: str = "ProtonVPN logicals") -> list[ProviderRange]:
    """ProtonVPN's logical servers: every physical server's `EntryIP` and `ExitIP`."""
    doc = _json(data, source)
    logicals = doc.get("LogicalServers") if isinstance(doc, dict) else None
    out: dict[str, ProviderRange] = {}
    for logical in _objects(logicals):
        name = _str(logical, "Name")
        for server in _objects(logical.get("Servers")):
            for key, role in (("EntryIP", "entry"), ("ExitIP", "exit")):
                _add(out, server.get(key), f"{name} {role}" if name else role)
    return _done(out, source, '{"LogicalServers": [{"Servers": [{"EntryIP": ...}]}]}')


def parse_nordvpn(data: bytes | str, source: str = "NordVPN servers") -> list[ProviderRange]:
    """NordVPN's servers: `station`, `ipv6_station` and every `ips[].ip.ip`."""
    out: dict[str, ProviderRange] = {}
    for server in _objects(_json(data, source)):
        note = _str(server, "hostname")
        for key in ("station", "ipv6_station"):
            _add(out, server.get(key), note)
        for item in _objects(server.get("ips")):
            ip = item.get("ip")
            if isinstance(ip, dict):
                _add(out, ip.get("ip"), note)
    return _done(out, source, "a JSON list of servers with station or ips")


def parse_icloud(
    data: bytes | str, source: str = "iCloud Private Relay egress"
) -> list[ProviderRange]:
    """Apple's egress CSV: `prefix,country,region,city,`; the note keeps country and region."""
    out: dict[str, ProviderRange] = {}
    for line in _text(data, source).splitlines():
        row = line.split(",")  # plain CSV: no quoting in Apple's file
        place = " ".join(c for c in (c.strip() for c in row[1:3]) if c)
        _add(out, row[0], f"egress {place}" if place else "egress")
    return _done(out, source, "CSV lines prefix,country,region,city")


PARSERS: dict[str, Callable[[bytes | str, str], list[ProviderRange]]] = {
    "mullvad": parse_mullvad,
    "protonvpn": parse_protonvpn,
    "nordvpn": parse_nordvpn,
    "icloud-private-relay": parse_icloud,
}
