"""A small lab of network namespaces for live tests (root only).

`Lab` makes one "host" namespace (the machine netwatch watches, address 192.0.2.1) and any
number of peer namespaces, each joined to the host by its own veth pair with point-to-point
routes, so peers can use any documentation address (198.51.100.0/24, 203.0.113.0/24, and
2001:db8::/32) without sharing a subnet. Traffic never leaves these namespaces. Everything
started through the lab is killed and every namespace deleted on exit, even on failure.

    with Lab("cap") as lab:
        peer = lab.add_peer("203.0.113.10")
        server = lab.spawn(peer.ns, ["python3", "-m", "http.server", "80"])
        lab.run(lab.host, ["curl", "http://203.0.113.10/"])
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType

HOST_IP = "192.0.2.1"
HOST_IP6 = "2001:db8::1"

_counter = itertools.count()


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def stop_all(procs: Sequence[subprocess.Popen[bytes]], grace: float = 5.0) -> None:
    """SIGTERM each process group started with `start_new_session`, SIGKILL what outlives
    `grace` seconds, and reap them all."""
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


@dataclass
class Peer:
    """A peer namespace: its name, address, and the two ends of its veth pair."""

    ns: str
    ip: str
    host_if: str
    peer_if: str
    ip6: str | None = None


@dataclass
class Lab:
    """Namespaces, veth pairs and processes that are all removed on exit."""

    tag: str
    host: str = ""
    peers: list[Peer] = field(default_factory=list)
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _namespaces: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Names stay short: interface names are limited to 15 characters.
        self._id = f"{os.getpid() % 10000}{next(_counter)}"
        self.host = f"nw{self.tag[:4]}{self._id}h"

    def __enter__(self) -> Lab:
        self._add_ns(self.host)
        self.exec_ok(self.host, ["ip", "link", "set", "lo", "up"])
        self.exec_ok(self.host, ["ip", "addr", "add", f"{HOST_IP}/32", "dev", "lo"])
        self.exec_ok(self.host, ["ip", "-6", "addr", "add", f"{HOST_IP6}/128", "dev", "lo"])
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _add_ns(self, name: str) -> None:
        _ip("netns", "del", name, check=False)
        _ip("netns", "add", name)
        self._namespaces.append(name)

    def add_peer(self, ip: str, ip6: str | None = None) -> Peer:
        """Add a namespace with address `ip` (and optionally `ip6`), routed to the host."""
        n = len(self.peers)
        ns = f"nw{self.tag[:4]}{self._id}p{n}"
        host_if, peer_if = f"nwh{self._id}{n}"[:15], f"nwp{self._id}{n}"[:15]
        self._add_ns(ns)
        _ip("link", "add", host_if, "type", "veth", "peer", "name", peer_if)
        _ip("link", "set", host_if, "netns", self.host)
        _ip("link", "set", peer_if, "netns", ns)
        h, p = self.host, ns
        for cmd in (
            (h, ["ip", "link", "set", host_if, "up"]),
            (h, ["ip", "route", "add", f"{ip}/32", "dev", host_if, "src", HOST_IP]),
            (p, ["ip", "link", "set", "lo", "up"]),
            (p, ["ip", "link", "set", peer_if, "up"]),
            (p, ["ip", "addr", "add", f"{ip}/32", "dev", peer_if]),
            (p, ["ip", "route", "add", f"{HOST_IP}/32", "dev", peer_if]),
            (p, ["ip", "route", "add", "default", "via", HOST_IP, "dev", peer_if, "onlink"]),
        ):
            self.exec_ok(*cmd)
        if ip6:
            for cmd in (
                (p, ["ip", "-6", "addr", "add", f"{ip6}/128", "dev", peer_if, "nodad"]),
                (p, ["ip", "-6", "route", "add", f"{HOST_IP6}/128", "dev", peer_if]),
                # NDP answers only for addresses on the receiving link (unlike ARP), so the
                # host address goes on the host end of the pair too.
                (h, ["ip", "-6", "addr", "add", f"{HOST_IP6}/128", "dev", host_if, "nodad"]),
                (h, ["ip", "-6", "route", "add", f"{ip6}/128", "dev", host_if, "src", HOST_IP6]),
            ):
                self.exec_ok(*cmd)
        # Peers route through the host to reach each other.
        self.exec_ok(h, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        peer = Peer(ns, ip, host_if, peer_if, ip6)
        self.peers.append(peer)
        return peer

    def add_ns(self, suffix: str) -> str:
        """Add a bare namespace (no links) and return its name."""
        name = f"nw{self.tag[:4]}{self._id}{suffix}"[:30]
        self._add_ns(name)
        return name

    def cmd(self, ns: str, argv: Sequence[str]) -> list[str]:
        """The argv that runs `argv` inside namespace `ns`."""
        return ["ip", "netns", "exec", ns, *argv]

    def exec_ok(self, ns: str, argv: Sequence[str]) -> None:
        """Run a setup command in `ns`; raise with its stderr if it fails."""
        res = subprocess.run(self.cmd(ns, argv), capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} in {ns} failed: {res.stderr.strip()}")

    def run(
        self, ns: str, argv: Sequence[str], timeout: float = 60, **kw: object
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in `ns` to completion (bounded by `timeout`) and return its result."""
        return subprocess.run(  # type: ignore[call-overload, no-any-return]
            self.cmd(ns, argv), capture_output=True, text=True, timeout=timeout, check=False, **kw
        )

    def spawn(self, ns: str, argv: Sequence[str], **kw: object) -> subprocess.Popen[bytes]:
        """Start a background process in `ns`; it is killed when the lab closes."""
        proc = subprocess.Popen(self.cmd(ns, argv), start_new_session=True, **kw)  # type: ignore[call-overload]
        self._procs.append(proc)
        return proc  # type: ignore[no-any-return]

    def pids_in(self, ns: str) -> list[int]:
        """The pids of every process living in namespace `ns`."""
        res = _ip("netns", "pids", ns, check=False)
        return [int(p) for p in res.stdout.split()]

    def close(self) -> None:
        """Kill what the lab started and delete its namespaces."""
        stop_all(self._procs)
        for ns in reversed(self._namespaces):
            for pid in self.pids_in(ns):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            _ip("netns", "del", ns, check=False)
        self._namespaces.clear()
