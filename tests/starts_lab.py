"""Short-lived processes and fast connections in a lab, for the start watcher's live tests and
`bench/connects.py` (root only).

A `tests.netns.Lab` host namespace (192.0.2.1) talks to one peer (a documentation address)
that runs a TCP sink on port 8080 (reads to the end, answers `ok`, closes) and a UDP sink on
port 53. Each scenario runs distinctly named programs (copies of the interpreter, so the kernel
and /proc give our name) in the host namespace; each prints the local port of every
connection it made, so the test can ask the watcher who opened exactly those.

The watcher (`ConnectionOwners`) must see the host namespace's packets and sockets, so its
packet and sock_diag sockets are opened while this thread is in that namespace (`in_netns`);
the process-events connector only exists in the initial namespace, so it is subscribed before
(as the daemon's collector, which runs there, does).
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from netwatch.model import Endpoint, FlowKey, Transport
from netwatch.sources.connect_owners import ConnectionOwners
from tests.netns import HOST_IP, Lab, Peer

CLONE_NEWNET = 0x40000000
PORT = 8080

SERVER = r"""
import socket, sys, threading
ip = sys.argv[1]
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((ip, 8080)); srv.listen(1024)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind((ip, 53))
threading.Thread(target=lambda: [udp.recv(512) for _ in iter(int, 1)], daemon=True).start()
def serve(c):
    with c:
        while c.recv(1 << 16):
            pass
        c.sendall(b"ok")
print("serving", flush=True)
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""
CLIENT = r"""
import random, socket, sys, time
ip, count, size, life = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
hold, gap = float(sys.argv[5]), float(sys.argv[6])
born = time.monotonic()
data = b"x" * size
for _ in range(count):
    s = socket.create_connection((ip, 8080), timeout=20)
    print(s.getsockname()[1], flush=True)
    s.sendall(data)
    # Open (held) until the process's life is over or for `hold`: once both ends have sent
    # their FIN the kernel swaps the socket for a time-wait entry with no inode, whatever the
    # program still holds, so the FIN waits for that.
    if life != "-":
        low, high = (float(x) for x in life.split(":"))
        time.sleep(max(0.0, born + random.uniform(low, high) - time.monotonic()))
    time.sleep(hold)
    s.shutdown(socket.SHUT_WR)
    while s.recv(1 << 16):
        pass
    s.close()
    time.sleep(gap)
"""
FLOOD = r"""
import socket, sys
ip, count = sys.argv[1], int(sys.argv[2])
query = bytes.fromhex("123401000001000000000000076578616d706c6503636f6d0000010001")
for _ in range(count):  # a new socket each time: every datagram is a new flow
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(query, (ip, 53)); s.close()
print("flooded", flush=True)
"""


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Run the body with this thread in network namespace `name` (sockets made there stay
    there), then go back."""
    libc = ctypes.CDLL(None, use_errno=True)
    back = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    there = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(there, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {name}")
        try:
            yield
        finally:
            if libc.setns(back, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(back)
        os.close(there)


def start_watcher(lab: Lab, events: bool, hooks: bool = False) -> ConnectionOwners:
    """A running watcher for the lab's host namespace; with process events if `events`, with
    the cgroup socket hooks (when they load) if `hooks`."""
    from netwatch.sources.connect_owners import watcher_priority
    from netwatch.sources.proc_events import ProcessEvents

    with watcher_priority():  # as `ConnectionOwners.start` does for the ones it starts
        proc_events = ProcessEvents().start() if events else None
    with in_netns(lab.host):
        return ConnectionOwners(events=proc_events).start(events=False, hooks=hooks)


@dataclass
class StartsLab:
    """The lab, its peer with the sinks, and the programs' folder."""

    lab: Lab
    peer: Peer
    folder: Path

    @classmethod
    @contextlib.contextmanager
    def open(cls, folder: Path, peer_ip: str = "203.0.113.80") -> Iterator[StartsLab]:
        """Build the namespaces and start the sinks; everything goes on exit."""
        with Lab("strt") as lab:
            peer = lab.add_peer(peer_ip)
            (folder / "server.py").write_text(SERVER)
            (folder / "client.py").write_text(CLIENT)
            (folder / "flood.py").write_text(FLOOD)
            server = lab.spawn(
                peer.ns, [sys.executable, str(folder / "server.py"), peer.ip],
                stdout=subprocess.PIPE, bufsize=0,
            )  # fmt: skip
            assert server.stdout is not None
            line = server.stdout.readline()
            assert b"serving" in line, line
            yield cls(lab, peer, folder)

    def program(self, name: str) -> Path:
        """A copy of the interpreter called `name`."""
        path = self.folder / name
        if not path.exists():
            shutil.copy2(sys.executable, path)
        return path

    def client(
        self, name: str, count: int, size: int, life: str = "-", hold: float = 0.0,
        gap: float = 0.0,
    ) -> list[str]:  # fmt: skip
        """The argv of a client program `name` making `count` connections of `size` bytes, one
        after another, `gap` seconds apart; each kept open `hold` seconds after sending, the
        last until the process has lived `life` (`low:high` seconds, drawn at random): a
        short-lived process whose connection lasts as long as it does. Without either, a
        connection is over within a millisecond on the veth (the fast-connection rows)."""
        return [str(self.program(name)), str(self.folder / "client.py"), self.peer.ip,
                str(count), str(size), life, str(hold), str(gap)]  # fmt: skip

    def key(self, port: int) -> FlowKey:
        """The flow key of the host's connection from `port` to the sink."""
        return FlowKey(
            Transport.TCP,
            Endpoint(ipaddress.ip_address(HOST_IP), port),
            Endpoint(ipaddress.ip_address(self.peer.ip), PORT),
        )

    def named(self, owners: ConnectionOwners, ports: list[int], name: str) -> int:
        """How many of the connections from `ports` the watcher named as `name`."""
        time.sleep(0.3)  # the last lookups
        out = 0
        for port in ports:
            ref = owners.owner(self.key(port))
            out += ref is not None and ref.name == name
        return out

    # ------------------------------------------------------------ the scenarios

    def sequence(self, name: str = "seqsend", count: int = 20, size: int = 256 << 10) -> list[int]:
        """`count` processes one after another, each connect + send `size` bytes + exit."""
        ports = []
        for _ in range(count):
            res = self.lab.run(self.lab.host, self.client(name, 1, size), timeout=30)
            assert res.returncode == 0, res.stderr
            ports += [int(p) for p in res.stdout.split()]
        return ports

    def one_process(self, name: str = "manyconn", count: int = 60) -> list[int]:
        """One process making `count` short connections one after another."""
        res = self.lab.run(self.lab.host, self.client(name, count, 512), timeout=60)
        assert res.returncode == 0, res.stderr
        return [int(p) for p in res.stdout.split()]

    def burst(self, name: str = "burstproc", count: int = 30) -> list[int]:
        """`count` processes started at once, each living 0.1-0.3 s (one connection each)."""
        argv = self.lab.cmd(self.lab.host, self.client(name, 1, 1024, "0.1:0.3"))
        procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) for _ in range(count)]
        ports = []
        for proc in procs:
            out, _ = proc.communicate(timeout=60)
            assert proc.returncode == 0
            ports += [int(p) for p in out.split()]
        return ports

    def flood_and_connect(
        self, name: str = "quietconn", flood: str = "dnsflood", datagrams: int = 16_000,
        count: int = 20,
    ) -> list[int]:  # fmt: skip
        """`datagrams` UDP/53 datagrams from one program (a new socket each) while another
        makes `count` short connections (each open 50 ms: long enough to be named by a watcher
        that is not blinded, so what is missed is the flood's doing)."""
        flooder = self.lab.spawn(
            self.lab.host,
            [str(self.program(flood)), str(self.folder / "flood.py"), self.peer.ip,
             str(datagrams)],
            stdout=subprocess.PIPE,
        )  # fmt: skip
        time.sleep(0.05)  # the flood is under way
        res = self.lab.run(
            self.lab.host, self.client(name, count, 512, hold=0.05, gap=0.02), timeout=60
        )
        assert res.returncode == 0, res.stderr
        flooder.wait(60)
        return [int(p) for p in res.stdout.split()]
