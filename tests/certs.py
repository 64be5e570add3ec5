"""Test certificates and TLS 1.2 server flights, built from the public formats.

`make_cert` signs a real X.509 certificate with `cryptography` (EC P-256, quick to make);
`server_flight` frames ServerHello + Certificate + ServerHelloDone as TLS records exactly as
RFC 5246 §7.4 lays them out, so the dissector sees what a TLS 1.2 server sends in clear.
"""

from __future__ import annotations

import datetime
import struct
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

FORTIGATE_SUBJECT = {"O": "Fortinet", "OU": "FortiGate", "CN": "FGT60E0000000000"}
_OIDS = {
    "C": NameOID.COUNTRY_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "CN": NameOID.COMMON_NAME,
}
_KEY = ec.generate_private_key(ec.SECP256R1())


def _name(attrs: dict[str, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(_OIDS[k], v) for k, v in attrs.items()])


def make_cert(
    subject: dict[str, str], issuer: dict[str, str] | None = None, san: tuple[str, ...] = ()
) -> x509.Certificate:
    """A certificate with these names (self-signed unless another issuer name is given)."""
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer or subject))
        .public_key(_KEY.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
    )
    if san:
        ext = x509.SubjectAlternativeName([x509.DNSName(n) for n in san])
        builder = builder.add_extension(ext, critical=False)
    return builder.sign(_KEY, hashes.SHA256())


def der(cert: x509.Certificate) -> bytes:
    """The certificate's DER bytes, as a Certificate message carries them."""
    return cert.public_bytes(serialization.Encoding.DER)


def write_pem(cert: x509.Certificate, folder: Path) -> tuple[Path, Path]:
    """Write the certificate and its key as PEM files for `openssl s_server`."""
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        _KEY.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def handshake(kind: int, body: bytes) -> bytes:
    """One handshake message: type, 24-bit length, body."""
    return bytes([kind]) + len(body).to_bytes(3, "big") + body


def server_hello(tls13: bool = False) -> bytes:
    """A ServerHello; with `tls13` its supported_versions extension selects 0x0304."""
    ext = struct.pack("!HHH", 0x002B, 2, 0x0304) if tls13 else b""
    body = b"\x03\x03" + bytes(32) + b"\x00" + b"\xc0\x2f" + b"\x00"
    return handshake(2, body + struct.pack("!H", len(ext)) + ext)


def certificate_message(*ders: bytes) -> bytes:
    """A Certificate message listing these DER certificates, leaf first."""
    chain = b"".join(len(d).to_bytes(3, "big") + d for d in ders)
    return handshake(11, len(chain).to_bytes(3, "big") + chain)


def records(data: bytes, size: int = 16384) -> bytes:
    """Wrap handshake bytes in TLS 1.2 handshake records of at most `size` bytes each."""
    out = b""
    for i in range(0, len(data), size):
        chunk = data[i : i + size]
        out += b"\x16\x03\x03" + struct.pack("!H", len(chunk)) + chunk
    return out


def server_flight(*ders: bytes, record_size: int = 16384) -> bytes:
    """ServerHello, Certificate, ServerHelloDone as a TLS 1.2 server sends them in clear."""
    msgs = server_hello() + certificate_message(*ders) + handshake(14, b"")
    return records(msgs, record_size)
