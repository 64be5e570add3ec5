"""IPsec: IKEv1/IKEv2 on UDP 500 and 4500, NAT-T ESP and keep-alives, raw ESP and AH.

Facts IKE-1/ESP-1 (docs/architecture.md), read from nDPI's `src/lib/protocols/ipsec.c`
(https://github.com/ntop/nDPI) and SoftEther's `src/Cedar/Proto_IKE.c`
(https://github.com/SoftEtherVPN/SoftEtherVPN). The ISAKMP header is
28 bytes: initiator SPI, responder SPI, next payload, version (0x10 IKEv1, 0x20 IKEv2),
exchange type, flags, message id, length. On 4500 four zero bytes (the non-ESP marker) come
first; a non-zero first word is an ESP SPI; a lone 0xFF byte is a NAT keep-alive.
"""

from __future__ import annotations

from netwatch.dissect import labels
from netwatch.model import Label

IKE_PORTS = frozenset({500, 4500})
NATT_PORT = 4500
_IKEV1_EXCHANGES = {
    1: "Base",
    2: "Identity Protection",
    3: "Authentication Only",
    4: "Aggressive",
    5: "Informational",
    32: "Quick Mode",
    33: "New Group Mode",
}
_IKEV2_EXCHANGES = {
    34: "IKE_SA_INIT",
    35: "IKE_AUTH",
    36: "CREATE_CHILD_SA",
    37: "INFORMATIONAL",
    38: "IKE_SESSION_RESUME",
    43: "IKE_INTERMEDIATE",
    44: "IKE_FOLLOWUP_KE",
}


def ike_exchange(data: bytes) -> str | None:
    """Return e.g. `IKEv2 IKE_SA_INIT` when `data` starts with a valid ISAKMP header."""
    if len(data) < 28 or data[0:8] == b"\x00" * 8:
        return None
    version = data[17]
    length = int.from_bytes(data[24:28], "big")
    if length < 28 or length > len(data) + 4096:
        return None
    if version == 0x20:
        name = _IKEV2_EXCHANGES.get(data[18])
        next_payload = data[16]
        if name is None or not (next_payload <= 53 or next_payload >= 128):
            return None
        if data[18] == 34 and data[20:24] != b"\x00\x00\x00\x00":
            return None  # IKE_SA_INIT always has message id 0
        return f"IKEv2 {name}"
    if version == 0x10:
        name = _IKEV1_EXCHANGES.get(data[18])
        if name is None or not (data[16] <= 33 or data[16] >= 128):
            return None
        return f"IKEv1 {name}"
    return None


def udp_label(payload: bytes, ports: tuple[int, int]) -> Label | None:
    """Label a UDP payload on 500/4500: IKE, NAT-T IKE, ESP-in-UDP or a NAT keep-alive."""
    natt = NATT_PORT in ports
    if natt and payload == b"\xff":
        return labels.vpn("ipsec", labels.MEDIUM, ("nat_keepalive", "0xff"))
    if natt and payload[:4] == b"\x00\x00\x00\x00":
        exchange = ike_exchange(payload[4:])
        if exchange is not None:
            return labels.vpn("ipsec", labels.HIGH, ("ike", exchange), ("non_esp_marker", "4500"))
        return None
    exchange = ike_exchange(payload)
    if exchange is not None:
        return labels.vpn("ipsec", labels.HIGH, ("ike", exchange))
    if natt and len(payload) >= 16:
        return labels.vpn(
            "ipsec",
            labels.MEDIUM,
            ("esp_in_udp_spi", payload[:4].hex()),
            ("esp_seq", str(int.from_bytes(payload[4:8], "big"))),
        )
    return None


def esp_label(payload: bytes) -> Label:
    """Label an IP protocol 50 packet (the protocol number alone is the evidence)."""
    ev = [("ip_proto", "50 (ESP)")]
    if len(payload) >= 8:
        ev.append(("spi", payload[:4].hex()))
    return labels.vpn("ipsec", labels.HIGH, *ev)


def ah_label(payload: bytes) -> Label:
    """Label an IP protocol 51 packet (Authentication Header)."""
    ev = [("ip_proto", "51 (AH)")]
    if len(payload) >= 8:
        ev.append(("spi", payload[4:8].hex()))
    return labels.vpn("ipsec", labels.HIGH, *ev)
