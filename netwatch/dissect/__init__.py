"""Dissectors (pure): bytes in, facts out (DNS, TLS SNI, HTTP, VPN and anonymizer signatures).

`Dissector` is what the pipeline calls; the protocol modules (`dns`, `tls`, `quic`, `http`,
`openvpn`, `wireguard`, `tailscale`, `anyconnect`, `ipsec`, `tunnels`, `softether`, `tor`,
`names`) are pure functions and small trackers it routes to. Nothing here touches the OS.
"""

from netwatch.dissect.dissector import Dissector

__all__ = ["Dissector"]
