"""Classic BPF socket filters: writing one instruction by instruction, and attaching one.

A socket filter runs in the kernel on each datagram before it is queued to the socket
(`SO_ATTACH_FILTER`, Documentation/networking/filter.rst): what it drops never wakes a
thread, costs no system call and no Python. Capture attaches the program libpcap compiles from
a tcpdump expression (`sources.capture.compile_bpf`); the process-events connector attaches
one written here that keeps processes' events and drops threads' (`sources.proc_events`).
Loads (`BPF_LD | BPF_W | BPF_ABS`) read 4 bytes at an offset in network byte order, so a
field the kernel wrote in host order is compared with `host_word(value)`.
"""

from __future__ import annotations

import ctypes
import socket
import struct

SO_ATTACH_FILTER = 26

LD_W_ABS = 0x20
"""A = the 32-bit word at offset k (network byte order); a read past the end drops."""
TAX = 0x07
"""X = A."""
JEQ_K = 0x15
"""Jump by jt if A == k, else by jf."""
JEQ_X = 0x1D
"""Jump by jt if A == X, else by jf."""
RET_K = 0x06
"""Keep k bytes of the datagram (0: drop it)."""
KEEP = 0xFFFFFFFF
DROP = 0

_INSN = struct.Struct("=HBBI")


def insn(code: int, jt: int = 0, jf: int = 0, k: int = 0) -> bytes:
    """One `struct sock_filter` (linux/filter.h): code, jump if true, jump if false, k."""
    return _INSN.pack(code, jt, jf, k)


def host_word(value: int) -> int:
    """What `LD_W_ABS` reads where the kernel stored `value` as a host-order 32-bit word."""
    return int.from_bytes(struct.pack("=I", value), "big")


def attach(sock: socket.socket, program: bytes) -> None:
    """Attach a classic BPF program (a concatenation of `insn`s) to `sock`.

    The kernel copies the program during the call, so the buffer may go afterwards.
    Raises OSError when the kernel refuses it.
    """
    count = len(program) // _INSN.size
    buf = ctypes.create_string_buffer(program, len(program))
    fprog = struct.pack("HL", count, ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
