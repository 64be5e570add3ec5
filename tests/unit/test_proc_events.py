"""The process-events connector's messages (linux/cn_proc.h, linux/connector.h), parsed from
recorded bytes and fuzzed; and the memory of new processes the start watcher asks."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from netwatch.model import ProcessRef
from netwatch.sources.proc_events import (
    CN_IDX_PROC,
    CN_VAL_PROC,
    NLMSG_DONE,
    PROC_CN_MCAST_LISTEN,
    PROC_EVENT_EXEC,
    PROC_EVENT_EXIT,
    PROC_EVENT_FORK,
    ExecReader,
    ProcessEvents,
    ProcEvent,
    listen_message,
    parse_events,
    thread_filter,
)
from netwatch.sources.processes import PsutilReader
from netwatch.sources.socket_filter import attach

PROC_EVENT_UID = 0x00000004


def _message(what: int, data: bytes, ts: int = 123, idx: int = CN_IDX_PROC) -> bytes:
    """One netlink message as the kernel sends it: nlmsghdr, cn_msg, proc_event."""
    event = struct.pack("=IIQ", what, 1, ts) + data
    cn = struct.pack("=IIIIHH", idx, CN_VAL_PROC, 0, 0, len(event), 0) + event
    return struct.pack("=IHHII", 16 + len(cn), NLMSG_DONE, 0, 0, 0) + cn


def test_fork_exec_and_exit_are_read_with_the_process_not_the_thread_id() -> None:
    data = (
        _message(PROC_EVENT_FORK, struct.pack("=IIII", 100, 100, 4242, 4242), ts=1)
        + _message(PROC_EVENT_EXEC, struct.pack("=II", 4242, 4242), ts=2)
        + _message(PROC_EVENT_EXIT, struct.pack("=IIIIII", 4242, 4242, 0, 17, 100, 100), ts=3)
    )
    assert parse_events(data) == [
        ProcEvent("fork", 4242, 100, 1),
        ProcEvent("exec", 4242, None, 2),
        ProcEvent("exit", 4242, None, 3),
    ]


def test_new_threads_ending_threads_and_other_events_are_left_out() -> None:
    data = (
        _message(PROC_EVENT_FORK, struct.pack("=IIII", 100, 100, 4243, 100))  # a thread
        + _message(PROC_EVENT_EXIT, struct.pack("=IIIIII", 4243, 100, 0, 0, 1, 1))
        + _message(PROC_EVENT_UID, struct.pack("=IIII", 5, 5, 0, 0))
        + _message(PROC_EVENT_EXEC, struct.pack("=II", 7, 7), idx=CN_IDX_PROC + 1)
    )
    assert parse_events(data) == []


def test_the_subscription_is_a_listen_op_to_the_process_connector() -> None:
    msg = listen_message(77)
    length, kind, _flags, _seq, pid = struct.unpack_from("=IHHII", msg)
    assert (length, kind, pid) == (len(msg), NLMSG_DONE, 77)
    idx, val, _s, _a, size, _f = struct.unpack_from("=IIIIHH", msg, 16)
    assert (idx, val, size) == (CN_IDX_PROC, CN_VAL_PROC, 4)
    assert struct.unpack_from("=I", msg, 36) == (PROC_CN_MCAST_LISTEN,)


@given(st.binary(max_size=400))
def test_garbage_never_raises(data: bytes) -> None:
    for event in parse_events(data):
        assert event.kind in ("fork", "exec", "exit")


@given(
    st.lists(
        st.tuples(
            st.sampled_from([PROC_EVENT_FORK, PROC_EVENT_EXEC, PROC_EVENT_EXIT]),
            st.integers(1, 2**22),
            st.integers(1, 2**22),
        ),
        max_size=20,
    ),
    st.integers(0, 60),
)
def test_recorded_batches_parse_whole_and_survive_truncation(
    events: list[tuple[int, int, int]], cut: int
) -> None:
    data = b"".join(
        _message(what, struct.pack("=IIIIII", parent, parent, pid, pid, parent, parent))
        if what == PROC_EVENT_FORK
        else _message(what, struct.pack("=IIIIII", pid, pid, 0, 0, parent, parent))
        for what, pid, parent in events
    )
    parsed = parse_events(data)
    assert [e.pid for e in parsed] == [pid for _, pid, _ in events]
    cut_off = parse_events(data[: max(0, len(data) - cut)])
    assert cut_off == parsed[: len(cut_off)]  # a truncated tail is dropped, never misread


class _Reader:
    """Stands in for psutil (outside the thing tested): a fixed answer per pid."""

    def __init__(self) -> None:
        self.reads: list[int] = []

    def read(self, pid: int) -> ProcessRef | None:
        self.reads.append(pid)
        return ProcessRef(pid=pid, create_time=1.0, name=f"prog{pid}")


def _proc_root(tmp_path: object, pids: list[int]) -> str:
    from pathlib import Path

    root = Path(str(tmp_path))
    for pid in pids:
        (root / str(pid)).mkdir()
        (root / str(pid) / "stat").write_bytes(f"{pid} (prog{pid}) S ".encode() + b"1 " * 20)
    return str(root)


def test_an_exec_is_read_at_once_and_named_after_the_process_exits(tmp_path: object) -> None:
    reader = _Reader()
    events = ProcessEvents(reader=reader, proc_root=_proc_root(tmp_path, [501]))
    events.note(ProcEvent("fork", 501, 1), 10.0)
    events.note(ProcEvent("exec", 501), 10.001)
    assert reader.reads == [501]
    assert events.fresh(10.5) == [501]
    events.note(ProcEvent("exit", 501), 10.2)
    assert events.fresh(10.5) == []  # gone: no fds to search
    ref = events.remembered(501, None)  # its /proc entry is gone: named from memory
    assert ref is not None and ref.name == "prog501"
    assert events.remembered(501, b"another program now") is None  # pid reused


def test_old_exits_are_forgotten_and_memory_is_bounded(tmp_path: object) -> None:
    events = ProcessEvents(reader=_Reader(), proc_root=_proc_root(tmp_path, []), keep=30.0,
                           max_kept=50)  # fmt: skip
    for pid in range(1000, 1100):
        events.note(ProcEvent("fork", pid, 1), 0.0)
        events.note(ProcEvent("exit", pid), 1.0)
    assert len(events._seen) <= 50
    events.note(ProcEvent("fork", 5, 1), 100.0)  # everything that ended long ago goes
    assert list(events._seen) == [5]


def test_the_exec_reader_gives_what_psutil_gives(tmp_path: Path) -> None:
    # The socket sampler names processes through psutil; a process named at its exec must
    # compare equal, long names (comm cut at 15 characters) included.
    program = tmp_path / "a-rather-long-program-name"
    shutil.copy2(sys.executable, program)
    child = subprocess.Popen([str(program), "-c", "import time; time.sleep(5)"])
    try:
        time.sleep(0.2)
        for pid in (os.getpid(), child.pid, 1):
            assert ExecReader().read(pid) == PsutilReader().read(pid)
        ref = ExecReader().read(child.pid)
        assert ref is not None and ref.name == "a-rather-long-program-name"
    finally:
        child.kill()
        child.wait()
    assert ExecReader().read(child.pid) is None  # reaped: gone


def _filtered(datagrams: list[bytes]) -> list[bytes]:
    """What a socket with `thread_filter` attached receives of `datagrams`, run by the kernel
    (a Unix datagram pair: socket filters run on any socket's receive path)."""
    rx, tx = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with rx, tx:
        attach(rx, thread_filter())
        for datagram in datagrams:
            tx.send(datagram)
        rx.setblocking(False)
        out = []
        with contextlib.suppress(BlockingIOError):
            while True:
                out.append(rx.recv(1 << 16))
    return out


_KINDS = st.sampled_from([PROC_EVENT_FORK, PROC_EVENT_EXEC, PROC_EVENT_EXIT, PROC_EVENT_UID, 0])


@st.composite
def _connector_datagrams(draw: st.DrawFn) -> bytes:
    what = draw(_KINDS)
    pid = draw(st.integers(1, 1 << 22))
    tgid = draw(st.sampled_from([pid, pid, 1, pid + 1]))
    data = {
        PROC_EVENT_FORK: struct.pack("=IIII", 1, 1, pid, tgid),
        PROC_EVENT_EXEC: struct.pack("=II", pid, tgid),
        PROC_EVENT_EXIT: struct.pack("=IIIIII", pid, tgid, 0, 17, 1, 1),
    }.get(what, struct.pack("=IIII", pid, tgid, 0, 0))
    return _message(what, data, ts=draw(st.integers(0, 1 << 63)))


@given(st.lists(_connector_datagrams(), min_size=1, max_size=12))
def test_the_kernel_filter_keeps_exactly_what_parse_events_reads(datagrams: list[bytes]) -> None:
    kept = _filtered(datagrams)
    assert kept == [d for d in datagrams if parse_events(d)]


@given(_connector_datagrams(), st.integers(0, 80), st.sampled_from([CN_IDX_PROC, 7]))
def test_the_kernel_filter_never_drops_an_event_parse_events_would_read(
    datagram: bytes, cut: int, idx: int
) -> None:
    damaged = datagram[:cut] if cut < len(datagram) else datagram
    damaged = (
        damaged[:16] + struct.pack("=I", idx) + damaged[20:] if len(damaged) >= 20 else damaged
    )
    if parse_events(damaged):
        assert _filtered([damaged]) == [damaged]


def test_a_threads_start_and_end_are_dropped_and_a_processes_kept() -> None:
    thread = [
        _message(PROC_EVENT_FORK, struct.pack("=IIII", 100, 100, 4243, 100)),
        _message(PROC_EVENT_EXIT, struct.pack("=IIIIII", 4243, 100, 0, 0, 1, 1)),
    ]
    process = [
        _message(PROC_EVENT_FORK, struct.pack("=IIII", 100, 100, 4244, 4244)),
        _message(PROC_EVENT_EXEC, struct.pack("=II", 4244, 4244)),
        _message(PROC_EVENT_EXIT, struct.pack("=IIIIII", 4244, 4244, 0, 0, 1, 1)),
    ]
    assert _filtered(thread + process) == process
