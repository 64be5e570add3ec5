"""Acceptance: 300 loopback connections, each of which sent 5,000 bytes, all attributed.

The client is a copy of the Python interpreter named `nwprobe-client` (so the kernel's comm,
and psutil's name, is that); the listener is this test process. `netwatch snapshot
--format jsonl` must list all 300 client sockets with that pid and name and
`bytes_sent >= 5000`, and the 300 accepted sockets as `inbound`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.records import snapshot

N = 300
PAYLOAD = 5000

CLIENT = r"""
import socket, sys
host, port, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
socks = []
for _ in range(n):
    s = socket.create_connection((host, port), timeout=30)
    s.sendall(b"x" * size)
    socks.append(s)
for s in socks:
    # The listener answers after reading everything; its reply carries the ACK of our
    # 5,000 bytes, so tcp_info bytes_acked is final before we say "ready".
    if s.recv(1) != b"k":
        sys.exit("no reply")
sys.stdout.write("ready\n")
sys.stdout.flush()
sys.stdin.read()
"""


def _family_host(family: int) -> str:
    return "127.0.0.1" if family == socket.AF_INET else "::1"


def _recv_exactly(conn: socket.socket, size: int) -> None:
    got = 0
    while got < size:
        chunk = conn.recv(size - got)
        if not chunk:
            raise AssertionError("client closed early")
        got += len(chunk)


class Probe:
    """A listener in this process and the nwprobe-client process holding N connections."""

    def __init__(self, tmp: Path, family: int = socket.AF_INET) -> None:
        exe = tmp / "nwprobe-client"
        shutil.copy(os.path.realpath(sys.executable), exe)
        self.host = _family_host(family)
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.bind((self.host, 0))
        self.listener.listen(N + 10)
        self.listener.settimeout(30)
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.client = subprocess.Popen(
            [str(exe), "-c", CLIENT, self.host, str(self.port), str(N), str(PAYLOAD)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def serve(self) -> None:
        for _ in range(N):
            conn, _addr = self.listener.accept()
            conn.settimeout(30)
            self.accepted.append(conn)
        for conn in self.accepted:
            _recv_exactly(conn, PAYLOAD)
            conn.sendall(b"k")
        assert self.client.stdout is not None
        assert self.client.stdout.readline().strip() == "ready"

    def close(self) -> None:
        if self.client.stdin is not None:
            self.client.stdin.close()
        try:
            self.client.wait(10)
        except subprocess.TimeoutExpired:
            self.client.kill()
            self.client.wait(5)
        for conn in self.accepted:
            conn.close()
        self.listener.close()


@pytest.fixture
def probe(tmp_path: Path) -> Iterator[Probe]:
    p = Probe(tmp_path)
    try:
        p.serve()
        yield p
    finally:
        p.close()


@pytest.mark.live
@pytest.mark.timeout(120)
def test_300_client_sockets_attributed_with_bytes(
    probe: Probe, netwatch_cmd: list[str], repo_root: Path
) -> None:
    records = snapshot(netwatch_cmd, cwd=repo_root).flows
    assert all(r["schema"] == 1 for r in records)
    mine = [
        r
        for r in records
        if r["transport"] == "tcp"
        and probe.port in (r["sport"], r["dport"])
        and not r.get("container")  # other labs' namespaces may use the same port
    ]

    clients = [r for r in mine if r["direction"] == "outbound"]
    assert len(clients) == N
    for r in clients:
        assert r["dst"] == "127.0.0.1" and r["dport"] == probe.port
        assert r["state"] == "ESTABLISHED"
        assert r["process"]["pid"] == probe.client.pid
        assert r["process"]["name"] == "nwprobe-client"
        assert r["process"]["exe"].endswith("nwprobe-client")
        assert r["process"]["ppid"] == os.getpid()
        assert r["bytes_sent"] >= PAYLOAD
        assert r["bytes_received"] >= 1

    accepted = [r for r in mine if r["direction"] == "inbound"]
    assert len(accepted) == N
    client_ports = {r["sport"] for r in clients}
    for r in accepted:
        # src/sport is the initiator: the client's side.
        assert r["src"] == "127.0.0.1" and r["sport"] in client_ports
        assert r["dport"] == probe.port
        assert r["process"]["pid"] == os.getpid()
        assert r["bytes_received"] >= PAYLOAD

    listen = [r for r in mine if r["direction"] == "listen"]
    assert len(listen) == 1
    assert listen[0]["state"] == "LISTEN" and listen[0]["process"]["pid"] == os.getpid()
