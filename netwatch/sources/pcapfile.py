"""pcap and pcapng capture files to `PacketMeta`: offline analysis, tests, `netwatch analyze`.

The file is read in large chunks and parsed with `struct`, one record at a time, so memory
stays flat whatever the file size. Frames are decoded by `sources.decode` (the same parser as
live capture). Every problem with the file (missing, unreadable, not a capture, a record
impossibly long, a link type we cannot decode) raises `PcapError` with the file name and one
line of explanation; nothing else escapes. Frames that are not IP (ARP, LLDP, ...) are counted
in `skipped` and left out.

A file that simply ends inside a record (tcpdump killed, a download cut) is the common damage,
and what it holds is still good: the bytes of the last record that are there are decoded like
a frame cut by the snap length, iteration ends, and `cut_short` says what happened, so the
caller can warn rather than fail. `read_packets` raises it as a `PcapError` at the end.

pcap: all four magics (micro/nanosecond, either byte order); the link type's FCS bits ignored.
pcapng: sections in either byte order, interface blocks with `if_tsresol`, `if_tsoffset` and
`if_name`, enhanced, simple and obsolete packet blocks; other blocks are skipped.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from netwatch.errors import DataFileError, Location
from netwatch.model import PacketMeta
from netwatch.sources.decode import (
    LINK_NAMES,
    OTHER_LINK_NAMES,
    PacketDecoder,
    supported_link_type,
)

_CHUNK = 1 << 20
MAX_RECORD = 1 << 24
"""Records longer than this (16 MiB) mean the file is corrupt, not that a packet is huge."""

_PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"


class PcapError(DataFileError):
    """A capture file that cannot be read: missing, unreadable, not a capture, or corrupt."""


class _Chunks:
    """A read buffer over a binary file: `take(n)` returns exactly n bytes or fewer at EOF."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self._buf = b""
        self._pos = 0
        self.offset = 0
        """File offset of the next byte `take` returns."""

    def detach(self) -> tuple[bytes, BinaryIO]:
        """Hand over the unread buffered bytes and the file, for a reader with its own loop."""
        rest = self._buf[self._pos :]
        self._buf, self._pos = b"", 0
        return rest, self._fh

    def take(self, n: int) -> bytes:
        end = self._pos + n
        if end > len(self._buf):
            rest = self._buf[self._pos :]
            self._buf = rest + self._fh.read(max(_CHUNK, n - len(rest)))
            self._pos, end = 0, n
        out = self._buf[self._pos : end]
        self._pos = end
        self.offset += len(out)
        return out


class CaptureFile:
    """An open pcap or pcapng file; iterate it for `PacketMeta`, in file order.

    Raises `PcapError` when opened (missing, unreadable, unknown format) and while iterating
    (corrupt or truncated records). `frames` counts records read; `skipped` those that were
    not IP or not decodable.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.frames = 0
        self.skipped = 0
        self.cut_short: PcapError | None = None
        """Set when the file ended inside a record: what was there has been read."""
        self._decoder = PacketDecoder()
        try:
            self._fh: BinaryIO = Path(path).open("rb")  # noqa: SIM115  # closed by close()
        except FileNotFoundError:
            raise self._error("no such file") from None
        except IsADirectoryError:
            raise self._error("is a directory, not a capture file") from None
        except PermissionError:
            raise self._error("permission denied") from None
        except OSError as exc:
            raise self._error(f"cannot open: {exc.strerror or exc}") from None
        self._src = _Chunks(self._fh)
        try:
            self._magic = self._src.take(4)
        except OSError as exc:
            self.close()
            raise self._error(f"cannot read: {exc.strerror or exc}") from None
        if self._magic != _PCAPNG_SHB and self._magic not in _PCAP_MAGICS:
            self.close()
            if not self._magic:
                raise self._error("empty file, not a capture")
            raise self._error("not a pcap or pcapng capture (unknown magic number)")
        self._linktype = -1
        if self._magic != _PCAPNG_SHB:
            header = self._src.take(20)
            if len(header) < 20:
                self.close()
                raise self._error("truncated pcap header")
            order = _PCAP_MAGICS[self._magic][0]
            try:
                self._linktype = self._link(struct.unpack(order + "HHiIII", header)[5])
            except PcapError:
                self.close()
                raise

    def _error(self, message: str) -> PcapError:
        return PcapError(message, Location(self.path))

    def __enter__(self) -> CaptureFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the file (iteration stops)."""
        self._fh.close()

    def __iter__(self) -> Iterator[PacketMeta]:
        decode = self._decoder.decode
        for ts, linktype, data, ifname in self.frames_raw():
            self.frames += 1
            meta = decode(linktype, data, ts, ifname)
            if meta is None:
                self.skipped += 1
            else:
                yield meta

    def frames_raw(self) -> Iterator[tuple[float, int, bytes, str | None]]:
        """Yield (timestamp, link type, frame bytes, interface name) for every record."""
        try:
            if self._magic == _PCAPNG_SHB:
                yield from self._pcapng()
            else:
                yield from self._pcap()
        except OSError as exc:
            raise self._error(f"read failed: {exc.strerror or exc}") from None
        except struct.error:  # a header field we unpacked was cut short
            raise self._error(f"truncated at byte {self._src.offset}") from None

    def _link(self, linktype: int) -> int:
        linktype &= 0x0FFFFFFF  # the top bits carry FCS information
        if not supported_link_type(linktype):
            known = ", ".join(sorted({f"{name}" for name in LINK_NAMES.values()}))
            name = OTHER_LINK_NAMES.get(linktype)
            what = f"link type {linktype}" + (f" ({name})" if name else "")
            raise self._error(f"{what} is not supported (supported: {known})")
        return linktype

    # ------------------------------------------------------------------ pcap

    def _pcap(self) -> Iterator[tuple[float, int, bytes, str | None]]:
        order, unit = _PCAP_MAGICS[self._magic]
        linktype = self._linktype
        unpack = struct.Struct(order + "IIII").unpack_from
        buf, fh = self._src.detach()
        base = self._src.offset  # file offset of buf[0]
        pos = 0
        while True:
            if pos + 16 > len(buf):
                buf, base, pos = buf[pos:] + fh.read(_CHUNK), base + pos, 0
                if not buf:
                    return
                if len(buf) < 16:
                    self._cut()
                    return
            sec, frac, caplen, _origlen = unpack(buf, pos)
            if caplen > MAX_RECORD:
                raise self._error(f"corrupt record at byte {base + pos}: length {caplen}")
            end = pos + 16 + caplen
            if end > len(buf):
                buf, base, pos = buf[pos:] + fh.read(max(_CHUNK, caplen + 16)), base + pos, 0
                end = 16 + caplen
                if end > len(buf):  # the file ends inside this record: keep what is there
                    self._cut()
                    if len(buf) > 16:
                        yield sec + frac * unit, linktype, buf[16:], None
                    return
            yield sec + frac * unit, linktype, buf[pos + 16 : end], None
            pos = end

    def _cut(self) -> None:
        """Note that the file ends inside a record (after the frames read so far)."""
        self.cut_short = self._error(f"cut short inside packet record {self.frames + 1}")

    # ------------------------------------------------------------------ pcapng

    def _pcapng(self) -> Iterator[tuple[float, int, bytes, str | None]]:
        take = self._src.take
        block_type = _PCAPNG_SHB
        order = "<"
        ifaces: list[tuple[int, float, float, str | None, int]] = []
        while True:
            start = self._src.offset - len(block_type)
            head = take(8) if block_type == _PCAPNG_SHB else take(4)
            if block_type == _PCAPNG_SHB:
                if len(head) < 8:
                    raise self._error("truncated pcapng section header")
                bom = head[4:8]
                if bom == b"\x4d\x3c\x2b\x1a":
                    order = "<"
                elif bom == b"\x1a\x2b\x3c\x4d":
                    order = ">"
                else:
                    raise self._error("corrupt pcapng section header (bad byte-order magic)")
                length = struct.unpack(order + "I", head[:4])[0]
                body_len = length - 16
                prefix = bom
                ifaces = []
            else:
                if len(head) < 4:
                    self._cut()
                    return
                length = struct.unpack(order + "I", head)[0]
                body_len = length - 12
                prefix = b""
            if length < 12 or length > MAX_RECORD or body_len < 0:
                raise self._error(f"corrupt pcapng block at byte {start}: length {length}")
            body = take(body_len)
            trailer = take(4)
            btype = struct.unpack(order + "I", block_type)[0]
            if len(body) < body_len or len(trailer) < 4:  # the file ends inside this block
                self._cut()
                if btype == 6 and len(body) > 20:
                    yield from self._ng_block(btype, body, order, ifaces, partial=True)
                return
            yield from self._ng_block(btype, prefix + body, order, ifaces)
            block_type = take(4)
            if not block_type:
                return
            if len(block_type) < 4:
                self._cut()
                return

    def _ng_block(
        self,
        btype: int,
        body: bytes,
        order: str,
        ifaces: list[tuple[int, float, float, str | None, int]],
        partial: bool = False,
    ) -> Iterator[tuple[float, int, bytes, str | None]]:
        """The frame of a packet block (`partial`: the file ended inside it; keep what is
        there); interface blocks are remembered; other blocks say nothing."""
        if btype == 1:
            ifaces.append(self._ng_interface(body, order))
        elif btype in (6, 2):  # enhanced / obsolete packet block
            if btype == 6:
                ifid, hi, lo, caplen = struct.unpack_from(order + "IIII", body, 0)
            else:
                ifid, _drops, hi, lo, caplen = struct.unpack_from(order + "HHIII", body, 0)
            if ifid >= len(ifaces):
                raise self._error(f"packet refers to undefined interface {ifid}")
            if caplen > len(body) - 20 and not partial:
                raise self._error(f"corrupt packet block: length {caplen}")
            linktype, unit, offset, name, _snap = ifaces[ifid]
            ts = ((hi << 32) | lo) * unit + offset
            yield ts, linktype, body[20 : 20 + caplen], name
        elif btype == 3:  # simple packet block: interface 0, no timestamp
            if not ifaces:
                raise self._error("packet refers to undefined interface 0")
            origlen = struct.unpack_from(order + "I", body, 0)[0]
            linktype, _unit, _offset, name, snap = ifaces[0]
            caplen = min(origlen, len(body) - 4, snap or origlen)
            yield 0.0, linktype, body[4 : 4 + caplen], name

    def _ng_interface(self, body: bytes, order: str) -> tuple[int, float, float, str | None, int]:
        linktype, _reserved, snaplen = struct.unpack_from(order + "HHI", body, 0)
        linktype = self._link(linktype)
        unit, offset, name = 1e-6, 0.0, None
        pos = 8
        while pos + 4 <= len(body):
            code, size = struct.unpack_from(order + "HH", body, pos)
            value = body[pos + 4 : pos + 4 + size]
            pos += 4 + (size + 3) // 4 * 4
            if code == 0:
                break
            # `size` may claim more than the block holds: trust only the bytes that are there.
            if code == 9 and value:
                v = value[0]
                unit = 2.0 ** -(v & 0x7F) if v & 0x80 else 10.0 ** -min(v, 30)
            elif code == 14 and len(value) >= 8:
                offset = float(struct.unpack(order + "q", value[:8])[0])
            elif code == 2:
                name = value.decode("utf-8", "replace").rstrip("\x00") or None
        return linktype, unit, offset, name, snaplen


def read_packets(path: str | Path) -> Iterator[PacketMeta]:
    """Yield every IP packet of a capture file, closing it when done or abandoned.

    A file cut short yields what it holds, then raises its `cut_short` error.
    """
    with CaptureFile(path) as capture:
        yield from capture
        if capture.cut_short is not None:
            raise capture.cut_short
