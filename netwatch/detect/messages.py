"""Alert messages: the placeholders a rule's message may use, and plain-words formatting.

Messages are one line a non-expert understands, so sizes read `4.2 KB`, durations `3 s`, a
window `the last hour`, and an unknown process `an unknown program`. The loader checks
templates against `PLACEHOLDERS` so a typo fails at `rules check`, not at alert time.
"""

from __future__ import annotations

import string
from collections.abc import Mapping

from netwatch.detect.fields import Env
from netwatch.model import EnrichedFlow, units

FLOW_PLACEHOLDERS = {
    "process": "program name (or 'an unknown program')",
    "pid": "its process id",
    "exe": "its executable path",
    "remote": "remote address and port",
    "remote_ip": "remote address",
    "remote_port": "remote port",
    "local_port": "local port",
    "transport": "TCP, UDP, ...",
    "country": "remote country code",
    "org": "remote network owner",
    "where": "remote address with country and owner, e.g. 90.189.249.23 (RU, AS12389 Rostelecom)",
    "jurisdiction": "5/9/14 Eyes groups of the remote country",
    "name": "the server name (SNI, DNS or HTTP host), else the address",
    "server": "server name and address, e.g. www.vpngate.net at 203.0.113.7 (JP)",
    "sni": "TLS server name",
    "http_request": "HTTP request line",
    "label": "the protocol recognised",
    "up": "bytes sent, human-readable",
    "down": "bytes received, human-readable",
    "duration": "flow duration, human-readable",
    "vpngate_config": "SoftEther config file with a VPNGATE hub",
    "interface": "the interface the flow left by (as captured, or as routed without capture)",
    "provider": "who runs the far end, e.g. VPN Gate (University of Tsukuba, JP, no audit; "
    "logs kept ≥3 months), or 'an unknown operator'",
    "provider_note": "', run by <provider>,' when netwatch knows the operator, else nothing",
}
WINDOW_PLACEHOLDERS = {
    "peers": "distinct remote addresses in the window",
    "countries": "distinct countries",
    "asns": "distinct networks (ASNs)",
    "prefixes": "distinct /24 networks",
    "country_list": "the countries, comma-separated",
    "window": "the window in words, e.g. 'the last hour'",
}
PLACEHOLDERS = {**FLOW_PLACEHOLDERS, **WINDOW_PLACEHOLDERS}


def template_problems(template: str, windowed: bool) -> list[str]:
    """Say what is wrong with a message template (unknown or misplaced placeholders)."""
    try:
        names = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        return [f"bad template: {exc}"]
    out = []
    for n in names:
        if n not in PLACEHOLDERS:
            out.append(f"unknown placeholder {{{n}}} (known: {', '.join(sorted(PLACEHOLDERS))})")
        elif n in WINDOW_PLACEHOLDERS and not windowed:
            out.append(f"placeholder {{{n}}} needs a window")
    return out


def human_seconds(s: float | None) -> str:
    """`3 s`, `4 min`, `2 h`."""
    if s is None:
        return "? s"
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.0f} h"


def human_window(seconds: float) -> str:
    """`the last hour`, `the last 10 minutes`, `the last day`."""
    named = {3600.0: "the last hour", 86400.0: "the last day", 60.0: "the last minute"}
    if seconds in named:
        return named[seconds]
    if seconds % 3600 == 0:
        return f"the last {seconds / 3600:.0f} hours"
    if seconds % 60 == 0:
        return f"the last {seconds / 60:.0f} minutes"
    return f"the last {seconds:.0f} seconds"


def process_name(ef: EnrichedFlow | None) -> str:
    """The owning program's name, or words for an unknown one."""
    if ef is None or ef.flow.process is None:
        return "an unknown program"
    return ef.flow.process.name


def where(ef: EnrichedFlow) -> str:
    """Remote address with what is known about it: `90.189.249.23 (RU, AS12389 Rostelecom)`."""
    remote = ef.flow.key.remote
    if remote is None:
        return f"port {ef.flow.key.local.port}"
    r = ef.remote
    bits = []
    if r is not None and r.country:
        bits.append(r.country)
    if r is not None and r.asn is not None:
        bits.append(f"AS{r.asn} {r.as_org}" if r.as_org else f"AS{r.asn}")
    return f"{remote.ip} ({', '.join(bits)})" if bits else str(remote.ip)


def flow_values(ef: EnrichedFlow, env: Env) -> dict[str, str]:
    """Every flow placeholder's text for one flow."""
    f, r = ef.flow, ef.remote
    remote = f.key.remote
    p = f.process
    configs = env.host.vpngate_configs if env.host is not None else ()
    label = f.label.name if f.label is not None else f.key.transport.value
    name = f.sni or f.dns_name or f.http_host
    provider = r.provider if r is not None else None
    if provider is not None and not provider.has_operator:
        provider = None  # self-hosted, Tor, a gateway product: no operator to name
    return {
        "process": process_name(ef),
        "pid": "?" if p is None else str(p.pid),
        "exe": (p.exe or p.name) if p is not None else "?",
        "remote": "?" if remote is None else str(remote),
        "remote_ip": "?" if remote is None else str(remote.ip),
        "remote_port": "?" if remote is None else str(remote.port),
        "local_port": str(f.key.local.port),
        "transport": f.key.transport.value.upper(),
        "country": (r.country if r is not None else None) or "an unknown country",
        "org": (r.as_org if r is not None else None) or "an unknown network",
        "where": where(ef),
        "jurisdiction": ", ".join(r.jurisdiction) if r is not None and r.jurisdiction else "none",
        "name": name or ("?" if remote is None else str(remote.ip)),
        "server": f"{name} at {where(ef)}" if name else where(ef),
        "sni": f.sni or "?",
        "http_request": f.http_request or "?",
        "label": label,
        "up": units.long(f.bytes_sent),
        "down": units.long(f.bytes_received),
        "duration": human_seconds(
            None if f.first_seen is None or f.last_seen is None else f.last_seen - f.first_seen
        ),
        "vpngate_config": ", ".join(c.path for c in configs) or "?",
        "interface": f.interface or "an unknown interface",
        "provider": provider.summary if provider is not None else "an unknown operator",
        "provider_note": f", run by {provider.summary}," if provider is not None else "",
    }


def render(template: str, values: Mapping[str, str]) -> str:
    """Fill a checked template; a missing value shows as `?` rather than failing."""
    text = string.Formatter().vformat(template, (), _Default(values)).replace("\n", " ")
    return text[:1].upper() + text[1:] if text.startswith("an unknown program") else text


class _Default(dict[str, str]):
    def __init__(self, values: Mapping[str, str]) -> None:
        super().__init__(values)

    def __missing__(self, key: str) -> str:
        return "?"
