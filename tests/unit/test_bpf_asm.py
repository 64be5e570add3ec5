"""The eBPF assembler's encodings, against the kernel's public instruction-set document.

Expected bytes follow Documentation/bpf/standardization/instruction-set.rst (RFC 9669): opcode
byte, registers (dst low nibble, src high nibble), 16-bit offset, 32-bit immediate,
little-endian; the opcode values (0xb7 mov64 imm, 0xbf mov64 reg, 0x07 add64 imm, 0x61 ldxw,
0x79 ldxdw, 0x63 stxw, 0x7b stxdw, 0x62 stw imm, 0x55 jne imm, 0x15 jeq imm, 0x05 ja, 0x85
call, 0x95 exit, 0x18 lddw, 0xdb/0xc3 atomic add) are the document's class | source/size |
operation/mode."""

from __future__ import annotations

import pytest

from netwatch.sources import bpf_asm as a


@pytest.mark.parametrize(
    ("insn", "expected"),
    [
        (a.mov64_imm(a.R0, 1), "b700000001000000"),
        (a.mov64_imm(a.R2, -1), "b7020000ffffffff"),
        (a.mov64_reg(a.R6, a.R1), "bf16000000000000"),
        (a.add64_imm(a.R1, -88), "07010000a8ffffff"),
        (a.ldx(4, a.R2, a.R6, 68), "6162440000000000"),
        (a.ldx(8, a.R3, a.R1, 8), "7913080000000000"),
        (a.stx(4, a.R10, -72, a.R2), "632ab8ff00000000"),
        (a.stx(8, a.R10, -88, a.R0), "7b0aa8ff00000000"),
        (a.st_imm(4, a.R10, -80, 1), "620ab0ff01000000"),
        (a.call(14), "850000000e000000"),
        (a.call(130), "8500000082000000"),
        (a.exit_(), "9500000000000000"),
        (a.atomic_add(8, a.R0, 0, a.R1), "db10000000000000"),
        (a.atomic_add(4, a.R2, 4, a.R3), "c332040000000000"),
    ],
)
def test_single_slot_encodings(insn: a.Insn, expected: str) -> None:
    assert insn.encode().hex() == expected


def test_lddw_map_fd_takes_two_slots_with_pseudo_map_fd_source() -> None:
    code = b"".join(i.encode() for i in a.ld_map_fd(a.R1, 7))
    assert code.hex() == "1811000007000000" + "0000000000000000"


def test_lddw_immediate_splits_into_low_and_high_words() -> None:
    code = b"".join(i.encode() for i in a.ld_imm64(a.R3, 0x1122334455667788))
    assert code.hex() == "1803000088776655" + "0000000044332211"


def test_jump_offsets_count_slots_after_the_jump_and_wide_loads_as_two() -> None:
    code = a.assemble(
        [
            a.jne_imm(a.R2, 3, "out"),  # slot 0 -> label at slot 4: offset 3
            *a.ld_map_fd(a.R1, 5),  # slots 1-2
            a.ja("out"),  # slot 3: offset 0
            a.Label("out"),
            a.exit_(),
        ]
    )
    slots = [code[i : i + 8].hex() for i in range(0, len(code), 8)]
    assert slots[0] == "5502030003000000"
    assert slots[3] == "0500000000000000"
    assert a.assemble([a.Label("top"), a.jeq_imm(a.R0, 0, "top")]).hex() == "1500ffff00000000"


def test_bad_programs_are_refused() -> None:
    with pytest.raises(ValueError, match="no label"):
        a.assemble([a.ja("nowhere")])
    with pytest.raises(ValueError, match="twice"):
        a.assemble([a.Label("x"), a.Label("x"), a.exit_()])
    with pytest.raises(ValueError, match="register"):
        a.Insn(0xB7, 11).encode()
