"""A TPACKET_V3 receive ring on an AF_PACKET socket, read in place through mmap.

Why: with a plain `recvfrom` every frame costs the kernel an skb queue, a wake-up and a
system call, and on a small machine that cost lands on the CPU sending the traffic
(`bench/capture.py` measured it). With the ring the kernel writes frames into shared blocks
and wakes the reader once per block (full, or after `retire_ms`); this is what libpcap and
tcpdump use. Layouts are from linux/if_packet.h: `tpacket_block_desc` (status at 8, packet
count at 12, first packet offset at 16) and `tpacket3_hdr` (next offset, seconds,
nanoseconds, snap length, length, status, mac and network offsets), followed by a
`sockaddr_ll` at the aligned header length (48).
"""

from __future__ import annotations

import mmap
import os
import select
import socket
import struct
import sys
from collections.abc import Callable
from typing import Any

from netwatch.sources.waker import Waker

SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_VERSION = 10
TPACKET_V3 = 2
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
_SLL_OFFSET = 48
RETIRE_MS = 50
"""A block that is not full goes to the reader this long after its first frame."""

Frame = tuple[float, int, int, int, int, bytes]
"""(timestamp, ethertype, interface index, packet type, hardware type, network-layer bytes)."""


class PacketRing:
    """The receive ring of `sock` (SOCK_DGRAM): `blocks` blocks of `block_size` bytes."""

    def __init__(
        self,
        sock: socket.socket,
        block_size: int = 1 << 20,
        blocks: int = 32,
        frame_size: int = 2048,
        retire_ms: int = RETIRE_MS,
    ) -> None:
        self.sock = sock
        self.block_size = block_size
        self.blocks = blocks
        frames = block_size // frame_size * blocks
        sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
        request = struct.pack("7I", block_size, blocks, frame_size, frames, retire_ms, 0, 0)
        sock.setsockopt(SOL_PACKET, PACKET_RX_RING, request)
        self.map = mmap.mmap(
            sock.fileno(), block_size * blocks, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE
        )
        self._block = 0
        self._status = struct.Struct("I")
        self._header = struct.Struct("IIIIIIHH")

    def read(
        self, handle: Callable[[Frame], None], timeout: float, waker: Waker | None = None
    ) -> int:
        """Wait up to `timeout` (or until `waker` wakes it) for the next block, pass each
        frame to `handle`, release it.

        Returns how many frames the block held (0 when none was ready in time).
        """
        ring, base = self.map, self._block * self.block_size
        status = self._status.unpack_from(ring, base + 8)[0]
        if not status & TP_STATUS_USER:
            watched: list[Any] = [self.sock] if waker is None else [self.sock, waker]
            ready = select.select(watched, [], [], timeout)[0]
            status = self._status.unpack_from(ring, base + 8)[0]
            if not status & TP_STATUS_USER:
                if waker is not None and waker in ready:
                    waker.drain()  # taken only by a read that found nothing (`settle`)
                    return 0
                if ready:  # readable without a block: an error is pending (interface gone)
                    err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise OSError(err, os.strerror(err))
                return 0
        count, first = struct.unpack_from("II", ring, base + 12)
        header = self._header.unpack_from
        pos = base + first
        for _ in range(count):
            step, sec, nsec, snaplen, _length, _st, _mac, net = header(ring, pos)
            sll = pos + _SLL_OFFSET
            ethertype = (ring[sll + 2] << 8) | ring[sll + 3]
            ifindex = int.from_bytes(ring[sll + 4 : sll + 8], sys.byteorder, signed=True)
            hatype = int.from_bytes(ring[sll + 8 : sll + 10], sys.byteorder)
            data = ring[pos + net : pos + net + snaplen]
            handle((sec + nsec * 1e-9, ethertype, ifindex, ring[sll + 10], hatype, data))
            pos += step
        self._status.pack_into(ring, base + 8, TP_STATUS_KERNEL)
        self._block = (self._block + 1) % self.blocks
        return int(count)

    def close(self) -> None:
        """Unmap the ring (the socket is closed by its owner)."""
        self.map.close()
