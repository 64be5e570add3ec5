"""Dissectors (pure): bytes in, facts out (DNS, TLS SNI, HTTP, VPN and anonymizer signatures)."""
