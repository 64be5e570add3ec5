"""Label decisions from names: what an SNI, a QUIC hello or an HTTP request says a flow is.

Order matters, strongest evidence first: SoftEther's deterministic markers (SNI `DDNS`, `/vpnsvc/`
paths) first, then VPN service host names (`names.py`), then the Tor SNI shape, then TLS on
SoftEther's own ports, and only then the plain `tls`/`quic`/`http` label. Pure functions.
"""

from __future__ import annotations

import ipaddress

from netwatch.dissect import anyconnect, http, labels, softether
from netwatch.dissect.certificate import LeafCertificate
from netwatch.dissect.names import CERT_ORGANISATIONS, CERT_SUBJECT_UNITS, classify_host
from netwatch.dissect.tor import tor_client_hello, tor_like_sni
from netwatch.model import IPAddress, Label

_PROVIDER_EXACT = frozenset({"softether", "vpngate"})
"""Names that identify the protocol itself (high); provider names say an app is present."""


def quic_label(sni: str | None) -> Label:
    """The plain QUIC label, with the SNI as evidence when the Initial could be read."""
    ev = (("sni", sni),) if sni else ()
    return labels.plain("quic", "web", labels.MEDIUM, *ev)


def sni_label(
    sni: str | None,
    proto: str,
    port: int,
    server: IPAddress | None = None,
    groups: tuple[int, ...] = (),
    alpn: tuple[str, ...] = (),
) -> Label:
    """Turn an SNI into a label: SoftEther DDNS, VPN host names, Tor, or plain TLS/QUIC.

    `groups` and `alpn` are the hello's: with the SNI's shape they tell Tor's own client
    hello (`dissect.tor.tor_client_hello`), high confidence.

    `server` is the responder's address: an SNI that *is* that address is a SoftEther
    client's habit (it copies the server string the user typed), but other apps do it too,
    so alone it only adds a `numeric_sni` hint to the plain label.
    """
    if sni == "ddns":
        return labels.vpn("softether", labels.HIGH, ("sni", "DDNS"))
    provider = classify_host(sni) if sni else None
    if sni and provider is not None:
        confidence = labels.HIGH if provider in _PROVIDER_EXACT else labels.MEDIUM
        return labels.vpn(provider, confidence, ("sni", sni))
    if proto != "tls":
        return quic_label(sni)
    if tor_client_hello(sni, alpn, groups):
        return labels.anonymizer(
            "tor",
            labels.HIGH,
            ("sni", sni or ""),
            ("sni_shape", "www.<random>.com/.net"),
            ("tls_groups", "ends with P-224 (secp224r1), as Tor's link TLS does; no ALPN"),
        )
    if sni and tor_like_sni(sni):
        return labels.anonymizer(
            "tor", labels.MEDIUM, ("sni", sni), ("sni_shape", "www.<random>.com/.net")
        )
    # A numeric SNI equal to the server is only a hint (see `softether`): it is kept as
    # evidence, and `softether_watermark` labels the flow once the upload shows.
    hint = (
        (("numeric_sni", "the server's own address, as SoftEther clients send; not enough alone"),)
        if sni and port in softether.SERVER_PORTS and _same_address(sni, server)
        else ()
    )
    if port in softether.TLS_PORTS:  # SE-TLS-1: TLS on SoftEther's own ports; weak alone
        return labels.vpn(
            "softether", labels.GUESS, ("tls_port", str(port)), ("sni", sni or "(none)"), *hint
        )
    return labels.plain("tls", "web", labels.MEDIUM, *((("sni", sni),) if sni else ()), *hint)


def softether_candidate(
    sni: str | None, alpn: tuple[str, ...], port: int, server: IPAddress | None
) -> bool:
    """True for a ClientHello shaped like SoftEther's: the server's address as SNI, on one of
    its ports, and no ALPN (its client offers none; HTTP/2 apps and browsers do)."""
    return (
        sni is not None
        and not alpn
        and port in softether.SERVER_PORTS
        and _same_address(sni, server)
    )


def softether_watermark(sni: str, port: int, record_length: int) -> Label:
    """The SoftEther label for a candidate flow whose client sent a watermark-sized record.

    The evidence names no `sni` on purpose: this is a tunnel seen, not a host name contacted.
    """
    return labels.vpn(
        "softether",
        labels.MEDIUM,
        ("sni_is_server_address", sni),
        ("tls_port", str(port)),
        (
            "watermark_record",
            f"{record_length} bytes, the size of the SSL-VPN GIF watermark upload",
        ),
    )


def cert_label(cert: LeafCertificate, sni: str | None = None) -> Label | None:
    """Name a VPN provider from the server's certificate, or None for an ordinary one.

    Medium confidence, like a provider SNI: the certificate names the server's owner, which
    says a VPN endpoint (or its web pages) is being talked to; it is weaker than a protocol
    signature and stronger than an address on a list. The evidence is the matched name.
    Host names in the CN/SANs count only when the client sent no host name as SNI (VPN apps
    dial their servers by address): a certificate answering for another name that also lists
    a provider's domain is a shared (CDN) certificate, not the provider's server.
    """
    names = cert.names
    unit = CERT_SUBJECT_UNITS.get((cert.subject_o.lower(), cert.subject_ou.lower()))
    if unit is not None:
        return labels.vpn(unit, labels.MEDIUM, ("cert_subject", names.subject))
    for org, field_name, dn in (
        (cert.subject_o, "cert_subject", names.subject),
        (cert.issuer_o, "cert_issuer", names.issuer),
    ):
        provider = CERT_ORGANISATIONS.get(org.lower()) if org else None
        if provider is not None:
            return labels.vpn(provider, labels.MEDIUM, (field_name, dn))
    if sni and not _is_address(sni):
        return None
    for field_name, host in (("cert_cn", cert.subject_cn), *(("cert_san", n) for n in names.san)):
        provider = classify_host(host.lstrip("*.")) if host else None
        if provider is not None:
            return labels.vpn(provider, labels.MEDIUM, (field_name, host))
    return None


def forti_dtls_label(record: str) -> Label:
    """FortiClient's DTLS tunnel (fact FORTI-1): a DTLS record from the client to the same
    server address and port as a TLS flow whose certificate was a FortiGate's.

    FortiGate SSL VPN may carry its tunnel over DTLS 1.2 on UDP, on the port of the SSL VPN
    itself, after the HTTPS login; the DTLS handshake is standard and Fortinet's own hello
    (`GFtype clthello`) travels inside it, encrypted. So the clear proof is the pairing with
    the certificate, and the label is no surer than the certificate's (medium).
    """
    return labels.vpn(
        "fortinet",
        labels.MEDIUM,
        ("dtls_record", record),
        ("fortigate_session", "same hosts and port as a FortiGate certificate"),
    )


def http_label(request: http.HttpRequest) -> Label:
    """Label a clear HTTP request: SoftEther paths, SSTP, AnyConnect CSTP, VPN Gate, VPN hosts."""
    path = request.path
    host = request.host or ""
    if path.startswith("/vpnsvc/"):
        return labels.vpn("softether", labels.HIGH, ("http_path", path[:128]))
    if request.method == "SSTP_DUPLEX_POST" and path.lower().startswith("/sra_{ba195980-"):
        return labels.vpn("sstp", labels.HIGH, ("http_request", request.line[:128]))
    cstp = anyconnect.cstp_label(request.method, path, request.line, request.cstp_headers)
    if cstp is not None:
        return cstp
    provider = classify_host(host) if host else None
    if path.startswith("/api/iphone"):
        confidence = labels.HIGH if provider == "vpngate" else labels.MEDIUM
        return labels.vpn("vpngate", confidence, ("http_path", path[:128]))
    if path.startswith("/ddns/getmyip.ashx") and provider == "softether":
        return labels.vpn("softether", labels.HIGH, ("http_path", path[:128]))
    if provider is not None:
        confidence = labels.HIGH if provider in _PROVIDER_EXACT else labels.MEDIUM
        return labels.vpn(provider, confidence, ("http_host", host))
    ev = (("http_host", host),) if host else ()
    return labels.plain("http", "web", labels.MEDIUM, *ev)


def _is_address(sni: str) -> bool:
    """True when an SNI is an IP literal (some VPN clients send the address they dialled)."""
    try:
        ipaddress.ip_address(sni.strip("[]"))
    except ValueError:
        return False
    return True


def _same_address(sni: str, server: IPAddress | None) -> bool:
    """True when the SNI is an IP literal equal to the server's address."""
    if server is None or not (sni[0].isdigit() or ":" in sni):
        return False
    try:
        return ipaddress.ip_address(sni.strip("[]")) == server
    except ValueError:
        return False
