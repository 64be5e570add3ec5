"""VPN provider address ranges: stored lists, the bundled WARP ranges, longest-prefix matching.

Some VPNs can only be told by where they go: a WireGuard or OpenVPN flow whose handshake was
not seen (socket table only, or a capture that started late) is just UDP or TCP to an
address. Providers publish their servers' addresses (`provider_formats` parses the
published forms); `netwatch lists update --only ranges` fetches them into
`<data_dir>/lists/ranges-<provider>.json`, each with its source URL and fetch time. The
Cloudflare WARP ingress ranges are a handful of documented facts, shipped with netwatch in
`warp_ranges.json` with the page they come from and the day it was read.

`RangeMatcher` is a `ListMatcher` (a `ListHit` named for the provider) and an
`AddressLabeller`: the enricher gives a flow that nothing better recognised the label
`<provider>`, confidence low, with the evidence `address_list=<provider> <prefix> (<source>,
<date>)`. An address list says only where a flow goes, so a protocol signature and a
certificate or server name keep their label; only a guess from a port alone gives way.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from netwatch.dissect import labels
from netwatch.enrich.lists import (
    _DamageError,
    _port,
    _shown,
    _strings,
    _time,
    lists_dir,
    load_or_note,
    read_json,
    write_json,
)
from netwatch.errors import DataFileError, Location
from netwatch.model import IPAddress, Label, ListHit, Transport

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

SCHEMA = 1
FETCHED = ("mullvad", "protonvpn", "nordvpn", "icloud-private-relay")
"""Providers whose lists `netwatch lists update --only ranges` fetches (label names)."""
BUNDLED = Path(__file__).with_name("warp_ranges.json")
"""Cloudflare WARP's documented ingress ranges, shipped with netwatch."""
SHORTEST = {4: 8, 6: 16}
"""No provider's server range is wider than this; a wider one would label half the internet."""


@dataclass(frozen=True, slots=True)
class ProviderRange:
    """One network of a provider's servers, with its ports when the source says them."""

    network: Network
    ports: tuple[tuple[str, int], ...] = ()
    note: str | None = None
    """What the source says about it: a server's host name and type, a city."""


@dataclass(frozen=True, slots=True)
class RangeList:
    """A provider's ranges as fetched (or bundled): where from and when."""

    provider: str
    ranges: tuple[ProviderRange, ...]
    source: str
    fetched: float
    day: str = field(init=False, compare=False)
    """The fetch (or check) date, `YYYY-MM-DD` UTC: formatted once, shown in every hit."""

    def __post_init__(self) -> None:
        day = datetime.fromtimestamp(self.fetched, UTC).strftime("%Y-%m-%d")
        object.__setattr__(self, "day", day)


def make_network(text: str) -> Network | None:
    """A prefix or address as a network (host bits dropped, IPv4-mapped IPv6 unmapped, as
    `model.parse_ip` does for flows); None for garbage or a prefix too wide to be a provider's."""
    try:
        net: Network = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return None
    mapped = net.network_address.ipv4_mapped if net.version == 6 else None
    if mapped is not None and net.prefixlen >= 96:  # flows carry such addresses unmapped
        net = ipaddress.IPv4Network((mapped, net.prefixlen - 96))
    return net if net.prefixlen >= SHORTEST[net.version] else None


# ---------------------------------------------------------------- storage


def range_path(provider: str, base: Path | None = None) -> Path:
    """The stored list of one provider: `<data_dir>/lists/ranges-<provider>.json`."""
    return lists_dir(base) / f"ranges-{provider}.json"


def save_ranges(ranges: RangeList, base: Path | None = None) -> Path:
    """Write a provider's list atomically (0600) and return its path."""
    path = range_path(ranges.provider, base)
    write_json(
        path,
        {
            "schema": SCHEMA,
            "provider": ranges.provider,
            "source": ranges.source,
            "fetched": ranges.fetched,
            "ranges": [
                {
                    "prefix": str(r.network),
                    "ports": [f"{proto}/{port}" for proto, port in r.ports],
                    "note": r.note,
                }
                for r in ranges.ranges
            ],
        },
    )
    return path


def _range_from_json(d: Any, where: str) -> ProviderRange:
    if not isinstance(d, dict):
        raise _DamageError(where, f"{_shown(d)} is not an object")
    prefix = d.get("prefix")
    net = make_network(prefix) if isinstance(prefix, str) else None
    if net is None:
        raise _DamageError(f"{where}.prefix", f"{_shown(prefix)} is not a provider's prefix")
    ports = tuple(_port(p, f"{where}.ports") for p in _strings(d, "ports", where))
    note = d.get("note")
    if note is not None and not isinstance(note, str):
        raise _DamageError(f"{where}.note", f"{_shown(note)} is not a string")
    return ProviderRange(net, ports, note)


def _ranges_from_json(doc: Any) -> RangeList:
    if not isinstance(doc, dict):
        raise _DamageError("(top)", f"a JSON {type(doc).__name__}, not an object")
    if doc.get("schema") != SCHEMA:
        raise _DamageError("schema", f"unsupported schema {_shown(doc.get('schema'))}")
    provider, source = doc.get("provider"), doc.get("source")
    if not isinstance(provider, str) or not provider:
        raise _DamageError("provider", f"{_shown(provider)} is not a provider name")
    if not isinstance(source, str):
        raise _DamageError("source", f"{_shown(source)} is not a string")
    raw = doc.get("ranges")
    if not isinstance(raw, list):
        raise _DamageError("ranges", f"{_shown(raw)} is not a list")
    ranges = tuple(_range_from_json(d, f"ranges[{i}]") for i, d in enumerate(raw))
    return RangeList(provider, ranges, source, _time(doc, "fetched", "(top)"))


def load_range_file(path: Path, fix: str) -> RangeList | None:
    """Read one range list; None when absent, a located `DataFileError` when damaged.

    Every value is checked once here (prefixes, ports, the fetch time), as `load_history`
    does, so the matcher never meets a bad one on a daemon tick.
    """
    try:
        doc = read_json(path, fix)
    except FileNotFoundError:
        return None
    try:
        return _ranges_from_json(doc)
    except _DamageError as exc:
        raise DataFileError(f"{exc.reason}{fix}", Location(str(path), key=exc.key)) from None


FIX_FETCHED = "; run 'netwatch lists update --only ranges' to replace it"
FIX_BUNDLED = "; reinstall netwatch"


def load_ranges(provider: str, base: Path | None = None) -> RangeList | None:
    """A fetched provider list (None before the first `lists update --only ranges`)."""
    return load_range_file(range_path(provider, base), FIX_FETCHED)


def load_bundled(path: Path = BUNDLED) -> RangeList:
    """The WARP ranges shipped with netwatch (a damaged install is a located error)."""
    found = load_range_file(path, FIX_BUNDLED)
    if found is None:
        raise DataFileError(f"missing{FIX_BUNDLED}", Location(str(path)))
    return found


def load_range_matcher(
    base: Path | None = None, bundled: Path = BUNDLED
) -> tuple[RangeMatcher | None, dict[str, str]]:
    """A matcher over the bundled and every stored list, and per-file problems (skipped)."""
    problems: dict[str, str] = {}
    found = [load_or_note(partial(load_bundled, bundled), bundled, problems)] + [
        load_or_note(partial(load_ranges, p, base), range_path(p, base), problems) for p in FETCHED
    ]
    lists = [rl for rl in found if rl is not None and rl.ranges]
    return (RangeMatcher(lists) if lists else None), problems


# ---------------------------------------------------------------- matching

Found = tuple[ProviderRange, RangeList]


class RangeMatcher:
    """Longest-prefix match over provider ranges: one dict per prefix length and family.

    A lookup tries each prefix length present, longest first, as a dict lookup of the
    address's top bits: a few dozen distinct lengths at most, so a handful of dict gets
    per address, whatever the number of ranges (`bench/ranges.py` measures it).
    """

    def __init__(self, lists: Iterable[RangeList]) -> None:
        self.lists = tuple(lists)
        tables: dict[int, dict[int, dict[int, list[Found]]]] = {4: {}, 6: {}}
        for rl in self.lists:
            for r in rl.ranges:
                net = r.network
                bits = net.max_prefixlen - net.prefixlen
                by_len = tables[net.version].setdefault(net.prefixlen, {})
                by_len.setdefault(int(net.network_address) >> bits, []).append((r, rl))
        self._tables = {
            v: [
                (t[length], ipaddress.IPV4LENGTH if v == 4 else ipaddress.IPV6LENGTH, length)
                for length in sorted(t, reverse=True)
            ]
            for v, t in tables.items()
        }

    def __len__(self) -> int:
        return sum(len(rl.ranges) for rl in self.lists)

    def find(self, ip: IPAddress) -> Sequence[Found]:
        """The most specific ranges holding `ip` (several only when lists overlap exactly)."""
        value = int(ip)
        for table, width, length in self._tables[ip.version]:
            got = table.get(value >> (width - length))
            if got is not None:
                return got
        return ()

    def match(self, ip: IPAddress, port: int | None) -> tuple[ListHit, ...]:
        """A hit per provider holding the address; the detail names prefix, port and source."""
        hits = []
        for r, rl in self.find(ip):
            bits = [str(r.network)]
            if r.note:
                bits.append(r.note)
            if port is not None and r.ports:
                on_port = any(p == port for _, p in r.ports)
                bits.append(f"port {port} {'listed' if on_port else 'not listed'}")
            bits.append(f"from {rl.source} ({rl.day})")
            hits.append(ListHit(rl.provider, ", ".join(bits), None, rl.fetched))
        return tuple(hits)

    def label(self, ip: IPAddress, port: int | None, transport: Transport) -> Label | None:
        """A low-confidence VPN label for a flow to a provider's range (on a listed port).

        Where the source names ports (WARP), a flow on another port or transport gets the
        `ListHit` but no label: the range is the provider's, the flow need not be its VPN.
        """
        for r, rl in self.find(ip):
            if r.ports and not any(proto == transport.value and p == port for proto, p in r.ports):
                continue
            return labels.vpn(
                rl.provider,
                labels.LOW,
                ("address_list", f"{rl.provider} {r.network} ({rl.source}, {rl.day})"),
            )
        return None
