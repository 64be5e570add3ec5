"""Acceptance: a store filled by a live daemon run answers `netwatch history` with the bytes
the wire carried.

Two programs (copies of the interpreter, so two names) in the lab's host namespace each open
one TCP connection to a server in their own peer namespace, send a known amount, receive a
known amount back, and hold the connection a little so the daemon's next tick reads its final
counters. The reference is nftables in each peer: a counter on the packets of that
connection in each direction (IP bytes, headers included, which is why the comparison allows
10 %). The test mmdb maps the two documentation prefixes to NL and JP, so `--by country`
must give each program's bytes to its peer's country.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import requires_root, requires_tools
from tests.daemon.harness import REPO, Collector, _python_env, lab_daemon_argv, make_programs, stop
from tests.mmdb import write_mmdb
from tests.netns import Lab

pytestmark = [
    pytest.mark.daemon,
    pytest.mark.live,
    requires_root,
    requires_tools("ip", "ss", "nft"),
    pytest.mark.timeout(120),
]

PORT = 8445
PEERS = {"NL": "198.51.100.21", "JP": "203.0.113.21"}
SIZES = {"NL": (3_000_000, 1_000_000), "JP": (400_000, 2_500_000)}
"""Bytes each program sends and receives."""

# Reads argv[3] bytes, sends argv[4] bytes back, then holds until the client closes.
SERVER = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(4); s.settimeout(60)
c = s.accept()[0]; c.settimeout(60)
want, got = int(sys.argv[3]), 0
while got < want:
    b = c.recv(65536)
    if not b:
        break
    got += len(b)
c.sendall(b"r" * int(sys.argv[4]))
c.recv(1)
"""

# Sends argv[3] bytes, reads argv[4] bytes, holds argv[5] seconds, closes.
CLIENT = r"""
import socket, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
c.sendall(b"s" * int(sys.argv[3]))
want, got = int(sys.argv[4]), 0
while got < want:
    b = c.recv(65536)
    if not b:
        break
    got += len(b)
time.sleep(float(sys.argv[5]))
c.close()
"""

# Counted: the peer's packets that carry data (longer than 100 bytes). Without capture the
# daemon counts TCP payload (tcp_info); pure ACKs are 52-byte headers alone, and under load
# their number grows (a CI run counted 13% more than the payload out of a peer receiving
# 3 MB), while a data packet's header is at most a few percent of it.
NFT = """
table inet nwhist {
    chain input {
        type filter hook input priority 0; tcp dport %(port)d meta length > 100 counter;
    }
    chain output {
        type filter hook output priority 0; tcp sport %(port)d meta length > 100 counter;
    }
}
"""


def _counters(lab: Lab, ns: str) -> tuple[int, int]:
    """(bytes into the peer's server, bytes out of it) from the peer's nftables counters."""
    res = lab.run(ns, ["nft", "-j", "list", "table", "inet", "nwhist"])
    assert res.returncode == 0, res.stderr
    got = {}
    for item in json.loads(res.stdout)["nftables"]:
        rule = item.get("rule")
        if rule:
            counter = next(e["counter"] for e in rule["expr"] if "counter" in e)
            got[rule["chain"]] = int(counter["bytes"])
    return got["input"], got["output"]


def _history(db: Path, *args: str) -> list[dict[str, object]]:
    res = subprocess.run(
        [sys.executable, "-m", "netwatch", "history", "--db", str(db), "--format", "jsonl",
         *args],
        capture_output=True, text=True, timeout=60, cwd=REPO, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    return [json.loads(line) for line in res.stdout.splitlines()]


def _near(got: object, want: int) -> bool:
    return isinstance(got, int) and abs(got - want) <= 0.10 * want


def test_history_by_process_and_country_matches_the_wire(tmp_path: Path) -> None:
    db, sock = tmp_path / "n.db", tmp_path / "n.sock"
    geo = write_mmdb(
        tmp_path / "geo.mmdb",
        {"198.51.100.0/24": ("NL", 64500, "Example NL"), "203.0.113.0/24": ("JP", 64501, "JP")},
    )
    progs = dict(zip(PEERS, make_programs(tmp_path / "bin", 2, prefix="nwhist"), strict=True))
    with Lab("hist") as lab:
        peers = {cc: lab.add_peer(ip) for cc, ip in PEERS.items()}
        for cc, peer in peers.items():
            res = lab.run(peer.ns, ["nft", "-f", "-"], input=NFT % {"port": PORT})
            assert res.returncode == 0, res.stderr
            sent, received = SIZES[cc]
            lab.spawn(peer.ns, [sys.executable, "-c", SERVER, peer.ip, str(PORT), str(sent),
                                str(received)])  # fmt: skip
        for peer in peers.values():
            deadline = time.monotonic() + 10
            while not lab.run(peer.ns, ["ss", "-Hltn", f"sport = :{PORT}"]).stdout.strip():
                assert time.monotonic() < deadline, "peer server did not start"
                time.sleep(0.1)
        env = {"PATH": "/usr/bin:/bin", **{
            k: os.environ[k] for k in ("CONFIGURATION_DIRECTORY",) if k in os.environ
        }}  # fmt: skip
        daemon = lab.spawn(
            lab.host,
            lab_daemon_argv(db, sock, "--interval", "0.5", "--no-capture", "--geoip-db", str(geo)),
            cwd=REPO, env=env, stderr=subprocess.PIPE,
        )  # fmt: skip
        collector = Collector(sock)
        try:
            assert collector.wait_for(lambda c: len(c.snapshots) >= 2, 30)
            clients = [
                lab.spawn(
                    lab.host,
                    [
                        str(progs[cc]),
                        "-c",
                        CLIENT,
                        PEERS[cc],
                        str(PORT),
                        *map(str, SIZES[cc]),
                        "4.0",  # hold: the daemon (0.5 s ticks) reads the final counters
                    ],
                    env=_python_env(),
                )  # fmt: skip
                for cc in PEERS
            ]
            for c in clients:
                assert c.wait(60) == 0
            seen = len(collector.snapshots)
            assert collector.wait_for(lambda c: len(c.snapshots) >= seen + 2, 10)
        finally:
            collector.close()
        stop(daemon, signal.SIGTERM, timeout=10)
        assert daemon.returncode == 0
        wire = {cc: _counters(lab, peer.ns) for cc, peer in peers.items()}
    by_process = {r["process_name"]: r for r in _history(db, "--by", "process")}
    by_country = {r["country"]: r for r in _history(db, "--by", "country")}
    for cc, (into_peer, out_of_peer) in wire.items():
        name = progs[cc].name
        assert name in by_process, by_process
        row = by_process[name]
        assert _near(row["bytes_out"], into_peer), (cc, row, wire)
        assert _near(row["bytes_in"], out_of_peer), (cc, row, wire)
        assert row["connections"] == 1
        assert _near(by_country[cc]["bytes_out"], into_peer), (cc, by_country, wire)
        assert _near(by_country[cc]["bytes_in"], out_of_peer), (cc, by_country, wire)
