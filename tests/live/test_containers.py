"""A process in a "container" (its own network and PID namespaces) routed through the host.

The lab's host namespace plays the machine netwatch watches (its live engine with capture
runs there, `tests.live.capture_lab.Watch`); a container namespace sits behind it and a
peer namespace beyond it, each on its own veth pair, with forwarding on only inside the
lab's host namespace. A distinctly named program in the container, started in a PID
namespace of its own (`unshare --pid --fork --mount-proc`), sends a known number of bytes to
the peer, where an nftables counter is the reference (not netwatch). netwatch must name the
program and the container's network namespace for the flow, with bytes within 10% of the
counter: once routed, once behind masquerade in the host namespace (conntrack maps the
host's translated address back to the container's socket). netwatch captures on the
host's interface toward the peer, where the masqueraded flow has only the host's address.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from netwatch.model import Container, Transport
from netwatch.sources.namespaces import Namespaces
from netwatch.sources.sockets import SocketSampler
from tests.conftest import requires_root, requires_tools
from tests.live.capture_lab import Watch, process_name, remote_is, wait_for_line
from tests.netns import Lab

pytestmark = [
    pytest.mark.live,
    requires_root,
    requires_tools("nft", "unshare"),
    pytest.mark.timeout(120),
]

PORT = 9400
SIZE = 3_000_000
PROGRAM = "ctrsender"

SERVER = """
import socket, sys
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2]))); srv.listen(); srv.settimeout(60)
print("serving", flush=True)
c, _ = srv.accept()
while c.recv(65536):
    pass
c.close()
"""
# Sends SIZE bytes, then keeps the connection open for a few samples before closing.
SENDER = """
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
s.sendall(b"c" * int(sys.argv[3]))
time.sleep(5.0)
s.close()
"""


def _nft_bytes(lab: Lab, ns: str) -> int:
    out = lab.run(ns, ["nft", "list", "table", "inet", "nwref"]).stdout
    m = re.search(r"counter packets \d+ bytes (\d+)", out)
    assert m is not None, out
    return int(m.group(1))


@pytest.mark.parametrize("masquerade", [False, True], ids=["routed", "masquerade"])
def test_container_process_named_with_its_namespace(tmp_path: Path, masquerade: bool) -> None:
    with Lab("ctr") as lab:
        ctr = lab.add_peer("198.51.100.40")
        peer = lab.add_peer("203.0.113.40")
        for rule in (
            ["add", "table", "inet", "nwref"],
            ["add", "chain", "inet", "nwref", "in", "{ type filter hook input priority 0; }"],
            ["add", "rule", "inet", "nwref", "in", "tcp", "dport", str(PORT), "counter"],
        ):
            lab.exec_ok(peer.ns, ["nft", *rule])
        if masquerade:
            for rule in (
                ["add", "table", "ip", "nwnat"],
                [
                    "add",
                    "chain",
                    "ip",
                    "nwnat",
                    "post",
                    "{ type nat hook postrouting priority 100; }",
                ],
                ["add", "rule", "ip", "nwnat", "post", "oifname", peer.host_if, "masquerade"],
            ):
                lab.exec_ok(lab.host, ["nft", *rule])
        (tmp_path / "server.py").write_text(SERVER)
        server = lab.spawn(
            peer.ns,
            [sys.executable, str(tmp_path / "server.py"), peer.ip, str(PORT)],
            stdout=subprocess.PIPE,
            bufsize=0,
        )
        wait_for_line(server.stdout, "serving", 20)
        program = tmp_path / PROGRAM  # a copy of the interpreter, so the name is ours
        shutil.copy2(sys.executable, program)
        (tmp_path / "sender.py").write_text(SENDER)
        netns = os.stat(f"/run/netns/{ctr.ns}").st_ino
        # Capture where the traffic leaves the host for the peer: a routed packet crosses two
        # of the host's interfaces, and counting it once is not this test's subject.
        watch = Watch(
            lab,
            tmp_path,
            bpf=f"host {peer.ip}",
            interval=0.5,
            interface=peer.host_if,
            containers=True,
        ).start()
        sender = lab.spawn(
            ctr.ns,
            [
                "unshare", "--pid", "--fork", "--mount-proc",
                str(program), str(tmp_path / "sender.py"), peer.ip, str(PORT), str(SIZE),
            ],
        )  # fmt: skip
        assert sender.wait(30) == 0
        server.wait(10)
        watch.stop()
        reference = _nft_bytes(lab, peer.ns)
    assert reference > SIZE
    # The last snapshot that shows the traffic: while the container's namespace was not yet
    # listed, its flows may show in parts for a tick or two.
    last = [
        [f for f in snap["flows"] if remote_is(peer.ip, PORT)(f) and f.get("bytes_sent")]
        for snap in watch.snapshots
    ]
    latest = {
        (f["src"], f["sport"], f["dst"], f["dport"]): f for f in next(x for x in last[::-1] if x)
    }
    assert latest, "no flow to the peer"
    if masquerade:
        assert any(src != ctr.ip for src, *_ in latest), "no flow under the host's address"
    moved = sum(f["bytes_sent"] for f in latest.values())
    named = [
        f
        for f in latest.values()
        if process_name(f) == PROGRAM and (f.get("container") or {}).get("netns") == netns
    ]
    summary = [(k, process_name(f), f.get("container")) for k, f in latest.items()]
    assert sum(f["bytes_sent"] for f in named) >= 0.95 * moved, summary
    biggest = max(named, key=lambda f: f["bytes_sent"])
    assert abs(biggest["bytes_sent"] - reference) <= 0.1 * reference, (biggest, reference)
    assert biggest["container"]["name"] == ctr.ns
    assert biggest["container"]["runtime"] == "netns"


HOLDER = """
import socket, time
srv = socket.socket(); srv.bind(("127.0.0.1", 9401)); srv.listen()
c = socket.create_connection(("127.0.0.1", 9401)); a, _ = srv.accept(); c.sendall(b"x" * 5000)
print("ready", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("enter", [True, False], ids=["sock_diag-inside", "proc-net"])
def test_sampler_lists_a_container_s_sockets_with_owner_and_name(
    tmp_path: Path, enter: bool
) -> None:
    """Both ways of listing a namespace: sock_diag inside it (root) and `/proc/<pid>/net`
    (the daemon's collector, which keeps no CAP_SYS_ADMIN); only the first has counters."""
    with Lab("ctr") as lab:
        ns = lab.add_ns("c")
        lab.exec_ok(ns, ["ip", "link", "set", "lo", "up"])
        program = tmp_path / "ctrholder"
        shutil.copy2(sys.executable, program)
        holder = lab.spawn(
            ns,
            ["unshare", "--pid", "--fork", "--mount-proc", str(program), "-c", HOLDER],
            stdout=subprocess.PIPE,
            bufsize=0,
        )
        wait_for_line(holder.stdout, "ready", 20)
        netns = os.stat(f"/run/netns/{ns}").st_ino
        sampler = SocketSampler(namespaces=Namespaces(enter=enter))
        try:
            entries = [
                e
                for e in sampler.sample().entries
                if e.container is not None and e.container.netns == netns
            ]
            listed = sampler.namespaces
            assert listed is not None
            entered = listed.entered
        finally:
            sampler.close()
    assert {e.container for e in entries} == {Container(netns, ns, "netns")}
    ports = {
        (e.key.local.port, None if e.key.remote is None else e.key.remote.port) for e in entries
    }
    assert {(9401, None), (9401, next(p for p, r in ports if r == 9401))} <= ports
    assert {e.process.name for e in entries if e.process is not None} == {"ctrholder"}
    assert all(e.process is not None for e in entries if e.key.transport is Transport.TCP)
    client = next(e for e in entries if e.key.remote is not None and e.key.remote.port == 9401)
    if enter:
        assert entered >= 1 and (client.bytes_sent or 0) >= 5000  # bytes_acked counts the SYN
    else:
        assert entered == 0 and client.bytes_sent is None


DNS_PORT = 9453
DATAGRAMS = 150
DNS_PROGRAM = "ctrdns"
# A UDP server bound to the wildcard address (as a DNS server in a container is): it answers
# each datagram, then stays a few samples so its namespace is listed with the flow.
UDP_SERVER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.settimeout(30)
print("serving", flush=True)
for _ in range(int(sys.argv[2])):
    data, peer = s.recvfrom(4096)
    s.sendto(data[:16], peer)
time.sleep(3.0)
"""
UDP_CLIENT = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
for i in range(int(sys.argv[3])):
    s.sendto(b"q" * 400, (sys.argv[1], int(sys.argv[2])))
    s.recvfrom(4096)
    time.sleep(0.03)
"""


def test_a_container_s_wildcard_udp_server_is_named(tmp_path: Path) -> None:
    """A server on `0.0.0.0:PORT` in a container is found by the container's own address
    (its namespace's `homes`): the flow from the peer to it is the server's, with the
    container, for the bytes the peer's nftables counter says it sent."""
    with Lab("ctu") as lab:
        ctr = lab.add_peer("198.51.100.41")
        peer = lab.add_peer("203.0.113.41")
        for rule in (
            ["add", "table", "inet", "nwref"],
            ["add", "chain", "inet", "nwref", "out", "{ type filter hook output priority 0; }"],
            ["add", "rule", "inet", "nwref", "out", "udp", "dport", str(DNS_PORT), "counter"],
        ):
            lab.exec_ok(peer.ns, ["nft", *rule])
        program = tmp_path / DNS_PROGRAM
        shutil.copy2(sys.executable, program)
        (tmp_path / "server.py").write_text(UDP_SERVER)
        (tmp_path / "client.py").write_text(UDP_CLIENT)
        netns = os.stat(f"/run/netns/{ctr.ns}").st_ino
        watch = Watch(
            lab,
            tmp_path,
            bpf=f"host {peer.ip}",
            interval=0.5,
            interface=peer.host_if,
            containers=True,
        ).start()
        server = lab.spawn(
            ctr.ns,
            [
                "unshare", "--pid", "--fork", "--mount-proc",
                str(program), str(tmp_path / "server.py"), str(DNS_PORT), str(DATAGRAMS),
            ],
            stdout=subprocess.PIPE,
            bufsize=0,
        )  # fmt: skip
        wait_for_line(server.stdout, "serving", 20)
        client = lab.spawn(
            peer.ns,
            [sys.executable, str(tmp_path / "client.py"), ctr.ip, str(DNS_PORT), str(DATAGRAMS)],
        )
        assert client.wait(60) == 0
        assert server.wait(30) == 0
        watch.stop()
        reference = _nft_bytes(lab, peer.ns)
    assert reference >= DATAGRAMS * 400
    flows = [
        [f for f in snap["flows"] if remote_is(ctr.ip, DNS_PORT)(f) and f.get("bytes_received")]
        for snap in watch.snapshots
    ]
    latest = next(x for x in flows[::-1] if x)
    summary = [(process_name(f), f.get("container"), f.get("bytes_received")) for f in latest]
    (flow,) = latest
    assert process_name(flow) == DNS_PROGRAM, summary
    assert (flow.get("container") or {}).get("netns") == netns, summary
    assert abs(flow["bytes_received"] - reference) <= 0.1 * reference, (flow, reference)


STEPS = """
import socket, sys
held = []
print("ready", flush=True)
for line in sys.stdin:
    if line.startswith("listen"):  # a listener opens: no segment is sent
        s = socket.socket(); s.bind(("127.0.0.1", int(line.split()[1]))); s.listen()
    else:  # a connection to it that sends: segments
        s = socket.create_connection(("127.0.0.1", int(line.split()[1])))
        s.sendall(b"y" * 3000)
    held.append(s)
    print("done", flush=True)
"""


@pytest.mark.parametrize("enter", [True, False], ids=["sock_diag-inside", "proc-net"])
def test_a_quiet_namespace_s_tcp_list_is_kept_and_any_change_is_listed(enter: bool) -> None:
    """A namespace's TCP list (a walk of the kernel's whole TCP hash table, ~5.5 ms per
    read) is read again only when the namespace's TCP counters moved: a quiet namespace hands
    on the very list it had, and a listener opening (no segment at all) and a connection
    that sends are each in the next listing."""
    with Lab("ctq") as lab:
        ns = lab.add_ns("c")
        lab.exec_ok(ns, ["ip", "link", "set", "lo", "up"])
        proc = lab.spawn(
            ns,
            [sys.executable, "-c", STEPS],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
        )
        assert proc.stdin is not None and proc.stdout is not None
        wait_for_line(proc.stdout, "ready", 20)
        netns = os.stat(f"/run/netns/{ns}").st_ino
        listed = Namespaces(enter=enter, list_every=0.0)

        def tcp() -> list[object]:
            (records,) = [
                r
                for t, r, c in listed.batches()
                if c.netns == netns and t is Transport.TCP and (enter or r)
            ] or [[]]
            return records

        def step(line: str) -> None:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(line.encode() + b"\n")
            wait_for_line(proc.stdout, "done", 20)

        try:
            step("listen 9411")
            first = tcp()
            assert first is tcp() is tcp()  # nothing moved: not read again
            step("listen 9412")
            ports = {netlink_port(r) for r in tcp()}
            assert {9411, 9412} <= ports
            kept = tcp()
            step("connect 9412")
            after = tcp()
            assert after is not kept
            assert len([r for r in after if netlink_port(r) == 9412]) >= 2  # listener + accepted
        finally:
            listed.close()
            proc.kill()


def netlink_port(record: object) -> int:
    """The local port of a diag record (the first two bytes of its ident, big-endian)."""
    ident = record[2]  # type: ignore[index]
    return int.from_bytes(ident[:2], "big")
