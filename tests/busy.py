"""Background load for a whole test run: another program talking to a peer namespace.

No real machine is idle while its tests run: other programs hold connections and move bytes,
and netwatch sees them (flows, `process.first_connection` alerts). A test that assumes it is
alone (only its own flows, no alerts) passes on an idle CI box and fails on a user's machine.
So when the suite runs as root, `tests/conftest.py` starts this load once for the session
(`--idle` leaves it off): a namespace with a peer at 203.0.113.254 (or the next free pair of
`ADDRESSES`), joined to this namespace by a veth pair, a sink server there, and a client
process here that keeps `CONNECTIONS` TCP connections to it and sends TCP, UDP and DNS
traffic every fraction of a second. Traffic goes only to that namespace; both processes end
when the session does, or after `MAX_SECONDS`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from types import TracebackType

from tests.netns import stop_all

ADDRESSES = [(f"192.0.2.{n}", f"203.0.113.{n}") for n in range(254, 229, -1)]
"""(local, peer) pairs to try, from the top: another test session running at the same time
(two checkouts, a helper's run) holds the first pair, so its setup fails and the next is tried."""
CONNECTIONS = 3
MAX_SECONDS = 3 * 3600
"""Both processes exit by themselves after this long, even if the session never ends them."""

SERVER = """
import socket, selectors, sys, time, threading
deadline = time.monotonic() + MAX_SECONDS
sel = selectors.DefaultSelector()
tcp = socket.create_server((PEER_IP, 443)); tcp.setblocking(False)
sel.register(tcp, selectors.EVENT_READ, "accept")
for port in (443, 53):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind((PEER_IP, port))
    sel.register(u, selectors.EVENT_READ, "udp")
print("ready", flush=True)
while time.monotonic() < deadline:
    for key, _ in sel.select(1.0):
        s = key.fileobj
        if key.data == "accept":
            c, _ = s.accept(); c.setblocking(False); sel.register(c, selectors.EVENT_READ, "tcp")
        elif key.data == "udp":
            data, peer = s.recvfrom(2048); s.sendto(data[:64], peer)
        else:
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if data:
                s.send(data[:64])
            else:
                sel.unregister(s); s.close()
"""

CLIENT = """
import os, socket, sys, time, threading
deadline = time.monotonic() + MAX_SECONDS
threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
conns = [socket.create_connection((PEER_IP, 443), timeout=5) for _ in range(CONNECTIONS)]
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.settimeout(0.2)
query = bytes.fromhex("abcd01000001000000000000") + b"\\x07example\\x03com\\x00\\x00\\x01\\x00\\x01"
print("ready", flush=True)
n = 0
while time.monotonic() < deadline:
    for c in conns:
        c.sendall(os.urandom(200)); c.recv(4096)
    udp.sendto(os.urandom(120), (PEER_IP, 443))
    if n % 8 == 0:
        udp.sendto(query, (PEER_IP, 53))
    n += 1
    time.sleep(0.25)
"""


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


class BackgroundLoad:
    """The namespace, its server and the client here; all removed on exit."""

    def __init__(self) -> None:
        tag = os.getpid() % 100000
        self.ns = f"nwbusy{tag}"
        self.host_if, self.peer_if = f"nwb{tag}h", f"nwb{tag}p"
        self.local_ip, self.peer_ip = ADDRESSES[0]
        self._procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> BackgroundLoad:
        for self.local_ip, self.peer_ip in ADDRESSES:
            try:
                self._setup()
            except subprocess.CalledProcessError:
                self.close()  # that pair is another session's: try the next
                continue
            except BaseException:
                self.close()
                raise
            return self
        raise RuntimeError("background load: every address pair is in use")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _setup(self) -> None:
        ns, h, p = self.ns, self.host_if, self.peer_if
        local, peer = self.local_ip, self.peer_ip
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        _run("ip", "netns", "add", ns)
        _run("ip", "link", "add", h, "type", "veth", "peer", "name", p)
        _run("ip", "link", "set", p, "netns", ns)
        _run("ip", "addr", "add", f"{local}/32", "dev", h)
        _run("ip", "link", "set", h, "up")
        _run("ip", "route", "add", f"{peer}/32", "dev", h, "src", local)
        inside = ["ip", "netns", "exec", ns]
        _run(*inside, "ip", "link", "set", "lo", "up")
        _run(*inside, "ip", "addr", "add", f"{peer}/32", "dev", p)
        _run(*inside, "ip", "link", "set", p, "up")
        _run(*inside, "ip", "route", "add", f"{local}/32", "dev", p)
        head = f"PEER_IP = {peer!r}; MAX_SECONDS = {MAX_SECONDS}; CONNECTIONS = {CONNECTIONS}\n"
        self._start([*inside, sys.executable, "-c", head + SERVER])
        self._start([sys.executable, "-c", head + CLIENT])

    def _start(self, argv: list[str]) -> None:
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True
        )
        self._procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()  # bounded: both print "ready" or exit at once
        if line.strip() != b"ready":
            raise RuntimeError(f"background load did not start: {' '.join(argv[:4])}")

    def close(self) -> None:
        """Stop both processes (closing the client's stdin ends it) and delete the namespace."""
        stop_all(self._procs)
        self._procs.clear()
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True, check=False)
