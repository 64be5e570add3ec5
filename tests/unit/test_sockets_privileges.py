"""Privilege probing and the one line that says what is missing."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from netwatch.model import SourceStatus
from netwatch.sources.privileges import (
    CAP_DAC_READ_SEARCH,
    CAP_NET_ADMIN,
    CAP_NET_RAW,
    CAP_SYS_PTRACE,
    Privileges,
    describe,
    effective_caps,
    missing_lines,
    probe,
)
from tests.advice import assert_no_capability_advice

STATUS = "Name:\tpython3\nCapInh:\t0000000000000000\nCapEff:\t0000000000082000\nCapBnd:\t1ff\n"


def test_effective_caps_reads_the_capeff_mask() -> None:
    caps = effective_caps(STATUS)
    assert caps == 0x82000
    p = Privileges(euid=1000, caps=caps)
    assert p.has(CAP_NET_RAW) and p.has(CAP_SYS_PTRACE) and not p.has(CAP_NET_ADMIN)
    assert not p.sees_all_processes and not p.can_capture


def test_root_and_full_capabilities_see_everything() -> None:
    assert Privileges(euid=0, caps=0).sees_all_processes
    caps = (
        (1 << CAP_SYS_PTRACE)
        | (1 << CAP_DAC_READ_SEARCH)
        | (1 << CAP_NET_RAW)
        | (1 << CAP_NET_ADMIN)
    )
    p = Privileges(euid=1000, caps=caps)
    assert p.sees_all_processes and p.can_capture
    assert missing_lines(p) == []


def test_unprivileged_line_names_the_count_and_both_fixes() -> None:
    lines = missing_lines(Privileges(euid=1000, caps=0), hidden_sockets=7)
    assert lines == ["7 sockets of other users' processes show no process"]
    assert missing_lines(Privileges(euid=1000, caps=0), hidden_sockets=1) == [
        "1 socket of another user's process shows no process"
    ]
    line = describe(SourceStatus(privileged=False, missing=tuple(lines)))
    assert line is not None and "\n" not in line
    assert "sudo" in line and "netwatch group" in line
    assert_no_capability_advice(line)


def test_nothing_missing_means_no_line_and_privileged_gets_no_hint() -> None:
    assert describe(SourceStatus(privileged=True)) is None
    line = describe(SourceStatus(privileged=True, missing=("TCP byte counters (x)",)))
    assert line is not None and "sudo" not in line


def test_probe_reads_this_process() -> None:
    p = probe()
    assert p.euid >= 0 and p.caps >= 0


@given(st.text(max_size=300))
def test_garbage_status_text_never_raises(text: str) -> None:
    assert effective_caps(text) >= 0
    assert effective_caps(f"CapEff:{text}") >= 0
