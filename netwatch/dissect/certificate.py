"""The server's leaf certificate in a TLS 1.2 (or older) handshake, read in clear.

Before TLS 1.3 the server sends its Certificate message unencrypted right after ServerHello
(RFC 5246 §7.4.2), so a VPN concentrator without a telling SNI still names itself there:
FortiGate's factory certificate, a provider's own CA, its host names in the SANs.
`server_certificate` takes the first bytes of the server's stream (several segments joined,
at most `MAX_SERVER_BYTES`) and returns the leaf's names, `NEED_MORE` while the leaf is cut,
or None when there is none to read: TLS 1.3 (ServerHello's supported_versions says 0x0304, or
ChangeCipherSpec/application data comes first), a resumed session, or bytes that are not TLS.
Only the first certificate of the list is parsed, and only its names; the DER goes to
`cryptography` (Rust, bounds-checked) and any error it raises gives None.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from netwatch.dissect.tls import NEED_MORE, _NeedMore
from netwatch.model import CertNames

try:
    from cryptography import x509
    from cryptography.x509.oid import ExtensionOID, NameOID

    HAVE_X509 = True
    _NAME_OVERRIDES = {NameOID.EMAIL_ADDRESS: "emailAddress"}
except ImportError:  # pragma: no cover - cryptography is a dependency; degrade, never crash
    HAVE_X509 = False

MAX_SERVER_BYTES: Final = 16384
"""Most bytes of the server's stream joined to find the leaf certificate."""
_MAX_RECORD: Final = 16384 + 2048
_MAX_DN: Final = 512
_MAX_SAN: Final = 16
"""SAN names kept: every live flow holds them (a provider's own certificates list a few)."""
_TLS13: Final = 0x0304


@dataclass(frozen=True, slots=True)
class LeafCertificate:
    """The leaf's names as a flow fact, plus the attributes provider matching looks at."""

    names: CertNames
    subject_cn: str
    subject_o: str
    subject_ou: str
    issuer_o: str


def server_certificate(data: bytes) -> LeafCertificate | _NeedMore | None:
    """Unwrap handshake records from the start of a server stream and read the leaf."""
    handshake = bytearray()
    off, n = 0, len(data)
    while off + 5 <= n:
        if data[off] != 0x16 or data[off + 1] != 0x03:
            return None  # ChangeCipherSpec or encrypted data before a Certificate
        rec_len = (data[off + 3] << 8) | data[off + 4]
        if rec_len == 0 or rec_len > _MAX_RECORD:
            return None
        handshake += data[off + 5 : off + 5 + rec_len]
        off += 5 + rec_len
        found = _walk(handshake)
        if found is not NEED_MORE:
            return found
    return NEED_MORE if n < MAX_SERVER_BYTES else None


def _walk(hs: bytearray) -> LeafCertificate | _NeedMore | None:
    """Step over ServerHello to the Certificate message and parse its first certificate."""
    pos, n = 0, len(hs)
    while pos + 4 <= n:
        kind = hs[pos]
        length = (hs[pos + 1] << 16) | (hs[pos + 2] << 8) | hs[pos + 3]
        body = pos + 4
        if kind == 2:  # ServerHello
            if body + length > n:
                return NEED_MORE
            if _is_tls13(bytes(hs[body : body + length])):
                return None
            pos = body + length
            continue
        if kind != 11:  # anything else first: no certificate in clear (resumption, 1.3)
            return None
        if body + 6 > n:
            return NEED_MORE
        cert_len = (hs[body + 3] << 16) | (hs[body + 4] << 8) | hs[body + 5]
        if cert_len == 0 or cert_len + 6 > length or cert_len > MAX_SERVER_BYTES:
            return None
        if body + 6 + cert_len > n:
            return NEED_MORE
        return leaf_names(bytes(hs[body + 6 : body + 6 + cert_len]))
    return NEED_MORE


def _is_tls13(hello: bytes) -> bool:
    """True when a ServerHello's supported_versions extension selects TLS 1.3 (RFC 8446)."""
    off = 2 + 32
    if off >= len(hello):
        return False
    off += 1 + hello[off] + 2 + 1  # session id, cipher suite, compression method
    if off + 2 > len(hello):
        return False
    end = min(len(hello), off + 2 + ((hello[off] << 8) | hello[off + 1]))
    off += 2
    while off + 4 <= end:
        ext = (hello[off] << 8) | hello[off + 1]
        size = (hello[off + 2] << 8) | hello[off + 3]
        if ext == 0x002B and size == 2 and off + 6 <= end:
            return ((hello[off + 4] << 8) | hello[off + 5]) == _TLS13
        off += 4 + size
    return False


@lru_cache(maxsize=256)
def leaf_names(der: bytes) -> LeafCertificate | None:
    """Read subject, issuer and SAN DNS names from one DER certificate (None if unreadable).

    About 20 us a certificate; the same server sends the same leaf on every connection, so
    the last few hundred answers are remembered (keyed by the DER bytes themselves).
    """
    if not HAVE_X509:
        return None
    try:
        cert = x509.load_der_x509_certificate(der)
        subject, issuer = cert.subject, cert.issuer
        names = CertNames(_dn(subject), _dn(issuer), _san(cert))
        return LeafCertificate(
            names,
            _attr(subject, NameOID.COMMON_NAME),
            _attr(subject, NameOID.ORGANIZATION_NAME),
            _attr(subject, NameOID.ORGANIZATIONAL_UNIT_NAME),
            _attr(issuer, NameOID.ORGANIZATION_NAME),
        )
    except Exception:  # hostile DER: cryptography raises ValueError and others; never crash
        return None


def _dn(name: x509.Name) -> str:
    return name.rfc4514_string(_NAME_OVERRIDES)[:_MAX_DN]


def _attr(name: x509.Name, oid: x509.ObjectIdentifier) -> str:
    """The first value of an attribute, or "" (matching compares these, lowercased)."""
    for attribute in name.get_attributes_for_oid(oid):
        value = attribute.value
        return (value if isinstance(value, str) else value.decode("latin-1"))[:_MAX_DN]
    return ""


def _san(cert: x509.Certificate) -> tuple[str, ...]:
    """The subject alternative DNS names (a malformed extension gives none, not an error)."""
    try:
        ext = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    except Exception:  # missing (ExtensionNotFound) or malformed (ValueError): no SANs
        return ()
    if not isinstance(ext.value, x509.SubjectAlternativeName):
        return ()
    dns = ext.value.get_values_for_type(x509.DNSName)
    return tuple(name.rstrip(".").lower()[:253] for name in dns[:_MAX_SAN])
