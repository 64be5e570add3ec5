"""Syslog export: RFC 5424 messages with structured data, and UDP/TCP senders.

Every message carries one SD element `netwatch@32473` (32473 is the enterprise number RFC 5612
reserves for documentation; sites with their own PEN can change `SD_ID`) with the params
`rule`, `severity`, `process`, `remote`, plus `id`, `count`, `country`, `action` and the flow's
`label`, `label_confidence` and `label_evidence`, and, when the far end's provider is known,
`provider`, `provider_country`, `provider_groups`, `provider_audits` and
`provider_incidents` (counts). TCP uses
octet-counting framing (RFC 6587 3.4.1), so messages may contain anything; UDP sends one
message per datagram (RFC 5426). Senders never raise into the caller: a failure is logged and
the message dropped, since a log pipeline that is down must not stop detection.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass

from netwatch.export.schema import (
    iso_time,
    label_confidence,
    label_evidence_text,
    label_name,
    provider_audits,
    provider_country,
    provider_groups,
    provider_incidents,
    provider_name,
    remote_ip,
)
from netwatch.model import Alert, Severity

log = logging.getLogger("netwatch.export.syslog")

SD_ID = "netwatch@32473"
APP_NAME = "netwatch"
MSGID = "alert"
FACILITIES = {"kern": 0, "user": 1, "daemon": 3, "auth": 4, "authpriv": 10, "local0": 16,
              "local1": 17, "local2": 18, "local3": 19, "local4": 20, "local5": 21,
              "local6": 22, "local7": 23}  # fmt: skip
# netwatch severity -> syslog severity (crit, err, warning, notice, info).
SYSLOG_SEVERITY = {
    Severity.CRITICAL: 2,
    Severity.HIGH: 3,
    Severity.MEDIUM: 4,
    Severity.LOW: 5,
    Severity.INFO: 6,
}
MAX_UDP = 8192


def _sd_escape(value: str) -> str:
    """Escape `"`, `\\` and `]` inside a PARAM-VALUE (RFC 5424 6.3.3)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _header_field(value: str, limit: int) -> str:
    """A header field: printable US-ASCII without spaces, or the NILVALUE `-`."""
    clean = "".join(ch for ch in value if 33 <= ord(ch) <= 126)[:limit]
    return clean or "-"


def format_rfc5424(
    alert: Alert, hostname: str | None = None, facility: int = 3, procid: int | None = None
) -> str:
    """One alert as an RFC 5424 message (no framing, no trailing newline)."""
    pri = facility * 8 + SYSLOG_SEVERITY[alert.severity]
    host = _header_field(hostname if hostname is not None else socket.gethostname(), 255)
    pid = _header_field(str(os.getpid() if procid is None else procid), 128)
    params = {
        "rule": alert.rule_id,
        "severity": alert.severity.value,
        "process": alert.process.name if alert.process else "",
        "remote": remote_ip(alert) or "",
        "id": alert.id,
        "count": str(alert.count),
        "country": (alert.remote.country if alert.remote else None) or "",
        "action": alert.action.value,
        "label": label_name(alert) or "",
        "label_confidence": label_confidence(alert) or "",
        "label_evidence": label_evidence_text(alert) or "",
        **_provider_params(alert),
    }
    sd = "[" + SD_ID + "".join(f' {k}="{_sd_escape(v)}"' for k, v in params.items()) + "]"
    msg = " ".join(alert.message.split())
    return f"<{pri}>1 {iso_time(alert.last_seen)} {host} {APP_NAME} {pid} {MSGID} {sd} {msg}"


def _provider_params(alert: Alert) -> dict[str, str]:
    """`provider`, `provider_country`, `provider_groups`, `provider_audits` and
    `provider_incidents`, only when the provider is known (an SD-PARAM may not be absent-
    valued, and an empty one would read as "no audits")."""
    name = provider_name(alert)
    if name is None:
        return {}
    return {
        "provider": name,
        "provider_country": provider_country(alert) or "",
        "provider_groups": provider_groups(alert) or "",
        "provider_audits": str(provider_audits(alert)),
        "provider_incidents": str(provider_incidents(alert)),
    }


@dataclass(frozen=True, slots=True)
class SyslogTarget:
    """Where to send: host, port, `udp` or `tcp`, facility name."""

    host: str = "127.0.0.1"
    port: int = 514
    protocol: str = "udp"
    facility: str = "daemon"


class SyslogSender:
    """Sends alerts to one syslog server; reconnects TCP lazily, never raises on I/O."""

    def __init__(self, target: SyslogTarget, timeout: float = 2.0) -> None:
        if target.protocol not in ("udp", "tcp"):
            raise ValueError(f"syslog protocol must be udp or tcp, not {target.protocol!r}")
        if target.facility not in FACILITIES:
            raise ValueError(f"unknown syslog facility {target.facility!r}")
        self.target = target
        self._facility = FACILITIES[target.facility]
        self._timeout = timeout
        self._sock: socket.socket | None = None
        self._hostname = socket.gethostname()
        self.sent = 0
        self.failed = 0

    def send(self, alert: Alert) -> bool:
        """Send one alert; returns False (and logs) when it could not be delivered."""
        data = format_rfc5424(alert, self._hostname, self._facility).encode("utf-8")
        try:
            if self.target.protocol == "udp":
                self._send_udp(data[:MAX_UDP])
            else:
                self._send_tcp(str(len(data)).encode("ascii") + b" " + data)
        except OSError as exc:
            self.failed += 1
            self._drop_socket()
            log.warning("syslog %s:%d: %s", self.target.host, self.target.port, exc)
            return False
        self.sent += 1
        return True

    def _send_udp(self, data: bytes) -> None:
        if self._sock is None:
            family = socket.AF_INET6 if ":" in self.target.host else socket.AF_INET
            self._sock = socket.socket(family, socket.SOCK_DGRAM)
        self._sock.sendto(data, (self.target.host, self.target.port))

    def _send_tcp(self, frame: bytes) -> None:
        if self._sock is None:
            self._sock = socket.create_connection(
                (self.target.host, self.target.port), timeout=self._timeout
            )
        self._sock.sendall(frame)

    def _drop_socket(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def close(self) -> None:
        """Close the connection (TCP flushes what the kernel holds)."""
        self._drop_socket()
