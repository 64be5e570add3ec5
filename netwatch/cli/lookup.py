"""`netwatch lookup IP...`: what netwatch knows about addresses (scope, country, ASN, owner).

Offline by default (bundled and discovered GeoIP data); with a City database of the user's
(MaxMind or DB-IP City) each record also says where in the country (`place`); an address on
a VPN provider's list (VPN Gate, Tor, a provider's ranges) names that provider (`provider`,
the PROVIDER column; `netwatch providers NAME` prints its facts); `--rdap` adds the
registered owner, waiting at most `--rdap-timeout` seconds in total. A string that is not an
IP address gives one
line on stderr (`netwatch: lookup: 'x' is not an IP address`); the other addresses are still
printed and the exit code is 2. A damaged data file (list history, GeoIP file, RDAP cache) is
left out: the records are printed from the others, then one `netwatch: skipped FILE: ...` line
each, exit 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from netwatch.cli.common import add_format, add_geoip, report_skipped, write_lines
from netwatch.errors import EXIT_USAGE

ATTRIBUTION = "IP geolocation by DB-IP (https://db-ip.com)"
COLUMNS = ("IP", "SCOPE", "CC", "ASN", "AS ORG", "GROUPS", "OWNER")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the `lookup` subcommand."""
    parser = sub.add_parser(
        "lookup",
        help="what netwatch knows about IP addresses",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Print scope, country, ASN, AS organisation, commonly cited jurisdiction groups\n"
            "and (with --rdap) the registered owner of each address. Bad addresses are\n"
            f"reported one per line on stderr and the exit code is {EXIT_USAGE}.\n\n"
            f"{ATTRIBUTION}."
        ),
    )
    parser.add_argument("ips", nargs="+", metavar="IP", help="IPv4 or IPv6 address")
    add_format(parser)
    add_geoip(parser)
    parser.add_argument(
        "--rdap", action="store_true", help="also ask the regional registry (RDAP, online)"
    )
    parser.add_argument(
        "--rdap-timeout",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="longest total wait for RDAP answers (default 15)",
    )
    parser.set_defaults(func=run)


def _owner_text(owner: Any) -> str:
    if owner is None:
        return "-"
    if owner["status"] != "ok":
        reason = f" ({owner['reason']})" if owner.get("reason") else ""
        return f"owner {owner['status']}{reason}"
    parts = [owner.get("name") or "?", owner.get("cidr") or ""]
    if owner.get("abuse_emails"):
        parts.append("abuse " + ",".join(owner["abuse_emails"]))
    return " ".join(p for p in parts if p)


def _place_text(place: Any) -> str:
    if place is None:
        return "-"
    name = ", ".join(dict.fromkeys(p for p in (place["city"], place["region"]) if p)) or "?"
    return f"{name} (±{place['accuracy_km']} km)" if place["accuracy_km"] else name


def _provider_text(provider: Any) -> str:
    """`VPN Gate (JP; 0 audits; 0 incidents)` for the PROVIDER column."""
    bits = [provider["country"] or "-", f"{len(provider['audits'])} audits"]
    bits.append(f"{len(provider['incidents'])} incidents")
    return f"{provider['name']} ({'; '.join(bits)})"


def _table(records: list[dict[str, Any]]) -> list[str]:
    with_place = any(r["place"] is not None for r in records)
    with_provider = any(r.get("provider") is not None for r in records)
    columns = [*COLUMNS[:3], "PLACE", *COLUMNS[3:]] if with_place else list(COLUMNS)
    if with_provider:
        columns.append("PROVIDER")
    rows = []
    for r in records:
        row = [
            r["ip"],
            r["scope"],
            r["country"] or "-",
            f"AS{r['asn']}" if r["asn"] is not None else "-",
            r["as_org"] or "-",
            ", ".join(r["jurisdiction"]) or "-",
            _owner_text(r["owner"]),
        ]
        if with_place:
            row.insert(3, _place_text(r["place"]))
        if with_provider:
            p = r.get("provider")
            row.append("-" if p is None else _provider_text(p))
        rows.append(row)
    widths = [max(len(str(x)) for x in col) for col in zip(columns, *rows, strict=True)]
    lines = []
    for row in (columns, *rows):
        lines.append("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return lines


def run(args: argparse.Namespace) -> int:
    """Look every address up and print one record each."""
    from dataclasses import asdict
    from pathlib import Path

    from netwatch import codec
    from netwatch.enrich.city import CityFinder
    from netwatch.enrich.enricher import build_enricher
    from netwatch.enrich.geo_paths import discover
    from netwatch.enrich.scope import scope_of
    from netwatch.model import Scope, parse_ip

    good = []
    bad = 0
    for text in args.ips:
        try:
            good.append((text, parse_ip(text)))
        except ValueError:
            bad += 1
            shown = text if len(text) <= 80 else text[:77] + "..."
            sys.stderr.write(f"netwatch: lookup: {shown!r} is not an IP address\n")
    enricher = build_enricher([Path(p) for p in args.geoip_db], rdap=args.rdap)
    cities = CityFinder.open(c.path for c in discover([Path(p) for p in args.geoip_db]))
    try:
        if args.rdap and enricher.rdap is not None:
            wanted = [ip for _, ip in good if scope_of(ip) is Scope.GLOBAL]
            enricher.rdap.wait(wanted, args.rdap_timeout)
        records = []
        for text, ip in good:
            record = codec.remote_to_dict(enricher.remote_info(ip))
            assert record is not None  # noqa: S101  # remote_to_dict(None) is the only None
            owner = record["owner"]
            if owner is not None and owner["status"] == "pending":
                owner["status"] = "unknown"
                owner["reason"] = f"no RDAP answer within {args.rdap_timeout:g} s"
            place = cities.place(ip)
            records.append({"query": text, **record, "place": place and asdict(place)})
        skipped = enricher.skipped()
    finally:
        enricher.close()
        cities.close()
    if args.format == "jsonl":
        write_lines(json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in records)
    elif records:
        write_lines(_table(records))
    code = report_skipped(skipped)
    return EXIT_USAGE if bad else code
