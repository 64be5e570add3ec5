"""A tiny eBPF assembler: the dozen instructions the cgroup socket hooks need, as bytes.

netwatch loads its kernel programs without a compiler (none runs on the machines it watches,
and the programs are a few dozen instructions), so they are written here instruction by
instruction. The encoding follows the kernel's public instruction-set document,
Documentation/bpf/standardization/instruction-set.rst (RFC 9669, "BPF Instruction Set
Architecture"): every instruction is 8 bytes, little-endian on the hosts netwatch runs on:

    opcode (8 bits) | dst_reg (4 bits, low) src_reg (4 bits, high) | offset (s16) | imm (s32)

The opcode's low three bits are its class (LD 0, LDX 1, ST 2, STX 3, ALU 4, JMP 5, ALU64 7);
for arithmetic and jumps bit 3 is the source (K: the immediate, X: src_reg) and the high
four bits the operation; for loads and stores bits 3-4 are the size (W 4 bytes, H 2, B 1,
DW 8) and the high three bits the mode (IMM 0x00, MEM 0x60, ATOMIC 0xc0). The one wide instruction,
`lddw` (opcode 0x18), takes two slots: the second holds the upper 32 bits of the
immediate, and with src_reg 1 (`BPF_PSEUDO_MAP_FD`) the immediate is a map's file
descriptor that the kernel swaps for the map when it loads the program.

Pure: no OS access, so the encodings are tested on bytes (`tests/unit/test_bpf_asm.py`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# classes
LD, LDX, ST, STX, ALU, JMP, ALU64 = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x07
# source
K, X = 0x00, 0x08
# ALU operations
ADD, MOV = 0x00, 0xB0
# JMP operations
JA, JEQ, JGT, JGE, JNE, CALL, EXIT = 0x00, 0x10, 0x20, 0x30, 0x50, 0x80, 0x90
# sizes and modes
W, H, B, DW = 0x00, 0x08, 0x10, 0x18
IMM, MEM, ATOMIC = 0x00, 0x60, 0xC0
PSEUDO_MAP_FD = 1
"""src_reg of `lddw` whose immediate is a map's file descriptor."""

R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = range(11)
"""r0: return value; r1-r5: arguments (clobbered by calls); r6-r9: kept across calls;
r10: the read-only frame pointer (the stack grows down from it, 512 bytes)."""

_SIZES = {1: B, 2: H, 4: W, 8: DW}


@dataclass(frozen=True, slots=True)
class Insn:
    """One 8-byte instruction slot."""

    code: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0

    def encode(self) -> bytes:
        """The slot's 8 bytes (little-endian; registers packed dst low, src high)."""
        if not (0 <= self.dst <= 10 and 0 <= self.src <= 10):
            raise ValueError(f"no register r{self.dst}/r{self.src}")
        return struct.pack("<BBhi", self.code, (self.src << 4) | self.dst, self.off, self.imm)


def assemble(program: list[Insn | Label | Jump]) -> bytes:
    """The bytes of `program`; `Jump`s to `Label`s get their offsets (counted in slots from
    the instruction after the jump, as the document says). Raises `ValueError` for a label
    that is missing or defined twice, or a register out of range."""
    labels: dict[str, int] = {}
    slot = 0
    for item in program:
        if isinstance(item, Label):
            if item.name in labels:
                raise ValueError(f"label {item.name!r} defined twice")
            labels[item.name] = slot
        else:
            slot += 1
    out = []
    slot = 0
    for item in program:
        if isinstance(item, Label):
            continue
        if isinstance(item, Jump):
            if item.target not in labels:
                raise ValueError(f"no label {item.target!r}")
            insn = Insn(item.code, item.dst, item.src, labels[item.target] - slot - 1, item.imm)
        else:
            insn = item
        out.append(insn.encode())
        slot += 1
    return b"".join(out)


@dataclass(frozen=True, slots=True)
class Label:
    """A place in the program a `Jump` can go to (takes no slot)."""

    name: str


@dataclass(frozen=True, slots=True)
class Jump:
    """A conditional or plain jump to a `Label`, its offset filled in by `assemble`."""

    code: int
    target: str
    dst: int = 0
    src: int = 0
    imm: int = 0


def mov64_imm(dst: int, imm: int) -> Insn:
    """dst = imm (sign-extended to 64 bits)."""
    return Insn(ALU64 | K | MOV, dst, 0, 0, imm)


def mov64_reg(dst: int, src: int) -> Insn:
    """dst = src."""
    return Insn(ALU64 | X | MOV, dst, src)


def add64_imm(dst: int, imm: int) -> Insn:
    """dst += imm."""
    return Insn(ALU64 | K | ADD, dst, 0, 0, imm)


def ldx(size: int, dst: int, src: int, off: int) -> Insn:
    """dst = *(size bytes *)(src + off), zero-extended."""
    return Insn(LDX | MEM | _SIZES[size], dst, src, off)


def stx(size: int, dst: int, off: int, src: int) -> Insn:
    """*(size bytes *)(dst + off) = src."""
    return Insn(STX | MEM | _SIZES[size], dst, src, off)


def st_imm(size: int, dst: int, off: int, imm: int) -> Insn:
    """*(size bytes *)(dst + off) = imm."""
    return Insn(ST | MEM | _SIZES[size], dst, 0, off, imm)


def atomic_add(size: int, dst: int, off: int, src: int) -> Insn:
    """*(size bytes *)(dst + off) += src, atomically (mode ATOMIC, imm BPF_ADD = 0x00)."""
    if size not in (4, 8):
        raise ValueError("atomic operations are 4 or 8 bytes wide")
    return Insn(STX | ATOMIC | _SIZES[size], dst, src, off, 0x00)


def call(helper: int) -> Insn:
    """Call kernel helper number `helper` (arguments in r1-r5, result in r0)."""
    return Insn(JMP | K | CALL, 0, 0, 0, helper)


def exit_() -> Insn:
    """Return r0 to the kernel."""
    return Insn(JMP | K | EXIT)


def jne_imm(dst: int, imm: int, target: str) -> Jump:
    """if dst != imm goto target."""
    return Jump(JMP | K | JNE, target, dst, 0, imm)


def jeq_imm(dst: int, imm: int, target: str) -> Jump:
    """if dst == imm goto target."""
    return Jump(JMP | K | JEQ, target, dst, 0, imm)


def ja(target: str) -> Jump:
    """goto target."""
    return Jump(JMP | K | JA, target)


def ld_map_fd(dst: int, fd: int) -> list[Insn]:
    """dst = the map behind file descriptor `fd` (the two-slot `lddw` with src_reg 1)."""
    return [Insn(LD | IMM | DW, dst, PSEUDO_MAP_FD, 0, fd), Insn(0, 0, 0, 0, 0)]


def ld_imm64(dst: int, value: int) -> list[Insn]:
    """dst = value (a full 64-bit immediate, two slots)."""
    lo, hi = _s32(value & 0xFFFFFFFF), _s32((value >> 32) & 0xFFFFFFFF)
    return [Insn(LD | IMM | DW, dst, 0, 0, lo), Insn(0, 0, 0, 0, hi)]


def _s32(word: int) -> int:
    """An unsigned 32-bit word as the signed immediate the slot holds."""
    return word - (1 << 32) if word >= 1 << 31 else word
