"""QUIC Initial packets: recognise long headers and read the ClientHello (RFC 9000, 9001, 9369).

A client's Initial packets are protected with keys derived from the Destination Connection ID
and a published salt (RFC 9001 §5.2), so anyone can remove the protection and read the CRYPTO
frames, which carry the TLS ClientHello with its SNI and ALPN. Chrome spreads a large
ClientHello over several Initial packets and shuffles its frames, so `CryptoStream` collects
fragments by offset (bounded) until the hello is whole. AES comes from `cryptography`; without
it, QUIC is still recognised, just without the name.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from netwatch.dissect.tls import MAX_HELLO

try:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    HAVE_CRYPTO = True
except ImportError:  # pragma: no cover - cryptography is a declared dependency
    HAVE_CRYPTO = False

VERSION_1 = 0x00000001
VERSION_2 = 0x6B3343CF
# Initial salts: RFC 9001 §5.2 (v1), RFC 9369 §3.3.1 (v2), draft-ietf-quic-tls-29 §5.2.
_SALTS = {
    VERSION_1: bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a"),
    VERSION_2: bytes.fromhex("0dede3def700a6db819381be6e269dcbf9bd2ed9"),
    0xFF00001D: bytes.fromhex("afbfec289993d24c9e9786f19c6111e04390a899"),
}
_LABEL_PREFIX = {VERSION_2: b"quicv2 "}
_MAX_FRAGMENTS = 32


@dataclass(frozen=True, slots=True)
class LongHeader:
    """The cleartext fields of a QUIC long-header packet."""

    version: int
    is_initial: bool
    dcid: bytes
    pn_offset: int
    """Offset of the (protected) packet number; -1 when the packet is not an Initial."""
    end: int
    """Offset just past this packet inside the datagram."""


def parse_long_header(data: bytes) -> LongHeader | None:
    """Parse a long header (first bit set, fixed bit set); None for anything else."""
    if len(data) < 7 or data[0] & 0xC0 != 0xC0:
        return None
    version = int.from_bytes(data[1:5], "big")
    off = 5
    dcid_len = data[off]
    if dcid_len > 20:
        return None
    dcid = data[off + 1 : off + 1 + dcid_len]
    off += 1 + dcid_len
    if off >= len(data) or len(dcid) != dcid_len:
        return None
    scid_len = data[off]
    if scid_len > 20:
        return None
    off += 1 + scid_len
    ptype = (data[0] >> 4) & 0x03
    is_initial = ptype == (1 if version == VERSION_2 else 0)
    if version == 0 or not is_initial:
        return LongHeader(version, False, dcid, -1, len(data))
    token = _varint(data, off)
    if token is None:
        return None
    off = token[1] + token[0]
    length = _varint(data, off)
    if length is None or off > len(data):
        return None
    pn_offset = length[1]
    end = pn_offset + length[0]
    if end > len(data) or length[0] < 20:
        return None
    return LongHeader(version, True, dcid, pn_offset, end)


def known_version(version: int) -> bool:
    """True for the QUIC versions we can decrypt (v1, v2, draft-29)."""
    return version in _SALTS


def _varint(data: bytes, off: int) -> tuple[int, int] | None:
    """Read a QUIC variable-length integer; return (value, offset after) or None."""
    if off >= len(data):
        return None
    first = data[off]
    size = 1 << (first >> 6)
    raw = data[off : off + size]
    if len(raw) != size:
        return None
    value = int.from_bytes(raw, "big") & ((1 << (8 * size - 2)) - 1)
    return value, off + size


def _expand_label(secret: bytes, label: bytes, length: int) -> bytes:
    """HKDF-Expand-Label (RFC 8446 §7.1) for outputs of at most one SHA-256 block."""
    full = b"tls13 " + label
    info = length.to_bytes(2, "big") + bytes([len(full)]) + full + b"\x00"
    return hmac.new(secret, info + b"\x01", hashlib.sha256).digest()[:length]


@dataclass(slots=True)
class InitialKeys:
    """Client Initial packet protection keys for one DCID and version."""

    key: bytes
    iv: bytes
    hp: bytes

    @classmethod
    def derive(cls, version: int, dcid: bytes) -> InitialKeys:
        """Derive the client's Initial keys (RFC 9001 §5.2, RFC 9369 §3.3.2)."""
        initial = hmac.new(_SALTS[version], dcid, hashlib.sha256).digest()
        client = _expand_label(initial, b"client in", 32)
        prefix = _LABEL_PREFIX.get(version, b"quic ")
        return cls(
            _expand_label(client, prefix + b"key", 16),
            _expand_label(client, prefix + b"iv", 12),
            _expand_label(client, prefix + b"hp", 16),
        )


def decrypt_initial(data: bytes, header: LongHeader, keys: InitialKeys) -> bytes | None:
    """Remove header and packet protection; return the frames, or None if it does not open."""
    if not HAVE_CRYPTO:
        return None
    pn_off = header.pn_offset
    sample = data[pn_off + 4 : pn_off + 20]
    if len(sample) != 16:
        return None
    encryptor = Cipher(algorithms.AES(keys.hp), modes.ECB()).encryptor()  # noqa: S305 - RFC 9001 §5.4.3 header protection is AES-ECB on one block
    mask = encryptor.update(sample) + encryptor.finalize()
    first = data[0] ^ (mask[0] & 0x0F)
    pn_len = (first & 0x03) + 1
    pn_bytes = bytes(data[pn_off + i] ^ mask[1 + i] for i in range(pn_len))
    header_bytes = bytes([first]) + data[1:pn_off] + pn_bytes
    pn = int.from_bytes(pn_bytes, "big")
    nonce = bytes(a ^ b for a, b in zip(keys.iv, pn.to_bytes(12, "big"), strict=True))
    try:
        return AESGCM(keys.key).decrypt(nonce, data[pn_off + pn_len : header.end], header_bytes)
    except Exception:  # cryptography raises InvalidTag (and ValueError on bad lengths)
        return None


@dataclass(slots=True)
class CryptoStream:
    """CRYPTO frame data of the Initial space, collected by offset until the hello is whole."""

    fragments: dict[int, bytes] = field(default_factory=dict)

    def add_frames(self, frames: bytes) -> None:
        """Pull the CRYPTO frames out of a decrypted Initial payload (other frames skipped)."""
        off = 0
        n = len(frames)
        while off < n and len(self.fragments) < _MAX_FRAGMENTS:
            ftype = frames[off]
            if ftype == 0x00:  # PADDING runs are long: skip them in one step
                off = n - len(frames[off:].lstrip(b"\x00"))
                continue
            if ftype == 0x01:  # PING
                off += 1
                continue
            if ftype in (0x02, 0x03):  # ACK: largest, delay, range count, first range, ranges
                off = _skip_ack(frames, off + 1, ftype == 0x03)
                if off < 0:
                    return
                continue
            if ftype != 0x06:  # CONNECTION_CLOSE or anything else ends our interest
                return
            start = _varint(frames, off + 1)
            size = None if start is None else _varint(frames, start[1])
            if start is None or size is None or start[0] + size[0] > MAX_HELLO:
                return
            chunk = frames[size[1] : size[1] + size[0]]
            if len(chunk) != size[0]:
                return
            self.fragments[start[0]] = chunk
            off = size[1] + size[0]

    def contiguous(self) -> bytes:
        """Return the bytes available from offset 0 without a gap."""
        out = bytearray()
        while len(out) in self.fragments and len(out) < MAX_HELLO:
            piece = self.fragments[len(out)]
            if not piece:
                break
            out += piece
        return bytes(out)


def _skip_ack(frames: bytes, off: int, ecn: bool) -> int:
    """Return the offset after an ACK frame body, or -1 when it is malformed."""
    values: list[int] = []
    for _ in range(4):
        got = _varint(frames, off)
        if got is None:
            return -1
        values.append(got[0])
        off = got[1]
    for _ in range(min(values[2], 64) * 2 + (3 if ecn else 0)):
        got = _varint(frames, off)
        if got is None:
            return -1
        off = got[1]
    return off


@dataclass(frozen=True, slots=True)
class GoogleQuic:
    """A Google QUIC (Q0xx) client packet: its version and the CHLO's SNI when in clear."""

    version: str
    sni: str | None


def parse_gquic(data: bytes) -> GoogleQuic | None:
    """Recognise a gQUIC client packet with the version flag (public header, Q001-Q050).

    Before Q046 the public flags byte carries 0x01 (version present) and 0x08 (8-byte
    connection id), then the ASCII version `Q0nn`; the client's CHLO handshake message is
    not encrypted, so its `SNI` tag can be read.
    """
    if len(data) < 14 or data[0] & 0x89 != 0x09:
        return None
    version = data[9:13]
    if version[:2] != b"Q0" or not version[2:].isdigit():
        return None
    sni = None
    at = data.find(b"CHLO", 13, 200)
    if at >= 0:
        sni = _chlo_sni(data, at)
    return GoogleQuic(version.decode("ascii"), sni)


def _chlo_sni(data: bytes, at: int) -> str | None:
    """Read the SNI tag of a CHLO message (tag count, then tag/end-offset pairs, then values)."""
    if at + 8 > len(data):
        return None
    count = int.from_bytes(data[at + 4 : at + 6], "little")
    if count > 64:
        return None
    table = at + 8
    values = table + 8 * count
    start = 0
    for i in range(count):
        entry = data[table + 8 * i : table + 8 * i + 8]
        if len(entry) != 8:
            return None
        end = int.from_bytes(entry[4:8], "little")
        if entry[:4] == b"SNI\x00":
            name = data[values + start : values + end]
            if len(name) != end - start or not name:
                return None
            return name.decode("ascii", "replace").lower()
        start = end
    return None
