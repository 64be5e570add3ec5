"""Text for numbers, processes, countries and labels, as every dashboard widget shows them.

Pure. Everything reads without colour or emoji support: the country code is always shown
(the flag is decoration), VPN and anonymizer badges are words in brackets, severities are
upper-case words.
"""

from __future__ import annotations

import time

from netwatch.model import Direction, EnrichedFlow, Owner, ProcessRef, RemoteInfo, Severity, units


def size(n: float | None) -> str:
    """Bytes in at most 5 characters (`512B`, `4.2K`, `13M`: decimal, see model.units)."""
    return units.short(n)


def rate(bps: float | None) -> str:
    """A byte rate (per second implied by the column); None is blank, zero is `0`."""
    if bps is None:
        return ""
    if bps < 0.5:
        return "0"
    return size(bps)


def duration(seconds: float | None) -> str:
    """An age in at most 4 characters: `42s`, `5m`, `3h`, `2d`, `11y`; None is `-`."""
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h"
    if s < 1000 * 86400:
        return f"{s // 86400}d"
    return f"{s // (365 * 86400)}y"


def flag(code: str | None) -> str:
    """The flag emoji of a two-letter country code (regional indicators), or ''."""
    if code is None or len(code) != 2 or not code.isalpha() or not code.isascii():
        return ""
    return "".join(chr(0x1F1E6 + ord(c) - ord("A")) for c in code.upper())


def country(r: RemoteInfo | None, with_flag: bool = True) -> str:
    """`RU 🇷🇺`; the scope (`lan`, `lo`) for non-global addresses; '' when unknown."""
    if r is None:
        return ""
    if r.country:
        mark = flag(r.country) if with_flag else ""
        return f"{r.country} {mark}".rstrip()
    scope = r.scope.value
    return {"private": "lan", "loopback": "lo", "link_local": "link", "multicast": "mcast"}.get(
        scope, ""
    )


def place(ef: EnrichedFlow) -> str:
    """The Cty cell: `country(remote)`, or without enrichment the address's own scope
    (`lo`, `lan`, `link`, `mcast`), so loopback and LAN read right even without GeoIP."""
    known = country(ef.remote)
    if known or ef.remote is not None:
        return known
    remote = ef.flow.key.remote
    if remote is None:
        return ""
    ip = remote.ip
    if ip.is_loopback:
        return "lo"
    if ip.is_link_local:
        return "link"
    if ip.is_multicast:
        return "mcast"
    if ip.is_private:
        return "lan"
    return ""


def asn(r: RemoteInfo | None) -> str:
    """`AS12389 PJSC Rostelecom`, or the RDAP owner's name when there is no ASN."""
    if r is None:
        return ""
    parts = []
    if r.asn is not None:
        parts.append(f"AS{r.asn}")
    org = r.as_org or (r.owner.name if r.owner is not None else None)
    if org:
        parts.append(org)
    return " ".join(parts)


def eyes(r: RemoteInfo | None) -> str:
    """The narrowest commonly cited group (`5 Eyes` rather than `14 Eyes`), as `5Eyes`."""
    if r is None or not r.jurisdiction:
        return ""
    ordered = sorted(r.jurisdiction, key=lambda g: int(g.split()[0]) if g[0].isdecimal() else 99)
    return ordered[0].replace(" ", "")


def process(p: ProcessRef | None, width: int = 0) -> str:
    """`name pid` (the name shortened so the pid fits `width`), or `?` when unattributed."""
    if p is None:
        return "?"
    pid = str(p.pid)
    name = p.name
    if width and len(name) + 1 + len(pid) > width:
        name = name[: max(1, width - len(pid) - 2)] + "~"
    return f"{name} {pid}"


def direction(d: Direction) -> str:
    """`out`, `in`, `lstn`, `?`."""
    return {
        Direction.OUTBOUND: "out",
        Direction.INBOUND: "in",
        Direction.LISTEN: "lstn",
    }.get(d, "?")


def badges(ef: EnrichedFlow) -> list[str]:
    """Word badges for a flow: `VPN`/`ANON` from its label, `CTR` for a container's (another
    network namespace's) socket, list memberships (`VPNGATE`)."""
    out = []
    label = ef.flow.label
    if label is not None and label.vpn:
        out.append("ANON" if label.category == "anonymizer" else "VPN")
    if ef.flow.container is not None:
        out.append("CTR")
    if ef.remote is not None:
        out += [h.list.upper() for h in ef.remote.lists]
    return out


def proto(ef: EnrichedFlow, width: int = 0) -> str:
    """The label name (or the transport) then the badges, `openvpn [VPN]`; badges always fit
    `width`, the name is shortened first."""
    f = ef.flow
    name = f.label.name if f.label is not None else f.key.transport.value
    marks = badges(ef)
    if not marks:
        return name
    tag = f"[{','.join(marks)}]"
    room = width - len(tag) - 1
    if width and len(name) > room:
        name = name[: max(1, room - 1)] + "~" if room > 1 else ""
    return f"{name} {tag}".strip()


def owner(o: Owner | None) -> str:
    """The RDAP owner: its name, `pending`, or `unknown (reason)`."""
    if o is None:
        return "not looked up"
    if o.status == "ok" and o.name:
        return o.name
    if o.status == "pending":
        return "pending (RDAP lookup running)"
    return f"unknown ({o.reason or 'no answer'})"


def severity(s: Severity) -> str:
    """An upper-case severity word of at most 4 letters: `INFO`, `LOW`, `MED`, `HIGH`, `CRIT`."""
    return {"critical": "CRIT", "medium": "MED"}.get(s.value, s.value.upper())


BARS = " ▁▂▃▄▅▆▇█"


def buckets(values: list[float], width: int) -> list[float]:
    """Squeeze `values` into at most `width` points, each the maximum of its stretch, so the
    whole window (minutes) fits and a short burst is not averaged away."""
    if width <= 0:
        return []
    if len(values) <= width:
        return list(values)
    size = len(values) / width
    return [
        max(values[int(i * size) : max(int(i * size) + 1, int((i + 1) * size))])
        for i in range(width)
    ]


def spark(values: list[float], width: int) -> str:
    """A one-line bar chart of `values` squeezed into `width`, scaled from zero to the peak.

    Unlike a min-to-max sparkline, a steady rate stays a steady bar and silence stays blank.
    """
    tail = buckets(values, width)
    peak = max(tail, default=0.0)
    if peak <= 0:
        return " " * len(tail)
    top = len(BARS) - 1
    return "".join(BARS[min(top, max(1 if v > 0 else 0, round(top * v / peak)))] for v in tail)


def when(epoch: float | None) -> str:
    """An absolute UTC time `2026-11-23 18:42:52Z`, for detail screens."""
    if epoch is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(epoch))
