"""PID reuse for real: a new process gets the pid of one the sampler had cached.

Process A (`nwreuse-a`) listens and forks a child that inherits the listening socket, then A
exits. We steer the kernel into giving A's pid to process B (`nwreuse-b`) by writing
/proc/sys/kernel/ns_last_pid (retrying if another fork wins the race). The same sampler
must now attribute B's socket to B (B's create time and name), and A's old socket, still
held by A's child, to that child, never to the pid A had.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from netwatch.model import SocketTable, Transport
from netwatch.sources.sockets import SocketSampler
from tests.conftest import requires_root

PARENT = r"""
import os, signal, socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
child = os.fork()
if child == 0:
    sys.stdin.read()  # holds the inherited listener until the test closes stdin
    os._exit(0)
print(s.getsockname()[1], child, flush=True)
signal.pause()  # until the test terminates us; the child keeps the socket
"""
HOLD = (
    "import socket,sys; s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(); "
    "print(s.getsockname()[1], flush=True); sys.stdin.read()"
)


def _owner(table: SocketTable, port: int) -> tuple[int, float, str] | None:
    hits = [
        e for e in table.entries if e.key.transport is Transport.TCP and e.key.local.port == port
    ]
    assert len(hits) == 1
    p = hits[0].process
    return None if p is None else (p.pid, p.create_time, p.name)


def _spawn_with_pid(exe: Path, pid: int, attempts: int = 200) -> subprocess.Popen[str] | None:
    for _ in range(attempts):
        try:
            Path("/proc/sys/kernel/ns_last_pid").write_text(str(pid - 1))
        except OSError:
            return None
        proc = subprocess.Popen(
            [str(exe), "-c", HOLD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        if proc.pid == pid:
            return proc
        proc.kill()
        proc.wait(10)
    return None


@pytest.mark.live
@requires_root
@pytest.mark.timeout(120)
def test_reused_pid_gets_the_new_process(tmp_path: Path) -> None:
    real = os.path.realpath(sys.executable)
    exe_a, exe_b = tmp_path / "nwreuse-a", tmp_path / "nwreuse-b"
    shutil.copy(real, exe_a)
    shutil.copy(real, exe_b)
    a = subprocess.Popen(
        [str(exe_a), "-c", PARENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    b: subprocess.Popen[str] | None = None
    child = 0
    try:
        assert a.stdin is not None and a.stdout is not None
        port_a, child = (int(x) for x in a.stdout.readline().split())
        sampler = SocketSampler(backend="netlink")
        before = _owner(sampler.sample(), port_a)
        assert before is not None and before[0] == a.pid and before[2] == "nwreuse-a"
        a_pid, a_created = a.pid, before[1]
        a.terminate()
        a.wait(10)
        b = _spawn_with_pid(exe_b, a_pid)
        if b is None:
            pytest.skip("could not get the kernel to reuse the pid (ns_last_pid)")
        assert b.stdout is not None
        port_b = int(b.stdout.readline())
        table = sampler.sample()
        now_b = _owner(table, port_b)
        assert now_b is not None
        assert now_b == (a_pid, pytest.approx(psutil.Process(a_pid).create_time()), "nwreuse-b")
        assert now_b[1] != a_created
        # A's socket lives on in A's child, which must own it now; never the reused pid.
        now_a = _owner(table, port_a)
        assert now_a is not None and now_a[0] == child
        assert now_a[2] == "nwreuse-a"
    finally:
        for proc in (a, b):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(10)
        if child:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, 9)
