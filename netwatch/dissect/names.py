"""Host names that identify VPN software and services, as data (VG-CONN-2, SE-DDNS-1, CV-DNS-1).

`classify_host` maps a TLS SNI or HTTP Host to a VPN label name: SoftEther's cloud services
(DDNS, NAT-T, VPN Azure, update check), VPN Gate (`*.vpngate.net`, `vpngate.jp`,
`*.opengw.net`) and commercial providers. Matching is on whole DNS labels: `nordvpn.com` and
`x.nordvpn.com` match, `notnordvpn.com` does not. DNS lookups are not labelled with these (a
DNS flow stays `dns`); the detection rules see the names through `dns_query`.
"""

from __future__ import annotations

# suffix -> label name. Sources: SoftEther's `src/Cedar/DDNS.h`, `AzureClient.h`, `Protocol.h`
# (https://github.com/SoftEtherVPN/SoftEtherVPN), VPN Gate's own hosts (https://www.vpngate.net/),
# and nDPI's VPN host list `src/lib/ndpi_content_match.c.inc` (https://github.com/ntop/nDPI).
VPN_HOST_SUFFIXES: dict[str, str] = {
    # SoftEther cloud: DDNS, NAT traversal, update check, keep-alive, VPN Azure, China mirrors
    "softether-network.net": "softether",
    "softether.net": "softether",
    "softether.org": "softether",
    "softether.co.jp": "softether",
    "sedns.cn": "softether",
    "uxcom.jp": "softether",
    "vpnazure.net": "softether",
    # VPN Gate directory, API and relays
    "vpngate.net": "vpngate",
    "vpngate.jp": "vpngate",
    "opengw.net": "vpngate",
    # commercial providers and tunnelling apps
    "nordvpn.com": "nordvpn",
    "nordcdn.com": "nordvpn",
    "nordsec.com": "nordvpn",
    "nordaccount.com": "nordvpn",
    "napps-1.com": "nordvpn",
    "napps-2.com": "nordvpn",
    "protonvpn.com": "protonvpn",
    "protonvpn.ch": "protonvpn",
    "protonvpn.net": "protonvpn",
    "vpn-api.proton.me": "protonvpn",
    "mullvad.net": "mullvad",
    "surfshark.com": "surfshark",
    "privateinternetaccess.com": "pia",
    "windscribe.com": "windscribe",
    "whiskergalaxy.com": "windscribe",
    "tunnelbear.com": "tunnelbear",
    "polargrizzly.com": "tunnelbear",
    "hotspotshield.com": "hotspotshield",
    "northghost.com": "hotspotshield",
    "psiphon3.net": "psiphon",
    "psiphon.ca": "psiphon",
    "cloudflareclient.com": "warp",
    "tailscale.com": "tailscale",
    "tailscale.io": "tailscale",
    "sec-tunnel.com": "operavpn",
    "cactusvpn.com": "cactusvpn",
    "mask.icloud.com": "icloud-private-relay",
    "mask-h2.icloud.com": "icloud-private-relay",
    "expressvpn.com": "expressvpn",
    "cyberghostvpn.com": "cyberghost",
    "ipvanish.com": "ipvanish",
    "purevpn.com": "purevpn",
    "vyprvpn.com": "vyprvpn",
}

# name prefixes (nDPI's host list has `anchorfree.` without a TLD)
VPN_HOST_LABEL_PREFIXES: dict[str, str] = {"anchorfree": "hotspotshield"}

# Server certificates (TLS <= 1.2 sends them in clear). The subject CN and SAN DNS names go
# through `classify_host` like an SNI (PIA, Windscribe, Psiphon, ... by their domains); these
# tables add the names that are not host names. Keys are lowercased attribute values.
CERT_SUBJECT_UNITS: dict[tuple[str, str], str] = {
    # FortiGate's factory certificate "Fortinet_Factory", which its SSL VPN (FortiClient)
    # and admin pages serve until replaced: O=Fortinet, OU=FortiGate, CN=<serial, FGT60E...>
    # (FortiOS Administration Guide, "Certificates": https://docs.fortinet.com/product/fortigate).
    # Only the *subject* counts: FortiGate's TLS inspection re-signs other sites' certificates
    # with the issuer O=Fortinet, OU=Certificate Authority, which must not say "VPN".
    ("fortinet", "fortigate"): "fortinet",
}
"""(subject O, subject OU) -> label name."""

CERT_ORGANISATIONS: dict[str, str] = {
    # PIA's servers present certificates from its own CA, "O=Private Internet Access":
    # its WireGuard API (port 1337, dialled by address with the server's short name as SNI)
    # is verified against https://github.com/pia-foss/manual-connections/blob/master/ca.rsa.4096.crt
    # (see connect_to_wireguard_with_token.sh in that repository).
    "private internet access": "pia",
}
"""Subject or issuer O -> label name: a provider's private CA signs only its own servers."""

_MAX_NAME = 253


def classify_host(name: str) -> str | None:
    """Return the VPN label name for a host name, or None when it is not a known VPN host."""
    if not name or len(name) > _MAX_NAME:
        return None
    host = name.rstrip(".").lower()
    parts = host.split(".")
    for i in range(len(parts)):
        hit = VPN_HOST_SUFFIXES.get(".".join(parts[i:]))
        if hit is not None:
            return hit
    for part in parts[:-1]:
        hit = VPN_HOST_LABEL_PREFIXES.get(part)
        if hit is not None:
            return hit
    return None
