"""The cgroup socket hooks on the real kernel: load, attach, record, and leave nothing behind.

Each test loads the sock_ops program and links it to the cgroup2 root as netwatch does
(`sources.cgroup_bpf`), then checks with the kernel's own answers: the record a real
connection of another process produced, and `BPF_PROG_QUERY` on the root cgroup for what is
attached once the hooks are closed, and once the process holding them is killed with
SIGKILL (no clean-up code runs).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netwatch.sources import netlink
from netwatch.sources.cgroup_bpf import UDP_HOOKS, CgroupHooks, HooksUnavailableError, attached_ids
from netwatch.sources.cgroup_bpf_records import ConnectRecord
from tests.conftest import requires_root, requires_tools

pytestmark = [pytest.mark.live, requires_root, pytest.mark.timeout(60)]

REPO = Path(__file__).resolve().parents[2]
CLIENT = r"""
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
c = socket.socket(family); c.connect((sys.argv[1], int(sys.argv[2])))
c.sendall(b"x" * 4096); c.shutdown(socket.SHUT_WR)
reply = c.recv(16)
print(c.getsockname()[1], reply.decode(), flush=True)
"""
HOLDER = r"""
import sys, time
from netwatch.sources.cgroup_bpf import CgroupHooks
hooks = CgroupHooks().open()
print(hooks.program_id, hooks.cgroup, flush=True)
time.sleep(60)
"""


@pytest.fixture
def hooks() -> Iterator[CgroupHooks]:
    try:
        opened = CgroupHooks().open()
    except HooksUnavailableError as exc:
        pytest.skip(str(exc))
    try:
        yield opened
    finally:
        opened.close()


def _serve_once(address: str) -> tuple[socket.socket, int]:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    srv = socket.socket(family)
    srv.bind((address, 0))
    srv.listen(4)
    return srv, srv.getsockname()[1]


def _records_until(hooks: CgroupHooks, want: int, local_port: int) -> list[ConnectRecord]:
    got: list[ConnectRecord] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        hooks.wait(0.2)
        got += [r for r in hooks.read() if r.local[1] == local_port and r.pid == want]
        if got:
            return got
    return got


@pytest.mark.parametrize("address", ["127.0.0.1", "::1"])
def test_a_short_connection_of_another_process_is_recorded_with_pid_and_4_tuple(
    hooks: CgroupHooks, address: str, tmp_path: Path
) -> None:
    srv, port = _serve_once(address)
    with srv:
        program = tmp_path / "hookprobe"
        program.symlink_to(sys.executable)
        child = subprocess.Popen(
            [str(program), "-c", CLIENT, address, str(port)], stdout=subprocess.PIPE, text=True
        )
        conn, _ = srv.accept()
        with conn:
            while conn.recv(1 << 16):
                pass
            conn.sendall(b"ok")
        out, _ = child.communicate(timeout=20)
    # The connection worked with the hooks attached (the program never changes one).
    assert child.returncode == 0
    local_port, reply = out.split()
    assert reply == "ok"
    records = _records_until(hooks, child.pid, int(local_port))
    assert len(records) == 1, records
    rec = records[0]
    assert rec.local == (address, int(local_port))
    assert rec.remote == (address, port)
    assert rec.comm == "hookprobe"
    assert rec.cookie != 0
    assert hooks.program_id in attached_ids(str(hooks.cgroup))


def _gone(program_id: int, cgroup: str) -> bool:
    deadline = time.monotonic() + 5
    while program_id in attached_ids(cgroup):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_nothing_stays_attached_after_close(hooks: CgroupHooks) -> None:
    assert hooks.cgroup is not None
    program_id = hooks.program_id
    assert program_id in attached_ids(hooks.cgroup)
    hooks.close()
    assert _gone(program_id, hooks.cgroup)


def test_the_udp_hooks_go_with_the_rest() -> None:
    """The four sock_addr links (connect and sendmsg, IPv4 and IPv6) are gone after close:
    what is attached for each is what was before."""
    try:
        first = CgroupHooks().open()
    except HooksUnavailableError as exc:
        pytest.skip(str(exc))
    cgroup = str(first.cgroup)
    first.close()
    before = {t: attached_ids(cgroup, t) for t in UDP_HOOKS}
    hooks = CgroupHooks().open()
    try:
        assert hooks.udp, hooks.udp_problem
        during = {t: attached_ids(cgroup, t) for t in UDP_HOOKS}
        assert all(len(during[t]) == len(before[t]) + 1 for t in UDP_HOOKS), (before, during)
    finally:
        hooks.close()
    deadline = time.monotonic() + 5
    while {t: attached_ids(cgroup, t) for t in UDP_HOOKS} != before:
        assert time.monotonic() < deadline, "a UDP hook stayed attached"
        time.sleep(0.05)


def test_nothing_stays_attached_after_the_holder_is_killed(hooks: CgroupHooks) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO)},
    )
    try:
        assert holder.stdout is not None
        line = holder.stdout.readline().split()
        assert line, "the holder could not load the hooks"
        program_id, cgroup = int(line[0]), line[1]
        assert program_id in attached_ids(cgroup)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    assert _gone(program_id, cgroup)


def test_many_connections_still_succeed_with_the_hooks_attached(hooks: CgroupHooks) -> None:
    srv, port = _serve_once("127.0.0.1")
    with srv:
        for _ in range(200):
            c = socket.create_connection(("127.0.0.1", port), timeout=5)
            conn, _ = srv.accept()
            c.sendall(b"ping")
            assert conn.recv(4) == b"ping"
            conn.close()
            c.close()
    seen = 0
    while hooks.wait(0.2):
        batch = hooks.read()
        if not batch:
            break
        seen += sum(r.remote == ("127.0.0.1", port) for r in batch)
    assert seen == 200


def test_the_program_without_name_and_cookie_passes_the_verifier() -> None:
    """The fallback program for kernels whose verifier refuses those two helpers."""
    from netwatch.sources import cgroup_bpf as c
    from netwatch.sources import cgroup_bpf_records as r

    ring, drops = c.create_ringbuf(), c.create_counter()
    try:
        prog = c.load_program(
            c.BPF_PROG_TYPE_SOCK_OPS,
            c.BPF_CGROUP_SOCK_OPS,
            r.tcp_connect_program(ring, drops, extras=False),
            b"netwatch_test",
        )
        os.close(prog)
    finally:
        os.close(ring)
        os.close(drops)


def test_records_the_ring_has_no_room_for_are_counted(hooks: CgroupHooks) -> None:
    """Nobody reads while more connects happen than the ring holds (about 2,700 records):
    the kernel program counts each one it could not write, so the loss is not silent."""
    srv, port = _serve_once("127.0.0.1")
    made = 3500
    with srv:
        for _ in range(made):
            c = socket.create_connection(("127.0.0.1", port), timeout=5)
            srv.accept()[0].close()
            c.close()
    read = 0
    while batch := hooks.read(4096):
        read += len(batch)
    assert hooks.dropped > 0
    assert read + hooks.dropped >= made  # other programs' connects may add to both


FALLBACK = r"""
import logging
logging.basicConfig(level=logging.INFO, format="%(message)s")
from netwatch.sources.connect_owners import ConnectionOwners
owners = ConnectionOwners().start()
print(owners.stats().mechanism, owners.hooks is None, owners._syn is not None, flush=True)
owners.stop()
"""


@requires_tools("setpriv")
def test_without_the_capabilities_to_load_them_the_watcher_falls_back_with_one_line() -> None:
    """Root without CAP_BPF and CAP_SYS_ADMIN (dropped from the bounding set before exec):
    the hooks cannot load, the start watcher opens its SYN socket instead, and one log
    line says why."""
    res = subprocess.run(
        ["setpriv", "--bounding-set", "-sys_admin,-bpf", sys.executable, "-c", FALLBACK],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO)},
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["exec", "events", "+", "connection", "starts", "True", "True"]
    lines = [line for line in res.stderr.splitlines() if "cgroup socket hooks" in line]
    assert len(lines) == 1 and "not permitted" in lines[0], res.stderr


UDP_CLIENT = r"""
import socket, sys
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
if sys.argv[2] == "connect":
    c.connect(("127.0.0.1", int(sys.argv[1]))); c.send(b"query")
else:
    c.sendto(b"query", ("127.0.0.1", int(sys.argv[1])))
print(c.getsockname()[1], flush=True)
sys.stdin.read()
"""


@pytest.mark.parametrize("how", ["connect", "sendto"])
def test_a_udp_socket_s_owner_is_found_by_its_sock_diag_cookie(
    hooks: CgroupHooks, how: str, tmp_path: Path
) -> None:
    """A resolver connects its UDP socket before the local port is bound, so the hooks key
    the owner by the socket's cookie, which sock_diag reports for the socket."""
    assert hooks.udp, hooks.udp_problem
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))
    program = tmp_path / "udpprobe"
    program.symlink_to(sys.executable)
    with srv:
        port = srv.getsockname()[1]
        child = subprocess.Popen(
            [str(program), "-c", UDP_CLIENT, str(port), how],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert child.stdout is not None
            local = int(child.stdout.readline())
            peer = ("127.0.0.1", port) if how == "connect" else ("0.0.0.0", 0)
            remote = (socket.inet_aton(peer[0]), peer[1])
            diag = netlink.DiagSocket()
            try:
                rec = diag.find(socket.IPPROTO_UDP, (socket.inet_aton("127.0.0.1"), local), remote)
                if rec is None:  # an unconnected socket bound to the wildcard address
                    rec = diag.find(
                        socket.IPPROTO_UDP, (socket.inet_aton("0.0.0.0"), local), remote
                    )
            finally:
                diag.close()
            assert rec is not None
            cookie = int.from_bytes(rec.ident[-8:], "little")
            assert hooks.udp_owner(cookie) == (child.pid, "udpprobe")
            assert hooks.udp_owner(cookie ^ (1 << 40)) is None  # a socket it never saw
        finally:
            child.communicate("", timeout=10)
